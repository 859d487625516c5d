"""The whole pipeline once, in-process (``lake run``, ``lake build``), in the order the registry gives
(``lake.registry``: contracts -> jobs -> dependency order):

1. ``ingest``: land every row-by-row source's new files from the inbox (``jobs.landing.ingest``);
2. every job of the registry in dependency order: the base databases (population, legal entities,
   the base map, the standard address library, the sensing ledger and the sensor readings of every
   delivery day in the inbox), then the topic databases; a job whose required tables do not exist
   yet is skipped with the reason (a quiet day, or a department that has not delivered);
3. ``timeliness`` and ``reports``: every source's timeliness and the department quality reports;
4. ``publish``: the share and open zones and the catalogue.

The run report (``_reports/run-<started>.json`` and ``_reports/latest.json``) records rows in and
out and seconds per stage. When the inbox holds sample data from ``lake generate`` (its ``truth/``
folder), the run also measures detection precision and recall per defect type against that ground
truth (``sample.evaluate``) and keeps the table in the report under ``evaluation``. Reports are an
audit log and grow by one file per run; every Delta table and open-zone file is unchanged by a run
whose inputs did not change.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from lake import contracts as contracts_mod
from lake import io, landing, registry
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark

GOVERNANCE = ("timeliness", "reports", "publish")


def stages(settings: Settings) -> list[str]:
    """The stage names of a run: ingest, every job of the registry in order, then governance."""
    return ["ingest", *[j.name for j in registry.load(settings.contracts_dir).order()], *GOVERNANCE]


def missing_inputs(settings: Settings, job: registry.Job) -> list[str]:
    """The tables ``job`` requires that do not exist yet (checked without a JVM)."""
    return [t for t in job.requires if not io.has_commit(io.path_of(settings, t))]


def run_job(settings: Settings, job: registry.Job, as_of: str, context: dict | None = None) -> list[dict]:
    """One job of the registry, or a one-line skip when what it requires does not exist yet. The
    context the job's results carry (``context``) is merged into ``context`` for the jobs after it."""
    missing = missing_inputs(settings, job)
    if missing:
        log.info("%s: skipped, waiting for %s (not built or delivered yet)", job.name, ", ".join(missing))
        return [{"table": t, "status": "skipped", "rows": 0, "reason": f"waiting for {', '.join(missing)}"}
                for t in job.tables]
    results = job.load().build(settings, as_of, **(context or {}))
    if context is not None:
        for r in results:
            context.update(r.get("context") or {})
    return results


def build(settings: Settings, as_of: str, progress=None, report: dict | None = None) -> dict:
    """Every job of the registry in order (``lake build``); ``report['stages']`` gets one entry per job."""
    reg = registry.load(settings.contracts_dir)
    report = report if report is not None else {"stages": {}}
    context: dict = {}
    names = stages(settings)
    for job in reg.order():
        _stage(report, job.name, names, progress, lambda job=job: run_job(settings, job, as_of, context))
    return report


def _stage(report: dict, name: str, names: list[str], progress, fn):
    if progress:
        progress(name, names.index(name) + 1, len(names))
    t0 = time.time()
    try:
        result = fn()
    except BaseException as e:
        report["stages"][name] = {"seconds": round(time.time() - t0, 2), "error": f"{type(e).__name__}: {e}"}
        raise
    report["stages"][name] = {"seconds": round(time.time() - t0, 2), "result": result}
    return result


