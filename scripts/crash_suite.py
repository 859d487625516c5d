"""Crash suite: kill `lake run` with SIGKILL at seeded random moments of ingest, build and publish,
re-run it to completion, and check after every recovery that the lake is whole.

    .venv/bin/python scripts/crash_suite.py --points 21 --seed 1 --work /tmp/lake-crash

A tiny sample (``--scale``, default 0.001) is generated once; its department files (not the
generator's truth, so no evaluation runs) are the inbox of every lake. A reference lake is built by one
uninterrupted ``lake run``. Then, per cycle, a fresh lake gets the same inbox and ``lake run`` is
started ``--per-cycle`` times, each time killed (SIGKILL to its whole process group: Python and the
Spark JVM at once) at a seeded moment: the kill plan of a cycle visits the stage groups in order
(ingest, then the build stages, then publish); a kill waits for the stage's line on the command's
output and then a random delay within the stage's duration in the reference run. A run resumed after
earlier kills can end before its kill (less of the stage is left to do): the point is then re-aimed on
the lake as it was, at the same fraction of the stage's duration in that run (``--retries``). A last
``lake run`` recovers, and the lake is checked:

- every table folder of the zones is a finished Delta table, readable by deltalake and by Spark with
  the same row count (``lake.tables``: no unfinished first commit is left);
- every landed file reconciles: rows read = raw + quarantine for its sha256 (sensor readings: kept +
  duplicates + quarantined), the landed copy has its manifest sha256, and every file of the reference
  is in the manifest with the same counts (rows lost = reference rows read - rows found);
- no key of a base or topic table (contract ``key``) is duplicated; no (source, sha256) twice in
  ``landing/_manifest``;
- the share tables have the reference's content fingerprints and every open-zone file its bytes;
- no recovery run printed a traceback, and every recovery exits 0.

A summary is printed (kills, where, recoveries, rows lost) and written to ``<work>/summary.json``.
Exit 1 when any check failed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

AS_OF = "2026-11-01"


def _groups() -> dict[str, list[str]]:
    """The stages of `lake run` (jobs.pipeline.stages: ingest, every job of the registry, governance),
    grouped where a kill is aimed: ingest, the builds (and timeliness, reports), publish."""
    from jobs import pipeline
    from lake.settings import Settings

    names = pipeline.stages(Settings())
    return {"ingest": ["ingest"], "build": [n for n in names if n not in ("ingest", "publish")],
            "publish": ["publish"]}


GROUPS = _groups()
STAGE_LINE = re.compile(r"stage (\d+)/(\d+): ([\w.]+)")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*at (org|io|java|scala)\.|Py4JJavaError", re.M)


def lake_exe() -> str:
    return str(Path(sys.executable).parent / "lake")


def child_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("LAKE_SHUFFLE_PARTITIONS", "2")
    env.setdefault("LAKE_DRIVER_MEMORY", "2g")
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    env["PYTHONUNBUFFERED"] = "1"  # stage lines must arrive when printed, not when a pipe buffer fills
    env.pop("LAKE_ROOT", None)
    env.pop("LAKE_INBOX", None)
    env.update(extra or {})
    return env


# ------------------------------------------------------------------ running and killing

class Run:
    """`lake run` as a subprocess in its own process group, its output kept in a log file and
    watched for stage lines."""

    def __init__(self, root: Path, log_path: Path, env: dict) -> None:
        self.log_path = log_path
        self.stage = ""
        self.started: dict[str, float] = {}  # stage -> when its line was seen
        self.ended_at: float | None = None
        self.stage_seen = threading.Condition()
        self.lines: list[str] = []
        self.proc = subprocess.Popen([lake_exe(), "run", "--root", str(root), "--as-of", AS_OF], cwd=str(REPO),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, text=True, errors="replace")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                m = STAGE_LINE.search(line)
                if m:
                    with self.stage_seen:
                        self.stage = m.group(3)
                        self.started.setdefault(self.stage, time.time())
                        self.stage_seen.notify_all()
        with self.stage_seen:
            self.ended_at = time.time()
            self.stage_seen.notify_all()

    def stage_duration(self, stage: str) -> float | None:
        """Seconds ``stage`` took in this (finished) run: from its line to the next stage's line or to
        the end of the output; None when it never started."""
        if stage not in self.started:
            return None
        t0 = self.started[stage]
        later = [t for t in self.started.values() if t > t0]
        end = min(later) if later else (self.ended_at or time.time())
        return end - t0

    def wait_for_stage(self, stages: list[str], timeout: float) -> bool:
        """Wait until one of ``stages`` (or a later one) has started; False if the run ended first."""
        order = [s for g in GROUPS.values() for s in g]
        first = min(order.index(s) for s in stages)
        deadline = time.time() + timeout
        with self.stage_seen:
            while True:
                if self.stage and order.index(self.stage) >= first:
                    return True
                if self.proc.poll() is not None or time.time() > deadline:
                    return False
                self.stage_seen.wait(timeout=1.0)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.reader.join(timeout=30)

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9
        self.reader.join(timeout=30)
        return rc

    @property
    def output(self) -> str:
        return "".join(self.lines)


# ------------------------------------------------------------------ the checks

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def published(spark, root: Path) -> dict:
    """Content fingerprints of the share tables and sha256 of every open-zone file."""
    from lake import io, tables

    out = {"share": {}, "open": {}}
    share = root / "share"
    for p in sorted(share.iterdir()) if share.is_dir() else []:
        if tables.state(str(p)).kind == "table":
            out["share"][p.name] = io.fingerprint(io.read(spark, str(p)))
    open_dir = root / "open"
    for p in sorted(open_dir.rglob("*")) if open_dir.is_dir() else []:
        if p.is_file() and not p.name.startswith("."):  # .<name>.<random>.part: a write killed half-way
            out["open"][str(p.relative_to(open_dir))] = sha256_file(p)
    return out


def manifest(spark, root: Path) -> list[dict]:
    from lake import io

    path = str(root / "landing" / "_manifest")
    if not io.is_table(spark, path):
        return []
    return [r.asDict() for r in io.read(spark, path).collect()]


def check_lake(spark, root: Path, reference: dict) -> tuple[list[str], int]:
    """Problems found in the lake at ``root`` (empty: whole) and rows lost against the reference."""
    from deltalake import DeltaTable
    from pyspark.sql import functions as F

    from lake import contracts as contracts_mod
    from lake import io, tables
    from lake.catalog_view import ZONES
    from lake.settings import Settings

    problems: list[str] = []
    settings = Settings.from_env(root=str(root))
    # 1. every table folder is a finished table, readable without and with a JVM, same rows
    for zone in (*ZONES, "share"):
        folder = root / zone
        for p in sorted(folder.iterdir()) if folder.is_dir() else []:
            if not p.is_dir() or p.name.startswith(".") or p.name == "_locks":
                continue
            st = tables.state(str(p))
            if st.kind == "absent":
                continue
            if st.kind != "table":
                problems.append(f"{zone}/{p.name}: {st.kind} ({st.detail})")
                continue
            try:
                n_rs = DeltaTable(str(p)).to_pyarrow_dataset().count_rows()
                n_spark = io.read(spark, str(p)).count()
            except Exception as e:  # noqa: BLE001 - any failure to read is the finding
                problems.append(f"{zone}/{p.name}: unreadable: {str(e).splitlines()[0][:200]}")
                continue
            if n_rs != n_spark:
                problems.append(f"{zone}/{p.name}: deltalake reads {n_rs} rows, Spark {n_spark}")
    # 2. manifest: once per (source, sha256); every file reconciles; landed copies verified
    contracts = contracts_mod.load(settings.contracts_dir)
    rows = manifest(spark, root)
    seen: dict = {}
    for r in rows:
        seen[(r["source"], r["sha256"])] = seen.get((r["source"], r["sha256"]), 0) + 1
    problems += [f"landing/_manifest: {s} {sha[:12]} listed {n} times" for (s, sha), n in seen.items() if n > 1]

    def count(zone: str, name: str, sha: str) -> int:
        path = str(root / zone / name)
        return io.read(spark, path).where(F.col("_file_sha256") == sha).count() if io.is_table(spark, path) else 0

    found_rows = 0
    for r in rows:
        src, sha = r["source"], r["sha256"]
        if contracts.source(src).loader == "readings":
            kept = count("base", "iot_reading", sha)
            dups = count("quality", "iot_reading_duplicates", sha)
            q = count("quarantine", src, sha)
            stored = kept + dups + q
        else:
            raw, q = count("raw", src, sha), count("quarantine", src, sha)
            stored = raw + q
            if (raw, q) != (r["rows_raw"], r["rows_quarantined"]):
                problems.append(f"{src}/{r['file_name']}: manifest says raw {r['rows_raw']} + quarantine "
                                f"{r['rows_quarantined']}, tables hold {raw} + {q}")
        if stored != r["rows_read"]:
            problems.append(f"{src}/{r['file_name']}: read {r['rows_read']}, stored {stored}")
        found_rows += stored
        landed = root / "landing" / src / sha / r["file_name"]
        if not landed.is_file() or sha256_file(landed) != sha:
            problems.append(f"{src}/{r['file_name']}: the landed copy does not have its manifest sha256")
    ref_files = {(m["source"], m["sha256"]): m for m in reference["manifest"]}
    mine = {(m["source"], m["sha256"]): m for m in rows}
    for key, m in ref_files.items():
        if key not in mine:
            problems.append(f"{m['source']}/{m['file_name']}: landed in the reference run, missing here")
        elif (mine[key]["rows_read"], mine[key]["rows_raw"], mine[key]["rows_quarantined"]) != (
                m["rows_read"], m["rows_raw"], m["rows_quarantined"]):
            problems.append(f"{m['source']}/{m['file_name']}: counts differ from the reference run")
    rows_lost = max(0, sum(m["rows_read"] for m in reference["manifest"]) - found_rows)
    # 3. keys of base and topic tables unique
    for tc in contracts.tables.values():
        path = str(root / tc.zone / tc.name)
        if tc.zone in ("base", "topic") and tc.key and io.is_table(spark, path):
            dup = io.read(spark, path).groupBy(*tc.key).count().where(F.col("count") > 1).limit(3).collect()
            if dup:
                problems.append(f"{tc.table}: key {list(tc.key)} duplicated, e.g. {[list(d)[:-1] for d in dup]}")
    # 4. published = reference
    pub = published(spark, root)
    for kind in ("share", "open"):
        ref, got = reference["published"][kind], pub[kind]
        for name in sorted(set(ref) | set(got)):
            if ref.get(name) != got.get(name):
                problems.append(f"{kind}/{name}: differs from the uninterrupted run "
                                f"({'missing' if name not in got else 'extra' if name not in ref else 'content'})")
    return problems, rows_lost


# ------------------------------------------------------------------ the suite

def prepare_inbox(work: Path, scale: float, seed: int) -> Path:
    """Generate the sample once; the inbox holds only the department files (no truth: no evaluation)."""
    from sample.generate import generate

    sample, inbox = work / "sample", work / "inbox"
    if not (sample / "manifest.json").exists():
        shutil.rmtree(sample, ignore_errors=True)
        generate(scale, seed, sample)
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir(parents=True)
    for p in sample.iterdir():
        if p.is_dir() and p.name != "truth":
            shutil.copytree(p, inbox / p.name)
    return inbox


def fresh_lake(path: Path, inbox: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    shutil.copytree(inbox, path / "inbox")
    return path


def stage_seconds(root: Path) -> dict:
    report = json.loads((root / "_reports" / "latest.json").read_text(encoding="utf-8"))
    return {name: s["seconds"] for name, s in report["stages"].items()}


def build_reference(spark, work: Path, inbox: Path, env: dict, timeout: float) -> dict:
    root = fresh_lake(work / "reference", inbox)
    t0 = time.time()
    run = Run(root, work / "reference.log", env)
    rc = run.finish(timeout)
    if rc != 0:
        raise SystemExit(f"the reference run failed (exit {rc}); see {work / 'reference.log'}")
    (work / "reference.seconds").write_text(f"{time.time() - t0:.1f}")
    return reference_from(spark, root, round(time.time() - t0, 1))


def reference_from(spark, root: Path, seconds: float | None = None) -> dict:
    """The reference of a finished uninterrupted run's lake (``--reuse-reference``)."""
    return {"seconds": seconds, "stages": stage_seconds(root), "manifest": manifest(spark, root),
            "published": published(spark, root), "root": str(root)}


