"""What the Airflow DAGs need from the project, kept out of dags/ so that DAG files stay wiring only.

The DAGs are generated from the registry (``lake.registry``, itself read from the contracts): one
ingest DAG per domain of row-by-row sources, one build DAG per job, the report DAG and the publish
DAG. ``run_build_task`` is the body of every build task: it skips cleanly (a skip is not a failure)
while a required table does not exist yet, passes the context the triggering runs left on their
assets (the reading days a delivery of sensor readings touched) and leaves its own for the next DAG.

How the runs chain under the scheduler (checked with Airflow 3.3 in tests/test_scheduler.py):

- an asset event is emitted only by a task that succeeded: a skipped task emits none, so it triggers
  nothing downstream. Ingest and build tasks therefore skip when they changed nothing (no new file;
  every table unchanged), so that a quiet day does not rebuild the whole lake;
- an asset-triggered job whose required table does not exist yet skips; every required table is one
  of its upstream assets, so the table's first version triggers the job again;
- a clock-driven job (the sensor readings at 00:30) has no asset to wake it up: its run waits for the
  required tables with a sensor in reschedule mode (``wait__<job>``, holding no slot between pokes;
  skipped, not failed, after ``WAIT['timeout']``), then skips if nothing was delivered for its day;
- dates are taken in the DAGs' timezone (Asia/Shanghai): the 00:30 run is at 16:30 UTC the day before.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from lake import contracts as contracts_mod
from lake import registry
from lake.log import log
from lake.settings import Settings

REPORT_CRON = "0 6 * * *"  # department reports daily at 06:00 Beijing time, and after every base build
TIMEZONE = "Asia/Shanghai"
POOL = "lake_writes"  # one slot: Delta writers on a local filesystem are serialised (see lake_layout.md)

# The one pool slot goes to the waiting task of highest priority: landing first, then the builds in
# registry depth (base before what is built on it), then publication and reports. So files delivered
# together are all landed before the builds run, and a build runs once on all of them instead of once
# per landed source (each run triggering its downstream DAGs again).
INGEST_PRIORITY = 100
GOVERNANCE_PRIORITY = 1  # publish, report

DEFAULT_ARGS = {
    "owner": "daxing-big-data-bureau",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "pool": POOL,
    "priority_weight": GOVERNANCE_PRIORITY,
    "weight_rule": "absolute",
}

# the sensor a clock-driven job's run waits with for the tables it requires: poked every minute (a check
# of the Delta logs, no JVM), in reschedule mode (no worker or pool slot held in between), outside the
# writers' pool, and skipped (soft_fail) rather than failed when they are still missing after 20 hours
WAIT = {"poke_interval": 60, "timeout": 20 * 3600, "mode": "reschedule", "soft_fail": True, "pool": "default_pool"}

COMMON_DAG_KWARGS = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
}


def contracts_dir() -> str:
    """The contracts the DAGs are generated from (LAKE_CONTRACTS, default the repository's)."""
    return Settings.from_env().contracts_dir


def the_registry() -> registry.Registry:
    return registry.load(contracts_dir())


def domains() -> dict[str, list[str]]:
    """The row-by-row sources per domain (one ingest DAG each); sensor readings have their own job."""
    contracts = contracts_mod.load(contracts_dir())
    out: dict[str, list[str]] = {}
    for s in contracts.row_sources():
        out.setdefault(contracts.source(s).domain, []).append(s)
    return dict(sorted(out.items()))


def published_tables() -> list[str]:
    """The tables whose change triggers publication: every table that is shared or opened."""
    return contracts_mod.load(contracts_dir()).published_tables()


def base_tables() -> list[str]:
    return [t.table for t in contracts_mod.load(contracts_dir()).built_tables() if t.zone == "base"]


def priority(job: registry.Job) -> int:
    """A build task's priority for the pool: below landing, and lower the deeper the job sits in the
    registry (a job building on another job's table waits for that job's pending run)."""
    reg = the_registry()
    depth: dict[str, int] = {}
    for j in reg.order():  # dependency order: every job after the jobs it builds on
        deps = [depth[reg.job_of(u).module] for u in j.upstream if not u.startswith("raw.") and u not in j.tables]
        depth[j.module] = 1 + max(deps, default=-1)
    return INGEST_PRIORITY - 10 * (1 + depth[job.module])


def local_date(when: datetime) -> date:
    """The calendar day of ``when`` in the DAGs' timezone (Airflow's dates are UTC: the 00:30 run of
    Beijing time is at 16:30 UTC the day before)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(ZoneInfo(TIMEZONE)).date()


def _run_time(context) -> datetime:
    return context.get("logical_date") or context["dag_run"].run_after


def delivery_day(context) -> str:
    """The delivery day of sensor readings a daily run processes: an explicit ``day`` param wins,
    else the day before the run's date in Beijing (yesterday's files are complete)."""
    explicit = (context.get("params") or {}).get("day")
    if explicit:
        return str(explicit)
    return (local_date(_run_time(context)) - timedelta(days=1)).isoformat()


def as_of(context) -> str:
    """The run's reference date: an explicit ``as_of`` param wins, then the logical date, then the
    time the run was due (asset-triggered runs have no logical date in Airflow 3), in Beijing."""
    explicit = (context.get("params") or {}).get("as_of")
    if explicit:
        return str(explicit)
    return local_date(_run_time(context)).isoformat()


def triggering_context(context) -> dict:
    """The context the runs that triggered this one left on their assets (merged; lists united)."""
    out: dict = {}
    events = context.get("triggering_asset_events") or {}
    for asset in events:
        for event in events[asset]:
            for k, v in (getattr(event, "extra", None) or {}).get("lake_context", {}).items():
                out[k] = sorted(set(out.get(k, [])) | set(v)) if isinstance(v, list) else v
    return out


def wait_task_id(job: registry.Job) -> str:
    """The sensor task of a clock-driven job's DAG (``wait__base__iot_reading``)."""
    return "wait__" + job.name.replace(".", "__")


