"""Publish whenever a shared or opened table changes: the share zone (departments: the copies, then the
masked and row-filtered view of every grant with share/_grants, which the Delta Sharing server serves),
the open zone (open-data portal; its PII gate runs before any file is written) and the resource
catalogue with its hash chain (目录链), so that the catalogue, the chain and the grantee views always
describe what is published."""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, get_current_context, task

from jobs.orchestration import COMMON_DAG_KWARGS, as_of, published_tables

with DAG(
    dag_id="lake__publish",
    description="share/ copies and grantee views, open/ files with small-cell suppression, the chained catalogue",
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

    @task(task_id="publish__views", outlets=[Asset("share._grants")])
    def views() -> list[dict]:
        from lake.settings import Settings
        from lake.spark import get_spark
        from sharing.views import publish_views

        s = Settings.from_env()
        return publish_views(get_spark(s), s)

    @task(task_id="publish__open", outlets=[Asset("open")])
    def open_zone() -> list[dict]:
        from jobs.publish.open import publish_open
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return publish_open(get_spark(s), s)

    @task(task_id="publish__catalog", outlets=[Asset("catalog.resources"), Asset("catalog.chain")])
    def catalogue() -> dict:
        from catalog import resources
        from lake.settings import Settings
        from lake.spark import get_spark

        s = Settings.from_env()
        return resources.publish(get_spark(s), s, as_of(get_current_context()))

    share() >> views() >> open_zone() >> catalogue()
