"""`Pktgen`: the generator engine driven by Pktgen's command language (the Python API).

The console, the CLI, scripts and tests all drive this one object: an `Engine` (ports,
settings, counters) plus the `Interpreter` that runs command lines against it and keeps
the page shown and a `quit` asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pktflow.packet.pool import Pool
from pktflow.pktgen.commands import Interpreter
from pktflow.pktgen.engine import Engine
from pktflow.ports.base import PortTable


class Pktgen(Engine):
    """A traffic generator on the ports of a `PortTable`, driven by Pktgen commands.

    >>> gen = Pktgen(PortTable.from_specs(["0=mem:a", "1=mem:b"]))
    >>> gen.execute("set 0 count 1000"); gen.start([0]); gen.wait_done(5); gen.stats()
    """

    def __init__(self, ports: PortTable, pool: Pool | None = None,
                 pcap: dict[int, str | Path] | None = None,
                 output: Callable[[str], object] = print) -> None:
        super().__init__(ports, pool, pcap)
        self.interpreter = Interpreter(self, output)

    def execute(self, line: str) -> str:
        """Run one command line; returns its text output, raises CommandError if bad."""
        return self.interpreter.execute(line)

    def load(self, path: str | Path) -> list[str]:
        """Run a command file; bad lines are reported (file:line: why) and skipped.
        Returns the error messages."""
        return self.interpreter.run_file(path)

    @property
    def output(self) -> Callable[[str], object]:
        """Where script output and bad-line messages go (the console swaps in its own)."""
        return self.interpreter.output

    @output.setter
    def output(self, value: Callable[[str], object]) -> None:
        self.interpreter.output = value

    @property
    def page(self) -> str:
        """The page the last `page` command chose: main, range or stats."""
        return self.interpreter.page

    @property
    def quit_requested(self) -> bool:
        """True once a `quit` (or `exit`) command ran."""
        return self.interpreter.quit_requested
