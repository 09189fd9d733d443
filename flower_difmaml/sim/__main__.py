"""``python -m flower_difmaml.sim run --engine vectorized|flower -c "key=value ..."``."""

from __future__ import annotations

import argparse
import shlex
import sys
import tomllib
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
    args = parser.parse_args(argv)

    try:
        config = RunConfig.from_mapping({**RunConfig().to_mapping(), **parse_overrides(args.run_config)})
        if args.num_agents < 1:
            raise ConfigError(f"num-agents: {args.num_agents} out of range; allowed: >= 1")
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


if __name__ == "__main__":
    sys.exit(main())
