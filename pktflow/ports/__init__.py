"""Port drivers and the port table (layer 2: imports only pktflow.packet)."""

from pktflow.ports.base import (
    DRIVERS,
    Port,
    PortError,
    PortSpecError,
    PortStats,
    PortTable,
    parse_port_spec,
    register_driver,
)

__all__ = ["DRIVERS", "Port", "PortError", "PortSpecError", "PortStats", "PortTable",
           "parse_port_spec", "register_driver"]
