"""The crash suite's aim (scripts/crash_suite.py ``kill_point``), fast and without Spark: a stand-in for
`lake run` that resumes a stage of ten units (0.2 s each) where an earlier run left it. A planned delay
longer than what is left of the stage misses; the point is then re-aimed on the lake as it was."""
from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FAKE_RUN = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    root = Path(sys.argv[sys.argv.index("--root") + 1])
    done = root / "done"
    n = int(done.read_text()) if done.exists() else 0
    print("stage 1/2: ingest", flush=True)
    if n >= 10:
        sys.exit(0)  # nothing left: the stage does not start
    print("stage 2/2: publish", flush=True)
    while n < 10:
        time.sleep(0.2)
        n += 1
        done.write_text(str(n))
    print("published", flush=True)
""")


def _suite(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("crash_suite_aim", REPO / "scripts" / "crash_suite.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    script = tmp_path / "fake_lake"
    script.write_text(f"#!{sys.executable}\n" + FAKE_RUN)
    script.chmod(0o755)
    monkeypatch.setattr(mod, "lake_exe", lambda: str(script))
    return mod


def test_a_point_whose_resumed_run_ends_first_is_re_aimed_and_killed(monkeypatch, tmp_path):
    suite = _suite(monkeypatch, tmp_path)
    root = tmp_path / "lake"
    root.mkdir()
    (root / "done").write_text("7")  # earlier kills left 3 units (0.6 s) of the stage's 2 s
    said, logs = [], []
    out = suite.kill_point(root, tmp_path, "cycle1-run1", {}, "publish", 1.5, 2.0, 60, 2, said.append, logs)
    assert out["killed_in"] == "publish" and out["attempts"] >= 2, (out, said)
    assert out["delay"] < 0.6  # 75 % of the ~0.6 s the stage took in the attempt that ended
    assert "re-aimed" in said[0] and "put back" in said[0]
    assert 7 <= int((root / "done").read_text()) < 10  # the lake as it was, then killed part-way
    assert [p.name for p in logs][:2] == ["cycle1-run1.log", "cycle1-run1-retry1.log"]
    assert not (tmp_path / "cycle1-run1-before").exists()  # the copy is gone


def test_a_point_whose_stage_never_starts_is_reported_missed(monkeypatch, tmp_path):
    suite = _suite(monkeypatch, tmp_path)
    root = tmp_path / "lake"
    root.mkdir()
    (root / "done").write_text("10")  # nothing of the stage left to do
    out = suite.kill_point(root, tmp_path, "cycle1-run2", {}, "publish", 1.0, 2.0, 60, 1, lambda m: None, [])
    assert out["killed_in"] is None and out["attempts"] == 1  # nothing to re-aim at
    assert out["why"] == "the run ended (exit 0) before publish started"
    assert (root / "done").read_text() == "10"
