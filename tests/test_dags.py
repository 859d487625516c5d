"""DAGs import cleanly, are wiring only, are generated from the registry (the contracts), and really
run (dag.test())."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

EXPECTED = {"lake__ingest__population", "lake__ingest__legal_entity", "lake__ingest__spatial", "lake__ingest__iot",
            "lake__build__base__population", "lake__build__base__legal_entity", "lake__build__base__admin_boundary",
            "lake__build__base__standard_address", "lake__build__base__poi", "lake__build__base__iot_device",
            "lake__build__base__iot_reading", "lake__build__topic__population", "lake__build__topic__legal_entity",
            "lake__build__topic__sensing", "lake__build__topic__open_registers", "lake__build__topic__vital_events",
            "lake__publish", "lake__report",
            "lake__ingest__credit", "lake__ingest__e_licence", "lake__ingest__macro", "lake__build__base__credit",
            "lake__build__base__e_licence", "lake__build__base__macro",
            # city management (12345) and emergency management (issue 18)
            "lake__ingest__city", "lake__ingest__emergency", "lake__build__base__hotline", "lake__build__topic__hotline",
            "lake__build__base__emergency", "lake__build__topic__emergency", "lake__build__topic__services",
            "lake__build__topic__economy",
            # health and transport (issue 18)
            "lake__ingest__health", "lake__ingest__transport", "lake__build__base__health", "lake__build__base__transport",
            "lake__build__topic__transport"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(Path(__file__).resolve().parent.parent / "dags"))


def test_every_dag_imports_cleanly(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == EXPECTED


def test_dags_are_documented_retried_and_serialised(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md and dag.tags and dag.max_active_runs == 1
        for t in dag.tasks:
            assert t.retries >= 1, t.task_id
            if t.task_id.startswith("wait__"):  # a sensor only reads Delta logs: no writer slot, no asset
                assert t.pool != "lake_writes" and t.mode == "reschedule" and t.soft_fail, t.task_id
                continue
            assert t.pool == "lake_writes", t.task_id
            assert t.outlets, f"{t.task_id} must update an asset"


def test_dags_follow_the_registry(dagbag):
    """One build DAG per job of the registry, scheduled on its upstream assets (or its cron), whose task
    updates exactly the job's tables; one ingest DAG per domain of row-by-row sources."""
    from lake import contracts, registry
    from lake.settings import Settings

    s = Settings()
    reg = registry.load(s.contracts_dir)
    for job in reg.order():
        dag = dagbag.get_dag(job.dag_id)
        t = dag.get_task(job.task_id)
        assert sorted(a.name for a in t.outlets) == sorted(job.tables)
        if job.schedule:  # a clock-driven run waits for the tables the job requires, then builds
            assert job.schedule in repr(dag.timetable)
            assert [x.task_id for x in dag.topological_sort()] == [f"wait__{job.task_id.removeprefix('build__')}",
                                                                    job.task_id]
        else:
            assert [x.task_id for x in dag.tasks] == [job.task_id]
            for u in job.upstream:
                assert f"'{u}'" in str(dag.timetable.asset_condition), (job.dag_id, u)
    c = contracts.load(s.contracts_dir)
    for domain in {x.domain for x in c.sources.values() if x.loader == "rows"}:
        dag = dagbag.get_dag(f"lake__ingest__{domain}")
        assert sorted(t.task_id for t in dag.tasks) == sorted(f"ingest__{x.source}" for x in c.sources_of(domain)
                                                               if x.loader == "rows")
    publish = dagbag.get_dag("lake__publish")
    assert [t.task_id for t in publish.topological_sort()] == ["publish__share", "publish__views", "publish__open",
                                                              "publish__catalog"]
    for t in c.built_tables():  # every shared or opened table triggers publication (and the catalogue)
        assert (f"'{t.table}'" in str(publish.timetable.asset_condition)) == (t.share_type != "none" or t.open_type != "none")


def test_build_dags_are_triggered_by_assets(dagbag):
    base = dagbag.get_dag("lake__build__base__population")
    assert "raw.psb_household" in str(base.timetable.asset_condition)
    topic = dagbag.get_dag("lake__build__topic__population")
    assert "base.population" in str(topic.timetable.asset_condition)
    readings = dagbag.get_dag("lake__build__base__iot_reading")
    assert "30 0 * * *" in repr(readings.timetable)


def test_report_dag_runs_timeliness_then_reports_after_builds_and_daily(dagbag):
    dag = dagbag.get_dag("lake__report")
    assert [t.task_id for t in dag.topological_sort()] == ["check__timeliness", "report__departments"]
    assert "base.population" in str(dag.timetable.asset_condition)
    assert "base.legal_entity" in str(dag.timetable.asset_condition)
    assert "0 6 * * *" in repr(dag.timetable.timetable)


def test_ingest_dag_runs_with_dag_test(dagbag, spark, tmp_path, monkeypatch):
    from deltalake import DeltaTable

    from sample.generate import generate

    root = tmp_path / "lake"
    manifest = generate(0.0005, 11, root / "inbox")
    monkeypatch.setenv("LAKE_ROOT", str(root))
    dag = dagbag.get_dag("lake__ingest__population")
    run = dag.test(logical_date=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    from jobs.orchestration import domains

    for f in manifest["files"]:
        if f["source"] not in domains()["population"]:
            assert not (root / "raw" / f["source"]).exists()
            continue
        raw = DeltaTable(str(root / "raw" / f["source"])).to_pyarrow_table().num_rows
        q = DeltaTable(str(root / "quarantine" / f["source"])).to_pyarrow_table().num_rows
        assert raw + q == f["rows"]


def test_the_pool_serves_landing_then_builds_in_depth_order_then_governance(dagbag):
    """The one writer slot goes to landing first, then to each build before the builds on its tables,
    publication and reports last: files delivered together land before a build runs on them."""
    from jobs.orchestration import the_registry

    def weight(dag_id, task_id=None):
        dag = dagbag.get_dag(dag_id)
        return {t.priority_weight for t in dag.tasks if task_id in (None, t.task_id)}

    [ingest] = {w for d in dagbag.dags if d.startswith("lake__ingest__") for w in weight(d)}
    [governance] = weight("lake__publish") | weight("lake__report")
    reg = the_registry()
    for job in reg.order():
        [w] = weight(job.dag_id, job.task_id)
        assert governance < w < ingest, job.name
        for u in job.upstream:
            if not u.startswith("raw."):
                [wu] = weight(reg.job_of(u).dag_id, reg.job_of(u).task_id)
                assert wu > w, (job.name, u)
    for dag in dagbag.dags.values():
        assert {t.weight_rule for t in dag.tasks} == {"absolute"}, dag.dag_id
