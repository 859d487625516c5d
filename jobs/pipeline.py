"""The whole pipeline once, in-process: ingest every source's inbox, build base and topic tables
through their gates, publish share and open zones, and write a run report.

The run report (``_reports/run-<started>.json`` and ``_reports/latest.json``) records rows in and
out and seconds per stage. Reports are an audit log and grow by one file per run; every Delta table
and open-zone file is unchanged by a run whose inputs did not change.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from jobs import build_base, build_topic, ingest, publish

STAGES = ("ingest", "build_base", "build_topic", "publish")


def run(settings: Settings, as_of: str, progress=None) -> dict:
    """Run every stage; ``progress(stage, i, n)`` is called before each stage (for the CLI)."""
    started = datetime.now(timezone.utc)
    contracts = contracts_mod.load(settings.contracts_dir)
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

    stage("ingest", lambda: [r for s in sorted(contracts.sources) for r in ingest.run(settings, s)])
    stage("build_base", lambda: build_base.run(settings, as_of))
    stage("build_topic", lambda: build_topic.run(settings, as_of))
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
