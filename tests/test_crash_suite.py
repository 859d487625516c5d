"""The crash suite's test tier (marker ``crash``): a few SIGKILLs of `lake run` (one in ingest, one in
a build stage, one in publish), one recovery, and every check of ``scripts/crash_suite.py`` against
the session's tiny lake (the same sample, built by one uninterrupted run) as the reference.

    .venv/bin/python -m pytest -m crash          # only this tier
    .venv/bin/python scripts/crash_suite.py --points 21   # the full suite (README: results)
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.crash


def _suite():
    spec = importlib.util.spec_from_file_location("crash_suite", REPO / "scripts" / "crash_suite.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_kills_in_ingest_build_and_publish_recover_to_the_uninterrupted_lake(tiny_lake, spark, tmp_path):
    suite = _suite()
    assert suite.AS_OF == "2026-11-01"  # tests/conftest.py AS_OF: the reference lake's date
    ref_root = Path(tiny_lake["settings"].root)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for p in tiny_lake["inbox"].iterdir():  # the department files, not the generator's truth
        if p.is_dir() and p.name != "truth":
            shutil.copytree(p, inbox / p.name)
    reference = {"seconds": tiny_lake["report"]["seconds"],
                 "stages": {k: v["seconds"] for k, v in tiny_lake["report"]["stages"].items()},
                 "manifest": suite.manifest(spark, ref_root), "published": suite.published(spark, ref_root)}
    assert reference["published"]["share"] and reference["published"]["open"]
    summary = suite.run_suite(3, seed=5, work=tmp_path / "work", per_cycle=3, reference=reference, inbox=inbox,
                              spark=spark, timeout=3600)
    assert summary["problems"] == [], summary["problems"]
    assert summary["kills"] + summary["missed"] == 3 and summary["kills"] >= 2, summary
    assert summary["recoveries"] == 1 and summary["rows_lost"] == 0 and summary["tracebacks"] == 0
    assert summary["passed"]


def test_the_checks_find_a_broken_lake(tiny_lake, spark, tmp_path):
    """The suite's checks are not blind: a copy of the tiny lake with a duplicated manifest row, a
    truncated landed copy, an unfinished table and a changed open file is reported on each count."""
    import deltalake

    suite = _suite()
    ref_root = Path(tiny_lake["settings"].root)
    reference = {"manifest": suite.manifest(spark, ref_root), "published": suite.published(spark, ref_root)}
    root = tmp_path / "broken"
    shutil.copytree(ref_root, root, ignore=shutil.ignore_patterns("inbox"))
    manifest = deltalake.DeltaTable(str(root / "landing" / "_manifest")).to_pyarrow_table()
    deltalake.write_deltalake(str(root / "landing" / "_manifest"), manifest.slice(0, 1), mode="append")
    first = manifest.slice(0, 1).to_pylist()[0]
    landed = root / "landing" / first["source"] / first["sha256"] / first["file_name"]
    landed.write_bytes(landed.read_bytes()[:10])
    shutil.rmtree(root / "topic" / "flood_points" / "_delta_log")
    (root / "topic" / "flood_points" / "_delta_log").mkdir()
    open_file = next(p for p in sorted((root / "open").rglob("data.csv")))
    open_file.write_bytes(open_file.read_bytes() + b"x\n")
    problems, _ = suite.check_lake(spark, root, reference)
    text = "\n".join(problems)
    assert f"landing/_manifest: {first['source']} {first['sha256'][:12]} listed 2 times" in text
    assert f"{first['source']}/{first['file_name']}: the landed copy does not have its manifest sha256" in text
    assert "topic/flood_points: unfinished" in text
    assert f"open/{open_file.relative_to(root / 'open')}: differs from the uninterrupted run (content)" in text
