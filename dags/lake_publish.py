"""Publish whenever a shared or opened table changes: the share zone (departments: the copies, then the
masked and row-filtered view of every grant with share/_grants, which the Delta Sharing server serves),
the open zone (open-data portal; its PII gate runs before any file is written) and the resource
catalogue with its hash chain (目录链), so that the catalogue, the chain and the grantee views always
describe what is published. The tables not built yet are published when they are (their first
version triggers this DAG again)."""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, get_current_context, task

from jobs.orchestration import COMMON_DAG_KWARGS, published_tables, run_publish_task

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
        return run_publish_task("share")

    @task(task_id="publish__views", outlets=[Asset("share._grants")])
    def views() -> list[dict]:
        return run_publish_task("views")

    @task(task_id="publish__open", outlets=[Asset("open")])
    def open_zone() -> list[dict]:
        return run_publish_task("open")

    @task(task_id="publish__catalog", outlets=[Asset("catalog.resources"), Asset("catalog.chain")])
    def catalogue() -> dict:
        return run_publish_task("catalog", get_current_context())

    share() >> views() >> open_zone() >> catalogue()
