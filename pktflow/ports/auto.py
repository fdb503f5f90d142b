"""`auto:IFACE[,queue=Q]`: AF_XDP when this kernel and interface allow it, else AF_PACKET.

The choice is logged once per port, so a user sees which socket type carries the traffic.
"""

from __future__ import annotations

from pktflow.ports.afpacket import PacketPort
from pktflow.ports.afxdp import XdpPort
from pktflow.ports.base import Port, PortError, register_driver
from pktflow.ports.linux import InterfaceNotFound, log, parse_iface_args


def open_auto(port_id: int, args: str) -> Port:
    """Open `xdp:args`; on failure (no AF_XDP, program refused, queue busy) log why and
    open `packet:IFACE` instead. A missing interface is reported, not retried."""
    ifname, opts = parse_iface_args("auto", args, {"queue": int})
    xdp_args = ifname + (f",queue={opts['queue']}" if "queue" in opts else "")
    try:
        return XdpPort(port_id, xdp_args)
    except InterfaceNotFound:
        raise
    except PortError as e:
        log.warning("auto:%s: AF_XDP unavailable (%s); falling back to AF_PACKET", args, e)
    return PacketPort(port_id, ifname)


register_driver("auto", open_auto)
