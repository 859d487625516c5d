"""Measure the social-credit, e-licence and macro-economy stages: generate sample data at a scale, run
the whole pipeline on a fresh lake (these base tables need base.legal_entity and base.population), and
print the seconds of landing the sixteen new sources' files and of the three build jobs, the rows, and
precision and recall of every defect type the new sources carry. The numbers come from the run report
(``_reports/latest.json``) and are written to ``<out>/bench_governance.json``. Exit 1 when a defect
type of the new sources is below 0.99.

    .venv/bin/python scripts/bench_governance.py --scale 0.1 --seed 7 --out /tmp/lake-gov
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import yardstick  # scripts/yardstick.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

JOBS = ("base.credit", "base.e_licence", "base.macro")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="/tmp/lake-gov")
    ap.add_argument("--as-of", default="2026-11-01")
    args = ap.parse_args()

    from jobs import pipeline
    from lake.settings import Settings
    from sample.generate import generate
    from sample.generate_governance import GOVERNANCE_SOURCES

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    result: dict = {"scale": args.scale, "seed": args.seed, "yardstick_seconds": yardstick.announce()}
    settings = Settings.from_env(root=str(out / "lake"), inbox=str(out / "inbox"))
    t0 = time.time()
    manifest = generate(args.scale, args.seed, Path(settings.inbox))
    result["generate_seconds"] = round(time.time() - t0, 1)
    result["rows_generated"] = sum(f["rows"] for f in manifest["governance_files"])
    report = pipeline.run(settings, args.as_of)
    landed = [r for r in report["stages"]["ingest"]["result"] if r["source"] in GOVERNANCE_SOURCES]
    result["ingest"] = {"files": len(landed), "rows": sum(r["rows_read"] for r in landed),
                        "seconds_summed": round(sum(r["seconds"] for r in landed), 1),
                        "note": f"{settings.ingest_workers} sources landed at a time: the files' seconds overlap"}
    result["jobs"] = {j: {"seconds": report["stages"][j]["seconds"],
                          "tables": {r["table"]: {"status": r["status"], "rows": r["rows"]}
                                     for r in report["stages"][j]["result"]}} for j in JOBS}
    result["pipeline_seconds"] = report["seconds"]
    with open(Path(settings.inbox) / "truth" / "defects.csv", encoding="utf-8") as f:
        mine = {r["defect_type"] for r in csv.DictReader(f) if r["source"] in GOVERNANCE_SOURCES}
    ev = report["evaluation"]["defects"]
    result["detection"] = {t: {k: ev[t][k] for k in ("truth", "found", "precision", "recall")} for t in sorted(mine)}
    (out / "bench_governance.json").write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"generated {result['rows_generated']:,} rows of the new sources (all sources: {result['generate_seconds']} s)")
    print(f"ingest of {len(landed)} files, {result['ingest']['rows']:,} rows: {result['ingest']['seconds_summed']} s summed")
    for j, v in result["jobs"].items():
        print(f"{j:16s} {v['seconds']:7.1f} s  " + ", ".join(f"{t} {x['rows']:,}" for t, x in v["tables"].items()))
    print(f"whole pipeline {report['seconds']:.0f} s")
    ok = True
    for t, v in result["detection"].items():
        good = v["precision"] >= 0.99 and v["recall"] >= 0.99
        ok &= good
        print(f"{t:30s} {v['truth']:7,} {v['found']:7,} {v['precision']:.4f} {v['recall']:.4f} {'ok' if good else 'BELOW 0.99'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