def plan(points: int, per_cycle: int, rng: random.Random, stages: dict) -> list[list[tuple[str, float]]]:
    """Kill points (stage, delay in seconds after the stage started), grouped in cycles; each cycle
    visits the groups in pipeline order, so its kills land in ingest, then build, then publish."""
    order = [s for g in GROUPS.values() for s in g]
    groups = list(GROUPS)
    cycles, k = [], 0
    while k < points:
        n = min(per_cycle, points - k)
        picks = sorted((groups[(k + i) % len(groups)] for i in range(n)), key=groups.index)
        cycle = []
        for g in picks:
            weights = [max(1.0, stages.get(s, 1.0)) for s in GROUPS[g]]
            stage = rng.choices(GROUPS[g], weights=weights)[0]
            cycle.append((stage, round(rng.uniform(0.0, max(1.0, stages.get(stage, 1.0))), 1)))
        cycles.append(sorted(cycle, key=lambda x: order.index(x[0])))
        k += n
    return cycles


def kill_point(root: Path, work: Path, name: str, env: dict, stage: str, delay: float, ref_seconds: float,
               timeout: float, retries: int, say, logs: list[Path]) -> dict:
    """One planned kill: start `lake run` on ``root``, wait for ``stage``'s line, sleep ``delay`` and kill
    the process group. A run resumed after earlier kills may have less of the stage left to do than the
    reference run had, so it can end before the kill. Then the point is re-aimed, not just missed: the
    lake is put back as it was before the attempt (a copy is kept) and the run is repeated with the delay
    at the same fraction of the stage's duration as observed in the attempt that ended (up to ``retries``
    times). Returns {planned, delay, killed_in (None when missed), attempts, why}; every log goes to
    ``logs``."""
    fraction = min(0.95, delay / max(1.0, ref_seconds))
    snapshot = work / f"{name}-before"
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(root, snapshot, symlinks=True)
    try:
        for attempt in range(1, retries + 2):
            log = work / (f"{name}.log" if attempt == 1 else f"{name}-retry{attempt - 1}.log")
            logs.append(log)
            run = Run(root, log, env)
            if not run.wait_for_stage([stage], timeout) or run.proc.poll() is not None:
                rc = run.finish(timeout)
                why = f"the run ended (exit {rc}) before {stage} started"
            else:
                time.sleep(delay)
                if run.proc.poll() is None:
                    killed_in = run.stage
                    run.kill()
                    return {"planned": stage, "delay": delay, "killed_in": killed_in, "attempts": attempt}
                run.finish(timeout)
                why = f"the run ended before the kill ({stage} + {delay} s)"
            observed = run.stage_duration(stage)
            if attempt > retries or not observed:
                break
            shutil.rmtree(root)
            shutil.copytree(snapshot, root, symlinks=True)
            delay = round(fraction * observed, 2)
            say(f"{name}: {why}; the lake is put back and the kill re-aimed at {delay} s "
                f"({fraction:.0%} of the {observed:.1f} s {stage} took in that run)")
        return {"planned": stage, "delay": delay, "killed_in": None, "attempts": attempt, "why": why}
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


