"""Text pages of the generator, laid out like Pktgen's: one column per port.

`render_page(gen, "main"|"range"|"stats")` returns plain text; the console shows it
above its prompt and refreshes it about once a second, and `page` prints it in scripts.
"""

from __future__ import annotations

from pktflow.packet.addr import IPv4Addr, IPv6Addr
from pktflow.pktgen.config import PROTO_NAMES, format_mac
from pktflow.pktgen.engine import Engine
from pktflow.pktgen.kernels import HIST_LABELS

LABEL_WIDTH = 22
COLUMN_WIDTH = 24


def _n(value: float) -> str:
    return f"{int(value):,}"


def _table(title: str, rows: list[tuple[str, list[str]]]) -> str:
    lines = [title]
    for label, cells in rows:
        lines.append(f"{label:<{LABEL_WIDTH}}" + "".join(f"{c:>{COLUMN_WIDTH}}" for c in cells))
    return "\n".join(lines)


def _title(gen: Engine, name: str) -> str:
    ids = gen.port_ids()
    span = f"Ports {ids[0]}-{ids[-1]} of {len(ids)}" if ids else "no ports"
    return f"<{name}>  {span}  pktflow pktgen  (page main|range|stats, help)"


def main_page(gen: Engine) -> str:
    """Rates, totals, errors, size histogram and the single-packet settings per port."""
    stats = gen.stats()
    text = _table(_title(gen, "Main Page"), main_rows(gen, stats))
    ids = sorted(stats)
    notes = [f"port {i}: {stats[i]['tx_paused']}" for i in ids if "tx_paused" in stats[i]]
    notes += [f"port {i}: {e}" for i, e in sorted(gen.errors().items())]
    if notes:
        text += "\n" + "\n".join(notes)
    return text


def main_rows(gen: Engine, stats: dict[int, dict]) -> list[tuple[str, list[str]]]:
    """The main page's rows for `stats` (a `gen.stats()`): a label and one cell per port;
    the terminal page and the web dashboard both show these."""
    ids = sorted(stats)
    cfgs = gen.configs

    def row(label: str, fn) -> tuple[str, list[str]]:
        return label, [fn(stats[i], cfgs[i]) for i in ids]

    def ip_text(cfg, side: str) -> str:
        if cfg.ipv6:
            text = str(IPv6Addr(getattr(cfg, f"{side}_ip6")))
            return f"{text}/{cfg.src_prefix6}" if side == "src" else text
        text = str(IPv4Addr(getattr(cfg, f"{side}_ip")))
        return f"{text}/{cfg.src_prefix}" if side == "src" else text

    def rate_text(cfg) -> str:
        return f"{cfg.pps:,} pps" if cfg.pps else f"{cfg.rate:g}%"

    rows = [
        row("Port:Flags", lambda s, c: f"{s['port']}:{c.mode}{'+vlan' if c.vlan else ''}"
            f"{'/TX' if s['sending'] else ''}"),
        row("Link State", lambda s, c: f"{'<UP>' if s['link'] else '<DOWN>'} {s['name']}"),
        row("Pkts/s Rx:Tx", lambda s, c: f"{_n(s['rx_pps'])}:{_n(s['tx_pps'])}"),
        row("MBits/s Rx:Tx", lambda s, c: f"{_n(s['rx_mbps'])}:{_n(s['tx_mbps'])}"),
        row("Max Pkts/s Rx:Tx", lambda s, c: f"{_n(s['rx_max_pps'])}:{_n(s['tx_max_pps'])}"),
        row("Total Rx Pkts", lambda s, c: _n(s["rx_packets"])),
        row("      Tx Pkts", lambda s, c: _n(s["tx_packets"])),
        row("      Rx:Tx MBs", lambda s, c: f"{_n(s['rx_bytes'] / 1e6)}:{_n(s['tx_bytes'] / 1e6)}"),
        row("Errors Rx/Tx", lambda s, c: f"{_n(s['rx_errors'])}/{_n(s['tx_errors'])}"),
        row("Dropped Rx/Tx", lambda s, c: f"{_n(s['rx_dropped'])}/{_n(s['tx_dropped'])}"),
        row("Tx Stalls: no buffer", lambda s, c: f"{_n(s['tx_stalls'])} / "
            f"{s['tx_stall_s']:.1f}s"),
        row("Broadcast", lambda s, c: _n(s["rx_broadcast"])),
        row("Multicast", lambda s, c: _n(s["rx_multicast"])),
    ]
    for k, label in enumerate(HIST_LABELS):
        name = f"Rx Sizes {label}" if k == 0 else f"         {label}"
        rows.append(row(name, lambda s, c, label=label: _n(s["rx_sizes"][label])))
    rows += [
        row("Runts/Jumbos", lambda s, c: f"{_n(s['rx_sizes']['runt'])}/"
            f"{_n(s['rx_sizes']['jumbo'])}"),
        row("Rx Size min/avg/max", lambda s, c: f"{s['rx_min_size']}/{s['rx_avg_size']:.0f}/"
            f"{s['rx_max_size']}"),
        row("Tx Count/Rate", lambda s, c: f"{'Forever' if not c.count else _n(c.count)} / "
            f"{rate_text(c)}"),
        row("Pkt Size/Tx Burst", lambda s, c: f"{c.size} / {c.burst}"),
        row("Port Src/Dest", lambda s, c: f"{c.sport}/{c.dport}"),
        row("Type:VLAN ID:TTL", lambda s, c: f"{'IPv6' if c.ipv6 else 'IPv4'}/"
            f"{PROTO_NAMES[c.proto].upper()}:{c.vlan_id:04d}:{c.ttl}"),
        row("IP  Destination", lambda s, c: ip_text(c, "dst")),
        row("    Source", lambda s, c: ip_text(c, "src")),
        row("MAC Destination", lambda s, c: format_mac(c.dst_mac)),
        row("    Source", lambda s, c: format_mac(c.src_mac)),
    ]
    return rows


