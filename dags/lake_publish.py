"""Publish whenever a shared or opened table changes: the share zone (departments, by grant), the
open zone (open-data portal; its PII gate runs before any file is written) and the resource
catalogue, so that the catalogue always describes what is published. The tables not built yet are
published when they are (their first version triggers this DAG again)."""
from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetAny, task

from jobs.orchestration import COMMON_DAG_KWARGS, published_tables, run_publish_task

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
        return run_publish_task("share")

    @task(task_id="publish__open", outlets=[Asset("open")])
    def open_zone() -> list[dict]:
        return run_publish_task("open")

    @task(task_id="publish__catalog", outlets=[Asset("catalog.resources")])
    def catalogue() -> dict:
        return run_publish_task("catalog")

    share() >> open_zone() >> catalogue()
