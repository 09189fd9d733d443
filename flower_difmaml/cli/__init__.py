"""Command line ``flower-difmaml`` (also ``python -m flower_difmaml``)::

    flower-difmaml run --engine vectorized|flower [--num-agents N] [--nodes M] -c "key=value ..."
    flower-difmaml run -c presets/difmaml-sinusoid.toml -c "num-rounds=100"   (a file of keys, then more)
    flower-difmaml check [--num-agents N] -c "key=value ..."   (validate only: writes nothing)
    flower-difmaml compare --strategies dif-maml,fedavg-maml,non-coop --seeds 0,1,2 [-c ...]
    flower-difmaml report <folder>
    flower-difmaml stop-superlink    (the local SuperLink ``flwr run`` left running, by PID)
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..flower.local_superlink import flwr_home, local_superlink_pids, stop_processes
from ..runner.compare import compare, report
from ..runner.experiment import combined_by, set_up_run
from ..runner.notices import config_warnings
from ..runner.stopping import RunStopped, stopped_line
from ..runner.vectorized import run_vectorized


def run_in_flower(config: RunConfig, num_agents: int, num_nodes: int = 0) -> None:
    """This app in Flower's simulation engine, in this process (one Ray actor per core), on
    ``num_nodes`` SuperNodes that host a block of the agents each (0: one agent a node).
    Flower is imported here, where a run uses it (the vectorised engine starts a second sooner)."""
    from .. import client_app, server_app
    from ..flower.simulation import run_flower_simulation

    run_flower_simulation(config, num_agents, server_app.app, client_app.app, num_nodes=num_nodes)


def run_in_process(config: RunConfig, num_agents: int) -> None:
    """All agents in this process, vectorised (no Flower, no progress lines)."""
    run_vectorized(config, num_agents, progress=lambda line: None)


ENGINES = {"vectorized": run_in_process, "flower": run_in_flower}


OVERRIDE = re.compile(r"""\s*([^\s=]+)=('[^']*'|"(?:[^"\\]|\\.)*"|[^\s'"]+)\s*""")


def parse_overrides(text: str) -> dict[str, Any]:
    """``"key=value key2='text with spaces'"`` -> dict, values read as TOML (as ``flwr run -c`` does)."""
    out: dict[str, Any] = {}
    position = 0
    while position < len(text.rstrip()):
        match = OVERRIDE.match(text, position)
        if not match:
            item = text[position:].split()[0]
            raise ConfigError(f"{item}: expected key=value (quote strings: key='text')")
        key, value = match.groups()
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{key}: cannot read value {value!r} (quote strings: key='text')") from None
        position = match.end()
    return out


RUN_CONFIG_HELP = ('keys, e.g. "strategy=\'non-coop\' num-rounds=100", or a .toml file of them (presets/); '
                   'repeat -c: later values win')


def read_config_file(path: Path) -> dict[str, Any]:
    """A run-config file: flat ``key = value`` TOML lines (what ``flwr run -c file.toml`` reads)."""
    try:
        with path.expanduser().open("rb") as handle:
            keys = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"run-config: cannot read {path}: {error.strerror}; allowed: a .toml file of key = value lines") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"run-config: {path} is not TOML: {error}") from None
    for key, value in keys.items():
        if isinstance(value, dict):
            raise ConfigError(f"run-config: {path} has a table [{key}]; allowed: flat key = value lines")
    return keys


