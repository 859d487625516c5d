"""The DAGs under the real scheduler, run as the README's "Running the DAGs under Airflow" tells a user.

A temporary AIRFLOW_HOME is set up by ``./setup.sh`` itself (SQLite migrated, pool ``lake_writes`` with
one slot, the DAGs serialised); the project's ``.airflow/`` is never touched. Then, on a temporary lake
whose inbox gets ``lake generate --scale 0.001``: ``lake airflow standalone`` on a free port of
127.0.0.1, every ``lake__*`` DAG unpaused and the ``lake__ingest__*`` DAGs and the sensor readings' DAG
(param ``day`` = the generated delivery day) triggered through the REST API (v2, with the JWT of the
standalone admin: simple auth manager, password in ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``).
The test waits until every run of every lake DAG has finished, no asset event is queued for any of
them and no new run has appeared for a while, then checks that every run succeeded, that every build
ran only once what it requires existed (and skipped, never failed, before), and that the published
tables exist. The standalone process group is always torn down.

Slow (tasks run one at a time, each paying a Spark start): marked ``e2e`` and ``scheduler``.

The same sequence and checks on the deployment of "Running on a cluster" (`lake airflow up`: PostgreSQL,
the LocalExecutor, runs in parallel): ``test_readme_sequence_on_postgresql``, marked ``cluster`` (it needs
``./setup.sh --cluster``): `pytest -m cluster tests/test_scheduler.py`.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: lake, airflow
SCALE, SEED = 0.001, 7
SETUP_TIMEOUT = 900          # ./setup.sh with a fresh AIRFLOW_HOME (db migrate, reserialize)
STARTUP_TIMEOUT = 600        # standalone answering, every component healthy, the DAGs serialised
RUN_TIMEOUT = 240 * 60       # the whole sequence: tasks one at a time, each a Spark start (slow on a loaded machine)
QUIET_SECONDS = 150          # all runs finished, nothing queued, no new run for this long: done
POLL_SECONDS = 20
COMPONENT_DOWN_SECONDS = 600  # a component not heartbeating for this long has died: fail with its output
TERMINAL = {"success", "failed"}


def expected_dags() -> set[str]:
    """Every DAG the registry generates (ingest per domain, a build per job, publish, report)."""
    from jobs.orchestration import domains, the_registry

    return ({f"lake__ingest__{d}" for d in domains()} | {j.dag_id for j in the_registry().order()}
            | {"lake__publish", "lake__report"})


def _env(home: Path, root: Path | None = None) -> dict:
    """The user's environment with a temporary AIRFLOW_HOME (no AIRFLOW__* settings of this test run:
    `lake airflow` sets the DAG folder itself); small Spark sizing for the tiny lake."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), GX_ANALYTICS_ENABLED="False", LAKE_DRIVER_MEMORY="2g",
               LAKE_SHUFFLE_PARTITIONS="2")
    if root is not None:
        env["LAKE_ROOT"] = str(root)
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A fresh AIRFLOW_HOME set up exactly as a user's: ``./setup.sh`` with AIRFLOW_HOME pointing to it."""
    home = tmp_path_factory.mktemp("airflow_home")
    t0 = time.time()
    r = subprocess.run([str(REPO / "setup.sh")], cwd=REPO, env=_env(home), capture_output=True, text=True,
                       timeout=SETUP_TIMEOUT)
    assert r.returncode == 0, f"./setup.sh failed with AIRFLOW_HOME={home}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert (home / "airflow.db").is_file(), r.stdout
    print(f"\n./setup.sh with a fresh AIRFLOW_HOME: {time.time() - t0:.0f} s")
    return home


