"""A Pktgen-compatible traffic generator: command language, engine, console, pages."""

from pktflow.pktgen.commands import CommandError, Interpreter, parse_portlist
from pktflow.pktgen.engine import Pktgen, PktgenError

__all__ = ["CommandError", "Interpreter", "Pktgen", "PktgenError", "parse_portlist"]
