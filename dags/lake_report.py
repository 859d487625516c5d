"""Send quality back to the departments (评): timeliness of every source, then the department
quality reports (``<root>/reports/<run>/<department>/``: problems.csv, index.html; Delta tables
``quality/department_quality`` and ``quality/department_scores``).

Runs after every base build (asset-triggered) and daily even when nobody delivered, so that a
department that stops delivering is flagged as stale. Same entry points as ``lake run``.
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, get_current_context, task

from jobs.orchestration import COMMON_DAG_KWARGS, REPORT_CRON, TIMEZONE, as_of, base_tables

with DAG(
    dag_id="lake__report",
    description="Timeliness per source and quality reports per department, scored and trended",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(REPORT_CRON, timezone=TIMEZONE),
                                 assets=AssetAny(*[Asset(t) for t in base_tables()])),
    **COMMON_DAG_KWARGS,
    params={"as_of": None},
    doc_md=__doc__,
    tags=["lake", "quality", "report"],
):

    @task(task_id="check__timeliness", outlets=[Asset("quality.timeliness")])
    def check_timeliness() -> dict:
        from jobs.governance import timeliness
        from lake.settings import Settings

        return timeliness.run(Settings.from_env(), as_of(get_current_context()))

    @task(task_id="report__departments", outlets=[Asset("quality.department_scores")])
    def report_departments() -> dict:
        from jobs.governance import reports
        from lake.settings import Settings

        return reports.run(Settings.from_env(), as_of(get_current_context()))

    check_timeliness() >> report_departments()
