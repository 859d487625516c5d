"""One day's increment against the full base stage, same host, same run (issue 17).

    .venv/bin/python scripts/bench_incremental.py --scale 1.0      # Daxing's size (takes a while)

Generates day-01 (the first full delivery of the eight population and legal-entity departments) and
day-02 (one day of changes: ~0.3-1 % of each department's rows, change files and snapshots), then on a
fresh lake times

* the full base stage on day-01: land the eight files, build base.population (record linkage, golden
  records, findings, conflicts, gate, history) and base.legal_entity;
* the increment on day-02: land the day's files, build both base tables incrementally (only the
  entities the day touches, one MERGE each), and the two topics built from them (only the groups
  those entities leave or enter);

and prints seconds and rows per second of each part, the ratio increment / full base stage (target
at most 10 %) and the host's yardstick (scripts/yardstick.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SOURCES = ("psb_household", "mca_residents", "hrss_insured", "nhc_vital_events", "samr_enterprises",
           "mca_social_orgs", "seo_institutions", "tax_taxpayers")


def stage(settings, folder: Path, as_of: str, topics: bool) -> dict:
    from jobs.base import incremental
    from jobs.landing import ingest
    from jobs.topic import legal_entity as t_le
    from jobs.topic import population as t_pop

    out: dict = {}
    files = [(s, p) for s in SOURCES for p in sorted((folder / s).iterdir())] if folder else []
    t = time.time()
    res = ingest.run_many(settings, files, as_of=as_of)
    out["ingest"] = {"seconds": round(time.time() - t, 1), "rows": sum(r["rows_read"] for r in res)}
    for table in ("base.population", "base.legal_entity"):
        t = time.time()
        r = incremental.build_table(settings, table, as_of)
        out[table] = {"seconds": round(time.time() - t, 1), "rows": r["rows"], "mode": r["mode"],
                      "touched": r.get("touched"), "status": r["status"]}
    if topics:
        for name, mod in (("topic.population_by_town_age_band", t_pop), ("topic.legal_entity_by_town_industry", t_le)):
            t = time.time()
            r = mod.build(settings, as_of)[0]
            out[name] = {"seconds": round(time.time() - t, 1), "rows": r["rows"], "mode": r.get("mode"),
                         "status": r["status"]}
    out["seconds"] = round(sum(v["seconds"] for v in out.values() if isinstance(v, dict)), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", help="folder for the deliveries and the lake (default: a new temporary folder)")
    args = ap.parse_args()
    from lake.settings import Settings
    from sample.generate_days import generate_days
    from scripts.yardstick import announce

    announce()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_incremental_"))
    t = time.time()
    if (work / "days" / "day-02" / "manifest.json").is_file():  # a --work folder from an earlier run
        manifests = [json.loads((work / "days" / f"day-0{k}" / "manifest.json").read_text(encoding="utf-8"))
                     for k in (1, 2)]
    else:
        manifests = generate_days(2, args.scale, args.seed, work / "days", iot_days=0)
    print(f"deliveries day-01 and day-02 at scale {args.scale} ready in {time.time() - t:.0f}s "
          f"(day-02: {sum(f['rows'] for f in manifests[1]['files']):,} rows in {len(manifests[1]['files'])} files)")
    settings = Settings.from_env(root=str(work / "lake"))
    full = stage(settings, work / "days" / "day-01", manifests[0]["as_of"], topics=False)
    print("full base stage (day-01):", json.dumps(full, ensure_ascii=False))
    # the topics once in full, so that the increment finds them built (not part of either time)
    from jobs.topic import legal_entity as t_le
    from jobs.topic import population as t_pop

    t = time.time()
    t_pop.build(settings, manifests[0]["as_of"])
    t_le.build(settings, manifests[0]["as_of"])
    print(f"topics built in full after day-01: {time.time() - t:.1f}s (not counted)")
    inc = stage(settings, work / "days" / "day-02", manifests[1]["as_of"], topics=True)
    print("increment (day-02):", json.dumps(inc, ensure_ascii=False))
    ratio = inc["seconds"] / full["seconds"]
    print(f"full base stage {full['seconds']:.1f}s ({full['ingest']['rows'] / full['seconds']:,.0f} rows/s), "
          f"increment through base and topics {inc['seconds']:.1f}s ({inc['ingest']['rows'] / inc['seconds']:,.0f} "
          f"delivered rows/s, {inc['base.population']['touched']:,} + {inc['base.legal_entity']['touched']:,} "
          f"entities touched); increment / full = {ratio:.1%} (target <= 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
