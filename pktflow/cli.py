"""The `pktflow` command: one entry point, one subcommand per application.

Each application module provides `register(subparsers)`, which adds its subcommand and
sets `func` on it; `main` imports those that exist in this tree.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import pktflow

# Modules that add subcommands, in the order `pktflow --help` lists them.
SUBCOMMAND_MODULES = (
    "pktflow.tutorial.cli",
    "pktflow.flow.cli",
    "pktflow.pktgen.cli",
    "pktflow.kpktgen.cli",
    "pktflow.testbed.cli",
    "pktflow.packet.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pktflow",
        description="Network functions as flow graphs, a Pktgen-compatible traffic "
        "generator, and a network-namespace testbed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser("version", help="print the pktflow version")
    version.set_defaults(func=lambda args: print(f"pktflow {pktflow.__version__}") or 0)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue  # that application is not in this tree
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # One format for every subcommand's log lines; PKTFLOW_LOG=INFO or DEBUG for more.
    logging.basicConfig(level=os.environ.get("PKTFLOW_LOG", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