def inputs_ready(module: str) -> bool:
    """The poke of ``wait__<job>``: True once every table the job requires exists (no JVM)."""
    from jobs import pipeline

    job = the_registry().jobs[module]
    missing = pipeline.missing_inputs(Settings.from_env(), job)
    if missing:
        log.info("%s: waiting for %s (not built or delivered yet)", job.name, ", ".join(missing))
    return not missing


def _skip(reason: str):
    """A skip with its reason (Airflow logs it as ``Skipping task.`` with ``reason``)."""
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(reason)


def run_ingest_task(source: str) -> list[dict]:
    """The body of an ingest task: land every new file of ``source`` from the inbox. Skipped (no asset
    event, so no build is triggered) when no new file was landed: a quiet day changes nothing."""
    from jobs.landing import ingest

    settings = Settings.from_env()
    if ingest.new_files(settings, source) == []:  # checked without a JVM (a quiet day costs no Spark start)
        raise _skip(f"raw.{source}: no new file in {Path(settings.inbox) / source}; nothing changed")
    results = ingest.run(settings, source)
    if not any(not r["skipped"] for r in results):
        raise _skip(f"raw.{source}: no new file in {Path(settings.inbox) / source} ({len(results)} already "
                    "landed); nothing changed")
    return results


def run_build_task(module: str, context) -> list[dict]:
    """The body of a build task: the job ``module`` of the registry through ``jobs.pipeline.run_job``.
    Skipped (AirflowSkipException, not a failure) while a required table does not exist, when a
    clock-driven job has nothing delivered for its day (the job module's ``delivered(settings, day)``),
    and when every table it builds came out unchanged (then no asset event triggers the next DAGs);
    otherwise the job's result context goes on its outlet assets for the DAGs they trigger."""
    from airflow.sdk import Asset

    from jobs import pipeline

    settings = Settings.from_env()
    job = the_registry().jobs[module]
    missing = pipeline.missing_inputs(settings, job)
    if missing:
        raise _skip(f"{job.name}: waiting for {', '.join(missing)} (not built or delivered yet)")
    params = dict(triggering_context(context))
    if job.schedule:  # a clock-driven job processes the delivery day before its run (readings at 00:30)
        day = delivery_day(context)
        delivered = getattr(job.load(), "delivered", None)
        if delivered is not None and not delivered(settings, day):
            raise _skip(f"{job.name}: nothing delivered for {day} in the inbox; nothing to do (a late delivery "
                        "shows in the department's timeliness report)")
        params["days"] = [day]
    results = pipeline.run_job(settings, job, as_of(context), params)
    summary = [{k: r[k] for k in ("table", "status", "rows", "delivery_day") if k in r} for r in results]
    if not any(r.get("status") not in ("unchanged", "skipped") for r in results):
        raise _skip(f"{job.name}: {', '.join(job.tables)} unchanged (same inputs); nothing to pass on ({summary})")
    extra = {k: v for r in results for k, v in (r.get("context") or {}).items()}
    if extra:
        for t in job.tables:
            context["outlet_events"][Asset(t)].extra = {"lake_context": extra}
    return summary


def run_publish_task(kind: str, context=None):
    """The body of a publish task (``share``, ``views``, ``open``, ``catalog``): publishes the shared or
    opened tables that exist so far (the DAG runs as soon as the first of them changes; each later one
    triggers it again), the grantee views of the share zone, and the chained catalogue of every contract."""
    from lake.spark import get_spark

    settings = Settings.from_env()
    spark = get_spark(settings)
    if kind == "catalog":
        from catalog import resources

        return resources.publish(spark, settings, as_of(context) if context is not None else None)
    if kind == "views":
        from sharing.views import publish_views

        return publish_views(spark, settings)
    from jobs.publish import built_tables

    built = built_tables(settings, f"publish {kind}")
    if kind == "share":
        from jobs.publish.share import publish_share

        return publish_share(spark, settings, tables=built)
    if kind == "open":
        from jobs.publish.open import publish_open

        return publish_open(spark, settings, tables=built)
    raise ValueError(f"unknown publish task '{kind}' (share, views, open, catalog)")
