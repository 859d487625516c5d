"""What the DAGs call (jobs/orchestration.py), without a scheduler and without a JVM: the run's dates in
the DAGs' timezone, the context passed along asset events, and the skips that are not failures.
The same paths under the real scheduler: tests/test_scheduler.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowSkipException

from jobs import orchestration as orch


@dataclass
class Run:
    run_after: datetime


@dataclass
class Event:
    extra: dict = field(default_factory=dict)


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)


def test_the_daily_readings_run_processes_the_day_before_in_beijing():
    # the 00:30 run of 2026-12-06 (Beijing) is due at 16:30 UTC on 12-05: its delivery day is 12-05
    ctx = {"logical_date": utc(2026, 12, 5, 16, 30), "dag_run": Run(utc(2026, 12, 5, 16, 30)), "params": {}}
    assert orch.delivery_day(ctx) == "2026-12-05"
    assert orch.as_of(ctx) == "2026-12-06"
    # the 06:00 report run (22:00 UTC the day before) reports as of its Beijing date
    assert orch.as_of({"logical_date": utc(2026, 12, 5, 22, 0), "params": {}}) == "2026-12-06"
    # an asset-triggered run has no logical date: the time it was due counts
    assert orch.as_of({"logical_date": None, "dag_run": Run(utc(2026, 12, 6, 9, 0)), "params": {}}) == "2026-12-06"
    # explicit params win
    ctx["params"] = {"day": "2026-11-01", "as_of": "2026-11-02"}
    assert (orch.delivery_day(ctx), orch.as_of(ctx)) == ("2026-11-01", "2026-11-02")


def test_triggering_context_unites_what_the_triggering_runs_left():
    events = {Asset("base.iot_reading"): [Event({"lake_context": {"reading_days": ["2026-11-01", "2026-10-31"]}}),
                                          Event({"lake_context": {"reading_days": ["2026-11-02"]}})],
              Asset("base.iot_device"): [Event({}), Event({"other": 1})]}
    assert orch.triggering_context({"triggering_asset_events": events}) == {
        "reading_days": ["2026-10-31", "2026-11-01", "2026-11-02"]}
    assert orch.triggering_context({}) == {}


def test_a_build_skips_while_what_it_requires_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    with pytest.raises(AirflowSkipException, match=r"base\.population: waiting for raw\.psb_household"):
        orch.run_build_task("jobs.base.population", {"params": {}})
    assert not orch.inputs_ready("jobs.base.iot_reading")  # the readings' sensor keeps waiting for the ledger


def test_an_ingest_without_a_new_file_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("LAKE_ROOT", str(tmp_path / "lake"))
    with pytest.raises(AirflowSkipException, match=r"raw\.psb_household: no new file in .*psb_household"):
        orch.run_ingest_task("psb_household")


def test_files_already_landed_are_told_without_a_jvm(spark, tmp_path, monkeypatch):
    """A daily ingest run on a quiet day skips before starting Spark: landing/_manifest read by delta-rs."""
    import shutil

    from jobs.landing import ingest
    from lake.settings import Settings
    from sample.generate import generate

    root = tmp_path / "lake"
    generate(0.0005, 11, root / "inbox", iot_days=0)
    generate(0.0005, 12, tmp_path / "other", iot_days=0)
    monkeypatch.setenv("LAKE_ROOT", str(root))
    s = Settings.from_env()
    source = "seo_institutions"
    [first] = ingest.inbox_files(s, source)
    assert ingest.new_files(s, source) == [first]
    assert orch.run_ingest_task(source)[0]["rows_read"] > 0  # lands it
    assert ingest.new_files(s, source) == []
    with pytest.raises(AirflowSkipException, match=r"raw\.seo_institutions: no new file"):
        orch.run_ingest_task(source)
    [other] = (tmp_path / "other" / source).iterdir()
    second = shutil.copy(other, first.with_name("seo_institutions_20261102.jsonl"))
    assert ingest.new_files(s, source) == [Path(second)]


def test_lake_airflow_waits_for_a_locked_sqlite_database(tmp_path):
    """On SQLite, `lake airflow` gives the metadata database a long busy timeout: Airflow meeting the
    database locked by another writer for longer than sqlite3's default 5 s waits instead of failing
    with "database is locked" (what killed standalone's scheduler on a loaded machine)."""
    import os
    import sqlite3
    import subprocess
    import sys
    import time

    from lake import airflow_db
    from lake.cli import airflow_env
    from lake.settings import Settings

    home = tmp_path / "airflow"
    home.mkdir()
    db = sqlite3.connect(home / "airflow.db", isolation_level=None)
    db.execute("CREATE TABLE t (x int)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    env.update(airflow_db.env_for(str(home)))
    assert set(airflow_db.env_for(str(home))) <= set(airflow_env(Settings()))
    child = r"""
import pathlib, sys, time
from sqlalchemy import text
from airflow import settings
home = pathlib.Path(sys.argv[1])
(home / "ready").touch()
while not (home / "locked").exists():
    time.sleep(0.1)
t0 = time.time()
with settings.engine.begin() as c:
    c.execute(text("INSERT INTO t VALUES (1)"))
print(f"waited {time.time() - t0:.1f}")
"""
    p = subprocess.Popen([sys.executable, "-c", child, str(home)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not (home / "ready").exists():
            assert p.poll() is None and time.time() < deadline, p.communicate()
            time.sleep(0.2)
        db.execute("BEGIN EXCLUSIVE")  # no other connection may read or write until the commit
        (home / "locked").touch()
        time.sleep(9)
        db.execute("COMMIT")
        out, err = p.communicate(timeout=300)
    finally:
        p.kill()
    assert p.returncode == 0, err[-3000:]
    assert float(out.split()[-1]) >= 8, out  # it waited for the lock (sqlite3 alone gives up after 5 s)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (1,)
    # another database, or connection arguments of the user's own, are left alone
    (home / "airflow.cfg").write_text("[database]\nsql_alchemy_conn = postgresql://u@h/airflow\n")
    assert airflow_db.env_for(str(home)) == {}
    (home / "airflow.cfg").write_text("[database]\nsql_alchemy_connect_args = mine.ARGS\n")
    assert list(airflow_db.env_for(str(home))) == ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"]
