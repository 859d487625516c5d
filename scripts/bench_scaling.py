"""Cost as the work grows: the base-database stage (scripts/bench_base.py: ingest of the eight
department files, record linkage, golden records, gates) at several scales, each on a fresh lake in
its own process, then the growth exponent and the projection to Beijing.

For every scale it prints seconds, rows/s and peak memory per stage; then, per stage and for the
whole stage, the growth exponent b of ``seconds = a * rows^b`` (least squares on log-log), the
projection to Beijing (``--beijing``, 12x Daxing: scale 12.0) and the number of cores that would keep
the stage under its target (``--target``, 600 s), assuming the measured throughput of this machine's
2 cores divides evenly over more (the shuffles and commits that do not divide make it a lower bound).

    .venv/bin/python scripts/bench_scaling.py                         # local[2]: scales 0.1 0.25 0.5
    .venv/bin/python scripts/bench_scaling.py --scales 0.1,0.25,0.5,1.0,2.0
    set -a; . cluster.env; set +a                                     # `lake cluster up --env-file cluster.env`
    .venv/bin/python scripts/bench_scaling.py --cluster --scales 0.02,0.05

``--cluster`` runs on LAKE_SPARK_MASTER with the lake under LAKE_ROOT (s3a://...); the peak memory
then adds the Spark workers' executors (their processes and Python workers) to the driver's tree.
Results go to ``<out>/bench_scaling.json`` (``--out``, default /tmp/lake-scaling).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import yardstick  # noqa: E402  scripts/yardstick.py



def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares of log(y) = log(a) + b log(x): returns (a, b)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((x - mx) ** 2 for x in lx)
    if n < 2 or sxx == 0:
        raise ValueError("the growth exponent needs at least two different sizes")
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx
    return math.exp(my - b * mx), b


class TreePeak(threading.Thread):
    """Peak resident memory of a process tree plus, with ``extra_roots``, other trees (the workers')."""

    def __init__(self, pid: int, extra_roots: list[int], interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.extra, self.interval = pid, extra_roots, interval
        self.peak = 0
        self.running = True

    @staticmethod
    def _tree(pid: int, include_root: bool = True) -> int:
        try:
            p = psutil.Process(pid)
            procs = ([p] if include_root else []) + p.children(recursive=True)
        except psutil.Error:
            return 0
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while self.running:
            # a worker daemon itself is the cluster's, not the job's: only its children (executors)
            m = self._tree(self.pid) + sum(self._tree(w, include_root=False) for w in self.extra)
            self.peak = max(self.peak, m)
            time.sleep(self.interval)


def worker_pids() -> list[int]:
    from lake.cluster import procs

    out = []
    for f in sorted((procs.home() / "pids").glob("spark-worker-*.pid")):
        pid = procs.running(f.stem)
        if pid:
            out.append(pid)
    return out


def run_scale(scale: float, seed: int, out: Path, cluster: bool, driver_memory: str) -> dict:
    """bench_base.py at ``scale`` in its own process (one Spark session each); its JSON plus the peak."""
    folder = out / ("cluster" if cluster else "local") / f"scale-{scale}"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / "bench_base.py"), "--scale", str(scale), "--seed", str(seed),
           "--out", str(folder), "--driver-memory", driver_memory]
    env = dict(os.environ)
    if cluster:
        root = env.get("LAKE_ROOT", "")
        if not root.startswith("s3a://") or not env.get("LAKE_SPARK_MASTER", "").startswith("spark://"):
            raise SystemExit("--cluster needs LAKE_ROOT=s3a://... and LAKE_SPARK_MASTER=spark://... "
                             "(export the environment `lake cluster up --env-file` writes)")
        cmd += ["--root", f"{root.rstrip('/')}-bench-{scale}"]
    else:
        for k in [k for k in env if k.startswith("LAKE_S3_") or k in ("LAKE_ROOT", "LAKE_SPARK_MASTER")]:
            env.pop(k)
    extra = worker_pids() if cluster else []
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, cwd=str(HERE.parent))
    mem = TreePeak(p.pid, extra)
    mem.start()
    rc = p.wait()
    mem.running = False
    mem.join()
    if rc != 0:
        # a larger scale may not fit this machine ("2.0 where memory allows"): keep the others
        return {"scale": scale, "failed": f"bench_base.py --scale {scale} failed (exit {rc}; see its output above)",
                "wall_seconds": round(time.time() - t0, 1), "peak_memory_gb_with_executors": round(mem.peak / 2**30, 2)}
    res = json.loads((folder / "bench_base.json").read_text(encoding="utf-8"))
    res["wall_seconds"] = round(time.time() - t0, 1)
    res["peak_memory_gb_with_executors"] = round(mem.peak / 2**30, 2)
    return res


