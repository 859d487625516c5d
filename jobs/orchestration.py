"""What the Airflow DAGs need from the project, kept out of dags/ so DAG files stay wiring only.

``DOMAINS`` lists the sources per domain (a test checks it against contracts/, so DAG files never
read files at parse time). ``as_of`` turns a task's context into the run's reference date.
"""
from __future__ import annotations

from datetime import datetime, timedelta

# sources landed row by row (jobs/ingest.py), per domain
DOMAINS = {
    "population": ["hrss_insured", "mca_residents", "nhc_vital_events", "psb_household"],
    "legal_entity": ["mca_social_orgs", "samr_enterprises", "seo_institutions", "tax_taxpayers"],
    "spatial": ["ghzrzy_boundaries", "ghzrzy_poi", "psb_doorplates", "samr_geocoded", "zjw_buildings"],
    "iot": ["iot_devices"],
}
# sensor readings, landed per delivery day by jobs/iot.py
READINGS_SOURCES = ["iot_readings_csv", "iot_readings_json"]
# golden records from several departments (jobs/build_base.py)
BASE_TABLES = {"population": "base.population", "legal_entity": "base.legal_entity"}
# the base map (jobs/spatial.py, jobs/address_library.py), in build order
SPATIAL_TABLES = ["base.admin_boundary", "base.poi", "base.standard_address"]
# the sensing ledger and the IoT topics (jobs/iot.py), rebuilt per delivery day
IOT_BASE_TABLES = ["base.iot_device"]
IOT_TOPIC_TABLES = ["topic.air_quality_exceedance", "topic.air_quality_hourly", "topic.device_health",
                    "topic.device_online_rate", "topic.flood_points", "topic.sensor_coverage_by_town"]
# topics built from the golden records (jobs/build_topic.py)
TOPIC_TABLES = ["topic.legal_entity_by_town_industry", "topic.population_by_town_age_band"]
REPORT_CRON = "0 6 * * *"  # department reports daily at 06:00 Beijing time, and after every base build
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


def asset_name(table: str) -> str:
    """Asset names are the table ids: 'raw.psb_household', 'base.population', ..."""
    return table


def delivery_day(context) -> str:
    """The delivery day of sensor readings a daily IoT run processes: an explicit ``day`` param wins,
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


def skip(message: str):
    """End an Airflow task as skipped, not failed, with one log line (a quiet day: nothing was
    delivered). A skipped task updates no asset, so nothing downstream runs for nothing."""
    import logging

    from airflow.sdk.exceptions import AirflowSkipException

    logging.getLogger("lake").info("%s", message)
    raise AirflowSkipException(message)


def skip_unless_new(results: list[dict], settings, source: str | None = None) -> list[dict]:
    """``results`` of an ingest task, or a skip when it landed nothing new."""
    from lake import landing

    if not landing.has_new(results):
        skip(landing.nothing_message(settings, source))
    return results