def range_page(gen: Engine) -> str:
    """Each range field's start, increment, minimum and maximum per port."""
    ids = gen.port_ids()
    cfgs = gen.configs
    rows: list[tuple[str, list[str]]] = [
        ("Port #", [f"{i}:{cfgs[i].mode}" for i in ids]),
        ("proto", [PROTO_NAMES[cfgs[i].range_proto if cfgs[i].range_proto is not None
                               else cfgs[i].proto] for i in ids]),
    ]
    for name in ("dst_ip", "src_ip", "dst_port", "src_port", "ttl", "vlan", "size",
                 "dst_mac", "src_mac"):
        label = name.replace("_", ".")
        if name.endswith("ip"):
            fmt = lambda v: str(IPv4Addr(v))  # noqa: E731
        elif name.endswith("mac"):
            fmt = format_mac
        else:
            fmt = str
        for key, shown in (("start", label), ("inc", "    inc"), ("min", "    min"),
                           ("max", "    max")):
            rows.append((shown, [fmt(getattr(cfgs[i].ranges[name], key)) for i in ids]))
    return _table(_title(gen, "Range Page"), rows)


def stats_page(gen: Engine) -> str:
    """The port drivers' own counters (what the port saw, whoever else used it)."""
    ports = {p.id: p for p in gen.ports}
    ids = sorted(ports)
    keys = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped",
            "rx_errors", "tx_errors")
    rows: list[tuple[str, list[str]]] = [
        ("Port", [f"{i} {ports[i].name}" for i in ids]),
        ("MAC", [str(ports[i].mac) for i in ids]),
    ]
    for key in keys:
        rows.append((key, [_n(getattr(ports[i].stats, key)) for i in ids]))
    return _table(_title(gen, "Port Stats Page"), rows)


PAGES = {"main": main_page, "range": range_page, "stats": stats_page}


def render_page(gen: Engine, name: str) -> str:
    """The named page as text."""
    return PAGES[name](gen)
