"""scripts/bench_scaling.py's arithmetic (no Spark): the growth exponent against numpy's least squares
on log-log, and the projection to Beijing from measured runs."""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))
spec = importlib.util.spec_from_file_location("bench_scaling", SCRIPTS / "bench_scaling.py")
bench_scaling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_scaling)


def test_growth_exponent_matches_numpy_polyfit():
    rows = [341_945, 854_863, 1_709_727, 3_419_454]
    secs = [61.0, 118.5, 207.0, 395.0]
    a, b = bench_scaling.fit(rows, secs)
    slope, intercept = np.polyfit(np.log(rows), np.log(secs), 1)
    assert b == pytest.approx(slope, rel=1e-12) and math.log(a) == pytest.approx(intercept, rel=1e-12)
    with pytest.raises(ValueError):
        bench_scaling.fit([10, 10], [1, 2])


def test_projection_to_beijing_and_cores_for_the_target():
    def run(scale, secs, peak):
        rows = int(3_419_454 * scale)
        return {"scale": scale, "rows": rows, "base_stage_seconds": secs, "peak_memory_gb": peak,
                "stages": {"ingest (all)": {"seconds": secs / 2, "rows": rows, "rows_per_second": 1}}}

    runs = [run(0.1, 40.0, 2.0), run(0.2, 80.0, 4.0)]  # exactly linear: b = 1
    an = bench_scaling.analyse(runs, beijing=12.0, target=600.0, cores_here=2)
    st = an["stages"]["base-database stage"]
    assert st["exponent"] == pytest.approx(1.0)
    assert st["beijing_seconds"] == pytest.approx(40.0 * 120, rel=1e-3)  # 120 times scale 0.1
    assert st["cores_for_target"] == math.ceil(2 * 4800 / 600)
    assert an["memory"]["beijing_gb"] == pytest.approx(240.0, rel=1e-3)


def test_a_scale_that_does_not_fit_is_reported_and_left_out_of_the_fit(tmp_path, monkeypatch, capsys):
    """'2.0 where memory allows': a scale whose bench_base.py fails is named, the others are still fitted."""
    fake = tmp_path / "scripts"
    fake.mkdir()
    (fake / "bench_base.py").write_text(
        "import argparse, json, sys, pathlib\n"
        "ap = argparse.ArgumentParser(); ap.add_argument('--scale', type=float); ap.add_argument('--seed')\n"
        "ap.add_argument('--out'); ap.add_argument('--driver-memory'); a = ap.parse_args()\n"
        "if a.scale >= 2.0: sys.exit(137)\n"
        "rows = int(3_419_454 * a.scale); secs = 400.0 * a.scale\n"
        "st = {'ingest (all)': {'seconds': secs, 'rows': rows, 'rows_per_second': int(rows / secs)}}\n"
        "pathlib.Path(a.out, 'bench_base.json').write_text(json.dumps({'scale': a.scale, 'rows': rows,\n"
        "    'base_stage_seconds': secs, 'rows_per_second': int(rows / secs), 'peak_memory_gb': 1.0 + a.scale,\n"
        "    'stages': st}))\n")
    monkeypatch.setattr(bench_scaling, "HERE", fake)
    monkeypatch.setattr(bench_scaling.yardstick, "announce", lambda: 0.5)
    out = tmp_path / "out"
    assert bench_scaling.main(["--scales", "0.1,0.2,2.0", "--out", str(out)]) == 0
    doc = __import__("json").loads((out / "bench_scaling-local.json").read_text())
    assert [r["scale"] for r in doc["runs"]] == [0.1, 0.2]
    assert [f["scale"] for f in doc["failed"]] == [2.0] and "exit 137" in doc["failed"][0]["failed"]
    assert doc["analysis"]["stages"]["base-database stage"]["exponent"] == pytest.approx(1.0)
    assert "not measured: bench_base.py --scale 2.0 failed (exit 137" in capsys.readouterr().err