def test_dags_are_listed_right_after_setup(airflow_home):
    """`lake airflow dags list` answers with every lake DAG right after set-up, before any dag-processor
    has run (setup.sh serialises them), not "No data found"."""
    r = subprocess.run([str(BIN / "lake"), "airflow", "dags", "list", "--output", "json"], cwd=REPO,
                       env=_env(airflow_home), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "No data found" not in r.stdout + r.stderr
    # Airflow's own warnings (graphviz) come first on stdout; the JSON is the line that starts with '['
    listed = {d["dag_id"] for d in json.loads(next(x for x in r.stdout.splitlines() if x.startswith("[")))}
    assert expected_dags() <= listed, f"missing from `lake airflow dags list`: {sorted(expected_dags() - listed)}"


# --- the README's sequence under `lake airflow standalone` ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """The Airflow REST API v2 of the standalone, with the admin's JWT (simple auth manager)."""

    def __init__(self, base: str, passwords: Path):
        self.base, self.passwords, self.token = base, passwords, None

    def _call(self, method: str, path: str, body=None, auth: bool = True, attempts: int = 6):
        """One request; retried on a timeout, a dropped connection or a 5xx (the api-server shares two
        loaded cores with the tasks and SQLite). A POST retried after it was in fact applied answers
        409, which counts as done (the test names its runs, so a retried trigger cannot run twice)."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(1, attempts + 1):
            req = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
            if auth:
                req.add_header("Authorization", f"Bearer {self.token}")
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as e:
                if e.code == 409 and method == "POST" and attempt > 1:
                    return None
                if e.code < 500 or attempt == attempts:
                    raise AssertionError(f"{method} {path}: HTTP {e.code} {e.read()[:1000]!r}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == attempts:
                    raise
            time.sleep(10 * attempt)

    def login(self) -> None:
        """The admin's generated password: standalone's ``simple_auth_manager_passwords.json.generated``
        (printed once by standalone), or ``<state>/airflow/passwords.json`` of `lake airflow up`."""
        passwords = json.loads(self.passwords.read_text())
        self.token = self._call("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]},
                                auth=False)["access_token"]

    def get(self, path: str):
        return self._call("GET", path)

    def paged(self, path: str, key: str) -> list[dict]:
        out, offset = [], 0
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(f"{path}{sep}limit=100&offset={offset}")
            out += page[key]
            offset += len(page[key])
            if not page[key] or offset >= page["total_entries"]:
                return out

    def health(self) -> dict | None:
        try:
            return self._call("GET", "/api/v2/monitor/health", auth=False, attempts=1)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError, AssertionError):
            return None


def _stop(proc: subprocess.Popen) -> None:
    """Stop the standalone and everything it started (its process group, and any descendant that left it)."""
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        for p in family:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(family, timeout=wait)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if not alive:
            return


def _ts(s: str | None) -> float | None:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None


def _first_commit(root: Path, table: str) -> float | None:
    """When table ``<zone>.<name>`` was created (its version 0 commit), or None if it does not exist."""
    zone, name = table.split(".", 1)
    log = root / zone / name / "_delta_log" / ("0" * 20 + ".json")
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        info = json.loads(line).get("commitInfo")
        if info:
            return info["timestamp"] / 1000
    return log.stat().st_mtime


def _log_files(home: Path, ti: dict) -> list[Path]:
    folder = home / "logs" / f"dag_id={ti['dag_id']}" / f"run_id={ti['dag_run_id']}" / f"task_id={ti['task_id']}"
    return sorted(folder.glob("attempt=*.log"))


def _log_events(path: Path) -> list[dict]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            out.append({"event": raw})
    return out


def _skip_reason(home: Path, ti: dict) -> str:
    """Why a task was skipped: the reason of its last attempt's ``Skipping task.`` log event."""
    files = _log_files(home, ti)
    reasons = [e.get("reason", "") for e in (_log_events(files[-1]) if files else []) if e.get("event") == "Skipping task."]
    return reasons[-1] if reasons else ""


def _task_log(home: Path, ti: dict) -> str:
    """The last lines of a task instance's log (Airflow writes JSON lines under AIRFLOW_HOME/logs)."""
    files = _log_files(home, ti)
    if not files:
        return f"(no log for {ti['dag_id']} {ti['dag_run_id']} {ti['task_id']})"
    lines = []
    for e in _log_events(files[-1]):
        lines.append(f"{e.get('level', '')} {e.get('event', '')}")
        for err in e.get("error_detail") or []:
            frames = err.get("frames") or []
            lines += [f"    {f.get('filename')}:{f.get('lineno')} {f.get('name')}" for f in frames[-4:]]
            lines.append(f"    {err.get('exc_type')}: {err.get('exc_value')}")
    return f"{files[-1]}:\n" + "\n".join(lines[-40:])


def _describe(runs: list[dict], tis: list[dict], home: Path, with_logs: bool) -> str:
    by_run: dict[tuple, list[dict]] = {}
    for ti in tis:
        by_run.setdefault((ti["dag_id"], ti["dag_run_id"]), []).append(ti)
    out = []
    for r in runs:
        own = by_run.get((r["dag_id"], r["dag_run_id"]), [])
        out.append(f"  {r['dag_id']} {r['dag_run_id']} ({r['run_type']}): {r['state']}; tasks: "
                   + ", ".join(f"{t['task_id']}={t['state']}" for t in own))
        if with_logs:
            out += [_task_log(home, t) for t in own if t["state"] in ("failed", "up_for_retry")]
    return "\n".join(out)


@pytest.mark.scheduler
def test_readme_sequence_under_the_scheduler(airflow_home, tmp_path):
    root = tmp_path / "lake"
    env = _env(airflow_home, root)
    t_start = time.time()
    delivery_day = _generate(root, env)

    # 2. `lake airflow standalone`, on a free port of 127.0.0.1
    port = _free_port()
    env.update(AIRFLOW__API__PORT=str(port), AIRFLOW__API__HOST="127.0.0.1",
               AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}")
    out_file = tmp_path / "standalone.log"
    with open(out_file, "wb") as out:
        proc = subprocess.Popen([str(BIN / "lake"), "airflow", "standalone"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    api = Api(f"http://127.0.0.1:{port}", airflow_home / "simple_auth_manager_passwords.json.generated")

    def tail() -> str:
        return out_file.read_text(errors="replace")[-4000:]

    def standalone_down() -> str | None:
        return None if proc.poll() is None else f"lake airflow standalone exited with {proc.returncode}:\n{tail()}"

    try:
        _run_sequence(api, standalone_down, tail, airflow_home, root, delivery_day, t_start)
    finally:
        _stop(proc)
    _check_published(root)


def _generate(root: Path, env: dict) -> str:
    """1. files in the inbox, as the README says (`lake generate --out lake_data/inbox`); the delivery day."""
    r = subprocess.run([str(BIN / "lake"), "generate", "--scale", str(SCALE), "--seed", str(SEED),
                        "--out", str(root / "inbox")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    iot = json.loads((root / "inbox" / "iot_manifest.json").read_text())
    [delivery_day] = iot["generator"]["days"]
    return delivery_day


def _check_published(root: Path) -> None:
    """5. what the sequence must have produced: every built table, the share and open zones, the catalogue."""
    from jobs.orchestration import the_registry

    reg = the_registry()
    missing = [t for j in reg.order() for t in j.tables if _first_commit(root, t) is None]
    for tc in reg.contracts.built_tables():
        if tc.share_type != "none" and _first_commit(root, f"share.{tc.zone}__{tc.name}") is None:
            missing.append(f"share.{tc.zone}__{tc.name}")
        if tc.open_type != "none" and tc.open_dataset and not (root / "open" / tc.open_dataset["id"] / "data.csv").is_file():
            missing.append(f"open/{tc.open_dataset['id']}/data.csv")
    if _first_commit(root, "catalog.resources") is None:
        missing.append("catalog.resources")
    assert not missing, f"not published after the sequence: {missing}"


def _run_sequence(api: Api, gone, deployment_tail, home: Path, root: Path, delivery_day: str, t_start: float) -> None:
    """Steps 3-4 and the checks on the runs. ``gone()`` says why the deployment stopped (None while it
    runs); ``deployment_tail()`` is the end of its output, for a failure message; ``home`` its AIRFLOW_HOME
    (task logs under ``logs/``)."""
    from jobs.orchestration import the_registry

    # 3. wait until it answers and every component is healthy, log in, wait for the DAGs
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        assert gone() is None, gone()
        h = api.health()
        if h and all((h.get(c) or {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "triggerer",
                                                                            "dag_processor")):
            break
        assert time.monotonic() < deadline, f"Airflow not healthy after {STARTUP_TIMEOUT} s ({h}):\n{deployment_tail()}"
        time.sleep(2)
    api.login()
    expected = expected_dags()
    while True:
        dags = {d["dag_id"]: d for d in api.paged("/api/v2/dags?dag_id_pattern=lake__", "dags")}
        if expected <= set(dags):
            break
        assert time.monotonic() < deadline, f"DAGs not listed: {sorted(expected - set(dags))}\n{deployment_tail()}"
        time.sleep(2)
    t_ready = time.time()
    print(f"\nAirflow answering with every DAG after {t_ready - t_start:.0f} s (incl. lake generate)")

    # 4. unpause every lake DAG; trigger the ingest DAGs and the readings' DAG for the delivered day
    for dag_id in sorted(dags):
        api._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    readings = the_registry().jobs["jobs.base.iot_reading"].dag_id
    for dag_id in sorted(d for d in dags if d.startswith("lake__ingest__")):
        api._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": f"readme__{dag_id}", "logical_date": None})
    api._call("POST", f"/api/v2/dags/{readings}/dagRuns", {"dag_run_id": f"readme__{readings}", "logical_date": None,
                                                           "conf": {"day": delivery_day}})
    t_triggered = time.time()

    deadline = time.monotonic() + RUN_TIMEOUT
    quiet_since, last_count, down_since = None, -1, None
    while True:
        assert gone() is None, gone()
        h = api.health() or {}
        down = [c for c in ("scheduler", "triggerer", "dag_processor") if (h.get(c) or {}).get("status") != "healthy"]
        down_since = (down_since or time.monotonic()) if down else None
        assert not down or time.monotonic() - down_since < COMPONENT_DOWN_SECONDS, \
            f"{down} not healthy for {COMPONENT_DOWN_SECONDS} s ({h}); Airflow's output:\n{deployment_tail()}"
        runs = [r for r in api.paged("/api/v2/dags/~/dagRuns?order_by=id", "dag_runs") if r["dag_id"] in expected]
        active = [r for r in runs if r["state"] not in TERMINAL]
        queued = {d: n for d in expected
                  if (n := api.get(f"/api/v2/dags/{d}/assets/queuedEvents")["total_entries"])}
        now = time.monotonic()
        if active or queued or len(runs) != last_count:
            quiet_since, last_count = None, len(runs)
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_SECONDS:
            break
        if now > deadline:
            tis = api.paged("/api/v2/dags/~/dagRuns/~/taskInstances", "task_instances")
            pytest.fail(f"the DAG runs did not finish within {RUN_TIMEOUT // 60} minutes; queued asset events "
                        f"{queued}; runs not finished:\n{_describe(active, tis, home, with_logs=True)}")
        time.sleep(POLL_SECONDS)
    t_done = time.time() - QUIET_SECONDS

    tis = [t for t in api.paged("/api/v2/dags/~/dagRuns/~/taskInstances", "task_instances") if t["dag_id"] in expected]
    # measured time per DAG run and in total
    print(f"{len(runs)} DAG runs, {len(tis)} task instances; from the triggers to the last run's end "
          f"{(t_done - t_triggered) / 60:.1f} min (whole test so far {(t_done - t_start) / 60:.1f} min)")
    print("  start (UTC)  run s  tasks s  state    DAG run (tasks: time in a task; the rest of a run waits for the pool)")
    busy = 0.0
    for r in sorted(runs, key=lambda r: r["start_date"] or ""):
        took = (_ts(r["end_date"]) or 0) - (_ts(r["start_date"]) or 0)
        own = [t for t in tis if t["dag_run_id"] == r["dag_run_id"] and t["dag_id"] == r["dag_id"]]
        working = sum(t["duration"] or 0 for t in own)
        busy += working
        print(f"  {r['start_date'][11:19]}  {took:6.0f}  {working:6.0f}  {r['state']:8} {r['dag_id']} {r['run_type']}: "
              + ", ".join(f"{t['task_id']} {t['state']}" for t in own))
    print(f"  time inside tasks, summed: {busy / 60:.1f} min")

    failed = [r for r in runs if r["state"] != "success"]
    assert not failed, f"{len(failed)} of {len(runs)} DAG runs did not succeed:\n{_describe(failed, tis, home, True)}"

    # every build task ran only once what it requires existed; it skipped (never failed) before, or when it
    # had nothing to do
    reg = the_registry()
    for job in reg.order():
        own = [t for t in tis if t["dag_id"] == job.dag_id and t["task_id"] == job.task_id]
        assert any(t["state"] == "success" for t in own), \
            f"{job.dag_id} never built: {[(t['dag_run_id'], t['state'], _skip_reason(home, t)) for t in own]}"
        for t in own:
            started = _ts(t["start_date"])
            created = {u: _first_commit(root, u) for u in job.requires}
            absent = sorted(u for u, c in created.items() if c is None or c > started)
            if t["state"] == "success":
                assert not absent, f"{job.dag_id} {t['dag_run_id']} built before {absent} existed"
                continue
            reason = _skip_reason(home, t)
            assert t["state"] == "skipped" and reason, (job.dag_id, t["dag_run_id"], t["state"], reason)
            if "waiting for" in reason:
                assert absent, f"{job.dag_id} {t['dag_run_id']} skipped although {job.requires} existed: {reason}"
            else:
                assert not absent and ("unchanged" in reason or "nothing delivered" in reason), (job.dag_id, reason)

    # a skipped task emits no asset event: every event of the lake DAGs comes from a task that succeeded, and
    # the runs an event created belong to DAGs scheduled on it
    state = {(t["dag_id"], t["dag_run_id"], t["task_id"]): t["state"] for t in tis}
    events = [e for e in api.paged("/api/v2/assets/events", "asset_events") if e["source_dag_id"] in expected]
    assert events
    for e in events:
        assert state[(e["source_dag_id"], e["source_run_id"], e["source_task_id"])] == "success", e

    # the readings' context went through the scheduler: the event of base.iot_reading carries the reading
    # days, the sensing topics' build consumed it, and device health holds exactly those days
    readings_events = [e for e in events if e["name"] == "base.iot_reading"]
    assert readings_events, "base.iot_reading was never updated"
    sent = {d for e in readings_events for d in e["extra"]["lake_context"]["reading_days"]}
    assert delivery_day in sent, sent
    sensing = reg.jobs["jobs.topic.sensing"]
    # With runs in parallel (the LocalExecutor of `lake airflow up`) a sensing run queued earlier, on the
    # devices' event, can start after the readings landed and build their days; the run of the readings'
    # own event then finds every sensing table unchanged and skips. Such a run's days count as received
    # only when a sensing build started after that event, so it saw the readings.
    sensing_tis = [t for t in tis if t["dag_id"] == sensing.dag_id and t["task_id"] == sensing.task_id]
    built_at = [_ts(t["start_date"]) for t in sensing_tis if t["state"] == "success"]
    received = set()
    for t in sensing_tis:
        if t["state"] not in ("success", "skipped"):
            continue
        consumed = api.get(f"/api/v2/dags/{t['dag_id']}/dagRuns/{t['dag_run_id']}/upstreamAssetEvents")
        mine = [e for e in consumed["asset_events"] if e["name"] == "base.iot_reading"]
        if t["state"] == "skipped":
            if "unchanged" not in _skip_reason(home, t):
                continue
            latest = max((_ts(e["timestamp"]) for e in mine), default=None)
            if latest is None or not any(b >= latest for b in built_at):
                continue
        received |= {d for e in mine for d in (e["extra"] or {}).get("lake_context", {}).get("reading_days", [])}
    assert received == sent, f"the sensing topics received reading days {sorted(received)}, sent {sorted(sent)}"
    from deltalake import DeltaTable

    health_days = {str(d) for d in DeltaTable(str(root / "topic" / "device_health")).to_pyarrow_table(
        columns=["day"]).column("day").to_pylist()}
    assert health_days == sent, f"topic.device_health has days {sorted(health_days)}, the readings touched {sorted(sent)}"


# --- the same sequence on PostgreSQL with the LocalExecutor (`lake airflow up`) ---------------------------


@pytest.mark.cluster
def test_readme_sequence_on_postgresql(tmp_path):
    """The README's sequence on the deployment of "Running on a cluster": `lake airflow up` (Debian's
    PostgreSQL as the metadata database; scheduler, dag-processor, triggerer and api-server with the
    LocalExecutor, runs in parallel, Delta writers still one at a time through the pool ``lake_writes``),
    the ingest DAGs triggered through the REST API, the asset-triggered builds, report and publish
    followed to the end, the same checks as under standalone, then `lake airflow down` leaves nothing.
    Needs ``./setup.sh --cluster`` (PostgreSQL): `pytest -m cluster tests/test_scheduler.py`, about an hour
    on 2 cores. The lake is a local folder and Spark local: this test is about the scheduler."""
    import shutil
    import tempfile

    from lake.cluster.install import pg_bin_dir

    if pg_bin_dir() is None:
        pytest.fail("PostgreSQL is not installed: run ./setup.sh --cluster")
    # PostgreSQL runs as user postgres when we are root: its state folder must be reachable by it
    state = Path(tempfile.mkdtemp(prefix="lake-airflow-pg-"))
    state.chmod(0o755)
    root = tmp_path / "lake"
    env = {k: v for k, v in _env(state / "airflow", root).items() if k != "AIRFLOW_HOME"}
    env["LAKE_CLUSTER_HOME"] = str(state)
    t_start = time.time()
    delivery_day = _generate(root, env)

    def lake_airflow(verb: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "lake"), "airflow", verb], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)

    def logs_tail() -> str:
        out = []
        for name in ("airflow-scheduler", "airflow-dag-processor", "airflow-api-server"):
            f = state / "logs" / f"{name}.log"
            if f.is_file():
                out.append(f"--- {f}\n" + f.read_text(errors="replace")[-1500:])
        return "\n".join(out)

    try:
        up = lake_airflow("up", 900)
        assert up.returncode == 0, up.stdout + up.stderr + logs_tail()
        print(f"\nlake airflow up: {time.time() - t_start:.0f} s (incl. lake generate)")
        air = json.loads((state / "airflow.json").read_text())
        api = Api(air["url"], state / "airflow" / "passwords.json")
        _run_sequence(api, lambda: None, logs_tail, state / "airflow", root, delivery_day, t_start)
    finally:
        down = lake_airflow("down", 300)
        still = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
        shutil.rmtree(state, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not still, f"processes left running after `lake airflow down`: {still}"
    _check_published(root)
