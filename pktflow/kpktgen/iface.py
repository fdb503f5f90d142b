"""Network interfaces as the kernel's pktgen sees them (type, MAC, driver, queues,
addresses), and the transmit port the engine opens on one."""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
from dataclasses import dataclass

from pktflow.ports.base import Port, PortError

log = logging.getLogger("pktflow.kpktgen")

ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
IFF_UP = 0x1
SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFADDR, SIOCETHTOOL = 0x8913, 0x8927, 0x8915, 0x8946
ETHTOOL_GDRVINFO = 3
# Drivers that clear IFF_TX_SKB_SHARING: the kernel refuses clone_skb and burst > 1 on them.
NO_SKB_SHARING_DRIVERS = frozenset({"veth", "tun", "macvlan", "ipvlan", "bonding", "team"})


@dataclass(frozen=True)
class IfaceInfo:
    """What add_device and start need to know about a network interface."""

    name: str
    arptype: int
    mac: bytes
    up: bool
    driver: str
    tx_queues: int
    ipv4: int  # first address, 0 if none

    @property
    def tx_skb_sharing(self) -> bool:
        return self.arptype == ARPHRD_ETHER and self.driver not in NO_SKB_SHARING_DRIVERS


def _ifreq(ifname: str, tail: bytes = b"") -> bytes:
    return struct.pack("16s", ifname.encode()[:15]) + tail.ljust(24, b"\0")


def iface_info(ifname: str) -> IfaceInfo | None:
    """The interface `ifname` of this network namespace, or None if there is none."""
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fd = s.fileno()
        try:
            flags = struct.unpack_from("H", fcntl.ioctl(fd, SIOCGIFFLAGS, _ifreq(ifname)), 16)[0]
            hw = fcntl.ioctl(fd, SIOCGIFHWADDR, _ifreq(ifname))
        except OSError:
            return None
        arptype = struct.unpack_from("H", hw, 16)[0]
        mac = hw[18:24]
        try:
            addr = fcntl.ioctl(fd, SIOCGIFADDR, _ifreq(ifname))
            ipv4 = int.from_bytes(addr[20:24], "big")
        except OSError:
            ipv4 = 0
        drvinfo = bytearray(struct.pack("I", ETHTOOL_GDRVINFO) + bytes(192))
        buf = ctypes_buffer(drvinfo)
        try:
            fcntl.ioctl(fd, SIOCETHTOOL, _ifreq(ifname, struct.pack("P", buf[1])))
            driver = bytes(buf[0][4:36]).split(b"\0")[0].decode(errors="replace")
        except OSError:
            driver = ""
    try:
        tx_queues = len([q for q in os.listdir(f"/sys/class/net/{ifname}/queues")
                         if q.startswith("tx-")]) or 1
    except OSError:
        tx_queues = 1
    return IfaceInfo(ifname, arptype, mac, bool(flags & IFF_UP), driver, tx_queues, ipv4)


def link_local(ifname: str) -> str:
    """The interface's IPv6 link-local address ("::" if it has none): the kernel's source
    when src6 is not set."""
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                addr, _, _, scope, _, name = line.split()
                if name == ifname and scope == "20":
                    return ip6_text(int(addr, 16))
    except (OSError, ValueError):
        pass
    return "::"


def ip6_text(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


def ctypes_buffer(data: bytearray) -> tuple[object, int]:
    """A C buffer holding `data` and its address (ethtool ioctls take a pointer)."""
    buf = (ctypes.c_char * len(data)).from_buffer(data)
    return data, ctypes.addressof(buf)


def open_port(ifname: str, xmit_mode: str, kind: str = "auto") -> Port:
    """A transmit port on `ifname`: AF_XDP when asked or possible for start_xmit (it skips
    the qdisc, as the kernel's start_xmit does), else AF_PACKET; queue_xmit goes through
    the qdisc, so it uses AF_PACKET without PACKET_QDISC_BYPASS."""
    from pktflow.ports.afpacket import PacketPort
    from pktflow.ports.afxdp import XdpPort

    if xmit_mode == "start_xmit" and kind in ("auto", "xdp"):
        try:
            return XdpPort(0, ifname)
        except PortError as e:
            if kind == "xdp":
                raise
            log.info("%s: AF_XDP unavailable (%s); using AF_PACKET", ifname, e)
    bypass = 1 if xmit_mode == "start_xmit" else 0
    return PacketPort(0, f"{ifname},promisc=0,bypass={bypass}")
