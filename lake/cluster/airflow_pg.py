"""`lake airflow up|down`: Airflow for real on PostgreSQL, next to the embedded SQLite set-up.

- PostgreSQL: Debian's server programs (``lake cluster install``), a private cluster initialised into
  <home>/postgres/data, listening on 127.0.0.1 only, on a free port, password (scram-sha-256)
  generated into <home>/secrets.json. As root it runs as the ``postgres`` user (PostgreSQL refuses
  root), so the state folder must be reachable by that user.
- Airflow: its own AIRFLOW_HOME (<home>/airflow, an airflow.cfg written here: LocalExecutor, the
  project's dags/, the database URL, the JWT and API secrets), separate from the SQLite ``.airflow/``
  that `lake demo` and the tests use. `airflow db migrate`, the pool lake_writes (1 slot) and
  `airflow dags reserialize` (so `dags list` shows the DAGs at once), then the scheduler,
  dag-processor, triggerer and api-server, waited for on /api/v2/monitor/health.
- The REST API (/api/v2) takes a JWT: POST /auth/token with {"username": "admin", "password": ...}
  (the simple auth manager's password file, <home>/airflow/passwords.json, written here with a
  generated password) returns {"access_token": ...}, sent as ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lake.cluster import procs
from lake.cluster.install import pg_bin_dir
from lake.cluster.procs import HOST, ClusterError
from lake.settings import REPO

PG_PORT = 5433
API_PORT = 8080
ADMIN = "admin"
DB_USER = "lake"
DB_NAME = "airflow"
COMPONENTS = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
START_TIMEOUT = float(os.environ.get("LAKE_CLUSTER_TIMEOUT", "120"))
SETUP_TIMEOUT = 900


def airflow_home() -> Path:
    return procs.home() / "airflow"


def pg_data() -> Path:
    return procs.home() / "postgres" / "data"


# ---------------------------------------------------------------- PostgreSQL

def _pg_user() -> dict:
    """subprocess keyword arguments to run PostgreSQL's programs: as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError("running as root, but there is no 'postgres' user to run PostgreSQL as "
                           "(install Debian's postgresql: lake cluster install)") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid}


