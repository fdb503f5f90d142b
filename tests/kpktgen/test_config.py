"""The controller's pure parts: reading device files back into typed results (on texts
pktgen's own layout gives, produced by params' formatter), building command lines, and run
configurations whose errors name the file and the field."""

from __future__ import annotations

import json

import pytest

from pktflow.kpktgen import params
from pktflow.kpktgen.config import ConfigError, load_config
from pktflow.kpktgen.control import Result, _command_lines, _refused


def _device_text(result: str, sofar: int = 0, **cfg) -> str:
    config = params.DeviceConfig(**cfg)
    state = params.DeviceState(sofar=sofar, result=result)
    return params.format_device(config, state, "veth0", bytes.fromhex("020000000001"))


def test_finished_run_parses_into_figures_with_kernel_wording():
    summary = params.format_result(elapsed_ns=2_000_000_000, idle_ns=500_000_000,
                                   sofar=1_000_000, pkt_size=64, frags=0, errors=3)
    text = _device_text(summary, sofar=1_000_000, count=1_000_000, min_pkt_size=64,
                        max_pkt_size=64, dst_min="10.0.0.2", dst_max="10.0.0.2")
    r = Result.parse(text)
    assert r.ok and r.finished
    assert (r.usec, r.usec_busy, r.usec_idle) == (2_000_000, 1_500_000, 500_000)
    assert (r.packets, r.pkt_size, r.pps) == (1_000_000, 64, 500_000)
    assert r.bps == 500_000 * 8 * 64 and r.mbps == r.bps // 1_000_000
    assert r.errors == 3
    assert r.text == summary  # the kernel's two lines, word for word
    assert r.params["count"] == "1000000" and r.params["dst_min"] == "10.0.0.2"
    assert r.params["src_mac"] == "02:00:00:00:00:01"
    assert r.sofar == 1_000_000
    assert "NO_TIMESTAMP" not in r.flags and "SHARED" in r.flags


def test_idle_and_config_results_are_not_runs():
    idle = Result.parse(_device_text(""))
    assert idle.text == "Idle" and not idle.ok and not idle.finished
    set_ok = Result.parse(_device_text("OK: count=100"))
    assert set_ok.ok and not set_ok.finished and set_ok.pps == 0


def test_refusals_are_recognised_from_the_result_line():
    assert not _refused("Idle", "OK: count=5")
    assert _refused("OK: count=5", "ERROR: vlan_p must be 0-7")
    assert _refused("ERROR: vlan_p must be 0-7", "ERROR: vlan_p must be 0-7")  # same twice
    assert _refused("OK: count=5", "Flag -:BOGUS:- unknown\nAvailable flags, ...")
    assert not _refused("OK: pkt_size=60", "OK: pkt_size=60")  # imix leaves it unchanged


def test_command_lines_cover_flags_mpls_and_refuse_unknown_names():
    lines = _command_lines({"count": 10, "pkt_size": 60, "dst": "10.0.0.2",
                            "flags": ["UDPSRC_RND", "!SHARED"], "mpls": [0x10, 0x20],
                            "tos": "10", "vlan_id": 5})
    assert lines == ["count 10", "pkt_size 60", "dst 10.0.0.2", "flag UDPSRC_RND",
                     "flag !SHARED", "mpls 00000010,00000020", "tos 10", "vlan_id 5"]
    with pytest.raises(ValueError, match='"pkt_sz" is not a pktgen device command'):
        _command_lines({"pkt_sz": 60})
    with pytest.raises(ValueError, match='"UDP_RANDOM" is not a pktgen flag'):
        _command_lines({"flags": ["UDP_RANDOM"]})


def test_every_parameter_the_issue_lists_is_a_known_command():
    names = ("count clone_skb burst pkt_size min_pkt_size max_pkt_size delay rate ratep "
             "src_min src_max dst_min dst_max src_mac dst_mac udp_src_min udp_src_max "
             "udp_dst_min udp_dst_max flows flowlen vlan_id vlan_p vlan_cfi svlan_id svlan_p "
             "svlan_cfi tos traffic_class mpls queue_map_min queue_map_max xmit_mode node "
             "frags").split()
    assert _command_lines({n: 1 for n in names}) == [f"{n} 1" for n in names]


def test_config_toml_json_and_field_errors(tmp_path):
    good = tmp_path / "run.toml"
    good.write_text('dir = "/tmp/pg"\n[[devices]]\nname = "veth0"\ncount = 100\n'
                    'pkt_size = 60\nflags = ["UDPSRC_RND"]\n'
                    '[[devices]]\nname = "veth1"\nthread = 1\ndst = "10.0.0.9"\n')
    cfg = load_config(good)
    assert cfg.dir == "/tmp/pg"
    assert cfg.by_thread() == {0: {"veth0": {"count": 100, "pkt_size": 60,
                                             "flags": ["UDPSRC_RND"]}},
                               1: {"veth1": {"dst": "10.0.0.9"}}}
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"devices": [{"name": "v@1", "count": 5}]}))
    assert load_config(js).by_thread() == {0: {"v@1": {"count": 5}}}

    cases = {
        '[[devices]]\nname = "veth0"\npkt_sizee = 60\n': r"devices\[0\]\.pkt_sizee: .*not a "
                                                         "pktgen device command",
        '[[devices]]\nname = "veth0"\nflags = ["NOPE"]\n': r"devices\[0\]\.flags: .*NOPE",
        '[[devices]]\nname = "veth0"\nthread = -1\n': r"devices\[0\]\.thread",
        '[[devices]]\ncount = 1\n': r"devices\[0\]\.name",
        '[[devices]]\nname = "a"\n[[devices]]\nname = "a"\n': r"devices\[1\]\.name: .*twice",
        '[[devices]]\nname = "a"\ncount = 1.5\n': r"devices\[0\]\.count: expected a number",
        'devics = 1\n': r"devics: unknown setting",
        '[[devices\n': r"not valid TOML",
    }
    bad = tmp_path / "bad.toml"
    for text, pattern in cases.items():
        bad.write_text(text)
        with pytest.raises(ConfigError, match=pattern) as e:
            load_config(bad)
        assert str(e.value).startswith(str(bad))
    other = tmp_path / "run.ini"
    other.write_text("x")
    with pytest.raises(ConfigError, match="name it .toml, .yaml/.yml or .json"):
        load_config(other)


def test_config_yaml(tmp_path):
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (YAML configs need it)")
    assert yaml
    path = tmp_path / "run.yaml"
    path.write_text("devices:\n  - name: veth0\n    count: 7\n    flags: [IPSRC_RND]\n")
    assert load_config(path).by_thread() == {0: {"veth0": {"count": 7,
                                                           "flags": ["IPSRC_RND"]}}}
