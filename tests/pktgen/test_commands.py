"""The command language: port lists, bad input, scripts, save/load, pages."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP

from pktflow.pktgen import CommandError, parse_portlist


@pytest.mark.parametrize("text,ids", [("0", [0]), ("0,1", [0, 1]), ("0-3", [0, 1, 2, 3]),
                                      ("all", [0, 1, 2, 3, 6]), ("2,6,0-1", [0, 1, 2, 6])])
def test_portlists(text, ids):
    assert parse_portlist(text, [0, 1, 2, 3, 6]) == ids


@pytest.mark.parametrize("text", ["x", "1-", "3-1", "0,,1", "7", "0-9"])
def test_bad_portlists(text):
    with pytest.raises(CommandError):
        parse_portlist(text, [0, 1, 2, 3, 6])


@pytest.mark.parametrize("line,words", [
    ("frobnicate 0", "unknown command"),
    ("set 0 size abc", "size"),
    ("set 0 ttl 300", "ttl"),
    ("set 0 proto sctp", "proto"),
    ("set 0 type ipx", "type"),
    ("set 0 src mac 00:11:22", "MAC"),
    ("set 0 dst ip 10.0.0.300", "IPv4"),
    ("set 0 dst ip 10.0.0.1/24", "dst ip"),
    ("set 0 sport", "incomplete"),
    ("set 5 ttl 3", "unknown port 5"),
    ("set 0 colour red", "unknown setting"),
    ("range 0 dst port start", "range dst port"),
    ("range 0 dst port begin 5", "range dst port"),
    ("range 0 vlan min 0", "range vlan"),
    ("range 0 src ip start 2001:db8::1", "IPv4"),
    ("enable 0 turbo", "unknown feature"),
    ("enable 0 pcap", "no pcap file"),
    ("page nowhere", "unknown page"),
    ("sleep soon", "sleep"),
    ("start", "missing port list"),
])
def test_bad_commands_are_errors_and_change_nothing(rig, line, words):
    before = rig.gen.interpreter.script()
    with pytest.raises(CommandError) as e:
        rig.gen.execute(line)
    assert words.lower() in str(e.value).lower()
    assert rig.gen.interpreter.script() == before


def test_script_with_bad_lines_reports_file_and_line_and_runs_the_rest(rig, tmp_path):
    script = tmp_path / "test.pg"
    script.write_text("# a comment\nset 0 proto udp\nset 0 dport x\nbogus\n"
                      "set 0 dport 4242\n\nset 0 ttl 7\n")
    errors = rig.gen.load(script)
    assert [e.split(": ")[0] for e in errors] == [f"{script}:3", f"{script}:4"]
    assert rig.output == errors
    p = rig.packets(0, 1)[0]
    assert p[UDP].dport == 4242 and p[IP].ttl == 7


def test_bad_line_does_not_stop_traffic(rig):
    rig.run("start 0")
    try:
        with pytest.raises(CommandError):
            rig.gen.execute("set 0 size big")
        assert rig.gen.sending() == [0]
    finally:
        rig.run("stop 0")
    assert rig.gen.sending() == []


def test_save_and_load_round_trip(rig, tmp_path):
    rig.run("set 0 proto udp", "set 0 size 300", "set 0 src ip 10.9.8.7/16", "set 1 pps 5000",
            "range 0 dst port 50 50 60 1", "range 0 src mac min 00:00:00:00:00:01",
            "enable 0 range", "enable 1 vlan", "set 1 vlan 99", "set 0 count 12")
    saved = rig.gen.interpreter.script()
    path = tmp_path / "saved.pg"
    assert "saved" in rig.gen.execute(f"save {path}")
    rig.run("rst")
    assert rig.gen.interpreter.script() != saved
    assert rig.gen.load(path) == []
    assert rig.gen.interpreter.script() == saved
    assert [p[UDP].dport for p in rig.packets(0, 12)] == list(range(50, 61)) + [50]


def test_load_command_nests_scripts(rig, tmp_path):
    inner = tmp_path / "inner.pg"
    inner.write_text("set 0 dport 99\n")
    outer = tmp_path / "outer.pg"
    outer.write_text(f"load {inner}\nset 0 sport 98\n")
    rig.gen.execute(f"load {outer}")
    p = rig.packets(0, 1)[0]
    assert (p[TCP].sport, p[TCP].dport) == (98, 99)


def test_quit_stops_a_script(rig, tmp_path):
    script = tmp_path / "q.pg"
    script.write_text("set 0 ttl 9\nquit\nset 0 ttl 10\n")
    rig.gen.load(script)
    assert rig.gen.quit_requested
    assert rig.gen.configs[0].ttl == 9


def test_str_stp_clear_and_pages(rig):
    rig.run("set all rate 0.1", "str")
    assert rig.gen.sending() == [0, 1]
    rig.run("delay 50", "stp")
    assert rig.gen.sending() == []
    rig.gen.wait_quiet(quiet=0.05)
    assert rig.gen.stats()[0]["tx_packets"] > 0
    rig.run("clr")
    assert all(s["tx_packets"] == 0 and s["rx_packets"] == 0 for s in rig.gen.stats().values())
    main = rig.gen.execute("page main")
    assert "Tx Pkts" in main and "Rx Sizes 64" in main
    assert "rx_packets" in rig.gen.execute("page stats")
    assert "range <portlist>" in rig.gen.execute("help")