def read_run_config(items: list[str]) -> dict[str, Any]:
    """The ``-c`` options in order, each ``"key=value ..."`` text or a .toml file; later keys win."""
    out: dict[str, Any] = {}
    for item in items:
        out.update(read_config_file(Path(item.strip())) if item.strip().endswith(".toml") else parse_overrides(item))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flower-difmaml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_command = commands.add_parser("run", help="run one config")
    run_command.add_argument("--engine", choices=list(ENGINES), default="vectorized")
    run_command.add_argument("--num-agents", type=int, default=None, help="N (default: key num-agents, else 10)")
    run_command.add_argument("--nodes", type=int, default=0, help="flower engine: M SuperNodes hosting N/M agents each")
    run_command.add_argument("-c", "--run-config", action="append", default=[], help=RUN_CONFIG_HELP)
    check_command = commands.add_parser("check", help="validate a config: keys, graph, matrix, results folder (no Ray)")
    check_command.add_argument("--num-agents", type=int, default=None)
    check_command.add_argument("-c", "--run-config", action="append", default=[], help=RUN_CONFIG_HELP)
    compare_command = commands.add_parser("compare", help="several strategies x seeds, one table and plots")
    compare_command.add_argument("--strategies", default="dif-maml,fedavg-maml,non-coop")
    compare_command.add_argument("--seeds", default="0,1,2")
    compare_command.add_argument("--engine", choices=list(ENGINES), default="flower")
    compare_command.add_argument("--num-agents", type=int, default=None)
    compare_command.add_argument("--nodes", type=int, default=0, help="flower engine: M SuperNodes hosting N/M agents each")
    compare_command.add_argument("--out", default="", help="folder (default: <results-dir>/compare-<UTC time>)")
    compare_command.add_argument("-c", "--run-config", action="append", default=[], help=RUN_CONFIG_HELP)
    report_command = commands.add_parser("report", help="redraw a comparison's table and plots")
    report_command.add_argument("folder")
    commands.add_parser("stop-superlink", help="stop the local SuperLink that `flwr run` left running ($FLWR_HOME)")
    args = parser.parse_args(argv)

    try:
        if args.command == "report":
            print(report(Path(args.folder).expanduser().resolve()))
            return 0
        if args.command == "stop-superlink":
            return _stop_superlink()
        config = RunConfig.from_mapping({**RunConfig().to_mapping(), **read_run_config(args.run_config)})
        args.num_agents = _num_agents(args, config)
        if args.command == "check":
            return _check(config, args.num_agents)
        if args.command == "compare":
            return _compare(args, config)
        if args.engine == "vectorized":
            run_vectorized(config, args.num_agents)
        else:
            run_in_flower(config, args.num_agents, args.nodes)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunStopped as stopped:
        nodes = f" --nodes {args.nodes}" if args.nodes else ""
        command = f"flower-difmaml run --engine {args.engine} --num-agents {args.num_agents}{nodes}"
        print(stopped_line(stopped, command), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("flower-difmaml: stopped at once (second Ctrl-C); its last checkpoint, if any, can be resumed "
              "with -c \"resume-from='<run folder>'\"", file=sys.stderr)
        return 130
    return 0


def console() -> None:
    """The ``flower-difmaml`` command (and ``python -m flower_difmaml``): :func:`main`, then exit.

    Before it exits the process freezes its objects (``gc.freeze``): the interpreter's last
    cyclic collection then skips the objects of torch and its compiler stack (imported by the
    first ``torch.func.grad``), which took 0.6 s of the main job's 8 s; everything the run
    writes is closed by then, and the objects still go when the process does.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


def _num_agents(args: argparse.Namespace, config: RunConfig) -> int:
    """N: ``--num-agents``, else key ``num-agents``, else 10; and M (``--nodes``) checked against it."""
    num_agents = args.num_agents if args.num_agents is not None else (config.num_agents or 10)
    if num_agents < 1:
        raise ConfigError(f"num-agents: {num_agents} out of range; allowed: >= 1")
    if config.num_agents and config.num_agents != num_agents:
        raise ConfigError(f"num-agents: --num-agents {num_agents} and key num-agents = {config.num_agents} differ")
    nodes = getattr(args, "nodes", 0)
    if nodes < 0 or nodes > num_agents:
        raise ConfigError(f"nodes: {nodes} SuperNodes for {num_agents} agents; allowed: 1..{num_agents}, or 0 (one per agent)")
    if nodes and getattr(args, "engine", "flower") == "vectorized":
        raise ConfigError("nodes: only with --engine flower (the vectorised engine runs every agent in this process)")
    return num_agents


def _check(config: RunConfig, num_agents: int) -> int:
    """Everything a run checks before it starts, without starting it: nothing is written."""
    setup = set_up_run(config, num_agents)
    for line in config_warnings(config, num_agents):
        print(line)
    if source := getattr(setup.learner.family, "source", ""):
        print(f"data: {source}")
    where = f"resumes {setup.run_dir} after round {setup.checkpoint.round}" if setup.checkpoint else f"writes {setup.run_dir}"
    if setup.reruns_killed_run:
        where += " (it holds a run killed before its first checkpoint: run again from round 0)"
    byzantine = f"Byzantine agents {sorted(setup.byzantine)} ({config.attack}); " if setup.byzantine else ""
    print(
        f"ok: {config.strategy} on {num_agents} agents, {config.task} tasks, {config.topology} graph with {setup.graph.number_of_edges()} "
        f"edges (connected), {combined_by(config)}; {byzantine}"
        f"{config.num_rounds} rounds; {where}"
    )
    return 0


def _stop_superlink() -> int:
    pids = local_superlink_pids()
    if not pids:
        print(f"no local SuperLink of FLWR_HOME={flwr_home()} is running")
        return 0
    stop_processes(pids)
    print(f"stopped the local SuperLink of FLWR_HOME={flwr_home()} (PID {', '.join(map(str, pids))})")
    return 0


def _compare(args: argparse.Namespace, config: RunConfig) -> int:
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"seeds: {args.seeds!r}; allowed: comma-separated integers >= 0") from None
    for strategy in strategies:  # every strategy found, and its arguments taken, before the first run starts
        set_up_run(config.replace(strategy=strategy, run_name=""), args.num_agents)
        for line in config_warnings(config.replace(strategy=strategy), args.num_agents, args.engine):
            print(f"{line} (strategy {strategy})")
    for seed in seeds:
        config.replace(seed=seed)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = Path(args.out or Path(config.results_dir) / f"compare-{stamp}").expanduser().resolve()
    engine = ENGINES[args.engine]
    if args.nodes:
        engine = lambda config, num_agents: run_in_flower(config, num_agents, args.nodes)  # noqa: E731
    failed = compare(config, strategies, seeds, folder, num_agents=args.num_agents, run=engine)
    print(f"comparison written to {folder}")
    return 1 if failed else 0