def run_suite(points: int, seed: int, work: Path, scale: float = 0.001, per_cycle: int = 7,
              timeout: float = 3600.0, reference: dict | None = None, inbox: Path | None = None,
              spark=None, say=print, reuse_reference: bool = False, only_cycles: set[int] | None = None,
              retries: int = 2) -> dict:
    """Run the suite; returns the summary (``passed``, ``kills``, ``recoveries``, ``rows_lost``, …).
    ``only_cycles``: run just these cycles of the seeded plan (the plan itself is the same), so that one
    suite can be split over processes or resumed; the summary then goes to ``summary-cycles-<list>.json``.
    ``retries``: how often a point whose run ended before its kill is re-aimed (see ``kill_point``)."""
    from lake.settings import Settings
    from lake.spark import get_spark

    t_start = time.time()
    work.mkdir(parents=True, exist_ok=True)
    env = child_env()
    spark = spark or get_spark(Settings.from_env(root=str(work / "reference"), shuffle_partitions=2,
                                                 driver_memory="2g"))
    inbox = inbox or prepare_inbox(work, scale, seed)
    done = work / "reference" / "_reports" / "latest.json"
    if reference is None and reuse_reference and done.exists():
        secs = work / "reference.seconds"
        reference = reference_from(spark, work / "reference", float(secs.read_text()) if secs.exists() else None)
        say(f"reference: reusing {work / 'reference'}")
    if reference is None:
        say(f"reference: one uninterrupted `lake run` on {inbox} ...")
        reference = build_reference(spark, work, inbox, env, timeout)
        say(f"reference: {reference['seconds']} s; stages {reference['stages']}")
    rng = random.Random(seed)
    cycles = plan(points, per_cycle, rng, reference["stages"])
    summary = {"seed": seed, "scale": scale, "points": points, "kills": 0, "missed": 0, "reaimed": 0, "recoveries": 0,
               "kills_by_stage": {}, "rows_lost": 0, "problems": [], "tracebacks": 0, "cycles": []}
    for c, cycle in enumerate(cycles, start=1):
        if only_cycles and c not in only_cycles:
            continue
        root = fresh_lake(work / f"cycle{c}", inbox)
        record = {"cycle": c, "kills": []}
        logs: list[Path] = []
        for i, (stage, delay) in enumerate(cycle, start=1):
            outcome = kill_point(root, work, f"cycle{c}-run{i}", env, stage, delay,
                                 reference["stages"].get(stage, 1.0), timeout, retries, say, logs)
            record["kills"].append(outcome)
            if outcome["killed_in"] is None:
                summary["missed"] += 1
                say(f"cycle {c} point {i}: not killed ({outcome['why']})")
                continue
            summary["kills"] += 1
            summary["reaimed"] += 1 if outcome["attempts"] > 1 else 0
            killed_in = outcome["killed_in"]
            summary["kills_by_stage"][killed_in] = summary["kills_by_stage"].get(killed_in, 0) + 1
            say(f"cycle {c} point {i}: killed during {killed_in} ({stage} + {outcome['delay']} s"
                + (f", attempt {outcome['attempts']}" if outcome["attempts"] > 1 else "") + ")")
        t0 = time.time()
        rec = Run(root, work / f"cycle{c}-recovery.log", env)
        rc = rec.finish(timeout)
        record["recovery_seconds"] = round(time.time() - t0, 1)
        problems = []
        if rc != 0:
            problems.append(f"the recovery run exited {rc} (see {rec.log_path})")
        for log_path in logs + [rec.log_path]:
            text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
            if TRACEBACK.search(text):
                summary["tracebacks"] += 1
                problems.append(f"{log_path.name}: a traceback reached the user")
        found, lost = check_lake(spark, root, reference)
        problems += found
        summary["recoveries"] += 1 if rc == 0 else 0
        summary["rows_lost"] += lost
        record["problems"] = problems
        record["rows_lost"] = lost
        summary["problems"] += [f"cycle {c}: {p}" for p in problems]
        summary["cycles"].append(record)
        say(f"cycle {c}: recovered in {record['recovery_seconds']} s; "
            + ("lake whole" if not problems else f"{len(problems)} problem(s): " + "; ".join(problems[:5])))
    summary["seconds"] = round(time.time() - t_start, 1)
    summary["reference_seconds"] = reference.get("seconds")
    summary["passed"] = not summary["problems"] and summary["kills"] >= 1
    name = "summary.json" if not only_cycles else f"summary-cycles-{'-'.join(map(str, sorted(only_cycles)))}.json"
    summary["cycles_run"] = sorted(only_cycles) if only_cycles else list(range(1, len(cycles) + 1))
    (work / name).write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=21, help="kill points (at least 20 for the documented result)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=0.001)
    ap.add_argument("--per-cycle", type=int, default=7, help="kills on one lake before its recovery run")
    ap.add_argument("--work", default="/tmp/lake-crash")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds one `lake run` may take")
    ap.add_argument("--retries", type=int, default=2,
                    help="times a point whose run ended before the kill is re-aimed on the lake as it was")
    ap.add_argument("--reuse-reference", action="store_true",
                    help="use <work>/reference from an earlier run of the suite with the same sample")
    ap.add_argument("--cycles", default="", help="comma-separated cycle numbers of the plan to run (default: all); "
                    "with --reuse-reference, a second process can run other cycles of the same plan")
    args = ap.parse_args()
    try:
        only = {int(c) for c in args.cycles.split(",") if c.strip()} or None
    except ValueError:
        ap.error(f"--cycles takes cycle numbers separated by commas, not {args.cycles!r}")
    s = run_suite(args.points, args.seed, Path(args.work), args.scale, args.per_cycle, args.timeout,
                  say=lambda m: print(m, flush=True), reuse_reference=args.reuse_reference, only_cycles=only,
                  retries=args.retries)
    print(f"\ncrash suite (seed {s['seed']}, scale {s['scale']}): {s['kills']} kills "
          f"({', '.join(f'{k} {v}' for k, v in sorted(s['kills_by_stage'].items()))}; {s['reaimed']} re-aimed), "
          f"{s['missed']} planned kills missed, {s['recoveries']} recoveries, rows lost: {s['rows_lost']}, "
          f"tracebacks: {s['tracebacks']}, {s['seconds']:.0f} s in all (reference run {s['reference_seconds']} s)")
    for p in s["problems"]:
        print(f"  problem: {p}")
    print("PASSED" if s["passed"] else "FAILED")
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
