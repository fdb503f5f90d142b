"""Shared pieces of the Linux port drivers (AF_PACKET, AF_XDP).

Interface lookup, MAC address and link state through ioctls on a control socket (so they
answer for the network namespace the port was opened in, whichever thread asks), option
parsing for `packet:IFACE,key=value` specs, clear errors for a missing interface or missing
privileges, network-namespace switching for the current thread, and a memory fence for the
compiled ring code.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gc
import logging
import mmap
import os
import socket
import struct
from collections.abc import Iterator

from numba.core import types as nbtypes
from numba.extending import intrinsic

from pktflow.packet.addr import MACAddr
from pktflow.packet.pool import Batch, Pool
from pktflow.ports.base import Port, PortError, PortSpecError

log = logging.getLogger("pktflow.ports")

SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFF_RUNNING = 0x40
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 16

_libc = ctypes.CDLL(None, use_errno=True)


@intrinsic
def memory_fence(typingctx):
    """A full memory barrier inside compiled code: orders ring index loads and stores
    against the descriptor and data accesses the kernel shares with us."""
    sig = nbtypes.void()

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


class InterfaceNotFound(PortError):
    """No interface of that name in the port's network namespace."""


def release_mmap(area: mmap.mmap) -> None:
    """Unmap a ring or UMEM area. A NumPy view still alive somewhere (a reference cycle not
    yet collected) blocks the unmap; collect once, and else leave the unmap to the last
    reference, since the socket that shares it is closed anyway."""
    try:
        area.close()
    except BufferError:
        gc.collect()
        try:
            area.close()
        except BufferError:
            log.debug("mapping still referenced; unmapped when its last view goes")


def privilege_error(what: str, err: OSError) -> PortError:
    """The error a user sees when the kernel refuses a raw socket."""
    return PortError(f"{what} needs root or CAP_NET_RAW (and CAP_NET_ADMIN, CAP_BPF for "
                     f"AF_XDP): run with sudo ({err.strerror})")


def interface_names() -> list[str]:
    """Names of the interfaces in the current thread's network namespace."""
    return [name for _, name in socket.if_nameindex()]


class Interface:
    """One network interface, looked up in the current thread's network namespace.

    The control socket is created now, so later ioctls (MAC, link state) answer for this
    namespace even when called from another thread.
    """

    def __init__(self, name: str) -> None:
        if not name or len(name) >= IFNAMSIZ or "/" in name or " " in name:
            raise PortSpecError(f'bad interface name "{name}": expected 1 to 15 characters '
                                f"without spaces or slashes")
        self.name = name
        self._ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.index = struct.unpack_from("i", self._ioctl(SIOCGIFINDEX), IFNAMSIZ)[0]
        except OSError as e:
            self._ctl.close()
            if e.errno == errno.ENODEV:
                names = ", ".join(interface_names()) or "none"
                raise InterfaceNotFound(f"interface {name} not found: create it or pick one of: "
                                f"{names}") from None
            raise PortError(f"interface {name}: {e.strerror}") from None
        self.netns = NetnsHandle.current()
        self._last_mac = MACAddr(0)
        self._last_mac = self.mac

    def _ioctl(self, request: int) -> bytes:
        req = struct.pack(f"{IFNAMSIZ}s24x", self.name.encode())
        return fcntl.ioctl(self._ctl.fileno(), request, req)

    @property
    def mac(self) -> MACAddr:
        """The interface's MAC; once the interface is gone, the last one read (so the
        statistics of an NF whose interface was deleted can still be shown)."""
        try:
            raw = self._ioctl(SIOCGIFHWADDR)
        except OSError:
            return self._last_mac
        self._last_mac = MACAddr(raw[IFNAMSIZ + 2:IFNAMSIZ + 8])
        return self._last_mac

    @property
    def link_up(self) -> bool:
        """Administratively up and carrier present (IFF_UP and IFF_RUNNING)."""
        try:
            flags = struct.unpack_from("H", self._ioctl(SIOCGIFFLAGS), IFNAMSIZ)[0]
        except OSError:
            return False  # the interface went away
        return flags & (IFF_UP | IFF_RUNNING) == (IFF_UP | IFF_RUNNING)

    @property
    def mtu(self) -> int:
        return struct.unpack_from("i", self._ioctl(SIOCGIFMTU), IFNAMSIZ)[0]

    def close(self) -> None:
        self._ctl.close()
        self.netns.close()


