"""The generator scripts of the tutorial (Pktgen `.pg` command files), written from the
target table as NFF-Go's genscripts wrote them: step02.pg .. step11.pg and nat.pg.

Each script sets the destination MAC of generator ports 0 and 1 to the target's MACs and
a 1500-byte frame size (Pktgen sizes count the 4-byte FCS). Steps 4 to 11 and NAT use
range mode on port 0; every range field a script leaves alone keeps Pktgen's range
defaults.
"""

from __future__ import annotations

from pathlib import Path

from pktflow.packet.addr import MACAddr
from pktflow.tutorial.targets import target_macs

FRAME_SIZE = 1500  # Pktgen size: frame plus FCS

# Single-packet mode: steps 2 and 3.
SINGLE = """\
set 0 dst mac {mac0}
set 1 dst mac {mac1}
set 0 size {size}
set 1 size {size}
"""

# Range mode, destination TCP port 50..60 (11 ports): step 4.
DST_PORTS = """\
range 0 dst mac start {mac0}
range 1 dst mac start {mac1}
range 0 size start {size}
range 0 size min {size}
range 0 size max {size}
range 0 dst port start 50
range 0 dst port min 50
range 0 dst port max 60
range 0 dst port inc 1
enable 0 range
"""

# Range mode, IPv4 source 111.2.0.0..111.2.0.3 (4 sources): steps 5 to 11.
SRC_IPS = """\
range 0 dst mac start {mac0}
range 1 dst mac start {mac1}
range 0 size start {size}
range 0 size min {size}
range 0 size max {size}
range 0 src ip start 111.2.0.0
range 0 src ip min 111.2.0.0
range 0 src ip max 111.2.0.3
range 0 src ip inc 0.0.0.1
enable 0 range
"""

# NAT: port 0 is 11 private clients 192.168.1.2..12 (source port 1234) talking to the
# server 10.1.1.2; port 1 is that server answering the NAT address 10.1.1.1, port 1024.
NAT = """\
range 0 dst mac start {mac0}
range 1 dst mac start {mac1}
range 0 size start {size}
range 0 size min {size}
range 0 size max {size}
range 1 size start {size}
range 1 size min {size}
range 1 size max {size}
range 0 src ip start 192.168.1.2
range 0 src ip min 192.168.1.2
range 0 src ip max 192.168.1.12
range 0 src ip inc 0.0.0.1
range 0 dst ip start 10.1.1.2
range 0 dst ip inc 0.0.0.0
range 0 src port start 1234
range 0 src port inc 0
range 1 src ip start 10.1.1.2
range 1 src ip inc 0.0.0.0
range 1 dst ip start 10.1.1.1
range 1 dst ip inc 0.0.0.0
range 1 dst port start 1024
range 1 dst port inc 0
enable 0 range
enable 1 range
"""

SCRIPTS: dict[str, str] = {
    "step02.pg": SINGLE, "step03.pg": SINGLE, "step04.pg": DST_PORTS,
    **{f"step{n:02d}.pg": SRC_IPS for n in range(5, 12)},
    "nat.pg": NAT,
}


def script_text(name: str, mac0: MACAddr, mac1: MACAddr, target: str) -> str:
    """The text of script `name` (a key of SCRIPTS) for a target with these MACs."""
    header = (f"# {name}: pktflow tutorial generator script for target \"{target}\"\n"
              f"# written by `pktflow tutorial scripts --target {target}`; edit config.json "
              f"and rerun it\n")
    return header + SCRIPTS[name].format(mac0=mac0, mac1=mac1, size=FRAME_SIZE)


def generate(targets: str | Path, target: str, outdir: str | Path) -> list[Path]:
    """Write every script for `target` of the table `targets` into `outdir`; returns the
    paths written. Raises TargetError for an unknown target or a bad table."""
    mac0, mac1 = target_macs(targets, target)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCRIPTS:
        path = outdir / name
        path.write_text(script_text(name, mac0, mac1, target))
        written.append(path)
    return written
