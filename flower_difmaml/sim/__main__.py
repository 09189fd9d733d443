"""Command line (also ``flower-difmaml``)::

    python -m flower_difmaml.sim run --engine vectorized|flower -c "key=value ..."
    python -m flower_difmaml.sim check [--num-agents N] -c "key=value ..."   (validate only)
    python -m flower_difmaml.sim compare --strategies dif-maml,fedavg-maml,non-coop --seeds 0,1,2 [-c ...]
    python -m flower_difmaml.sim report <folder>
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig

ENGINES = ("vectorized", "flower")


def parse_overrides(text: str) -> dict[str, Any]:
    """``"key=value key2='text'"`` -> dict, values read as TOML (as ``flwr run -c`` does)."""
    out: dict[str, Any] = {}
    for item in shlex.split(text, posix=False):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item}: expected key=value")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"{key}: cannot read value {value!r} (quote strings: key='text')") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flower_difmaml.sim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one config")
    run.add_argument("--engine", choices=ENGINES, default="vectorized")
    run.add_argument("--num-agents", type=int, default=10)
    run.add_argument("-c", "--run-config", default="", help='overrides, e.g. "strategy=\'non-coop\' num-rounds=100"')
    check = commands.add_parser("check", help="validate a config: keys, graph, matrix, results folder (no Ray)")
    check.add_argument("--num-agents", type=int, default=10)
    check.add_argument("-c", "--run-config", default="")
    compare = commands.add_parser("compare", help="several strategies x seeds, one table and plots")
    compare.add_argument("--strategies", default="dif-maml,fedavg-maml,non-coop")
    compare.add_argument("--seeds", default="0,1,2")
    compare.add_argument("--engine", choices=ENGINES, default="flower")
    compare.add_argument("--num-agents", type=int, default=10)
    compare.add_argument("--out", default="", help="folder (default: <results-dir>/compare-<UTC time>)")
    compare.add_argument("-c", "--run-config", default="")
    report = commands.add_parser("report", help="redraw a comparison's table and plots")
    report.add_argument("folder")
    args = parser.parse_args(argv)

    try:
        if args.command == "report":
            from .compare import report as write_report

            print(write_report(Path(args.folder).expanduser().resolve()))
            return 0
        config = RunConfig.from_mapping({**RunConfig().to_mapping(), **parse_overrides(args.run_config)})
        if args.num_agents < 1:
            raise ConfigError(f"num-agents: {args.num_agents} out of range; allowed: >= 1")
        if args.command == "check":
            return _check(config, args.num_agents)
        if args.command == "compare":
            return _compare(args, config)
        if args.engine == "vectorized":
            from .vectorized import run_vectorized

            run_vectorized(config, args.num_agents)
        else:
            from .engine import run_flower_simulation

            run_flower_simulation(config, args.num_agents)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _check(config: RunConfig, num_agents: int) -> int:
    """Everything a run checks before it starts, without starting it: nothing is written."""
    from .experiment import set_up_run

    setup = set_up_run(config, num_agents)
    where = f"resumes {setup.run_dir} after round {setup.checkpoint.round}" if setup.checkpoint else f"writes {setup.run_dir}"
    byzantine = f"Byzantine agents {sorted(setup.byzantine)} ({config.attack}); " if setup.byzantine else ""
    print(
        f"ok: {config.strategy} on {num_agents} agents, {config.topology} graph with {setup.graph.number_of_edges()} "
        f"edges (connected), {config.combination} weights; {byzantine}{config.num_rounds} rounds; {where}"
    )
    return 0


def _compare(args: argparse.Namespace, config: RunConfig) -> int:
    from .compare import compare

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"seeds: {args.seeds!r}; allowed: comma-separated integers >= 0") from None
    for strategy in strategies:  # every name checked before the first run starts
        config.replace(strategy=strategy)
    for seed in seeds:
        config.replace(seed=seed)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    folder = Path(args.out or Path(config.results_dir) / f"compare-{stamp}").expanduser().resolve()
    failed = compare(config, strategies, seeds, folder, num_agents=args.num_agents, engine=args.engine)
    print(f"comparison written to {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