def analyse(results: list[dict], beijing: float, target: float, cores_here: int) -> dict:
    """Growth exponents per stage and for the base stage; the projection to ``beijing``."""
    if len(results) < 2:
        return {}
    scales = [r["scale"] for r in results]
    rows = [r["rows"] for r in results]
    rows_per_scale = sum(r / s for r, s in zip(rows, scales)) / len(rows)  # rows at scale 1.0
    out: dict = {"rows_at_scale_1": int(rows_per_scale), "beijing_scale": beijing,
                 "beijing_rows": int(rows_per_scale * beijing), "target_seconds": target, "stages": {}}
    series = {name: [r["stages"][name]["seconds"] for r in results] for name in results[0]["stages"]}
    series["base-database stage"] = [r["base_stage_seconds"] for r in results]
    for name, secs in series.items():
        if min(secs) <= 0:
            continue
        a, b = fit(rows, secs)
        projected = a * (rows_per_scale * beijing) ** b
        out["stages"][name] = {"exponent": round(b, 3), "beijing_seconds": round(projected),
                               "cores_for_target": math.ceil(cores_here * projected / target)}
    peaks = [r.get("peak_memory_gb_with_executors") or r["peak_memory_gb"] for r in results]
    am, bm = fit(rows, peaks)
    out["memory"] = {"exponent": round(bm, 3), "beijing_gb": round(am * (rows_per_scale * beijing) ** bm, 1)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="0.1,0.25,0.5", help="comma-separated scales (1.0 = Daxing)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/lake-scaling")
    ap.add_argument("--cluster", action="store_true", help="on LAKE_SPARK_MASTER with an s3a:// LAKE_ROOT")
    ap.add_argument("--beijing", type=float, default=12.0, help="Beijing's size in Daxings")
    ap.add_argument("--target", type=float, default=600.0, help="the stage's target in seconds")
    ap.add_argument("--driver-memory", default="8g")
    args = ap.parse_args(argv)
    try:
        scales = sorted({float(s) for s in args.scales.split(",") if s.strip()})
    except ValueError:
        print(f"error: --scales must be numbers separated by commas, got '{args.scales}'", file=sys.stderr)
        return 2
    if not scales or min(scales) <= 0:
        print("error: --scales must be positive", file=sys.stderr)
        return 2
    out = Path(args.out)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cores {os.cpu_count()}", flush=True)
    doc = {"mode": "cluster" if args.cluster else "local", "yardstick_seconds": yardstick.announce(),
           "load_average_before": [round(x, 2) for x in load], "cores": os.cpu_count(), "runs": [], "failed": []}
    for s in scales:
        print(f"\n=== scale {s} ({doc['mode']})", flush=True)
        run = run_scale(s, args.seed, out, args.cluster, args.driver_memory)
        (doc["failed"] if "failed" in run else doc["runs"]).append(run)
        if "failed" in run:
            print(f"scale {s}: {run['failed']} after {run['wall_seconds']} s, peak {run['peak_memory_gb_with_executors']} GB;"
                  " left out of the fit", flush=True)
    doc["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    doc["analysis"] = analyse(doc["runs"], args.beijing, args.target, os.cpu_count() or 2)

    print(f"\n{'scale':>6} {'rows':>10} {'stage':32} {'seconds':>8} {'rows/s':>9} {'peak GB':>8}")
    for r in doc["runs"]:
        for name, st in r["stages"].items():
            n = st.get("rows", st.get("rows_in", 0))
            print(f"{r['scale']:>6} {n:>10,} {name:32} {st['seconds']:>8.1f} {st['rows_per_second']:>9,} "
                  f"{st.get('peak_memory_gb', 0):>8.2f}")
        peak = r.get("peak_memory_gb_with_executors", r["peak_memory_gb"])
        print(f"{r['scale']:>6} {r['rows']:>10,} {'base-database stage':32} {r['base_stage_seconds']:>8.1f} "
              f"{r['rows_per_second']:>9,} {peak:>8.2f}")
    an = doc["analysis"]
    if an:
        print(f"\ngrowth (seconds = a * rows^b, least squares on log-log over {len(scales)} scales); Beijing = "
              f"{an['beijing_scale']:g} x Daxing = {an['beijing_rows']:,} rows; target {an['target_seconds']:.0f} s")
        print(f"{'stage':32} {'b':>6} {'Beijing s':>10} {'cores for target':>17}")
        for name, st in an["stages"].items():
            print(f"{name:32} {st['exponent']:>6.2f} {st['beijing_seconds']:>10,} {st['cores_for_target']:>17}")
        print(f"peak memory: exponent {an['memory']['exponent']:.2f}, Beijing {an['memory']['beijing_gb']:.1f} GB "
              f"(in all, across the cluster)")
        print(f"cores for target: {os.cpu_count()} cores x projected seconds / target, i.e. the measured throughput "
              "divided evenly (a lower bound: shuffles and Delta commits do not divide)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_scaling-{doc['mode']}.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    print(f"written {path}")
    for f in doc["failed"]:
        print(f"not measured: {f['failed']}", file=sys.stderr)
    return 1 if not doc["runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
