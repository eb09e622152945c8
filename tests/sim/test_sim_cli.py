"""``quickike sim list|run|report`` and the docs block the report writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quickike.cli import main
from quickike.sim import SCENARIOS
from quickike.sim import report as sim_report


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "list"]) == 0
    out = capsys.readouterr().out
    for name in SCENARIOS:
        assert name in out
    required = {"seed", "initiator-crash", "outgoing-only", "inter-domain", "standby-spoof",
                "dpd-strongswan", "dpd-libreswan", "loss", "mass-reboot"}
    assert required <= set(SCENARIOS)


def test_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "seed", "--seed", "3", "--tunnels", "2", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["scenario"] == "seed" and m["seed"] == 3 and m["tunnels"] == 2
    assert m["restored"] == 2 and "per_tunnel" not in m
    assert m["performance"]["events"] > 0


def test_run_human_with_diagram(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "seed"]) == 0
    out = capsys.readouterr().out
    assert "detection" in out and "gw2 crashes" in out
    assert "HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)" in out


def test_run_out_dir(tmp_path: Path) -> None:
    assert main(["sim", "run", "seed", "--tunnels", "3", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert len(m["per_tunnel"]) == 3
    assert (tmp_path / "diagram.txt").read_text().count("\n") > 10
    assert (tmp_path / "trace.txt").read_text().count("\n") == m["trace_records"]
    for png in ("outage.png", "recovery.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "run", "no-such-scenario"]) == 2
    assert main(["sim", "run", "seed", "-p", "nosuchoption=1"]) == 2
    assert main(["sim", "run", "standby-spoof", "-p", "mitigations=bogus"]) == 2
    assert main(["sim", "run", "seed", "-p", "novalue"]) == 2
    err = capsys.readouterr().err
    assert "no scenario" in err and "nosuchoption" in err and "bogus" in err


def test_report_block_is_replaced_and_prose_kept(tmp_path: Path) -> None:
    rep = sim_report.build(tmp_path, mass_tunnels=40, outage_tunnels=8)
    for name in ("sim-outage.png", "sim-attack.png", "sim-recovery.png"):
        assert (tmp_path / "img" / name).read_bytes()[:4] == b"\x89PNG"
    doc = tmp_path / "simulation.md"
    doc.write_text(f"# Title\n\nprose before\n\n{sim_report.BEGIN}\nold\n{sim_report.END}\n\nafter\n")
    sim_report.write(rep, doc)
    text = doc.read_text()
    assert text.startswith("# Title\n\nprose before") and text.rstrip().endswith("after")
    assert "old" not in text.split(sim_report.BEGIN)[1]
    for row in sim_report.main_rows():
        assert f"`{row.scenario}`" in text
    assert "| all | 0/10 | 0/10 |" in text
    # the same seed regenerates the same block
    again = sim_report.build(tmp_path, mass_tunnels=40, outage_tunnels=8)
    assert again.markdown == rep.markdown
