"""Publish to the share zone (departments, by grant) and the open zone (open-data portal) whenever a
topic table changes. The open export passes a PII gate before any file is written."""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, task

from jobs.orchestration import COMMON_DAG_KWARGS, TOPIC_TABLES

with DAG(
    dag_id="lake__publish",
    description="share/ copies with grants, open/ CSV+JSON+metadata with small-cell suppression",
    schedule=AssetAny(*[Asset(t) for t in TOPIC_TABLES]),
    **COMMON_DAG_KWARGS,
    doc_md=__doc__,
    tags=["lake", "publish"],
):

    @task(task_id="publish__share", outlets=[Asset("share")])
    def share() -> list[dict]:
        from jobs import publish
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return publish.publish_share(get_spark(s), s)

    @task(task_id="publish__open", outlets=[Asset("open")])
    def open_zone() -> list[dict]:
        from jobs import publish
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return publish.publish_open(get_spark(s), s)

    share() >> open_zone()
