"""Benchmark the base-database stage: ingest every department file, link rows without an ID, build the
golden records, conflicts and findings, and pass the gates — at a given scale (1.0 = Daxing: 1.81 M
people, 144 K legal entities) on a fresh lake.

Prints seconds and rows per second per stage, the peak memory of this process plus its JVM, and writes
the numbers to ``<out>/bench_base.json``. Usage:

    .venv/bin/python scripts/bench_base.py --scale 1.0 --seed 1 --out /tmp/bench
    .venv/bin/python scripts/bench_base.py --scale 0.1 --root s3a://lake/bench   # with `lake cluster up`'s env

The lake is ``<out>/lake`` unless ``--root`` names another (a folder or an s3a:// URI, emptied first);
the Spark master is LAKE_SPARK_MASTER (default local[2]). Peak memory is this process's tree (the
driver's Python and JVM and, with local[*], the executors); per stage too (``peak_memory_gb``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from peak_memory import PeakMemory  # scripts/peak_memory.py (the script's folder is on sys.path)
import yardstick  # scripts/yardstick.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="/tmp/lake-bench")
    ap.add_argument("--as-of", default="2026-11-01")
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--root", default="", help="lake root (folder or s3a:// URI; default <out>/lake); emptied first")
    args = ap.parse_args()

    from jobs.base import golden
    from jobs.landing import ingest
    from lake import registry
    from lake import contracts as contracts_mod
    from sample.generate import generate
    from lake.settings import Settings
    from lake.spark import get_spark

    out = Path(args.out)
    data = out / f"data-{args.scale}-{args.seed}"
    results: dict = {"scale": args.scale, "seed": args.seed, "stages": {},
                     "yardstick_seconds": yardstick.announce()}  # this machine's speed today, before Spark starts
    mem = PeakMemory()
    mem.start()

    if not (data / "manifest.json").exists():
        t0 = time.time()
        manifest = generate(args.scale, args.seed, data, iot_days=0)  # the readings have bench_iot.py
        results["generate_seconds"] = round(time.time() - t0, 1)
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    root = args.root or str(out / "lake")
    if "://" in root:
        from lake import io

        io.delete_dir(Settings.from_env(root=root).root)
    else:
        shutil.rmtree(root, ignore_errors=True)
    settings = Settings.from_env(root=root, inbox=str(data), driver_memory=args.driver_memory)
    results["root"], results["master"] = settings.root, settings.spark_master
    t_all = time.time()
    t0 = time.time()
    get_spark(settings)
    results["spark_start_seconds"] = round(time.time() - t0, 1)

    contracts = contracts_mod.load(settings.contracts_dir)
    by_source: dict[str, list[str]] = {}
    for f in manifest["files"]:
        by_source.setdefault(f["source"], []).append(str(data / f["path"]))
    rows_total = 0
    t_ingest = time.time()
    mem.stage = "ingest (all)"
    items = [(source, path) for source in sorted(by_source) for path in by_source[source]]
    for res in ingest.run_many(settings, items):
        n = res["rows_read"]
        rows_total += n
        secs = res["seconds"]
        results["stages"][f"ingest {res['source']}"] = {"rows": n, "seconds": round(secs, 1), "rows_per_second": int(n / secs)}
        print(f"ingest {res['source']:20s} {n:>10,} rows {secs:7.1f} s {n / secs:>10,.0f} rows/s "
              f"({settings.ingest_workers} sources landed at a time: these seconds overlap)", flush=True)
    results["stages"]["ingest (all)"] = {"rows": rows_total, "seconds": round(time.time() - t_ingest, 1),
                                         "rows_per_second": int(rows_total / (time.time() - t_ingest)),
                                         "peak_memory_gb": round(mem.stage_peaks.get("ingest (all)", 0) / 2**30, 2)}
    # the golden-record tables (the base map and the ledger have their own benchmarks)
    reg = registry.load(settings.contracts_dir)
    for t in ("base.legal_entity", "base.population"):
        tc = contracts.table(t)
        n_in = sum(sum(r["rows"] for r in manifest["files"] if r["source"] == s) for s in golden.sources_used(tc))
        t0 = time.time()
        mem.stage = f"build {t}"
        res = reg.job_of(t).load().build(settings, args.as_of)[0]
        secs = time.time() - t0
        results["stages"][f"build {t}"] = {"rows_in": n_in, "rows_out": res["rows"], "findings": res["findings"],
                                            "linkage": res.get("linkage"), "status": res["status"],
                                            "seconds": round(secs, 1), "rows_per_second": int(n_in / secs),
                                            "peak_memory_gb": round(mem.stage_peaks.get(f"build {t}", 0) / 2**30, 2)}
        print(f"build  {t:20s} {n_in:>10,} rows in, {res['rows']:,} out, {res['findings']:,} findings, "
              f"{secs:7.1f} s {n_in / secs:>10,.0f} rows/s  {res['status']}", flush=True)
    total = time.time() - t_all
    mem.stop()
    results["base_stage_seconds"] = round(total, 1)
    results["rows"] = rows_total
    results["rows_per_second"] = int(rows_total / total)
    results["peak_memory_gb"] = round(mem.peak / 2**30, 2)
    print(f"\nbase-database stage: {rows_total:,} rows in {total:.1f} s ({rows_total / total:,.0f} rows/s), "
          f"peak memory {mem.peak / 2**30:.2f} GB (limit 10 min, 12 GB)")
    (out / "bench_base.json").write_text(json.dumps(results, ensure_ascii=False, indent=2))
    print(f"written {out / 'bench_base.json'}")


if __name__ == "__main__":
    main()
