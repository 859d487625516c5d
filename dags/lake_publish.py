"""Publish whenever a shared or opened table changes: the share zone (departments, by grant), the
open zone (open-data portal; its PII gate runs before any file is written) and the resource
catalogue, so that the catalogue always describes what is published."""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, task

from jobs.orchestration import COMMON_DAG_KWARGS, published_tables

with DAG(
    dag_id="lake__publish",
    description="share/ copies with grants, open/ files with small-cell suppression, the catalogue",
    schedule=AssetAny(*[Asset(t) for t in published_tables()]),
    **COMMON_DAG_KWARGS,
    doc_md=__doc__,
    tags=["lake", "publish"],
):

    @task(task_id="publish__share", outlets=[Asset("share")])
    def share() -> list[dict]:
        from jobs.publish.share import publish_share
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return publish_share(get_spark(s), s)

    @task(task_id="publish__open", outlets=[Asset("open")])
    def open_zone() -> list[dict]:
        from jobs.publish.open import publish_open
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return publish_open(get_spark(s), s)

    @task(task_id="publish__catalog", outlets=[Asset("catalog.resources")])
    def catalogue() -> dict:
        from catalog import resources
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return resources.publish(get_spark(s), s)

    share() >> open_zone() >> catalogue()
