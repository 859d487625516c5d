"""Land department files from the inbox into the lake, one DAG per domain of the source contracts.

Each task ingests every new file in ``<inbox>/<source>/`` (files already landed are skipped by
checksum) and updates the ``raw.<source>`` asset, which triggers the build DAGs of the tables built
from it. A day without a new file is a quiet day: the task is skipped (not failed) and triggers nothing.
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, task

from jobs.orchestration import COMMON_DAG_KWARGS, INGEST_PRIORITY, domains, run_ingest_task

for domain, sources in domains().items():
    with DAG(
        dag_id=f"lake__ingest__{domain}",
        description=f"Land {domain} department files: landing -> raw + quarantine",
        schedule="@daily",
        **COMMON_DAG_KWARGS,
        doc_md=__doc__,
        tags=["lake", "ingest", domain],
    ) as dag:
        for source in sources:

            @task(task_id=f"ingest__{source}", outlets=[Asset(f"raw.{source}")], priority_weight=INGEST_PRIORITY)
            def ingest(source: str = source) -> list[dict]:
                return run_ingest_task(source)

            ingest()
    globals()[dag.dag_id] = dag
