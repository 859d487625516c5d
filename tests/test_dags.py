"""DAGs import cleanly, are wiring only, agree with the contracts, and really run (dag.test())."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

EXPECTED = {"lake__ingest__population", "lake__ingest__legal_entity", "lake__ingest__spatial", "lake__ingest__iot",
            "lake__build__base", "lake__build__spatial", "lake__iot__daily", "lake__build__topic", "lake__publish",
            "lake__report"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.models.dagbag import DagBag

    return DagBag(str(Path(__file__).resolve().parent.parent / "dags"))


def test_every_dag_imports_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED


def test_dags_are_documented_retried_and_serialised(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md and dag.tags and dag.max_active_runs == 1
        for t in dag.tasks:
            assert t.retries >= 1, t.task_id
            assert t.pool == "lake_writes", t.task_id
            assert t.outlets, f"{t.task_id} must update an asset"


def test_orchestration_registry_matches_the_contracts():
    from jobs.orchestration import (BASE_TABLES, DOMAINS, IOT_BASE_TABLES, IOT_TOPIC_TABLES, READINGS_SOURCES,
                                    SPATIAL_TABLES, TOPIC_TABLES)
    from lake import contracts
    from lake.settings import Settings

    c = contracts.load(Settings().contracts_dir)
    assert {d: sorted(s) for d, s in DOMAINS.items()} == {
        d: sorted(s.source for s in c.sources_of(d) if s.loader == "rows")
        for d in {s.domain for s in c.sources.values()}}
    assert sorted(READINGS_SOURCES) == sorted(s.source for s in c.sources.values() if s.loader == "readings")
    base = [*BASE_TABLES.values(), *SPATIAL_TABLES, *IOT_BASE_TABLES]
    assert sorted(base) == sorted(t for t in c.tables if t.startswith("base."))
    assert sorted([*TOPIC_TABLES, *IOT_TOPIC_TABLES]) == sorted(t for t in c.tables if t.startswith("topic."))


def test_build_dags_are_triggered_by_assets(dagbag):
    base = dagbag.get_dag("lake__build__base")
    assert "raw.psb_household" in str(base.timetable.asset_condition)
    topic = dagbag.get_dag("lake__build__topic")
    assert "base.population" in str(topic.timetable.asset_condition)


def test_report_dag_runs_timeliness_then_reports_after_builds_and_daily(dagbag):
    dag = dagbag.get_dag("lake__report")
    assert [t.task_id for t in dag.topological_sort()] == ["check__timeliness", "report__departments"]
    assert "base.population" in str(dag.timetable.asset_condition)
    assert "base.legal_entity" in str(dag.timetable.asset_condition)
    assert "0 6 * * *" in repr(dag.timetable.timetable)


def test_ingest_dag_runs_with_dag_test(dagbag, spark, tmp_path, monkeypatch):
    from deltalake import DeltaTable

    from lake.generate import generate

    root = tmp_path / "lake"
    manifest = generate(0.0005, 11, root / "inbox")
    monkeypatch.setenv("LAKE_ROOT", str(root))
    dag = dagbag.get_dag("lake__ingest__population")
    run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    from jobs.orchestration import DOMAINS

    for f in manifest["files"]:
        if f["source"] not in DOMAINS["population"]:
            assert not (root / "raw" / f["source"]).exists()
            continue
        raw = DeltaTable(str(root / "raw" / f["source"])).to_pyarrow_table().num_rows
        q = DeltaTable(str(root / "quarantine" / f["source"])).to_pyarrow_table().num_rows
        assert raw + q == f["rows"]
