"""`pktflow testbed kpktgen`: Mininet hosts, each with its own engine at /proc/net/pktgen
(private mount namespace), generate at the same time; the sink counts each host's frames."""

from __future__ import annotations

import subprocess

import pytest

from pktflow.testbed.kpktgen import run_on_hosts
from pktflow.testbed.net import leftovers


def _hosts_free() -> bool:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return not any(w.startswith(("pft-k1", "pft-k2", "pft-ksink")) for w in out.split())


@pytest.mark.root
def test_two_hosts_generate_at_once_from_a_run_config(tmp_path):
    if not _hosts_free():
        pytest.skip("testbed hosts pft-k1/pft-k2 are in use by another run")
    cfg = tmp_path / "run.toml"
    # {intf} and {dst_mac} become each host's own; 30000 frames at 10000 pps take 3 s, so
    # the two hosts' runs overlap unless one waits for the other.
    cfg.write_text('[[devices]]\nname = "{intf}"\ncount = 30000\npkt_size = 60\n'
                   'ratep = 10000\ndst = "10.9.0.1"\ndst_mac = "{dst_mac}"\n'
                   'flags = ["UDPSRC_RND"]\nudp_src_min = 100\nudp_src_max = 199\n')
    tb, runs = run_on_hosts(2, config=cfg, timeout=120)
    for r in runs:
        assert r.exit_code == 0, r.output[-1500:]
        assert r.rx_at_sink == 30000, (r.host, r.rx_at_sink)
        result = r.results[r.intf]
        assert result["finished"] and result["packets"] == 30000 and result["errors"] == 0
        # paced at the asked rate (a starved CPU may make it slower, never faster)
        assert 1000 < result["pps"] < 12000, result["text"]
    a, b = runs
    # both were delivering at the same time: neither waited for the other's run to end
    assert a.first_frame_s < b.last_frame_s and b.first_frame_s < a.last_frame_s, \
        [(r.host, r.first_frame_s, r.last_frame_s) for r in runs]
    left = leftovers()["namespaces"]
    assert not [n for n in left if n in ("pft-k1", "pft-k2", "pft-ksink")]


def test_testbed_kpktgen_needs_a_command_or_a_config(capsys):
    from pktflow.cli import main

    assert main(["testbed", "kpktgen", "--hosts", "2"]) == 2
    assert "give --config FILE or -- COMMAND" in capsys.readouterr().err
