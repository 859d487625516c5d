"""Shared fixtures: one Spark session for the whole test run, and one tiny lake built end to end.

Environment is set before anything imports Airflow, so DAG tests use the project's SQLite metadata
database (created by ./setup.sh) and the project's dags/ folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

TINY_SCALE = 0.001
SEED = 7
AS_OF = "2026-11-01"


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    from lake.settings import Settings

    root = tmp_path_factory.mktemp("lake")
    return Settings.from_env(root=str(root), shuffle_partitions=2, driver_memory="2g")


@pytest.fixture(scope="session")
def spark(settings):
    from lake.spark import get_spark

    return get_spark(settings)


@pytest.fixture(scope="session")
def tiny_lake(settings, spark):
    """Generate tiny sample data into the inbox and run the whole pipeline once."""
    from jobs import pipeline
    from lake.generate import generate

    manifest = generate(TINY_SCALE, SEED, Path(settings.inbox))
    report = pipeline.run(settings, AS_OF)
    return {"settings": settings, "manifest": manifest, "report": report, "inbox": Path(settings.inbox)}
