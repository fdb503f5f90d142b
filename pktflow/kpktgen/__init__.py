"""Kernel pktgen: its /proc/net/pktgen vocabulary, and a userspace engine serving that interface.

`params` is the shared language (commands, flags, defaults, file texts); `engine` runs the
state machine and generates with pktflow's own generator; `fs` serves it through FUSE.
"""

from pktflow.kpktgen.params import (
    COMMANDS,
    FLAG_NAMES,
    XMIT_MODES,
    DeviceConfig,
    DeviceReport,
    Result,
    WriteOutcome,
    parse_device_text,
    parse_result,
    parse_thread_text,
)

__all__ = [
    "COMMANDS", "FLAG_NAMES", "XMIT_MODES", "DeviceConfig", "DeviceReport", "Result",
    "WriteOutcome", "parse_device_text", "parse_result", "parse_thread_text",
]
