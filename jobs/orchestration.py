"""What the Airflow DAGs need from the project, kept out of dags/ so that DAG files stay wiring only.

The DAGs are generated from the registry (``lake.registry``, itself read from the contracts): one
ingest DAG per domain of row-by-row sources, one build DAG per job, the report DAG and the publish
DAG. ``run_build_task`` is the body of every build task: it skips cleanly (a skip is not a failure)
while a required table does not exist yet, passes the context the triggering runs left on their
assets (the reading days a delivery of sensor readings touched) and leaves its own for the next DAG.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from lake import contracts as contracts_mod
from lake import registry
from lake.settings import Settings

REPORT_CRON = "0 6 * * *"  # department reports daily at 06:00 Beijing time, and after every base build
TIMEZONE = "Asia/Shanghai"
POOL = "lake_writes"  # one slot: Delta writers on a local filesystem are serialised (see lake_layout.md)

DEFAULT_ARGS = {
    "owner": "daxing-big-data-bureau",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "pool": POOL,
}

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
    return [t.table for t in contracts_mod.load(contracts_dir()).built_tables()
            if t.share_type != "none" or t.open_type != "none"]


def base_tables() -> list[str]:
    return [t.table for t in contracts_mod.load(contracts_dir()).built_tables() if t.zone == "base"]


def delivery_day(context) -> str:
    """The delivery day of sensor readings a daily run processes: an explicit ``day`` param wins,
    else the day before the run's logical date (yesterday's files are complete)."""
    explicit = (context.get("params") or {}).get("day")
    if explicit:
        return str(explicit)
    when = context.get("logical_date") or context["dag_run"].run_after
    return (when.date() - timedelta(days=1)).isoformat()


def as_of(context) -> str:
    """The run's reference date: an explicit ``as_of`` param wins, then the logical date, then the
    time the run was due (asset-triggered runs have no logical date in Airflow 3)."""
    explicit = (context.get("params") or {}).get("as_of")
    if explicit:
        return str(explicit)
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def triggering_context(context) -> dict:
    """The context the runs that triggered this one left on their assets (merged; lists united)."""
    out: dict = {}
    events = context.get("triggering_asset_events") or {}
    for asset in events:
        for event in events[asset]:
            for k, v in (getattr(event, "extra", None) or {}).get("lake_context", {}).items():
                out[k] = sorted(set(out.get(k, [])) | set(v)) if isinstance(v, list) else v
    return out


def run_build_task(module: str, context) -> list[dict]:
    """The body of a build task: the job ``module`` of the registry through ``jobs.pipeline.run_job``.
    Skipped (AirflowSkipException, not a failure) while a required table does not exist; the job's
    result context goes on its outlet assets for the DAGs they trigger."""
    from airflow.sdk import Asset
    from airflow.sdk.exceptions import AirflowSkipException

    from jobs import pipeline

    settings = Settings.from_env()
    job = the_registry().jobs[module]
    missing = pipeline.missing_inputs(settings, job)
    if missing:
        raise AirflowSkipException(f"{job.name}: waiting for {', '.join(missing)} (not built or delivered yet)")
    params = dict(triggering_context(context))
    if job.schedule:  # a clock-driven job processes the delivery day before its run (readings at 00:30)
        params["days"] = [delivery_day(context)]
    results = pipeline.run_job(settings, job, as_of(context), params)
    extra = {k: v for r in results for k, v in (r.get("context") or {}).items()}
    if extra:
        for t in job.tables:
            context["outlet_events"][Asset(t)].extra = {"lake_context": extra}
    return [{k: r[k] for k in ("table", "status", "rows") if k in r} for r in results]
