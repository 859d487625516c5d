"""Crash safety and concurrency: table leases across processes (lake.locks), unfinished first commits
(lake.tables), verified landing and its check on every later use (lake.landing), quiet days.

Processes are real (subprocess); the Delta tables are written by delta-spark. The lease tests need no
Spark; the two-process ingest pays two JVM start-ups."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAKE = str(Path(sys.executable).parent / "lake")


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("LAKE_ROOT", None)
    env.pop("LAKE_INBOX", None)
    env.update({"LAKE_SHUFFLE_PARTITIONS": "2", "LAKE_DRIVER_MEMORY": "1g", **extra})
    return env


def _holder_script(table_path: str, hold: float, marker: str) -> list[str]:
    """A separate Python process that takes the lease of ``table_path``, writes ``marker`` and holds the
    lease for ``hold`` seconds."""
    code = textwrap.dedent(f"""
        import sys, time, pathlib
        sys.path.insert(0, {str(REPO)!r})
        from lake import locks
        with locks.table_lock({table_path!r}, timeout=60):
            pathlib.Path({marker!r}).write_text("held")
            time.sleep({hold})
            pathlib.Path({marker!r} + ".done").write_text("releasing")
    """)
    return [sys.executable, "-c", code]


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# ------------------------------------------------------------------ leases (no Spark)

def test_a_second_process_waits_for_the_lease_or_names_the_holder(tmp_path):
    from lake import locks

    table = str(tmp_path / "raw" / "psb_household")
    marker = tmp_path / "held"
    holder = subprocess.Popen(_holder_script(table, 3.0, str(marker)), stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(marker)
        # not waiting: one line naming the holder (host, pid, command, since)
        with pytest.raises(locks.LockBusy) as e:
            with locks.table_lock(table, timeout=0):
                pass
        msg = str(e.value)
        assert "\n" not in msg
        assert f"pid {holder.pid} on host {socket.gethostname()}" in msg and "since 20" in msg and "-c" in msg
        assert msg.startswith("raw/psb_household is being written by")
        lock_file = tmp_path / "_locks" / "raw__psb_household.lock"
        info = json.loads(lock_file.read_text())
        assert info["pid"] == holder.pid and info["table"] == "raw/psb_household"
        # waiting: the lease is ours once the holder has released it
        t0 = time.time()
        with locks.table_lock(table, timeout=60):
            assert Path(str(marker) + ".done").exists(), "acquired while the other process still held the lease"
            assert json.loads(lock_file.read_text())["pid"] == os.getpid()
        assert time.time() - t0 < 30
        assert not lock_file.exists()  # released
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holders_lease_is_taken_over(tmp_path, caplog):
    from lake import locks

    table = str(tmp_path / "base" / "population")
    marker = tmp_path / "held"
    holder = subprocess.Popen(_holder_script(table, 600, str(marker)))
    _wait_for(marker)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    held = locks.holders(str(tmp_path))
    assert [h["pid"] for h in held] == [holder.pid] and held[0]["stale"] is True
    t0 = time.time()
    with caplog.at_level("WARNING", logger="lake"):
        with locks.table_lock(table, timeout=0):  # no waiting needed: the holder is dead
            pass
    assert time.time() - t0 < 5
    assert f"took over the lock of pid {holder.pid}" in caplog.text


def test_stale_lease_rules(tmp_path):
    """Same host: alive means the pid runs with the recorded start time (a reused pid is not the
    holder); another host: alive until the lease expires."""
    from lake import locks

    table = str(tmp_path / "quality" / "findings")
    store, key = locks.store_for(table)
    me = os.getpid()
    cases = [
        ({"host": socket.gethostname(), "pid": me, "pid_started": locks._start_time(me)}, False),
        ({"host": socket.gethostname(), "pid": me, "pid_started": 12345.0}, True),  # pid reused
        ({"host": "other-host", "pid": 1, "expires": time.time() + 60}, False),
        ({"host": "other-host", "pid": 1, "expires": time.time() - 1}, True),
    ]
    for holder, stale in cases:
        body = {"table": "quality/findings", "command": "x", "since": "then", **holder}
        store.create(key, json.dumps(body).encode())
        if stale:
            with locks.table_lock(table, timeout=0):
                assert json.loads((tmp_path / "_locks" / key).read_text())["pid"] == me
        else:
            with pytest.raises(locks.LockBusy):
                with locks.table_lock(table, timeout=0.5):
                    pass
            os.unlink(tmp_path / "_locks" / key)
        assert not (tmp_path / "_locks" / key).exists()


def test_threads_of_one_process_share_the_lease(tmp_path):
    """Re-entrant in a thread; another thread of the process waits its turn (run_many's sources)."""
    from lake import locks

    table = str(tmp_path / "landing" / "_manifest")
    order = []
    inside = threading.Event()

    def other():
        inside.wait(10)
        with locks.table_lock(table, timeout=30):
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    with locks.table_lock(table):
        with locks.table_lock(table):  # re-entrant
            inside.set()
            time.sleep(0.5)
            order.append("main")
    t.join(30)
    assert order == ["main", "other"]
    assert not (tmp_path / "_locks" / "landing___manifest.lock").exists()


def test_local_store_compare_and_swap(tmp_path):
    from lake.locks import LocalStore

    s = LocalStore(str(tmp_path))
    etag = s.create("t.lock", b"one")
    assert etag and s.create("t.lock", b"two") is None
    assert s.replace("t.lock", b"three", "wrong") is None
    etag2 = s.replace("t.lock", b"three", etag)
    assert etag2 and s.read("t.lock") == (b"three", etag2)
    assert not s.delete("t.lock", etag) and s.delete("t.lock", etag2)
    assert s.read("t.lock") is None and s.keys() == []


# ------------------------------------------------------------------ unfinished first commits (no Spark)

def _delta_log(path: Path) -> Path:
    (path / "_delta_log").mkdir(parents=True)
    return path / "_delta_log"


def test_table_states(tmp_path):
    from lake import tables

    assert tables.state(str(tmp_path / "none")).kind == "absent"
    empty_log = tmp_path / "a"
    _delta_log(empty_log)
    assert tables.state(str(empty_log)).kind == "unfinished"
    tmp_only = tmp_path / "b"
    (_delta_log(tmp_only) / ".00000000000000000000.json.3f2a.tmp").write_text('{"commitInfo":{}}\n')
    (tmp_only / "part-00000-x.snappy.parquet").write_bytes(b"PAR1")
    assert tables.state(str(tmp_only)).kind == "unfinished"
    data_only = tmp_path / "c"
    data_only.mkdir()
    (data_only / "part-00000-x.snappy.parquet").write_bytes(b"PAR1")
    assert tables.state(str(data_only)).kind == "unfinished"
    garbage = tmp_path / "d"
    (_delta_log(garbage) / "00000000000000000000.json").write_text('{"commitInfo":{"timestamp":1}}\n{"add":{"pa')
    st = tables.state(str(garbage))
    assert st.kind == "unfinished" and "not valid JSON" in st.detail
    damaged = tmp_path / "e"
    log = _delta_log(damaged)
    (log / "00000000000000000000.json").write_text('{"commitInfo":{}}\n')
    (log / "00000000000000000001.json").write_text('{"add":')
    assert tables.state(str(damaged), check_newest=True).kind == "damaged"
    assert tables.state(str(damaged)).kind == "table"  # writers do not parse every newest commit
    assert tables.completing_command("raw", "psb_household") == "`lake ingest --source psb_household` (DAG lake__ingest__population)"
    assert "lake publish" in tables.completing_command("share", "base__population")
    assert "lake build" in tables.completing_command("base", "population")


def test_lake_status_lists_unfinished_tables_without_a_traceback(tmp_path):
    """A real table next to two folders whose first commit was interrupted: exit 0, one row each."""
    import deltalake
    import pyarrow as pa

    deltalake.write_deltalake(str(tmp_path / "raw" / "mca_residents"), pa.table({"a": [1, 2, 3]}))
    _delta_log(tmp_path / "raw" / "psb_household")
    garbage = _delta_log(tmp_path / "base" / "population")
    (garbage / "00000000000000000000.json").write_text('{"commitInfo":{"timest')
    from lake import locks

    with locks.table_lock(str(tmp_path / "quality" / "findings")):  # a writer at work is shown too
        r = subprocess.run([LAKE, "status", "--root", str(tmp_path)], capture_output=True, text=True,
                           env=_env(COLUMNS="250"), cwd=str(REPO), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "raw/mca_residents │ 0 │ 3" in out
    assert ("raw/psb_household │ - │ - │ unfinished (first commit interrupted; `lake ingest --source psb_household` "
            "(DAG lake__ingest__population) completes it)") in out
    assert "base/population │ - │ - │ unfinished (first commit interrupted; `lake build`" in out
    assert f"lock quality/findings: held by pid {os.getpid()} on host {socket.gethostname()}" in out


# ------------------------------------------------------------------ writers complete unfinished tables (Spark)

def test_writers_treat_an_unfinished_table_as_absent_and_complete_it(spark, tmp_path):
    from deltalake import DeltaTable

    from lake import io, tables

    df = spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string")
    # 1. what a kill during the first commit leaves: data files, _delta_log with Delta's temporary commit
    t1 = tmp_path / "raw" / "t1"
    log = _delta_log(t1)
    (log / ".00000000000000000000.json.0b1c.tmp").write_text('{"commitInfo":{}}\n')
    (t1 / "part-00000-0b1c-c000.snappy.parquet").write_bytes(b"PAR1 cut short")
    assert not io.is_table(spark, str(t1))
    io.replace_where(df, str(t1), "id = 1")
    assert tables.state(str(t1)).kind == "table"
    assert DeltaTable(str(t1)).to_pyarrow_table().num_rows == 2 and io.read(spark, str(t1)).count() == 2
    # 2. an empty _delta_log, written by append and by overwrite
    for name, write in (("t2", lambda p: io.append(df, p)), ("t3", lambda p: io.overwrite(df, p, {"k": 1}))):
        p = tmp_path / "base" / name
        _delta_log(p)
        write(str(p))
        assert DeltaTable(str(p)).version() == 0 and io.read(spark, str(p)).count() == 2
    # 3. a version 0 that is not valid JSON (Delta never leaves it; a cut copy could): moved aside
    t4 = tmp_path / "topic" / "t4"
    (_delta_log(t4) / "00000000000000000000.json").write_text('{"commitInfo":{"timest')
    io.overwrite(df, str(t4), {"k": 1})
    assert DeltaTable(str(t4)).to_pyarrow_table().num_rows == 2
    assert [p.name for p in t4.iterdir() if p.name.startswith("_delta_log.interrupted-")]
    assert not list((tmp_path / "_locks").glob("*.lock"))  # every lease released
    # a lease names the Spark JVM too: after a Python process dies, its JVM may still be committing
    from lake import locks

    with locks.table_lock(str(t1)):
        info = json.loads((tmp_path / "_locks" / "raw__t1.lock").read_text())
    jvm = spark.sparkContext._gateway.proc.pid
    assert info["jvm_pid"] == jvm and info["pid"] == os.getpid()
    assert locks._alive({**info, "pid": 999999999}), "a holder whose JVM still runs is alive"


# ------------------------------------------------------------------ verified landing (no Spark)

def test_landing_copies_verify_and_rename(tmp_path):
    from lake import landing
    from lake.files import InputError, sha256_of

    src = tmp_path / "f.csv"
    src.write_bytes(b"a,b\n" + b"1,2\n" * 10000)
    sha = sha256_of(src)
    uri = str(tmp_path / "landing" / "s" / sha / "f.csv")
    folder = Path(uri).parent
    folder.mkdir(parents=True)
    (folder / ".f.csv.deadbeef.part").write_bytes(b"a,b\n1,")  # a copy that was killed
    assert landing.land(src, uri, sha) == "landed"
    assert sha256_of(Path(uri)) == sha and [p.name for p in folder.iterdir()] == ["f.csv"]
    assert landing.land(src, uri, sha) == "present"
    Path(uri).write_bytes(b"a,b\n1,")  # truncated
    assert landing.land(src, uri, sha) == "landed" and sha256_of(Path(uri)) == sha
    with pytest.raises(InputError, match="nothing was landed"):
        landing.land(src, str(tmp_path / "landing" / "s" / ("0" * 64) / "f.csv"), "0" * 64)
    assert not list((tmp_path / "landing" / "s" / ("0" * 64)).iterdir())


# ------------------------------------------------------------------ verification on later use (Spark)

def _small_lake(settings, tmp_path, name: str):
    from lake.settings import Settings

    root = tmp_path / name
    (root / "inbox" / "mca_social_orgs").mkdir(parents=True)
    return Settings.from_env(root=str(root), shuffle_partitions=2, driver_memory="2g", contracts_dir=settings.contracts_dir)


def _social_orgs_file(path: Path, n: int = 3) -> Path:
    from lake import contracts

    sc = contracts.load(str(REPO / "contracts")).source("mca_social_orgs")
    lines = [",".join(sc.column_names)] + [",".join(f"v{i}" for _ in sc.column_names) for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path


def test_a_truncated_landed_copy_is_repaired_or_reported_never_read(spark, settings, tmp_path):
    from typer.testing import CliRunner

    from jobs.landing import ingest
    from lake import io, landing
    from lake.cli import app
    from lake.files import sha256_of

    s = _small_lake(settings, tmp_path, "repair")
    f = _social_orgs_file(Path(s.inbox) / "mca_social_orgs" / "orgs_20261101.csv")
    sha = sha256_of(f)
    [r] = ingest.run(s, "mca_social_orgs")
    assert not r["skipped"] and r["rows_read"] == 3
    landed = Path(landing.landed_uri(s, "mca_social_orgs", sha, f.name))
    raw = io.table_path(s, "raw", "mca_social_orgs")
    versions = io.version(spark, raw)
    # truncated (as by a kill during an unverified copy): a re-run repairs it from the inbox file
    landed.write_bytes(landed.read_bytes()[:20])
    [r] = ingest.run(s, "mca_social_orgs")
    assert r["skipped"] and sha256_of(landed) == sha
    assert io.version(spark, raw) == versions  # nothing read, nothing written
    # truncated again and the delivered file gone: `lake verify` reports it, the copy is never read
    landed.write_bytes(b"garbage")
    f.unlink()
    res = CliRunner().invoke(app, ["verify", "--root", s.root], env={"LAKE_CONTRACTS": s.contracts_dir})
    assert res.exit_code == 1, res.output
    assert "1 corrupt" in res.output and "ask the department to deliver orgs_20261101.csv again" in " ".join(res.output.split())
    found = io.read(spark, io.table_path(s, "quality", "findings")).where("defect_type = 'landed_copy_corrupt'").collect()
    assert len(found) == 1 and found[0]["_file_sha256"] == sha and found[0]["stage"] == "landing"
    assert found[0]["department"] and found[0]["value"] == f.name
    assert landed.read_bytes() == b"garbage" and io.version(spark, raw) == versions


def test_iot_reprocessing_never_reads_a_corrupt_copy(spark, settings, tmp_path):
    """``jobs.base.iot_reading._landed_files`` verifies each copy against its sha256: repaired from the inbox, or
    (inbox file gone) a finding and no file list, so the day is not re-processed from bad bytes."""
    import datetime as dt

    from jobs.base import iot_reading as iot
    from lake import io, landing
    from lake.files import sha256_of

    s = _small_lake(settings, tmp_path, "iot")
    folder = Path(s.inbox) / "iot_readings_json"
    folder.mkdir(parents=True)
    f = folder / "readings_20261102.jsonl"
    f.write_text('{"device":"x","ts":"2026-11-02T00:00:00+08:00","metric":"pm25","value":1,"unit":"ug/m3"}\n')
    sha = sha256_of(f)
    landed = Path(landing.landed_uri(s, "iot_readings_json", sha, f.name))
    landing.land(f, str(landed), sha)
    counts = spark.createDataFrame([(dt.date(2026, 11, 2), "iot_readings_json", f.name, sha)],
                                   "delivery_day date, source string, file string, _file_sha256 string")
    io.replace_where(counts, io.table_path(s, *iot.COUNTS), "delivery_day = DATE'2026-11-02'")
    landed.write_bytes(b'{"device":"x","ts":')
    [d] = iot._landed_files(spark, s, dt.date(2026, 11, 2))
    assert d.path == landed and sha256_of(landed) == sha  # repaired from the inbox
    landed.write_bytes(b'{"device":"x","ts":')
    f.unlink()
    assert iot._landed_files(spark, s, dt.date(2026, 11, 2)) is None
    rows = io.read(spark, io.table_path(s, "quality", "findings")).where("defect_type = 'landed_copy_corrupt'").collect()
    assert [r["_file_sha256"] for r in rows] == [sha]


# ------------------------------------------------------------------ quiet days

def test_quiet_days_through_the_cli(tmp_path):
    """An empty inbox on a new lake: `lake ingest --source S`, `lake ingest` and `lake run` each print
    one line and exit 0, without starting Spark (they run in a few seconds)."""
    root = tmp_path / "lake"
    (root / "inbox").mkdir(parents=True)
    for args, where in ((["ingest", "--source", "psb_household"], root / "inbox" / "psb_household"),
                        (["ingest"], root / "inbox"), (["run", "--as-of", "2026-11-01"], root / "inbox")):
        t0 = time.time()
        p = subprocess.run([LAKE, *args, "--root", str(root)], capture_output=True, text=True, env=_env(), cwd=str(REPO))
        assert p.returncode == 0, p.stdout + p.stderr
        out = [line for line in (p.stdout + p.stderr).splitlines() if line.strip()]
        assert out[0].startswith(f"nothing to ingest: the inbox {where} has no new files"), out
        assert len(out) == 1, out
        assert "Traceback" not in p.stderr
        assert time.time() - t0 < 60
    assert not (root / "landing").exists()


def test_quiet_day_after_files_were_landed(spark, settings, tmp_path):
    """The files of the inbox are all landed already: `lake ingest` says there is nothing new."""
    from typer.testing import CliRunner

    from jobs.landing import ingest
    from lake.cli import app

    s = _small_lake(settings, tmp_path, "landed")
    _social_orgs_file(Path(s.inbox) / "mca_social_orgs" / "orgs_20261101.csv")
    ingest.run(s, "mca_social_orgs")
    for args, where in ((["ingest", "--source", "mca_social_orgs"], Path(s.inbox) / "mca_social_orgs"),
                        (["ingest"], Path(s.inbox))):
        r = CliRunner().invoke(app, [*args, "--root", s.root], env={"LAKE_CONTRACTS": s.contracts_dir})
        assert r.exit_code == 0, r.output
        assert r.output.strip() == f"nothing to ingest: the inbox {where} has no new files"


def test_quiet_day_ingest_dag_skips_cleanly(monkeypatch, tmp_path):
    """lake__ingest__population with an empty inbox: every task is skipped (not failed), the run
    succeeds, and each task logs the one line."""
    from airflow.dag_processing.dagbag import DagBag

    root = tmp_path / "lake"
    (root / "inbox").mkdir(parents=True)
    monkeypatch.setenv("LAKE_ROOT", str(root))
    monkeypatch.setenv("LAKE_INBOX", str(root / "inbox"))  # not the session's inbox, if the environment names one
    dag = DagBag(str(REPO / "dags")).get_dag("lake__ingest__population")
    run = dag.test(logical_date=datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert str(run.state) in ("success", "DagRunState.SUCCESS")
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states and all(s in ("skipped", "TaskInstanceState.SKIPPED") for s in states.values()), states
    assert not (root / "landing").exists()


# ------------------------------------------------------------------ two processes ingest one source at once

def test_two_processes_ingesting_one_source_land_each_file_once(tmp_path):
    """Two `lake ingest --source S` at once on a new lake, the inbox holding one file twice under two
    names and another file: both exit 0 (one waits for the other's lease), each file is landed once,
    one manifest row per sha256, and no Java traceback reaches the user."""
    import deltalake

    from lake.files import sha256_of

    root = tmp_path / "lake"
    inbox = root / "inbox" / "mca_social_orgs"
    inbox.mkdir(parents=True)
    a = _social_orgs_file(inbox / "orgs_a_20261101.csv", 40)
    shutil.copy(a, inbox / "orgs_copy_20261101.csv")
    b = _social_orgs_file(inbox / "orgs_b_20261102.csv", 7)
    procs = [subprocess.Popen([LAKE, "ingest", "--source", "mca_social_orgs", "--root", str(root)], cwd=str(REPO),
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "Traceback" not in out and "java." not in out and "Exception" not in out, out
    joined = " ".join(" ".join(outs).split())
    # the second either waited for the first's lease or found everything landed already
    assert "raw/mca_social_orgs: waiting for pid" in joined or "nothing to ingest" in joined, outs
    manifest = deltalake.DeltaTable(str(root / "landing" / "_manifest")).to_pyarrow_table().to_pylist()
    assert sorted(m["sha256"] for m in manifest) == sorted({sha256_of(a), sha256_of(b)})
    raw = deltalake.DeltaTable(str(root / "raw" / "mca_social_orgs")).to_pyarrow_table()
    q = deltalake.DeltaTable(str(root / "quarantine" / "mca_social_orgs")).to_pyarrow_table()
    shas = raw.column("_file_sha256").to_pylist() + q.column("_file_sha256").to_pylist()
    assert {sha: shas.count(sha) for sha in set(shas)} == {sha256_of(a): 40, sha256_of(b): 7}
    assert sorted(os.listdir(root / "landing" / "mca_social_orgs")) == sorted({sha256_of(a), sha256_of(b)})
    assert not list((root / "_locks").glob("*.lock"))


def test_a_second_process_that_may_not_wait_names_the_holder(tmp_path):
    """LAKE_LOCK_TIMEOUT=0: the second `lake ingest` exits 1 with one line naming the first."""
    root = tmp_path / "lake"
    inbox = root / "inbox" / "mca_social_orgs"
    inbox.mkdir(parents=True)
    _social_orgs_file(inbox / "orgs_20261101.csv", 30)
    table = str(root / "raw" / "mca_social_orgs")
    marker = tmp_path / "held"
    holder = subprocess.Popen(_holder_script(table, 120, str(marker)))
    try:
        _wait_for(marker)
        p = subprocess.run([LAKE, "ingest", "--source", "mca_social_orgs", "--root", str(root)], cwd=str(REPO),
                           env=_env(LAKE_LOCK_TIMEOUT="0"), capture_output=True, text=True, timeout=600)
        assert p.returncode == 1, p.stdout + p.stderr
        err = " ".join(p.stderr.split())
        assert (f"error: raw/mca_social_orgs is being written by pid {holder.pid} on host {socket.gethostname()} "
                "(`") in err and "since 20" in err, err
        assert "Traceback" not in p.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_failed_run_keeps_a_report_of_the_stages_it_ran(tmp_path, monkeypatch):
    """A `lake run` that fails in a stage leaves run-<started>.json with the stages before it, their
    seconds and the failing stage's error; latest.json stays the last finished run's (none here)."""
    from jobs import pipeline
    from jobs.landing import ingest
    from lake.settings import Settings

    root = tmp_path / "lake"
    (root / "inbox" / "mca_social_orgs").mkdir(parents=True)
    _social_orgs_file(root / "inbox" / "mca_social_orgs" / "orgs.csv")
    s = Settings.from_env(root=str(root), contracts_dir=str(REPO / "contracts"))

    def boom(*a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingest, "run_many", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.run(s, "2026-11-01")
    reports = list((root / "_reports").glob("run-*.json"))
    assert len(reports) == 1 and not (root / "_reports" / "latest.json").exists()
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    assert report["stages"]["ingest"]["error"] == "RuntimeError: disk full"
    assert report["stages"]["ingest"]["seconds"] >= 0 and report["failed_at"] and report["as_of"] == "2026-11-01"
