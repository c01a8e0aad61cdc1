"""`lwd bench chunking`: the in-process harness runs every mode under delay and picks a default by measurement."""

import json

import pytest

from lwd.app.bench_chunking import BASELINE, choose_default, markdown_table
from lwd.cli import main


def _row(variant, delay, success, jerk):
    return {"variant": variant, "delay_ms": delay, "success": success, "jerk": jerk, "max_boundary_jump": 0.1,
            "mean_boundary_jump": 0.05, "hold_fraction": 0.0, "infer_ms_p50": 3.0}


def test_default_is_most_successful_then_smoothest():
    rows = [_row(BASELINE, 0, 1.0, 1.0), _row("replace", 0, 0.5, 30.0), _row("blend", 0, 0.5, 20.0),
            _row("rtc", 0, 0.25, 10.0)]
    winner, why = choose_default(rows, episodes_per_cell=2)  # one episode = 0.5: rtc is tied, and smoothest
    assert winner == "rtc" and "rtc" in why
    assert choose_default(rows, episodes_per_cell=8)[0] == "blend"  # 0.25 is two episodes behind now
    assert "| rtc | 0 | 25% |" in markdown_table(rows)  # the baseline never becomes the default


def test_bench_chunking_cli_writes_table(tiny_store, tmp_path):
    out = tmp_path / "chunking"
    assert main(["bench", "chunking", "--store", str(tiny_store), "--episodes", "1", "--tasks", "pick_place",
                 "--delays", "0,200", "--time-limit-scale", "0.1", "--out", str(out)]) == 0
    result = json.loads((out / "chunking.json").read_text())
    rows = result["rows"]
    assert [(r["variant"], r["delay_ms"]) for r in rows] == [
        (v, d) for d in (0, 200) for v in (BASELINE, "replace", "blend", "rtc")]
    for r in rows:
        assert r["ticks"] == 15 and 0.0 <= r["hold_fraction"] <= 1.0 and r["jerk"] >= 0.0
        # the first chunk arrives `delay` after the first observation: that long the arm holds
        assert r["hold_fraction"] == pytest.approx(r["delay_ms"] / 100 / 15)
    assert result["default_mode"] in ("replace", "blend", "rtc") and result["policy"]["version"] == 0
    assert "| blend | 200 |" in (out / "chunking.md").read_text()


def test_bench_systems_first_cut(tiny_store, tmp_path):
    out = tmp_path / "systems"
    assert main(["bench", "systems", "--store", str(tiny_store), "--inferences", "3", "--updates", "1",
                 "--io-repeats", "1", "--out", str(out)]) == 0
    res = json.loads((out / "systems.json").read_text())
    for v in ("plain", "rtc"):
        assert res["inference"][v]["n"] == 3 and res["inference"][v]["p99"] >= res["inference"][v]["p50"] > 0
    assert set(res["learner"]) >= {"lwd", "bc"} and res["machine"]["cpus"] >= 1
    assert "inference_ms (plain)" in (out / "systems.md").read_text()
    # without --ros the recorder-write and ingest figures run on the store's own bags
    assert res["io"]["recorder_write"]["ratio"] > 0 and res["io"]["ingest"]["ingest_ratio"] > 0
    assert "ingest_ratio" in (out / "systems.md").read_text()


def test_bench_systems_quick_keeps_explicit_flags(monkeypatch, tmp_path):
    import lwd.app.bench_systems as bs

    seen = []
    monkeypatch.setattr(bs, "run_systems_bench", lambda cfg: seen.append(cfg))
    assert main(["bench", "systems", "--store", str(tmp_path), "--quick", "--ros", "4"]) == 0
    cfg = seen[0]
    assert cfg.ros_robots == (4,) and cfg.scaling == bs.QUICK["scaling"] and cfg.inferences == bs.QUICK["inferences"]
    assert main(["bench", "systems", "--store", str(tmp_path)]) == 0
    assert seen[1].ros_robots == () and seen[1].inferences == bs.SystemsBenchConfig.inferences