def run(settings: Settings, as_of: str, progress=None) -> dict:
    """Run every stage; ``progress(stage, i, n)`` is called before each stage (for the CLI)."""
    from jobs.governance import reports, timeliness
    from jobs.landing import ingest
    from jobs import publish

    started = datetime.now(timezone.utc)
    contracts = contracts_mod.load(settings.contracts_dir)
    registry.check_modules(registry.load(settings.contracts_dir))
    report: dict = {"started_at": started.isoformat(timespec="seconds"), "as_of": as_of, "root": settings.root,
                    "stages": {}}
    names = stages(settings)
    files = landing.inbox_items(settings, contracts.row_sources())
    if not files and not landing.inbox_items(settings, list(contracts.sources)) and not landing.manifest_rows(settings):
        # a new lake and an empty inbox: nothing to build either (no JVM is started)
        return {"nothing_to_do": landing.nothing_message(settings) + "; the lake has no data yet",
                "started_at": started.isoformat(timespec="seconds"), "as_of": as_of, "root": settings.root}
    try:
        _stage(report, "ingest", names, progress, lambda: ingest.run_many(settings, files, as_of=as_of))
        build(settings, as_of, progress, report)
        get_spark(settings)
        _stage(report, "timeliness", names, progress, lambda: timeliness.run(settings, as_of))
        _stage(report, "reports", names, progress, lambda: reports.run(settings, as_of))
        _stage(report, "publish", names, progress, lambda: publish.run(settings, as_of))
    except Exception:
        # the stages that ran, with their seconds, and the one that failed: kept as run-<started>.json
        # (latest.json stays the last finished run's)
        report["failed_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_report(settings, report, started, latest=False)
        raise
    from lake import spark as spark_mod

    report["spark_log"] = spark_mod.LOG_FILE
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
    if "://" not in settings.inbox:
        from sample import evaluate  # sample data only: no Faker here, the generator is not imported

        if evaluate.has_truth(settings.inbox):
            t0 = time.time()
            report["evaluation"] = evaluate.evaluate(get_spark(settings), settings, settings.inbox)
            report["evaluation"]["seconds"] = round(time.time() - t0, 2)
    write_report(settings, report, started)
    return report


def write_report(settings: Settings, report: dict, started: datetime, latest: bool = True) -> str:
    data = json.dumps(report, ensure_ascii=False, indent=2, default=str).encode("utf-8")
    uri = settings.path("_reports", f"run-{started.strftime('%Y%m%dT%H%M%SZ')}.json")
    io.write_bytes(uri, data)
    if latest:
        io.write_bytes(settings.path("_reports", "latest.json"), data)
    report["report_path"] = uri
    log.info("run report: %s", uri)
    return uri


def sensing_day(settings: Settings, day, spark=None) -> dict:
    """One delivery day of sensing, as the daily schedule runs it: the ledger as of the day, the day's
    readings, then device health and the sensing topics of every reading day the delivery touched;
    counts and seconds (and rows/s) per stage (``scripts/bench_iot.py``)."""
    from pyspark.sql import functions as F

    from jobs.base.iot_device import build_devices
    from jobs.base.iot_reading import ingest_readings
    from jobs.topic.sensing import build_topics, day_data, device_health
    from lake.sensing import as_date

    day = as_date(day)
    spark = spark or get_spark(settings)
    out: dict = {}
    t = time.time()
    ledger = build_devices(settings, day, spark)
    out["ledger"] = {"seconds": round(time.time() - t, 2), "rows": ledger["rows"], "status": ledger["status"]}
    t = time.time()
    readings = ingest_readings(settings, day, spark)
    out["readings"] = {"seconds": round(time.time() - t, 2), "rows": readings["rows_read"],
                       "kept": readings["kept"], "duplicates": readings["duplicates"],
                       "quarantined": readings["quarantined"], "skipped": readings["skipped"],
                       "redone": readings.get("redone", [])}
    days = readings["reading_days"] or [day.isoformat()]
    t = time.time()
    data = day_data(spark, settings, days)
    try:
        health = device_health(settings, days, spark, data)
        n_in = data.hourly.agg(F.sum("n")).collect()[0][0] or 0
        out["health"] = {"seconds": round(time.time() - t, 2), "rows": n_in, "health_rows": health["rows"],
                         "status": health["status"]}
        t = time.time()
        topics = build_topics(settings, days, spark, data)
        out["topics"] = {"seconds": round(time.time() - t, 2), "rows": n_in,
                         "tables": {x["table"]: {"status": x["status"], "rows": x["rows"]} for x in topics}}
    finally:
        data.release()
    for s in out.values():
        s["rows_per_second"] = round(s["rows"] / s["seconds"]) if s["seconds"] > 0 and s["rows"] else None
    return {"day": day.isoformat(), "reading_days": days, "stages": out,
            "seconds": round(sum(s["seconds"] for s in out.values()), 2), "ledger": ledger, "readings": readings,
            "topics": [health, *topics]}
