"""The kernel vocabulary: writes answer as pktgen_if_write does, reads print as pktgen shows."""

import errno

import pytest

from pktflow.kpktgen.params import (
    COMMANDS,
    FLAG_BITS,
    PGCTRL_TEXT,
    DeviceConfig,
    DeviceState,
    format_device,
    format_result,
    format_thread,
    parse_device_text,
    parse_pgctrl_write,
    parse_result,
    parse_thread_text,
    split_thread_write,
)

MAC = bytes.fromhex("020000000001")


def test_defaults_are_the_kernels():
    cfg = DeviceConfig()
    assert (cfg.count, cfg.udp_src_min, cfg.udp_dst_max, cfg.burst) == (1000, 9, 9, 1)
    assert cfg.flags == FLAG_BITS["SHARED"] and cfg.vlan_id == 0xFFFF and cfg.node == -1


@pytest.mark.parametrize(("line", "result", "check"), [
    ("count 1000\n", "OK: count=1000", ("count", 1000)),
    ("pkt_size 60\n", "OK: pkt_size=60", ("max_pkt_size", 60)),
    ("pkt_size 10\n", "OK: pkt_size=42", ("min_pkt_size", 42)),  # raised to eth+ip+udp
    ("delay 2147483647\n", "OK: delay=18446744073709551615", ("delay", (1 << 64) - 1)),
    ("ratep 1000\n", "OK: rate=1000", ("delay", 1_000_000)),
    ("udp_dst_max 70000\n", "OK: udp_dst_max=4464", ("udp_dst_max", 70000 & 0xFFFF)),
    ("flows 100000\n", "OK: flows=65536", ("cflows", 65536)),
    ("dst 198.18.0.42\n", "OK: dst_min=198.18.0.42", ("dst_min", "198.18.0.42")),
    ("dst_mac 02:00:00:00:00:09\n", "OK: dstmac 02:00:00:00:00:09",
     ("dst_mac", bytes.fromhex("020000000009"))),
    ("tos 1f\n", "OK: tos=0x1f", ("tos", 0x1F)),
    ("tos 1\n", "ERROR: tos must be 00-ff", ("tos", 0)),
    ("vlan_p 3\n", "ERROR: vlan_p must be 0-7", ("vlan_p", 0)),  # no VLAN yet
    ("xmit_mode queue_xmit\n", "OK: xmit_mode=queue_xmit", ("xmit_mode", "queue_xmit")),
    ("count abc\n", "OK: count=0", ("count", 0)),  # the kernel reads no digits as 0
    ('"count" = "5"\n', "OK: count=5", ("count", 5)),  # quotes and = are separators
])
def test_write_applies_like_the_kernel(line, result, check):
    cfg = DeviceConfig()
    out = cfg.write(line.encode())
    assert out.errno == 0 and out.result == result
    assert getattr(cfg, check[0]) == check[1]


def test_refused_writes_give_the_kernels_errno_and_text():
    cfg = DeviceConfig()
    out = cfg.write(b"bogus 1\n")
    assert out.errno == errno.EINVAL and out.result == 'No such parameter "bogus"'
    out = cfg.write(b"dst_mac 02:00:zz:00:00:01\n")
    assert out.errno == errno.EINVAL and out.result is None and cfg.dst_mac == bytes(6)
    out = cfg.write(b"flag NOPE\n")
    assert out.errno == 0 and out.result.startswith("Flag -:NOPE:- unknown\nAvailable flags")
    assert "IPSRC_RND, IPDST_RND" in out.result
    assert cfg.write(b"flag IPV6\n").result.startswith("Flag -:IPV6:- unknown")
    # burst needs a shared skb: clearing SHARED then asking for a burst is EINVAL
    assert cfg.write(b"flag !SHARED\n").result == "OK: flags=0x0"
    assert cfg.write(b"burst 8\n").errno == errno.EINVAL
    assert cfg.write(b"flag SHARED\n").ok
    assert cfg.write(b"burst 8\n").result == "OK: burst=8"
    assert cfg.write(b"flag !SHARED\n").errno == errno.EINVAL  # a burst holds the skb
    cfg.write(b"burst 1\n")
    assert cfg.write(b"xmit_mode queue_xmit\n").ok
    assert cfg.write(b"burst 8\n").errno == 524  # ENOTSUPP, as the kernel answers
    assert cfg.write(b"xmit_mode nope\n").result.startswith("xmit_mode -:nope:- unknown")


