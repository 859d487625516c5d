"""Shared fixtures: one Spark session for the whole test run, and one tiny lake built end to end.

Environment is set before anything imports Airflow, so DAG tests use the project's SQLite metadata
database (created by ./setup.sh) and the project's dags/ folder.

Tiers (README, "Tests"): every test is marked by what it needs, from the fixtures it uses:
``spark`` (a Spark session, directly or through a fixture), ``e2e`` (a whole pipeline: the tiny lake,
a sensing day, a scheduler); the rest is the fast tier without a JVM (``-m "not spark and not e2e"``).
A test of the fast tier that starts Spark anyway fails, naming the marker it lacks.
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
# the open zone's pseudonymisation key (opendata/deid.py): a fresh random one per test run, never a file
os.environ.setdefault("LAKE_PSEUDONYM_KEY", __import__("secrets").token_hex(32))

# fixtures that run a whole pipeline (their tests are the e2e tier)
E2E_FIXTURES = {"tiny_lake", "iot_lake"}


# opt-in tiers: run only when the -m expression names them (`pytest -m slow`, `-m "crash or slow"`), so
# that a tier expression such as `-m "not e2e"` (which replaces pyproject's addopts -m) cannot start a
# cluster, kill lake runs or wait for a scheduler by accident
OPT_IN = ("cluster", "crash", "scheduler", "slow")


def pytest_collection_modifyitems(config, items):
    import re

    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        if "spark" in names:
            item.add_marker(pytest.mark.spark)
    named = set(re.findall(r"\w+", config.getoption("markexpr") or ""))
    left_out = [i for i in items if any(i.get_closest_marker(t) and t not in named for t in OPT_IN)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [i for i in items if i not in left_out]


@pytest.fixture(autouse=True)
def _no_spark_in_the_fast_tier(request, monkeypatch):
    """A test not marked spark or e2e must not start a JVM: the fast tier promises none."""
    if request.node.get_closest_marker("spark") or request.node.get_closest_marker("e2e"):
        return
    import lake.spark

    def refuse(*a, **k):
        raise AssertionError(f"{request.node.nodeid} starts Spark: request the `spark` fixture or mark it "
                             "@pytest.mark.spark")

    monkeypatch.setattr(lake.spark, "spark_conf", refuse)  # what get_spark calls to start a session


TINY_SCALE = 0.001
SEED = 7
AS_OF = "2026-11-01"


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    from lake.settings import Settings

    root = tmp_path_factory.mktemp("lake")
    return Settings.from_env(root=str(root), shuffle_partitions=2, driver_memory="3g")


@pytest.fixture(scope="session")
def spark(settings):
    from lake.spark import get_spark

    return get_spark(settings)


@pytest.fixture(scope="session")
def tiny_lake(settings, spark):
    """Generate tiny sample data into the inbox and run the whole pipeline once."""
    from jobs import pipeline
    from sample.generate import generate

    manifest = generate(TINY_SCALE, SEED, Path(settings.inbox))
    report = pipeline.run(settings, AS_OF)
    return {"settings": settings, "manifest": manifest, "report": report, "inbox": Path(settings.inbox)}
