"""Command line: `python -m training.train training/configs/<experiment>.yaml [key=value ...]`.

Parses the arguments, loads and validates the config, calls `training.engine.fit`. Anything
in the config can be overridden with a dotted key (`optim.lr=0.01`, `epochs=3`,
`version=2.0`, `resume=true`). Under `torchrun --nproc-per-node N -m training.train ...` the
same command trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .config import load_config
from .distributed import env_info
from .engine import fit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train one experiment and write checkpoints/<name>/<version>/.",
    )
    parser.add_argument("config", help="experiment YAML, e.g. training/configs/digits_tinyvgg.yaml")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=0.01"
    )
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank = env_info().rank
    level = logging.WARNING if args.quiet or rank != 0 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = fit(config)
    if rank == 0:
        print(f"wrote {result.run_dir}: test {result.metrics['test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