def _owned_by_pg(path: Path, as_pg: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if as_pg:
        os.chown(path, as_pg["user"], as_pg["group"])


def _check_reachable(path: Path, as_pg: dict) -> None:
    if not as_pg:
        return
    for p in [path, *path.parents]:
        st = p.stat()
        if not (st.st_mode & 0o001) and st.st_uid != as_pg["user"]:
            raise ClusterError(f"PostgreSQL runs as user 'postgres' (it refuses root), which cannot reach "
                               f"{path}: {p} is not traversable by others (chmod o+x it or set "
                               "LAKE_CLUSTER_HOME elsewhere)")


def _pg(cmd: list[str], as_pg: dict, **kw) -> subprocess.CompletedProcess:
    bindir = pg_bin_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(kw.pop("env", {}))
    return subprocess.run([str(bindir / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env,
                          cwd="/", **as_pg, **kw)


def start_postgres() -> dict:
    if pg_bin_dir() is None:
        raise ClusterError("PostgreSQL is not installed: run `lake cluster install` (or ./setup.sh --cluster)")
    as_pg = _pg_user()
    home = procs.home()
    data = pg_data()
    _check_reachable(home, as_pg)
    _owned_by_pg(data.parent, as_pg)
    run = home / "postgres" / "run"
    _owned_by_pg(run, as_pg)
    log = procs.log_file("postgres")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    if as_pg:
        os.chown(log, as_pg["user"], as_pg["group"])
    password = procs.secret("postgres_password")
    if not (data / "PG_VERSION").exists():
        pwfile = data.parent / "initdb.pw"
        procs.write_private(pwfile, password + "\n")
        if as_pg:
            os.chown(pwfile, as_pg["user"], as_pg["group"])
        try:
            r = _pg(["initdb", "-D", str(data), "-U", DB_USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                     "-E", "UTF8", "--locale=C"], as_pg)
        finally:
            pwfile.unlink(missing_ok=True)
        if r.returncode != 0:
            raise ClusterError(f"PostgreSQL initdb failed: {(r.stdout + r.stderr).strip()[-400:]}")
    state = procs.read_state("postgres")
    status = _pg(["pg_ctl", "status", "-D", str(data)], as_pg)
    if status.returncode == 0 and state:
        port = state["port"]
    else:
        port = procs.free_port(PG_PORT)
        opts = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={run}"
        r = _pg(["pg_ctl", "start", "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", str(int(START_TIMEOUT))],
                as_pg)
        if r.returncode != 0:
            raise ClusterError(f"PostgreSQL did not start: see {log}")
    pid = (data / "postmaster.pid").read_text().split("\n", 1)[0].strip()
    procs.pid_file("postgres").parent.mkdir(parents=True, exist_ok=True)
    procs.pid_file("postgres").write_text(pid + "\n")
    url = f"postgresql+psycopg2://{DB_USER}:{password}@{HOST}:{port}/{DB_NAME}"
    _create_database(port, password)
    state = {"port": port, "data": str(data), "database": DB_NAME, "user": DB_USER}
    procs.write_state("postgres", state)
    return {**state, "url": url}


def _create_database(port: int, password: str) -> None:
    import psycopg2

    def connect():
        return psycopg2.connect(host=HOST, port=port, user=DB_USER, password=password, dbname="postgres",
                                connect_timeout=3)

    def answers() -> bool:
        try:
            connect().close()
            return True
        except psycopg2.OperationalError:
            return False

    procs.wait_until(answers, "PostgreSQL", "postgres", START_TIMEOUT)
    con = connect()
    try:
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        con.close()


def stop_postgres() -> bool:
    data = pg_data()
    if not (data / "PG_VERSION").exists() or pg_bin_dir() is None:
        procs.pid_file("postgres").unlink(missing_ok=True)
        return False
    as_pg = _pg_user()
    was = _pg(["pg_ctl", "status", "-D", str(data)], as_pg).returncode == 0
    if was:
        r = _pg(["pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60"], as_pg)
        if r.returncode != 0:
            raise ClusterError(f"PostgreSQL did not stop: {(r.stdout + r.stderr).strip()[-300:]}")
    procs.pid_file("postgres").unlink(missing_ok=True)
    return was


# ---------------------------------------------------------------- Airflow

def admin_password() -> str:
    return procs.secret("airflow_admin_password")


def _write_config(db_url: str, api_port: int) -> Path:
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    procs.write_private(passwords, json.dumps({ADMIN: admin_password()}) + "\n")
    base = f"http://{HOST}:{api_port}"
    cfg = f"""# written by `lake airflow up` (lake/cluster/airflow_pg.py); holds secrets: never commit
[core]
dags_folder = {REPO / 'dags'}
load_examples = False
executor = LocalExecutor
parallelism = 4
execution_api_server_url = {base}/execution/
simple_auth_manager_users = {ADMIN}:admin
simple_auth_manager_passwords_file = {passwords}

[database]
sql_alchemy_conn = {db_url}

[api]
host = {HOST}
port = {api_port}
base_url = {base}
secret_key = {procs.secret('airflow_api_secret_key')}

[api_auth]
jwt_secret = {procs.secret('airflow_jwt_secret')}

[logging]
base_log_folder = {home / 'logs'}
"""
    path = home / "airflow.cfg"
    procs.write_private(path, cfg)
    return path


def airflow_env() -> dict:
    """The environment of every Airflow process: the caller's (so LAKE_* of the cluster reach the
    tasks) without AIRFLOW__* overrides, this AIRFLOW_HOME, the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k != "AIRFLOW_CONFIG"}
    env["AIRFLOW_HOME"] = str(airflow_home())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    return env


def _airflow(args: list[str], what: str) -> None:
    exe = str(Path(sys.executable).parent / "airflow")
    log = procs.log_file("airflow-setup")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} airflow {' '.join(args)}\n".encode())
        out.flush()
        try:
            r = subprocess.run([exe, *args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               env=airflow_env(), timeout=SETUP_TIMEOUT, cwd=str(airflow_home()))
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{what} did not finish within {SETUP_TIMEOUT} s: see {log}") from None
    if r.returncode != 0:
        raise ClusterError(f"{what} failed: see {log}")


def api_url() -> str:
    return f"http://{HOST}:{procs.read_state('airflow').get('api_port', API_PORT)}"


def token(base: str | None = None, password: str | None = None) -> str:
    """A JWT for the REST API from the simple auth manager (POST /auth/token)."""
    base = base or api_url()
    body = json.dumps({"username": ADMIN, "password": password or admin_password()}).encode()
    req = urllib.request.Request(f"{base}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback)
        return json.loads(r.read())["access_token"]


def up(log=print) -> dict:
    t0 = time.monotonic()
    pg = start_postgres()
    log(f"PostgreSQL on {HOST}:{pg['port']} (data {pg['data']}), {time.monotonic() - t0:.0f} s")
    state = procs.read_state("airflow")
    if state and procs.running("airflow-api-server"):
        api_port = state["api_port"]
    else:
        api_port = procs.free_port(API_PORT)
    cfg = _write_config(pg["url"], api_port)
    _airflow(["db", "migrate"], "airflow db migrate")
    _airflow(["pools", "set", "lake_writes", "1", "Delta writers are serialised (lake_layout.md)"],
             "airflow pools set lake_writes")
    _airflow(["dags", "reserialize"], "airflow dags reserialize")
    log(f"Airflow metadata on PostgreSQL migrated, pool lake_writes, DAGs serialised, {time.monotonic() - t0:.0f} s")
    exe = str(Path(sys.executable).parent / "airflow")
    argv = {"airflow-api-server": [exe, "api-server", "--host", HOST, "--port", str(api_port)],
            "airflow-scheduler": [exe, "scheduler"],
            "airflow-dag-processor": [exe, "dag-processor"],
            "airflow-triggerer": [exe, "triggerer"]}
    for name in COMPONENTS:
        procs.start(name, argv[name], env=airflow_env(), cwd=airflow_home())
    base = f"http://{HOST}:{api_port}"
    procs.write_state("airflow", {"api_port": api_port, "url": base, "airflow_home": str(airflow_home()),
                                  "config": str(cfg)})

    def healthy(part: str):
        def check() -> bool:
            h = procs.http_json(f"{base}/api/v2/monitor/health")
            return (h.get(part) or {}).get("status") == "healthy"
        return check

    deadline = time.monotonic() + START_TIMEOUT
    procs.wait_until(lambda: procs.port_open(api_port) and procs.http_json(f"{base}/api/v2/monitor/health") is not None,
                     "Airflow api-server", "airflow-api-server", START_TIMEOUT)
    procs.wait_until(healthy("metadatabase"), "Airflow metadata database", "airflow-api-server",
                     max(5.0, deadline - time.monotonic()))
    for part, name in (("scheduler", "airflow-scheduler"), ("dag_processor", "airflow-dag-processor"),
                       ("triggerer", "airflow-triggerer")):
        procs.wait_until(healthy(part), f"Airflow {name[8:]}", name, max(5.0, deadline - time.monotonic()))
    token(base)  # the REST API answers with the generated admin password
    log(f"Airflow API server at {base} (user {ADMIN}, password in {airflow_home() / 'passwords.json'}), "
        f"{time.monotonic() - t0:.0f} s")
    return {"url": base, "airflow_home": str(airflow_home()), "postgres_port": pg["port"]}


def down(log=print) -> list[str]:
    stopped = []
    for name in reversed(COMPONENTS):
        if procs.stop(name):
            stopped.append(name)
            log(f"stopped {name}")
    if stop_postgres():
        stopped.append("postgres")
        log("stopped postgres")
    return stopped


def status() -> list[dict]:
    air = procs.read_state("airflow")
    pg = procs.read_state("postgres")
    rows = []
    if pg or procs.read_pid("postgres"):
        pid = procs.running("postgres")
        rows.append({"component": "postgres", "pid": pid, "url": f"postgresql://{HOST}:{pg.get('port', '?')}/{DB_NAME}"})
    if air:
        for name in COMPONENTS:
            url = air.get("url", "") if name == "airflow-api-server" else ""
            rows.append({"component": name, "pid": procs.running(name), "url": url})
    return rows
