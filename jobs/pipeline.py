"""The whole pipeline once, in-process: land every row-by-row source in the inbox, build the
population and legal-entity base databases, the base map (boundaries, POIs, standard addresses), the
sensing ledger and every delivery day of sensor readings with their health and topics, check
timeliness, build the other topic tables through their gates, write the department quality reports,
publish share and open zones, and write a run report.

The run report (``_reports/run-<started>.json`` and ``_reports/latest.json``) records rows in and
out and seconds per stage. When the inbox holds sample data from ``lake generate`` (its
``truth/`` folder), the run also measures detection precision and recall per defect type against
that ground truth (``jobs.evaluate``) and keeps the table in the report under ``evaluation``. Reports
are an audit log and grow by one file per run; every Delta table and open-zone file is unchanged by a
run whose inputs did not change.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from lake import contracts as contracts_mod
from lake import io, landing
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from jobs import address_library, build_base, build_topic, evaluate, ingest, iot, publish, reports, spatial, timeliness

STAGES = ("ingest", "build_base", "spatial", "addresses", "poi", "iot", "timeliness", "build_topic", "reports",
          "publish")


def reading_days(settings: Settings) -> list[str]:
    """Delivery days (``YYYY-MM-DD``) of the sensor-reading files in the inbox, oldest first."""
    from pathlib import Path
    import re

    contracts = contracts_mod.load(settings.contracts_dir)
    days = set()
    for sc in contracts.sources.values():
        if sc.loader != "readings":
            continue
        for f in ingest.inbox_files(settings, sc.source):
            m = re.search(r"_(\d{8})\.[^.]+$", Path(f).name)
            if m:
                d = m.group(1)
                days.add(f"{d[:4]}-{d[4:6]}-{d[6:]}")
    return sorted(days)


def run_iot(settings: Settings, as_of: str) -> dict:
    """The sensing ledger, then every delivery day of readings in the inbox (each idempotent)."""
    days = reading_days(settings)
    if not days:
        return {"ledger": iot.build_devices(settings, as_of), "days": []}
    return {"days": [iot.run_day(settings, d) for d in days]}


def run(settings: Settings, as_of: str, progress=None) -> dict:
    """Run every stage; ``progress(stage, i, n)`` is called before each stage (for the CLI)."""
    started = datetime.now(timezone.utc)
    contracts = contracts_mod.load(settings.contracts_dir)
    items = landing.inbox_items(settings, contracts.row_sources())
    if not items and not reading_days(settings) and not landing.manifest_rows(settings):
        # a new lake and an empty inbox: nothing to build either (no JVM is started)
        return {"nothing_to_do": landing.nothing_message(settings) + "; the lake has no data yet",
                "started_at": started.isoformat(timespec="seconds"), "as_of": as_of, "root": settings.root}
    get_spark(settings)
    report: dict = {"started_at": started.isoformat(timespec="seconds"), "as_of": as_of, "root": settings.root,
                    "stages": {}}

    def stage(name, fn):
        if progress:
            progress(name, STAGES.index(name) + 1, len(STAGES))
        t0 = time.time()
        result = fn()
        report["stages"][name] = {"seconds": round(time.time() - t0, 2), "result": result}
        return result

    if not landing.has_new(stage("ingest", lambda: ingest.run_many(settings, items))):
        log.info("%s", landing.nothing_message(settings))
    stage("build_base", lambda: build_base.run(settings, as_of))
    stage("spatial", lambda: spatial.run(settings, as_of, ("boundaries",)))
    stage("addresses", lambda: address_library.run(settings, as_of))
    stage("poi", lambda: spatial.run(settings, as_of, ("poi",)))  # after the addresses: their codes
    stage("iot", lambda: run_iot(settings, as_of))
    stage("timeliness", lambda: timeliness.run(settings, as_of))  # after the readings were landed
    stage("build_topic", lambda: build_topic.run(settings, as_of))
    stage("reports", lambda: reports.run(settings, as_of))
    stage("publish", lambda: publish.run(settings))
    report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["seconds"] = round(sum(s["seconds"] for s in report["stages"].values()), 2)
    ing = report["stages"]["ingest"]["result"]
    report["rows"] = {
        "read": sum(r["rows_read"] for r in ing if not r["skipped"]),
        "raw": sum(r["rows_raw"] for r in ing),
        "quarantined": sum(r["rows_quarantined"] for r in ing),
        "findings_at_ingest": sum(r["findings"] for r in ing),
        "files_skipped_already_ingested": sum(1 for r in ing if r["skipped"]),
    }
    tl = report["stages"]["timeliness"]["result"]
    report["stale_sources"] = [f"{s['source']} ({s['department']}): {s['message']}" for s in tl["stale"]]
    rep = report["stages"]["reports"]["result"]
    report["quality_reports"] = {"run_id": rep["run_id"], "index": rep["index"],
                                 "scores": {d["department"]: d["score"] for d in rep["departments"]}}
    if "://" not in settings.inbox and evaluate.has_truth(settings.inbox):
        t0 = time.time()
        report["evaluation"] = evaluate.evaluate(get_spark(settings), settings, settings.inbox)
        report["evaluation"]["seconds"] = round(time.time() - t0, 2)
    write_report(settings, report, started)
    return report


def write_report(settings: Settings, report: dict, started: datetime) -> str:
    data = json.dumps(report, ensure_ascii=False, indent=2, default=str).encode("utf-8")
    uri = settings.path("_reports", f"run-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    io.write_bytes(uri, data)
    io.write_bytes(settings.path("_reports", "latest.json"), data)
    report["report_path"] = uri
    log.info("run report: %s", uri)
    return uri