class InterfacePort(Port):
    """What every port on a Linux interface shares: its MAC and link state are the
    interface's, and pool buffers must hold a frame of the interface's MTU."""

    iface: Interface

    @property
    def mac(self) -> MACAddr:
        return self.iface.mac

    @property
    def link_up(self) -> bool:
        return self.iface.link_up

    def open(self, pool: Pool) -> None:
        if pool.max_frame < self.iface.mtu + 18:
            raise PortError(f"{self.driver}:{self.args}: pool buffers hold {pool.max_frame}-"
                            f"byte frames, the interface MTU needs {self.iface.mtu + 18}")
        super().open(pool)

    def _sent(self, batch: Batch, sent: int, nbytes: int, rejected: int, done: int) -> int:
        """Count a send() whose ring took `sent` frames (`nbytes`), refused `rejected` and
        had no room for the rest of `batch` after `done`; free the batch (the frames were
        copied into the ring). Returns `sent`."""
        with self._stats_lock:
            self.stats.tx_packets += sent
            self.stats.tx_bytes += nbytes
            self.stats.tx_errors += rejected
            self.stats.tx_dropped += batch.n - done
        batch.pool.free(batch)
        return sent


class NetnsHandle:
    """An open reference to a network namespace, to switch the current thread into it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def current(cls) -> NetnsHandle:
        return cls(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))

    @classmethod
    def named(cls, name_or_path: str) -> NetnsHandle:
        """`ip netns` name (/run/netns/NAME) or a path such as /proc/PID/ns/net."""
        path = name_or_path if "/" in name_or_path else f"/run/netns/{name_or_path}"
        try:
            return cls(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except FileNotFoundError:
            raise PortError(f"network namespace {name_or_path} not found ({path})") from None

    def is_current(self) -> bool:
        return os.fstat(self.fd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with the current thread in this namespace, then switch back."""
        if self.is_current():
            yield
            return
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(self.fd)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise PortError(f"cannot switch network namespace: {os.strerror(err)} (needs root)")


@contextlib.contextmanager
def netns(name_or_path: str) -> Iterator[None]:
    """Run the body with the current thread inside a network namespace (by `ip netns`
    name or /proc/PID/ns/net path); ports opened there stay bound to it."""
    handle = NetnsHandle.named(name_or_path)
    try:
        with handle.entered():
            yield
    finally:
        handle.close()


def parse_iface_args(driver: str, args: str, options: dict[str, type]) -> tuple[str, dict]:
    """'veth0,fanout=3' -> ('veth0', {'fanout': 3}); unknown or malformed options raise
    PortSpecError naming the option and the ones this driver accepts."""
    parts = [p.strip() for p in args.split(",")]
    iface, values = parts[0], {}
    if not iface:
        raise PortSpecError(f'{driver}: port spec "{args}" lacks an interface name, for '
                            f"example {driver}:veth0")
    for part in parts[1:]:
        key, eq, text = part.partition("=")
        key = key.strip()
        if not eq or key not in options:
            known = ", ".join(f"{k}=" for k in options) or "none"
            raise PortSpecError(f'{driver}:{args}: unknown option "{part}" (options: {known})')
        kind = options[key]
        try:
            values[key] = kind(text.strip()) if kind is not bool else _parse_bool(text)
        except ValueError:
            raise PortSpecError(f'{driver}:{args}: option {key} expects {kind.__name__}, '
                                f'got "{text}"') from None
    return iface, values


def _parse_bool(text: str) -> bool:
    text = text.strip().lower()
    if text in ("1", "on", "yes", "true"):
        return True
    if text in ("0", "off", "no", "false"):
        return False
    raise ValueError(text)
