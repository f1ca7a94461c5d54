"""The ``asyncgw`` command. Subcommands are plugins found through the ``asyncgw.commands`` entry
point group, so the core never imports the services that provide them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from asyncgw import __version__

#: Order in which subcommands are listed in ``--help``.
_ORDER = ["up", "gateway", "worker", "scaler", "dlq"]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every installed subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="asyncgw",
        description="Asynchronous APIs: submit over HTTP, run on workers, fetch results.",
        epilog="Settings come from ASYNCGW_* environment variables; see docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"asyncgw {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    found = sorted(
        entry_points(group="asyncgw.commands"),
        key=lambda ep: (_ORDER.index(ep.name) if ep.name in _ORDER else len(_ORDER), ep.name),
    )
    for entry in found:
        entry.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
