"""Sensing (物联网感知), once a day: the device ledger (感知前端台账), then the readings the platforms
delivered for the day (``<inbox>/iot_readings_*/*_<YYYYMMDD>.*``), then device health (巡检) and the
eco-environment, flood and coverage topics for every reading day the delivery touched.

The delivery day is the ``day`` param when given, else the day before the run's logical date (a run
at 00:30 processes yesterday's complete files). Re-running a day changes nothing: every write replaces
exactly that delivery day's rows.
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, get_current_context, task

from jobs.orchestration import COMMON_DAG_KWARGS, IOT_BASE_TABLES, IOT_TOPIC_TABLES, READINGS_SOURCES, delivery_day

with DAG(
    dag_id="lake__iot__daily",
    description="Device ledger, a day of sensor readings, device health and IoT topics, gated",
    schedule="30 0 * * *",
    **COMMON_DAG_KWARGS,
    params={"day": None},
    doc_md=__doc__,
    tags=["lake", "iot"],
):

    @task(task_id="build__base__iot_device", outlets=[Asset(t) for t in IOT_BASE_TABLES])
    def ledger() -> dict:
        from jobs import iot
        from jobs.orchestration import skip
        from lake import landing
        from lake.settings import Settings

        s = Settings.from_env()
        if not landing.manifest_rows(s, iot.DEVICE_SOURCE):
            skip(f"nothing to build: no {iot.DEVICE_SOURCE} ledger has been landed yet")
        r = iot.build_devices(s, delivery_day(get_current_context()))
        return {k: r[k] for k in ("table", "status", "rows")}

    @task(task_id="ingest__readings", outlets=[Asset(f"raw.{s}") for s in READINGS_SOURCES] + [Asset("base.iot_reading")])
    def readings() -> list[str]:
        from jobs import iot
        from jobs.orchestration import skip
        from lake import landing
        from lake.settings import Settings

        s = Settings.from_env()
        day = delivery_day(get_current_context())
        if not iot.delivery_files(s, iot._day(day)):  # a quiet day: no readings delivered for it
            skip(f"{landing.nothing_message(s)} (no sensor readings delivered for {day})")
        return iot.ingest_readings(s, day)["reading_days"] or [day]

    @task(task_id="build__iot_topics", outlets=[Asset(t) for t in IOT_TOPIC_TABLES])
    def topics(days: list[str]) -> list[dict]:
        from jobs import iot
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        data = iot.day_data(get_spark(s), s, days)
        try:
            out = [iot.device_health(s, days, data=data), *iot.build_topics(s, days, data=data)]
        finally:
            data.release()
        return [{k: r[k] for k in ("table", "status", "rows")} for r in out]

    ledger() >> topics(readings())
