"""Land department files from the inbox into the lake, one DAG per domain.

Each task ingests every new file in ``<inbox>/<source>/`` (files already landed are skipped by
checksum) and updates the ``raw.<source>`` asset, which triggers ``lake__build__base``.
"""
from __future__ import annotations

from airflow.sdk import DAG, Asset, task

from jobs.orchestration import COMMON_DAG_KWARGS, DOMAINS

for domain, sources in DOMAINS.items():
    with DAG(
        dag_id=f"lake__ingest__{domain}",
        description=f"Land {domain} department files: landing -> raw + quarantine",
        schedule="@daily",
        **COMMON_DAG_KWARGS,
        doc_md=__doc__,
        tags=["lake", "ingest", domain],
    ) as dag:
        for source in sources:

            @task(task_id=f"ingest__{source}", outlets=[Asset(f"raw.{source}")])
            def ingest(source: str = source) -> list[dict]:
                from jobs import ingest as job
                from jobs.orchestration import skip_unless_new
                from lake.settings import Settings

                s = Settings.from_env()
                return skip_unless_new(job.run(s, source), s, source)  # a quiet day skips, not fails

            ingest()
    globals()[dag.dag_id] = dag
