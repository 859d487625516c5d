"""Build base databases when raw data changes, and topic databases when base data changes.

Every table goes through its Great Expectations gate before it is published; a failed gate fails the
task (retries do not help a data problem, the message names the failed expectations).
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, get_current_context, task

from jobs.orchestration import BASE_TABLES, COMMON_DAG_KWARGS, DOMAINS, TOPIC_TABLES, as_of

with DAG(
    dag_id="lake__build__base",
    description="Golden records per person and legal entity (一数一源), gated, published to base/",
    schedule=AssetAny(*[Asset(f"raw.{s}") for d in BASE_TABLES for s in DOMAINS[d]]),
    **COMMON_DAG_KWARGS,
    params={"as_of": None},
    doc_md=__doc__,
    tags=["lake", "build", "base"],
):
    for domain, table in BASE_TABLES.items():

        @task(task_id=f"build__{table.replace('.', '__')}", outlets=[Asset(table)])
        def build(table: str = table) -> dict:
            from jobs import build_base
            from lake.settings import Settings

            return build_base.build_table(Settings.from_env(), table, as_of(get_current_context()))

        build()

with DAG(
    dag_id="lake__build__topic",
    description="Topic databases from the base databases, gated, published to topic/",
    schedule=AssetAny(*[Asset(t) for t in BASE_TABLES.values()]),
    **COMMON_DAG_KWARGS,
    params={"as_of": None},
    doc_md=__doc__,
    tags=["lake", "build", "topic"],
):
    for table in TOPIC_TABLES:

        @task(task_id=f"build__{table.replace('.', '__')}", outlets=[Asset(table)])
        def build_topic(table: str = table) -> dict:
            from jobs import build_topic as job
            from lake.settings import Settings

            return job.build_table(Settings.from_env(), table, as_of(get_current_context()))

        build_topic()
