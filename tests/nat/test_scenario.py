"""The tutorial's NAT scenario end to end: generator, nat.pg and the NAT in one process."""

from __future__ import annotations

import json

from pktflow.tutorial.nat import main, run_nat, write_nat_files


def test_scenario_same_traffic_back_on_both_ports():
    lines: list[str] = []
    result = run_nat(packets=3000, output=lines.append)
    assert result.passed, lines[0]
    by_port = {r.port: r for r in result.ports}
    for port in (0, 1):
        row = by_port[port]
        assert row.tx_packets == 3000 and row.tx_bytes == 3000 * 1496
        assert (row.rx_packets, row.rx_bytes) == (3000, 3000 * 1496)
    nat = result.nat_counters
    # 3000 generated packets each way, plus the probes' UDP and ICMP exchange.
    assert nat["outbound"]["forwarded"] == 3002 and nat["inbound"]["forwarded"] == 3002
    assert nat["outbound"]["arp-replies"] == nat["inbound"]["arp-replies"] == 1
    assert nat["outbound"]["echo-replies"] == nat["inbound"]["echo-replies"] == 1
    text = lines[0]
    rows = [line.split() for line in text.splitlines() if line.split()[:2] in (
        ["0", "private"], ["1", "public"])]
    assert [row[2:6] + row[-1:] for row in rows] == [["3000", "4488000", "3000", "4488000",
                                                      "PASS"]] * 2
    assert "FAIL" not in text
    assert text.rstrip().splitlines()[-1].startswith("NAT scenario: PASS")


def test_json_output(capsys):
    assert main(["--packets", "500", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"] == "nat" and doc["passed"] is True
    assert [(p["port"], p["rx_packets"], p["ok"]) for p in doc["ports"]] == [
        (0, 500, True), (1, 500, True)]
    assert all(c["ok"] for c in doc["checks"])


def test_original_script_leaves_the_server_untranslated(tmp_path):
    """NFF-Go's nat.pg enabled range mode on port 0 only: port 1 then sends Pktgen's
    single-mode packet (192.168.1.1 -> 192.168.0.1, 64 bytes), which is not for the NAT
    address, so nothing comes back on port 0. pktflow's nat.pg also enables port 1."""
    generated = write_nat_files(tmp_path)[0].read_text()
    original = tmp_path / "original.pg"
    original.write_text(generated.replace("enable 1 range\n", ""))
    lines: list[str] = []
    result = run_nat(packets=400, output=lines.append, script=original)
    assert not result.passed
    by_port = {r.port: r for r in result.ports}
    assert by_port[1].rx_packets == 400 and by_port[0].rx_packets == 0
    assert by_port[1].tx_bytes == 400 * 60
    assert result.nat_counters["inbound"]["not-ours"] == 400
    assert "FAIL" in lines[0]
