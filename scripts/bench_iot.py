"""Benchmark one day of IoT sensing end to end: the device ledger, the day's readings, device health
and the IoT topics — at a given scale (1.0 = Daxing: ~130 K devices, ~20 M reading rows a day) on a
fresh lake.

The sample files (sample.generate_iot, one delivery day) are generated once into a cache folder and
reused. Stages timed: ledger ingest (jobs/landing/ingest.py, row by row), ledger build (base.iot_device),
readings (jobs.base.iot_reading.ingest_readings, with its staging / check / write steps), health
(topic.device_health) and topics (the other five IoT topics). Prints seconds, rows/s and share of the
total per stage, the peak resident memory of this process and its children (the Spark JVM and its
Python workers) and the detection precision / recall (sample.evaluate_iot); writes everything to
``<out>/bench_iot.json``. Targets: the day in at most 600 s, peak memory at most 12 GB, precision and
recall of every defect type and health condition (and the town assignment accuracy) at least 0.99.
The exit status is 1, with a message naming each target missed (also in the JSON's ``failures``),
when one is missed, so that a scheduled run or CI can act on it; the time target applies to the
measured day (at a smaller scale the extrapolation to 1.0 is printed for information only), and
``--no-evaluate`` leaves out the precision / recall target.

    .venv/bin/python scripts/bench_iot.py --scale 0.1          # a tenth; numbers extrapolated to 1.0
    .venv/bin/python scripts/bench_iot.py --scale 1.0 --out /tmp/bench-iot
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path

from peak_memory import PeakMemory  # scripts/peak_memory.py (the script's folder is on sys.path)
import yardstick  # scripts/yardstick.py

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FULL_SCALE_ROWS = 20_000_000  # reading rows of a day at scale 1.0 (what the extrapolation assumes)


def generate(cache: Path, scale: float, seed: int, day: dt.date) -> dict:
    """The sample files in ``cache`` (generated when missing or made with other parameters)."""
    from sample.generate_iot import generate_iot

    manifest_path = cache / "iot_manifest.json"
    want = {"scale": scale, "seed": seed, "extract_date": day.isoformat(), "days": [day.isoformat()]}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("generator") == want and all((cache / f["path"]).exists() for f in manifest["files"]):
            print(f"sample files: reusing {cache}")
            return manifest
        shutil.rmtree(cache)
    t0 = time.time()
    manifest = generate_iot(scale, seed, cache, days=[day], extract_date=day)
    print(f"sample files: generated into {cache} in {time.time() - t0:.1f}s")
    return manifest


def write_admin_boundary(spark, settings) -> None:
    """base.admin_boundary from lake.geo's 22 units (setup, not timed: jobs/spatial.py builds it in
    production from the planning bureau's GeoJSON)."""
    import shapely.geometry

    from lake import geo, io
    from sample import basemap

    rows = [(b["code"], b["name"], b["kind"], geo.area_km2(b["geometry"]),
             json.dumps(shapely.geometry.mapping(b["geometry"]), separators=(",", ":")))
            for b in basemap.district_boundaries()]
    io.overwrite(spark.createDataFrame(rows, "code string, name string, kind string, area_km2 double, geometry string"),
                 io.table_path(settings, "base", "admin_boundary"), {"kind": "bench setup"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--day", default="2026-11-01", help="the delivery day (also the ledger's extract date)")
    ap.add_argument("--cache", default=None, help="folder for the sample files (default .cache/bench_iot/<scale>-<seed>)")
    ap.add_argument("--out", default="/tmp/lake-bench-iot", help="the lake root (deleted first) and bench_iot.json")
    ap.add_argument("--driver-memory", default="8g")
    ap.add_argument("--shuffle-partitions", type=int, default=None,
                    help="spark.sql.shuffle.partitions (default: 8 per 10 M reading rows, at least 4)")
    ap.add_argument("--no-evaluate", action="store_true", help="skip the precision / recall measurement")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="target: the day's seconds (default 600)")
    ap.add_argument("--max-memory-gb", type=float, default=12.0, help="target: peak memory in GB (default 12)")
    ap.add_argument("--min-score", type=float, default=0.99,
                    help="target: every precision, recall and the town accuracy (default 0.99)")
    args = ap.parse_args()
    day = dt.date.fromisoformat(args.day)
    cache = Path(args.cache or REPO / ".cache" / "bench_iot" / f"{args.scale:g}-{args.seed}")
    out = Path(args.out)

    machine_speed = yardstick.announce()  # this machine's speed today, before Spark starts
    mem = PeakMemory()
    mem.start()
    manifest = generate(cache, args.scale, args.seed, day)
    reading_rows = sum(f["rows"] for f in manifest["files"] if f["source"].startswith("iot_readings"))
    partitions = args.shuffle_partitions or max(4, round(8 * reading_rows / 10_000_000))

    from jobs.base import iot_device, iot_reading
    from jobs.landing import ingest
    from jobs.topic import sensing
    from sample import evaluate_iot
    from lake.settings import Settings
    from lake.spark import get_spark

    if out.exists():
        shutil.rmtree(out)
    settings = Settings.from_env(root=str(out / "lake"), inbox=str(cache), driver_memory=args.driver_memory,
                                 shuffle_partitions=partitions)
    t0 = time.time()
    spark = get_spark(settings)
    print(f"spark: started in {time.time() - t0:.1f}s (driver memory {args.driver_memory}, "
          f"{partitions} shuffle partitions)")
    write_admin_boundary(spark, settings)

    stages: dict[str, dict] = {}

    def stage(name: str, fn, rows_of):
        mem.stage = name
        t = time.time()
        result = fn()
        seconds = time.time() - t
        rows = rows_of(result)
        stages[name] = {"seconds": round(seconds, 2), "rows": rows,
                        "rows_per_second": round(rows / seconds) if seconds > 0 else None}
        print(f"{name:>14}: {seconds:8.1f}s  {rows:>12,} rows  {stages[name]['rows_per_second'] or 0:>10,} rows/s",
              flush=True)
        mem.stage = ""
        return result

    ledger_in = stage("ledger_ingest", lambda: ingest.run(settings, "iot_devices"),
                      lambda r: sum(x["rows_read"] for x in r))
    ledger = stage("ledger_build", lambda: iot_device.build_devices(settings, day, spark), lambda r: r["rows"])
    readings = stage("readings", lambda: iot_reading.ingest_readings(settings, day, spark), lambda r: r["rows_read"])
    stages["readings"]["steps"] = readings.get("step_seconds")
    days = readings["reading_days"] or [day.isoformat()]

    holder = {}

    def health():
        holder["data"] = sensing.day_data(spark, settings, days)
        return sensing.device_health(settings, days, spark, holder["data"])

    stage("health", health, lambda r: readings["kept"])
    topics = stage("topics", lambda: sensing.build_topics(settings, days, spark, holder["data"]), lambda r: readings["kept"])
    holder["data"].release()
    total = sum(s["seconds"] for s in stages.values())
    mem.stop()
    peak_gb = mem.peak / 2**30

    print(f"\n{'stage':>14}  {'seconds':>8}  {'share':>6}  {'rows/s':>10}")
    for name, s in stages.items():
        print(f"{name:>14}  {s['seconds']:8.1f}  {s['seconds'] / total:6.1%}  {s['rows_per_second'] or 0:>10,}"
              f"  peak {mem.stage_peaks.get(name, 0) / 2**30:.1f} GB")
    print(f"{'total':>14}  {total:8.1f}        rows/s over the day's readings: {reading_rows / total:,.0f}")
    print(f"peak memory (this process + JVM + workers): {peak_gb:.2f} GB")
    if readings.get("step_seconds"):
        print("readings steps: " + ", ".join(f"{k} {v}s" for k, v in readings["step_seconds"].items()))
    print("topics: " + ", ".join(f"{t['table']} {t['status']} {t['rows']} rows {t['seconds']}s" for t in topics))
    extrapolated = None
    if args.scale < 1.0:
        factor = FULL_SCALE_ROWS / max(reading_rows, 1)
        data = sum(stages[s]["seconds"] for s in ("readings", "health", "topics"))
        ledger_s = stages["ledger_ingest"]["seconds"] + stages["ledger_build"]["seconds"]
        extrapolated = round(ledger_s * (1.0 / args.scale) + data * factor)
        print(f"extrapolated to scale 1.0 (every second taken as proportional to rows, fixed costs included: "
              f"an upper bound): ~{extrapolated} s")

    evaluation = None
    if not args.no_evaluate:
        t = time.time()
        evaluation = evaluate_iot.evaluate(spark, settings, cache)
        print(f"\ndetection against the generator's truth ({time.time() - t:.1f}s):")
        for part in ("readings", "ledger", "health"):
            for k, v in evaluation.get(part, {}).items():
                print(f"  {part:>8} {k:<28} truth {v['truth']:>8,} found {v['found']:>8,} "
                      f"precision {v['precision']:.4f} recall {v['recall']:.4f}")
        if evaluation.get("locations"):
            print(f"  town assignment accuracy {evaluation['locations']['accuracy']:.4f} "
                  f"on {evaluation['locations']['devices']:,} devices")
        print(f"  passed (all >= 0.99): {evaluation['passed']}")

    failures = missed_targets(total, peak_gb, evaluation, args.max_seconds, args.max_memory_gb, args.min_score)
    report = {"scale": args.scale, "seed": args.seed, "day": day.isoformat(), "reading_rows": reading_rows,
              "devices": ledger["rows"], "shuffle_partitions": partitions, "driver_memory": args.driver_memory,
              "yardstick_seconds": machine_speed, "stages": stages, "total_seconds": round(total, 2), "peak_memory_gb": round(peak_gb, 2),
              "stage_peak_memory_gb": {k: round(v / 2**30, 2) for k, v in mem.stage_peaks.items()},
              "extrapolated_seconds_at_scale_1": extrapolated, "readings": readings, "ledger": ledger,
              "ledger_files": ledger_in, "evaluation": evaluation,
              "targets": {"seconds": args.max_seconds, "memory_gb": args.max_memory_gb,
                          "min_precision_recall": None if evaluation is None else args.min_score},
              "failures": failures, "passed": not failures}
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_iot.json").write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    print(f"\nwritten {out / 'bench_iot.json'}")
    spark.stop()
    if failures:
        print("\nFAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("all targets met")


def missed_targets(seconds: float, peak_gb: float, evaluation: dict | None, max_seconds: float, max_memory_gb: float,
                   min_score: float) -> list[str]:
    """One message per target missed: time, memory, and each precision / recall (or the town
    assignment accuracy) below ``min_score``; no precision target without an evaluation."""
    out = []
    if seconds > max_seconds:
        out.append(f"the day took {seconds:.1f} s, more than the {max_seconds:g} s target")
    if peak_gb > max_memory_gb:
        out.append(f"peak memory {peak_gb:.2f} GB is more than the {max_memory_gb:g} GB target")
    for part in ("readings", "ledger", "health"):
        for name, v in ((evaluation or {}).get(part) or {}).items():
            low = [f"{k} {v[k]:.4f}" for k in ("precision", "recall") if v[k] < min_score]
            if low:
                out.append(f"{part} {name}: {', '.join(low)} below {min_score:g}")
    accuracy = ((evaluation or {}).get("locations") or {}).get("accuracy")
    if accuracy is not None and accuracy < min_score:
        out.append(f"town assignment accuracy {accuracy:.4f} below {min_score:g}")
    return out


if __name__ == "__main__":
    main()
