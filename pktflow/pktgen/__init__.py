"""A Pktgen-compatible traffic generator: command language, engine, console, pages."""

from pktflow.pktgen.commands import CommandError, Interpreter, parse_portlist
from pktflow.pktgen.engine import Engine, PktgenError
from pktflow.pktgen.session import Pktgen

__all__ = ["CommandError", "Engine", "Interpreter", "Pktgen", "PktgenError", "parse_portlist"]
