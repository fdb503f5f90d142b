"""pcap ports: receive from a capture file, send into one (`pcap:IN[,OUT][,option=value]`).

`pcap:in.pcap` only receives, `pcap:,out.pcap` only sends, `pcap:in.pcap,out.pcap` does
both. Options: `repeat=N` plays IN N times (0 = forever, default 1); `rate=PPS` caps the
receive rate in packets per second; `tsres=us|ns` is OUT's timestamp resolution (default
us, which every tool reads); `ts=now|keep` stamps written records with the send time
(default) or keep each packet's own `ts` (so a file-to-file NF keeps the capture timing);
`mac=XX:XX:XX:XX:XX:XX` overrides the port's address.

Received packets keep the capture's timestamps in `ts`. A damaged input file is logged
once and counted in rx_errors; the port then treats the file as ended, so a running NF
keeps its packets and state.
"""

from __future__ import annotations

import logging
import time

from pktflow.packet.addr import AddressError, MACAddr
from pktflow.packet.meta import LEN, PORT
from pktflow.packet.pcap import PcapError, PcapReader, PcapWriter
from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import Port, PortError, PortSpecError, register_driver, stable_mac

log = logging.getLogger(__name__)

USAGE = "expected pcap:IN[,OUT][,repeat=N][,rate=PPS][,tsres=us|ns][,ts=now|keep][,mac=M]"


class PcapPort(Port):
    """A port backed by capture files: IN is played into the graph, OUT records what is
    sent (flushed on close)."""

    driver = "pcap"

    def __init__(self, port_id: int, args: str) -> None:
        super().__init__(port_id, args)
        self._parse(args)
        self.reader: PcapReader | None = None
        self.writer: PcapWriter | None = None
        try:
            if self.in_path:
                self.reader = PcapReader(self.in_path)
            if self.out_path:
                self.writer = PcapWriter(self.out_path, nanosecond=self.nanosecond)
        except PcapError as e:
            self.close()
            raise PortError(f"port {port_id} (pcap:{args}): {e}") from None
        self.plays = 0  # times IN has been read to its end
        self.error: str | None = None  # the last damage found in IN
        self._oversize_seen = 0
        self._delivered = 0
        self._t_start = 0.0
        self._mac = self._mac_option or stable_mac(f"pcap:{port_id}:{args}")

    def _parse(self, args: str) -> None:
        files: list[str] = []
        self.repeat, self.rate, self.nanosecond, self.keep_ts = 1, 0.0, False, False
        self._mac_option: MACAddr | None = None
        for part in (p.strip() for p in args.split(",")):
            key, eq, value = part.partition("=")
            if not eq:
                files.append(part)
                continue
            bad = f'bad pcap port "pcap:{args}": {key}="{value}"'
            if key == "repeat":
                if not value.isdigit():
                    raise PortSpecError(f"{bad} must be a whole number (0 = forever)")
                self.repeat = int(value)
            elif key == "rate":
                try:
                    self.rate = float(value)
                except ValueError:
                    self.rate = -1.0
                if not self.rate > 0:
                    raise PortSpecError(f"{bad} must be packets per second above 0")
            elif key == "tsres" and value in ("us", "ns"):
                self.nanosecond = value == "ns"
            elif key == "ts" and value in ("now", "keep"):
                self.keep_ts = value == "keep"
            elif key == "mac":
                try:
                    self._mac_option = MACAddr(value)
                except AddressError as e:
                    raise PortSpecError(f"{bad}: {e}") from None
            else:
                raise PortSpecError(f'bad pcap port "pcap:{args}": unknown option "{part}"; '
                                    f"{USAGE}")
        if len(files) > 2 or not any(files):
            raise PortSpecError(f'bad pcap port "pcap:{args}": {USAGE}')
        files += [""] * (2 - len(files))
        self.in_path, self.out_path = files

    @property
    def mac(self) -> MACAddr:
        return self._mac

    @property
    def at_end(self) -> bool:
        """True once IN has been played `repeat` times (always for a send-only port)."""
        return self.reader is None or (self.repeat != 0 and self.plays >= self.repeat)

    def open(self, pool: Pool) -> None:
        if self.reader is not None and pool.max_frame < 1514:
            log.warning("port %d: pool %s holds frames up to %d bytes; longer records of %s "
                        "are skipped and counted in rx_errors", self.id, pool.name,
                        pool.max_frame, self.in_path)
        super().open(pool)

    def recv(self, batch: Batch, max_n: int) -> int:
        reader = self.reader
        if reader is None or self.at_end:
            return 0
        want = min(max_n, batch.capacity - batch.n)
        if self.rate:
            now = time.monotonic()
            if not self._t_start:
                self._t_start = now
            want = min(want, int((now - self._t_start) * self.rate) - self._delivered)
        if want <= 0:
            return 0
        at = batch.n
        got = self._read(reader, batch, want)
        if got == 0 and reader.at_end:
            self._end_of_play(reader)
            if not self.at_end:
                got = self._read(reader, batch, want)
        if got:
            pool = batch.pool
            idx = batch.idx[at:at + got]
            pool.meta[idx, PORT] = self.id
            self.stats.rx_packets += got
            self.stats.rx_bytes += int(pool.meta[idx, LEN].sum())
            self._delivered += got
        return got

    def _read(self, reader: PcapReader, batch: Batch, want: int) -> int:
        got, damage = 0, None
        try:
            got = reader.read_into(batch, want)
        except PcapError as e:
            damage = str(e)
        if reader.oversize != self._oversize_seen:
            self.stats.rx_errors += reader.oversize - self._oversize_seen
            self._oversize_seen = reader.oversize
        if damage is not None:
            self.stats.rx_errors += 1
            if self.error is None:
                log.warning("port %d: %s; the file ends there for this port", self.id, damage)
            self.error = damage
        return got

    def _end_of_play(self, reader: PcapReader) -> None:
        delivered_this_play = reader.packets
        self.plays += 1
        if not self.at_end:
            reader.rewind()
            if delivered_this_play == 0:
                # Nothing to play (empty or damaged at the first record): repeating forever
                # would spin; end here.
                self.repeat = self.plays

    def send(self, batch: Batch) -> int:
        n = batch.n
        if n == 0:
            return 0
        pool = batch.pool
        writer = self.writer
        if writer is None or writer.closed:
            self.stats.tx_dropped += n
            pool.free(batch)
            return 0
        bytes_before = writer.bytes
        try:
            written = writer.write(batch, None if self.keep_ts else time.time_ns())
        except (OSError, ValueError) as e:  # ValueError: closed by another thread meanwhile
            written = 0
            if not self.stats.tx_errors:
                log.warning("port %d: writing %s failed: %s", self.id, self.out_path, e)
        self.stats.tx_packets += written
        self.stats.tx_bytes += writer.bytes - bytes_before
        self.stats.tx_errors += n - written
        pool.free(batch)
        return written

    def flush(self) -> None:
        if self.writer is not None and not self.writer.closed:
            self.writer.flush()

    def close(self) -> None:
        """Flush and close OUT and close IN. Safe to call twice."""
        if self.writer is not None:
            self.writer.close()
        if self.reader is not None:
            self.reader.close()


register_driver("pcap", PcapPort)