def test_flow_rnd_is_not_flow_seq_and_vlan_excludes_mpls():
    cfg = DeviceConfig()
    cfg.write(b"flag FLOW_SEQ\n")
    assert cfg.has("FLOW_SEQ")
    cfg.write(b"flag FLOW_RND\n")
    assert not cfg.has("FLOW_SEQ")
    assert cfg.write(b"mpls 0001000a,00000100\n").result == "OK: mpls=0001000a,00000100"
    assert cfg.has("MPLS_RND")  # a bottom-of-stack label asks for random labels
    assert cfg.write(b"vlan_id 5\n").result == "OK: vlan_id=5" and cfg.labels == ()
    assert cfg.write(b"vlan_id 5000\n").result is None and cfg.vlan_id == 0xFFFF


def test_device_text_matches_the_kernel_layout():
    cfg = DeviceConfig()
    for line in ("count 10", "pkt_size 60", "flag NO_TIMESTAMP", "dst_min 10.0.0.2",
                 "dst_max 10.0.0.9", "flows 4", "flowlen 8"):
        cfg.write(line + "\n")
    st = DeviceState(sofar=10, result=format_result(2_000_000, 500_000, 10, 60, 0, 0))
    text = format_device(cfg, st, "veth0@0", MAC)
    lines = text.splitlines()
    assert lines[0] == "Params: count 10  min_pkt_size: 60  max_pkt_size: 60"
    assert lines[1] == "     frags: 0  delay: 0  clone_skb: 0  ifname: veth0@0"
    assert lines[2] == "     flows: 4 flowlen: 8"
    assert "     dst_min: 10.0.0.2  dst_max: 10.0.0.9" in lines
    assert "     src_mac: 02:00:00:00:00:01 dst_mac: 00:00:00:00:00:00" in lines
    assert "     Flags: NO_TIMESTAMP  FLOW_RND  SHARED  " in lines
    assert lines[-2:] == ["Result: OK: 2000(c1500+d500) usec, 10 (60byte,0frags)",
                          "  5000pps 2Mb/sec (2400000bps) errors: 0"]
    rep = parse_device_text(text)
    assert rep.params["dst_max"] == "10.0.0.9" and rep.params["src_min"] == ""
    assert rep.current["pkts-sofar"] == "10" and "SHARED" in rep.flags
    assert rep.figures.pps == 5000 and rep.figures.packets == 10
    assert parse_device_text(format_device(DeviceConfig(), DeviceState(), "x", MAC)).result \
        == "Idle"


def test_result_parse_of_a_kernel_line():
    text = ("OK: 1001386(c1001203+d182) usec, 8000000 (60byte,0frags)\n"
            "  7988901pps 3834Mb/sec (3834672480bps) errors: 0")
    r = parse_result(text)
    assert (r.usec, r.usec_idle, r.packets, r.pkt_size, r.pps, r.mbps) == \
        (1001386, 182, 8000000, 60, 7988901, 3834)
    assert parse_result("Starting") is None


def test_thread_and_pgctrl_text():
    text = format_thread(["veth0@0"], ["veth1"], "OK: add_device=veth1")
    assert text == "Running: veth0@0 \nStopped: veth1 \nResult: OK: add_device=veth1\n"
    rep = parse_thread_text(text)
    assert rep.running == ("veth0@0",) and rep.stopped == ("veth1",)
    assert format_thread([], [], "").endswith("\nResult: NA\n")
    assert PGCTRL_TEXT.startswith("Packet Generator for packet performance testing.")
    assert parse_pgctrl_write(b"start\n") == "start"
    assert parse_pgctrl_write(b"start") is None  # the kernel drops the last byte
    assert split_thread_write(b"add_device veth0@1\n") == ("add_device", "veth0@1")


def test_every_command_has_a_rule():
    cfg = DeviceConfig()
    for name in COMMANDS:
        cfg.write(f"{name} 1\n".encode())  # none may raise
