"""The userspace pktgen engine: the kernel pktgen's state machine over pktflow's generator.

Threads `kpktgend_0..N-1` (N = CPUs) hold devices (`IFACE` or `IFACE@TAG`, as the kernel
names them); `pgctrl` starts, stops and resets them. `start` blocks until every running
device has sent its count or is stopped, then each device's Result line carries the
kernel's `OK: <usec>(c..+d..) usec, ...` text. Generation runs one worker thread per
kpktgend thread that has devices, pinned to that CPU; frames are made by pktflow's
template synthesiser (`pktflow.pktgen.kernels.synth_batch`, which steps or draws the
addresses, ports and sizes) plus one compiled pass that writes what is per packet in the
kernel's frames (pktgen header sequence number and time, IP id, the flow's destination,
the UDP checksum rule; `stamp.py`), and sent on an AF_XDP or AF_PACKET port (`iface.py`).

The engine knows nothing of FUSE: `fs.py` maps file reads and writes onto it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pktflow.kpktgen import params as P
from pktflow.kpktgen.iface import (
    ARPHRD_ETHER,
    ARPHRD_LOOPBACK,
    IfaceInfo,
    iface_info,
    ip6_text,
    link_local,
    open_port,
)
from pktflow.kpktgen.params import DeviceConfig, DeviceState, WriteOutcome
from pktflow.kpktgen.stamp import repeat_frames, stamp_batch
from pktflow.packet.pool import Batch, Pool
from pktflow.pktgen.config import (
    F_DST_IP,
    F_SIZE,
    F_SRC_IP,
    F_SRC_PORT,
    FCS_LEN,
    LAY_L3,
    LAY_L4,
    LAY_PAYLOAD,
    RANDOM_STEP,
    RANGE_FIELDS,
    PortConfig,
    RangeField,
    Template,
    build_template,
    words_view,
)
from pktflow.pktgen.kernels import synth_batch
from pktflow.ports.base import Port, PortError

log = logging.getLogger("pktflow.kpktgen")

TX_ROUND = 1024  # packets one Python round makes at most per device
MAX_SKB_FRAGS = 17
ULLONG_MAX = (1 << 64) - 1
SOCKETS = ("auto", "xdp", "packet")


# ----------------------------------------------------------------------------- devices

@dataclass
class Device:
    """One pktgen device: its name as added (IFACE or IFACE@TAG), parameters and state."""

    name: str
    thread: int
    iface: IfaceInfo
    cfg: DeviceConfig = field(default_factory=DeviceConfig)
    st: DeviceState = field(default_factory=DeviceState)
    tx: _DeviceTx | None = None
    started_ns: int = 0
    idle_ns: int = 0
    frags: int = -1

    @property
    def ifname(self) -> str:
        return self.name.split("@", 1)[0]

    def text(self) -> str:
        st = self.st
        if st.running:
            st.stopped_us = time.monotonic_ns() // 1000
            st.idle_us = self.idle_ns // 1000
        return P.format_device(self.cfg, st, self.name, self.iface.mac)


class StartError(Exception):
    """A device cannot start; the message becomes its Result line."""


def _l2_header(cfg: DeviceConfig) -> bytes | None:
    """What the kernel puts between the source MAC and IP when it stacks VLAN tags or
    pushes MPLS labels (None for the plain or single-tag cases the template builds)."""
    ip_type = 0x86DD if cfg.has("IPV6") else 0x0800
    if cfg.labels:
        # every label as written, the bottom-of-stack bit only on the last one
        words = [w & ~0x100 for w in cfg.labels]
        words[-1] |= 0x100
        return struct.pack("!H", 0x8847) + b"".join(struct.pack("!I", w) for w in words)
    if cfg.svlan_id != P.NO_VLAN and cfg.vlan_id != P.NO_VLAN:
        outer = cfg.svlan_id | (cfg.svlan_cfi << 12) | (cfg.svlan_p << 13)
        inner = cfg.vlan_id | (cfg.vlan_cfi << 12) | (cfg.vlan_p << 13)
        return struct.pack("!HHHHH", 0x8100, outer, 0x8100, inner, ip_type)
    if cfg.vlan_id != P.NO_VLAN and cfg.vlan_cfi and not cfg.has("VID_RND"):
        return struct.pack("!HHH", 0x8100, cfg.vlan_id | (1 << 12) | (cfg.vlan_p << 13),
                           ip_type)
    return None


def _seq_field(lo: int, hi: int, rnd: bool, *, top_inclusive: bool, first: int) -> RangeField:
    """A RangeField for a kernel range [lo, hi]. Random values are drawn from [lo, hi - 1]
    (the kernel never draws hi); sequential ones step up to hi (`top_inclusive`: addresses,
    sizes) or hi - 1 (ports), and begin one step past `first`, as the kernel advances
    before it builds each packet. lo >= hi: always `first`."""
    if lo >= hi:
        return RangeField(first, first, first, 0)
    if rnd:
        return RangeField(int(np.random.randint(lo, hi)), lo, hi - 1, RANDOM_STEP)
    top = hi if top_inclusive else hi - 1
    start = first + 1
    if start > top:
        start = lo
    return RangeField(start, lo, top, 1 if top > lo else 0)


class _DeviceTx:
    """Frame making and sending for one running device (used by its thread's worker)."""

    def __init__(self, dev: Device, port: Port, pool: Pool) -> None:
        self.dev = dev
        self.port = port
        self.pool = pool
        cfg = dev.cfg
        self.batch = Batch(pool, TX_ROUND)
        self.words = words_view(pool.data)
        self.cum = np.zeros(TX_ROUND, dtype=np.int64)
        self.repeat = max(cfg.burst, 1) * max(cfg.clone_skb, 1)
        self.template, self.cur, self.pcfg = self._template(dev)
        lay = self.template.layout
        self.l3, self.l4, self.pay = int(lay[LAY_L3]), int(lay[LAY_L4]), int(lay[LAY_PAYLOAD])
        self.ipv4 = not cfg.has("IPV6")
        self.flows = np.zeros((max(cfg.cflows, 1), 3), dtype=np.int64)
        dmin = P.in_aton(cfg.dst_min) if cfg.dst_min else 0
        dmax = P.in_aton(cfg.dst_max) if cfg.dst_max else 0
        self.dmin, self.dmax = dmin, dmax
        self.state = np.array([1, 0, 0, 0, dmin, cfg.lflow, cfg.cflows if self.ipv4 else 0,
                               1 if cfg.has("FLOW_SEQ") else 0], dtype=np.int64)
        self.remaining = cfg.count  # 0: until stopped
        self.sent = 0
        self.next_ns = time.monotonic_ns()
        self._compile()

    def _compile(self) -> None:
        """Load (or compile) the kernels now: the first run must not time their compilation."""
        t, pool, idx = self.template, self.pool, self.batch.idx
        synth_batch(pool.data, self.words, pool.meta, idx, 0, t.frame, t.frame64, t.layout,
                    t.payload_sums, t.fields, t.offsets, self.cur.copy(), self.cum)
        stamp_batch(pool.data, pool.meta, idx, 0, self.l3, self.l4, self.pay, self.ipv4,
                    self.state.copy(), self.flows, self.dmin, self.dmax, False, False, 0, 0, 1)
        repeat_frames(pool.data, pool.meta, idx, 0, 1)

    @staticmethod
    def _template(dev: Device) -> tuple[Template, np.ndarray, PortConfig]:
        cfg = dev.cfg
        if cfg.labels and cfg.has("MPLS_RND") or cfg.svlan_id != P.NO_VLAN and (
                cfg.has("VID_RND") or cfg.has("SVID_RND")):
            raise StartError("ERROR: the userspace engine does not generate random MPLS "
                             "labels or random IDs of stacked VLAN tags")
        if cfg.imix:
            raise StartError("ERROR: the userspace engine does not generate IMIX sizes; "
                             "use min_pkt_size/max_pkt_size")
        if cfg.xmit_mode == "netif_receive":
            raise StartError("ERROR: xmit_mode netif_receive needs the kernel's receive path; "
                             "the userspace engine only transmits")
        ipv6 = cfg.has("IPV6")
        vlan = cfg.vlan_id != P.NO_VLAN
        l2 = _l2_header(cfg)
        overhead = 4 if vlan else 0
        if l2 is not None:
            overhead = len(l2) - 2
        smallest = 14 + (40 if ipv6 else 20) + 8 + P.PKTGEN_HDR_LEN + overhead
        lo = max(cfg.min_pkt_size or smallest, smallest)
        hi = max(cfg.max_pkt_size, lo)
        pc = PortConfig(0, proto=17, ttl=32, ipv6=ipv6, vlan=vlan and l2 is None, range=True,
                        tos=cfg.traffic_class if ipv6 else cfg.tos,
                        payload=struct.pack("!I", P.PKTGEN_MAGIC), l2=l2)
        pc.cos = cfg.vlan_p
        src_mac = cfg.src_mac if cfg.src_mac != bytes(6) else dev.iface.mac
        smac, dmac = int.from_bytes(src_mac, "big"), int.from_bytes(cfg.dst_mac, "big")
        if ipv6:
            src6 = cfg.in6_saddr if cfg.in6_saddr != "::" else link_local(dev.ifname)
            pc.src_ip6 = int.from_bytes(socket.inet_pton(socket.AF_INET6, src6), "big")
            daddr = cfg.in6_daddr if cfg.min_in6_daddr == "::" else cfg.min_in6_daddr
            pc.dst_ip6 = int.from_bytes(socket.inet_pton(socket.AF_INET6, daddr), "big")

        def macs(base: int, count: int, rnd: bool) -> RangeField:
            if count <= 1:
                return RangeField(base, base, base, 0)
            top = min(base + count - 1, (1 << 48) - 1)
            return RangeField(base, base, top, RANDOM_STEP if rnd else 1)

        if cfg.src_min:
            smin, smax = P.in_aton(cfg.src_min), P.in_aton(cfg.src_max)
        else:
            smin = smax = dev.iface.ipv4
        dmin = P.in_aton(cfg.dst_min) if cfg.dst_min else 0
        dmax = P.in_aton(cfg.dst_max) if cfg.dst_max else 0
        if not ipv6 and (cfg.cflows or cfg.has("IPDST_RND") and dmin < dmax):
            # stamp_batch writes these: each flow's address, or random ones that skip the
            # addresses the kernel skips
            dst = RangeField(dmin, dmin, dmin, 0)
        else:
            dst = _seq_field(dmin, dmax, cfg.has("IPDST_RND"), top_inclusive=True, first=dmin)
        ranges = {
            "dst_mac": macs(dmac, cfg.dst_mac_count, cfg.has("MACDST_RND")),
            "src_mac": macs(smac, cfg.src_mac_count, cfg.has("MACSRC_RND")),
            "dst_ip": dst,
            "src_ip": _seq_field(smin, smax, cfg.has("IPSRC_RND"), top_inclusive=True,
                                 first=smin),
            "dst_port": _seq_field(cfg.udp_dst_min, cfg.udp_dst_max, cfg.has("UDPDST_RND"),
                                   top_inclusive=False, first=cfg.udp_dst_min),
            "src_port": _seq_field(cfg.udp_src_min, cfg.udp_src_max, cfg.has("UDPSRC_RND"),
                                   top_inclusive=False, first=cfg.udp_src_min),
            "ttl": RangeField(32, 32, 32, 0),
            "vlan": RangeField(cfg.vlan_id & 0xFFF, 0, 4095,
                               RANDOM_STEP if vlan and cfg.has("VID_RND") else 0),
            # pktflow sizes count the FCS; the kernel's pkt_size is the frame without it
            "size": _seq_field(lo + FCS_LEN, hi + FCS_LEN, cfg.has("TXSIZE_RND"),
                               top_inclusive=True, first=lo + FCS_LEN),
        }
        pc.ranges = ranges
        t = build_template(pc)
        return t, t.fields[:, 0].copy(), pc

    def round(self) -> tuple[int, int]:
        """Make and send up to one round of packets; returns (packets, errors)."""
        cfg = self.dev.cfg
        want = TX_ROUND // self.repeat * self.repeat or self.repeat
        want = min(want, TX_ROUND)
        if self.remaining:
            want = min(want, self.remaining - self.sent)
            if want <= 0:
                return 0, 0
        if cfg.delay == ULLONG_MAX:
            return 0, 0  # the kernel's "never transmit"
        if cfg.delay:
            now = time.monotonic_ns()
            due = (now - self.next_ns) // cfg.delay + 1
            want = int(min(want, max(due, 0)))
            if want <= 0:
                return 0, 0
        t = self.template
        lease = None
        if self.port.lends_tx:
            lease = self.port.lend_tx(want)
            got = lease.n
            data, meta, idx, words = lease.data, lease.meta, lease.idx, lease.words
        else:
            got = self.pool.alloc_into(self.batch, want)
            data, meta, idx, words = self.pool.data, self.pool.meta, self.batch.idx, self.words
        if got == 0:
            return 0, 0
        unique = (got + self.repeat - 1) // self.repeat
        synth_batch(data, words, meta, idx, unique, t.frame, t.frame64, t.layout,
                    t.payload_sums, t.fields, t.offsets, self.cur, self.cum)
        if cfg.has("NO_TIMESTAMP"):
            tv_sec = tv_usec = 0
        else:
            now_ns = time.time_ns()
            tv_sec, tv_usec = (now_ns // 1_000_000_000) & 0xFFFFFFFF, now_ns // 1000 % 1_000_000
        stamp_batch(data, meta, idx, unique, self.l3, self.l4, self.pay, self.ipv4,
                    self.state, self.flows, self.dmin, self.dmax, cfg.has("IPDST_RND"),
                    cfg.has("UDPCSUM"), tv_sec, tv_usec, 1)
        if self.repeat > 1:
            repeat_frames(data, meta, idx, got, self.repeat)
            # the repeated copies share the built packet's sequence number
        if lease is not None:
            sent, _ = self.port.commit_tx(lease, got)
        else:
            self.batch.n = got
            try:
                sent = self.port.send(self.batch)
            finally:
                self.batch.n = 0
        self.sent += got
        if cfg.delay:
            self.next_ns += cfg.delay * got
        return sent, got - sent

    def wait_ns(self) -> int:
        """How long until this device may send again (0: now)."""
        delay = self.dev.cfg.delay
        if not delay:
            return 0
        if delay == ULLONG_MAX:
            return 50_000_000
        return max(self.next_ns - time.monotonic_ns(), 0)

    @property
    def done(self) -> bool:
        return bool(self.remaining) and self.sent >= self.remaining

    def update_current(self) -> None:
        """Copy the generator's current values into the device's Current: section."""
        st, cur = self.dev.st, self.cur
        st.cur_saddr = int(cur[F_SRC_IP])
        stamped = self.state[6] or (self.dev.cfg.has("IPDST_RND") and self.dmin < self.dmax)
        st.cur_daddr = int(self.state[4]) if stamped else int(cur[F_DST_IP])
        st.cur_udp_src = int(cur[F_SRC_PORT])
        st.cur_udp_dst = int(cur[RANGE_FIELDS.index("dst_port")])
        st.seq_num = int(self.state[0])
        st.nflows = int(self.state[3])
        if not self.ipv4:
            st.cur_in6_saddr = ip6_text(self.pcfg.src_ip6)
            st.cur_in6_daddr = ip6_text(self.pcfg.dst_ip6)

    def last_size(self) -> int:
        """The kernel's cur_pkt_size for the Result line (the configured size when fixed,
        even where the frame had to be longer)."""
        if self.template.fields[F_SIZE, 3] == 0:
            return self.dev.cfg.min_pkt_size
        return int(self.cur[F_SIZE]) - FCS_LEN

    def close(self) -> None:
        try:
            self.port.flush()
        finally:
            self.port.close()


# ----------------------------------------------------------------------------- the engine

@dataclass
class KThread:
    """One kpktgend_N thread: its devices, last Result text and worker."""

    index: int
    devices: list[Device] = field(default_factory=list)
    result: str = ""
    worker: threading.Thread | None = None
    stop: bool = False


class Engine:
    """pgctrl, kpktgend_N and device files' behaviour, independent of how they are served.

    Every method is safe to call from several threads (the FUSE server runs one per
    request); `start` blocks until the run ends, like writing `start` to pgctrl does.
    """

    def __init__(self, threads: int | None = None, socket_kind: str = "auto") -> None:
        if socket_kind not in SOCKETS:
            raise ValueError(f"socket must be one of {', '.join(SOCKETS)}, got {socket_kind!r}")
        n = threads or os.cpu_count() or 1
        self.threads = [KThread(i) for i in range(n)]
        self.socket_kind = socket_kind
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.ncpu = os.cpu_count() or 1
        self.nodes = _numa_nodes()
        self.closed = False

    # ---- names -----------------------------------------------------------------------
    def thread_names(self) -> list[str]:
        return [f"kpktgend_{t.index}" for t in self.threads]

    def device_names(self) -> list[str]:
        with self.lock:
            return [d.name for t in self.threads for d in t.devices]

    def device(self, name: str) -> Device | None:
        with self.lock:
            for t in self.threads:
                for d in t.devices:
                    if d.name == name:
                        return d
        return None

    def thread(self, name: str) -> KThread | None:
        if name.startswith("kpktgend_") and name[9:].isdigit():
            i = int(name[9:])
            if i < len(self.threads):
                return self.threads[i]
        return None

    # ---- reading -----------------------------------------------------------------------
    def read(self, name: str) -> str:
        """The text a read of file `name` gives (KeyError if there is no such file)."""
        if name == "pgctrl":
            return P.PGCTRL_TEXT
        with self.lock:
            t = self.thread(name)
            if t is not None:
                return P.format_thread([d.name for d in t.devices if d.st.running],
                                       [d.name for d in t.devices if not d.st.running],
                                       t.result)
            d = self.device(name)
            if d is None:
                raise KeyError(name)
            return d.text()

    # ---- writing -----------------------------------------------------------------------
    def write(self, name: str, data: bytes, interrupted: Callable[[], bool] | None = None,
              wait: bool = True) -> int:
        """Apply a write to file `name`; returns 0 or the errno the kernel's write returns.
        A `start` waits for the run's end unless `wait` is false, polling `interrupted` to
        stop the run when it says so."""
        if name == "pgctrl":
            return self.write_pgctrl(data, interrupted, wait)
        t = self.thread(name)
        if t is not None:
            return self.write_thread(t, data)
        d = self.device(name)
        if d is None:
            raise KeyError(name)
        return self.write_device(d, data)

    def write_pgctrl(self, data: bytes, interrupted: Callable[[], bool] | None = None,
                     wait: bool = True) -> int:
        if not data:
            return errno.EINVAL
        cmd = P.parse_pgctrl_write(data)
        if cmd == "start":
            if wait:
                self.start(interrupted=interrupted)
            else:
                self.begin()
        elif cmd == "stop":
            self.stop()
        elif cmd == "reset":
            self.reset()
        else:
            return errno.EINVAL
        return 0

    def write_thread(self, t: KThread, data: bytes) -> int:
        if not data:
            return errno.EINVAL
        cmd, arg = P.split_thread_write(data)
        if cmd == "add_device":
            err = self.add_device(t, arg)
            t.result = f"OK: add_device={arg}" if not err else f"ERROR: can not add device {arg}"
            return err
        if cmd == "rem_device_all":
            self.rem_device_all(t)
            t.result = "OK: rem_device_all"
            return 0
        if cmd == "max_before_softirq":
            t.result = "OK: Note! max_before_softirq is obsoleted -- Do not use"
            return 0
        return errno.EINVAL

    def write_device(self, d: Device, data: bytes) -> int:
        with self.lock:
            out: WriteOutcome = d.cfg.write(data, tx_skb_sharing=d.iface.tx_skb_sharing,
                                            nodes=self.nodes)
            if out.result is not None:
                d.st.result = out.result
            if out.errno == 0 and P.split_write(data)[0] == "clear_counters":
                d.st.seq_num, d.st.idle_us, d.st.sofar, d.st.errors = 1, 0, 0, 0
            return out.errno

    # ---- threads -----------------------------------------------------------------------
    def add_device(self, t: KThread, name: str) -> int:
        """Add device `name` (IFACE or IFACE@TAG) to thread t; 0 or the kernel's errno."""
        with self.lock:
            if any(d.name == name for th in self.threads for d in th.devices):
                return errno.EBUSY
            info = iface_info(name.split("@", 1)[0][:15])
            if info is None:
                return errno.ENODEV
            if info.arptype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                return errno.EINVAL
            if not info.up:
                return errno.ENETDOWN
            t.devices.insert(0, Device(name, t.index, info))  # the kernel adds at the front
            self.changed.notify_all()
            return 0

    def rem_device_all(self, t: KThread) -> None:
        with self.lock:
            self._stop_thread(t)
            t.devices.clear()
            self.changed.notify_all()

    # ---- pgctrl --------------------------------------------------------------------------
    def start(self, timeout: float | None = None,
              interrupted: Callable[[], bool] | None = None) -> bool:
        """Start every thread's devices and wait until none runs; False on timeout. When
        `interrupted()` turns true the run stops, as a signal stops the kernel's."""
        self.begin()
        return self.wait_done(timeout, interrupted)

    def begin(self) -> None:
        """Set up every thread's devices and start their workers; returns at once."""
        with self.lock:
            for t in self.threads:
                if t.worker is not None and t.worker.is_alive():
                    continue
                t.stop = False
                started = [d for d in t.devices if self._setup(d)]
                if started:
                    t.worker = threading.Thread(target=self._work, args=(t, started),
                                                name=f"kpktgend_{t.index}", daemon=True)
                    t.worker.start()

    def running(self) -> bool:
        with self.lock:
            return any(d.st.running for t in self.threads for d in t.devices)

    def wait_done(self, timeout: float | None = None,
                  interrupted: Callable[[], bool] | None = None) -> bool:
        """Wait until no device runs (False on timeout); `interrupted()` true stops them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while any(d.st.running for t in self.threads for d in t.devices):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if interrupted is not None and interrupted():
                    for t in self.threads:
                        t.stop = True
                self.changed.wait(0.1 if left is None else min(left, 0.1))
        return True

    def stop(self) -> None:
        """Stop every running device; each gets its Result line (pgctrl `stop`)."""
        with self.lock:
            for t in self.threads:
                t.stop = True
        self._join_workers()

    def reset(self) -> None:
        """Stop and remove every device of every thread (pgctrl `reset`)."""
        self.stop()
        with self.lock:
            for t in self.threads:
                t.devices.clear()
            self.changed.notify_all()

    def close(self) -> None:
        self.closed = True
        self.reset()

    # ---- internals ---------------------------------------------------------------------
    def _stop_thread(self, t: KThread) -> None:
        t.stop = True
        w = t.worker
        if w is not None and w is not threading.current_thread():
            self.lock.release()
            try:
                w.join(timeout=10)
            finally:
                self.lock.acquire()

    def _join_workers(self) -> None:
        for t in self.threads:
            w = t.worker
            if w is not None:
                w.join(timeout=10)

    def _setup(self, d: Device) -> bool:
        """Prepare d to run as pktgen_setup_inject and pktgen_run do; False if it cannot."""
        cfg, st = d.cfg, d.st
        info = iface_info(d.ifname[:15])
        if info is None or not info.up:
            st.result = "Error starting"
            return False
        d.iface = info
        qmax = info.tx_queues - 1
        cfg.queue_map_min = min(cfg.queue_map_min, qmax)
        cfg.queue_map_max = min(cfg.queue_map_max, qmax)
        if cfg.min_pkt_size == 0:
            extra = 4 * len(cfg.labels) + (4 if cfg.vlan_id != P.NO_VLAN else 0) \
                + (4 if cfg.svlan_id != P.NO_VLAN else 0)
            cfg.min_pkt_size = 14 + (40 if cfg.has("IPV6") else 20) + 8 + P.PKTGEN_HDR_LEN \
                + extra
        if cfg.min_pkt_size > cfg.max_pkt_size:
            cfg.max_pkt_size = cfg.min_pkt_size
        try:
            pool = Pool(buffers=2 * TX_ROUND, bufsize=2048, name=f"kpktgen-{d.name}")
            port = open_port(d.ifname, cfg.xmit_mode, self.socket_kind)
        except (PortError, OSError) as e:
            log.error("%s: cannot open a port: %s", d.name, e)
            st.result = "Error starting"
            return False
        try:
            d.tx = _DeviceTx(d, port, pool)
            port.open(pool)
        except StartError as e:
            port.close()
            st.result = str(e)
            return False
        except Exception as e:  # noqa: BLE001 - a bad configuration must not stop the engine
            port.close()
            log.exception("%s: cannot start", d.name)
            st.result = f"Error starting: {e}"
            return False
        st.sofar = st.errors = 0
        st.seq_num = 1
        st.cur_saddr = st.cur_daddr = 0
        d.idle_ns = 0
        d.frags = min(cfg.nfrags, MAX_SKB_FRAGS) if cfg.nfrags > 0 else 0
        d.started_ns = time.monotonic_ns()
        d.tx.next_ns = d.started_ns  # pacing counts from the start, not from the setup
        st.started_us = d.started_ns // 1000
        st.result = "Starting"
        st.running = True
        d.tx.update_current()
        return True

    def _work(self, t: KThread, devices: list[Device]) -> None:
        """The kpktgend_N worker: pinned to CPU N, sends for each running device in turn."""
        try:
            os.sched_setaffinity(0, {t.index % self.ncpu})
        except OSError:
            pass  # the CPU is not ours to use (cpuset): run unpinned
        try:
            while True:
                live = [d for d in devices if d.st.running]
                if not live:
                    break
                if t.stop or self.closed:
                    for d in live:
                        self._finish(d)
                    break
                soonest = None  # ns until the first paced device may send again
                moved = False
                for d in live:
                    tx = d.tx
                    try:
                        sent, errors = tx.round()
                    except Exception as e:  # noqa: BLE001 - one device's failure ends only it
                        log.exception("%s: transmit failed", d.name)
                        d.st.errors += 1
                        self._finish(d, f"ERROR: transmit failed: {e}")
                        continue
                    if sent or errors:
                        moved = True
                        with self.lock:
                            d.st.sofar += sent + errors
                            d.st.errors += errors
                            tx.update_current()
                    if tx.done:
                        self._finish(d)
                        continue
                    wait = tx.wait_ns()
                    soonest = wait if soonest is None else min(soonest, wait)
                if soonest:  # every device is waiting for its next packet's time
                    pause = min(soonest / 1e9, 0.05)
                    t0 = time.monotonic_ns()
                    time.sleep(pause)
                    slept = time.monotonic_ns() - t0
                    for d in live:
                        if d.st.running and d.cfg.delay:
                            d.idle_ns += slept
                elif not moved:
                    time.sleep(20e-6)  # the transmit ring is full: let the kernel drain it
        finally:
            for d in devices:
                if d.st.running:
                    self._finish(d)

    def _finish(self, d: Device, result: str | None = None) -> None:
        """Stop d as pktgen_stop_device does: record the end time and the Result line."""
        tx = d.tx
        size = tx.last_size() if tx is not None else d.cfg.min_pkt_size
        if tx is not None:
            try:
                tx.close()
            except Exception:  # noqa: BLE001
                log.exception("%s: closing its port failed", d.name)
        with self.lock:
            now = time.monotonic_ns()
            st = d.st
            st.running = False
            st.stopped_us = now // 1000
            st.idle_us = d.idle_ns // 1000
            st.result = result or P.format_result(now - d.started_ns, d.idle_ns, st.sofar,
                                                  size, d.frags, st.errors)
            d.tx = None
            self.changed.notify_all()


def warm_up() -> None:
    """Load the compiled kernels (from Numba's cache, or compile them) before a first run,
    so that run's time does not include it."""
    cfg = DeviceConfig()
    cfg.write(b"count 1\n")
    info = IfaceInfo("lo", ARPHRD_LOOPBACK, bytes(6), True, "", 1, 0)

    class _NoPort:
        lends_tx = False

    _DeviceTx(Device("lo", 0, info, cfg), _NoPort(), Pool(buffers=8, bufsize=2048))  # type: ignore[arg-type]


def _numa_nodes() -> int:
    try:
        return len([n for n in os.listdir("/sys/devices/system/node")
                    if n.startswith("node") and n[4:].isdigit()]) or 1
    except OSError:
        return 1
