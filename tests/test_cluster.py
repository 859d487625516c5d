"""The cluster tier, for real, in a temporary state folder (opt-in: `pytest -m cluster tests/test_cluster.py`;
needs `./setup.sh --cluster`): `lake cluster up` starts SeaweedFS and a Spark standalone master with
two workers on 127.0.0.1, a Spark job on that master writes a Delta table to the s3a root and reads it
back (in a subprocess: one Spark session per process, the suite's local session is not touched), the
executors run the project's own code, deltalake and DuckDB read the same table from the S3 endpoint
without a JVM, `lake airflow up` serves the project's DAGs from PostgreSQL through Airflow's REST API,
and `lake cluster down` / `lake airflow down` leave nothing running.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_dags import EXPECTED as PROJECT_DAGS

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent
LAKE = str(Path(sys.executable).parent / "lake")
TIMES: dict[str, float] = {}


def _base_env(state: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKE_")}
    env["LAKE_CLUSTER_HOME"] = str(state)
    return env


def _lake(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([LAKE, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _read_env(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def cluster():
    from lake.cluster.install import pg_bin_dir, weed_installed
    from lake.spark import SetupError, s3a_jars

    try:
        s3a_jars(str(REPO / ".cache" / "jars"))
    except SetupError as e:
        pytest.fail(f"the cluster tier is not installed: {e}")
    if not weed_installed() or pg_bin_dir() is None:
        pytest.fail("the cluster tier is not installed (weed or PostgreSQL missing): run ./setup.sh --cluster")
    # PostgreSQL runs as user postgres when we are root: the folder must be reachable by it
    state = Path(tempfile.mkdtemp(prefix="lake-cluster-"))
    state.chmod(0o755)
    env = _base_env(state)
    try:
        t0 = time.monotonic()
        up = _lake(["cluster", "up", "--env-file", str(state / "test.env")], env)
        TIMES["lake cluster up"] = time.monotonic() - t0
        assert up.returncode == 0, up.stdout + up.stderr
        yield {"state": state, "env": env, "lake_env": _read_env(state / "test.env"), "up": up.stdout}
    finally:
        _lake(["airflow", "down"], env, timeout=300)
        _lake(["cluster", "down"], env, timeout=300)
        print("\nmeasured: " + ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()))
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def spark_job(cluster):
    """tests/cluster_smoke_job.py on the standalone master with the s3a root, in its own process."""
    env = {**cluster["env"], **cluster["lake_env"]}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(REPO / "tests" / "cluster_smoke_job.py"), "points"], env=env,
                       capture_output=True, text=True, timeout=1200, cwd=REPO)
    TIMES["Spark job on the cluster"] = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def airflow(cluster):
    env = {**cluster["env"], **cluster["lake_env"]}
    t0 = time.monotonic()
    r = _lake(["airflow", "up"], env)
    TIMES["lake airflow up"] = time.monotonic() - t0
    assert r.returncode == 0, r.stdout + r.stderr
    state = cluster["state"]
    air = json.loads((state / "airflow.json").read_text())
    return {"url": air["url"], "home": state / "airflow", "env": env,
            "password": json.loads((state / "airflow" / "passwords.json").read_text())["admin"]}


def test_cluster_up_writes_the_environment_and_status_shows_it(cluster):
    env = cluster["lake_env"]
    assert set(env) >= {"LAKE_SPARK_MASTER", "LAKE_ROOT", "LAKE_S3_ENDPOINT", "LAKE_S3_ACCESS_KEY", "LAKE_S3_SECRET_KEY"}
    assert env["LAKE_ROOT"] == "s3a://lake/lake"
    assert env["LAKE_SPARK_MASTER"].startswith("spark://127.0.0.1:")
    assert env["LAKE_S3_ENDPOINT"].startswith("http://127.0.0.1:")
    assert (cluster["state"] / "test.env").stat().st_mode & 0o077 == 0  # it holds keys
    # the master's own status page: two ALIVE workers with one core each
    spark = json.loads((cluster["state"] / "spark.json").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{spark['master_ui']}/json/", timeout=10) as r:
        master = json.loads(r.read())
    alive = [w for w in master["workers"] if w["state"] == "ALIVE"]
    assert len(alive) == 2 and all(w["cores"] == 1 for w in alive)
    st = _lake(["cluster", "status"], cluster["env"])
    assert st.returncode == 0
    for name in ("seaweedfs", "spark-master", "spark-worker-1", "spark-worker-2"):
        line = next(x for x in st.stdout.splitlines() if name in x)
        assert "running" in line, st.stdout
    assert env["LAKE_S3_ENDPOINT"] in st.stdout and env["LAKE_SPARK_MASTER"] in st.stdout
    # a second `up` keeps what runs and writes the same environment
    again = _lake(["cluster", "up", "--env-file", str(cluster["state"] / "again.env")], cluster["env"])
    assert again.returncode == 0, again.stderr
    assert _read_env(cluster["state"] / "again.env") == env


def test_spark_on_the_cluster_writes_and_reads_delta_on_s3(spark_job, cluster):
    from lake.geo import assign_units_pandas

    r = spark_job
    assert r["master"] == cluster["lake_env"]["LAKE_SPARK_MASTER"]
    assert r["path"] == "s3a://lake/lake/smoke/points"
    assert r["hadoop_fs"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert len(r["executors"]) == 3  # the driver's block manager and one executor per worker
    assert r["count"] == 2500 and len(r["rows"]) == 2500
    # content: the ids, coordinates and towns the executors computed (shapely STRtree in
    # mapInPandas) against the brute-force oracle computed here
    ids = [row[0] for row in r["rows"]]
    assert ids == list(range(2500))
    oracle = assign_units_pandas([row[1] for row in r["rows"]], [row[2] for row in r["rows"]])
    assert [row[3] for row in r["rows"]] == list(oracle["town_code"])
    assert 0 < sum(c is not None for c in oracle["town_code"]) < 2500  # points inside and outside
    # the UDF ran in executors' Python workers: other processes, the venv's python, this repository
    assert r["runners"]
    for runner in r["runners"]:
        pid, python, repo = runner.split("|")
        assert int(pid) != r["driver_pid"]
        assert python == sys.executable
        assert Path(repo) == REPO


def test_jvm_free_readers_read_the_same_table_from_s3(spark_job, cluster):
    import duckdb
    import pyarrow.dataset as ds
    from deltalake import DeltaTable
    from pyarrow import fs

    from lake.settings import Settings

    env = cluster["lake_env"]
    s = Settings(root=env["LAKE_ROOT"], s3_endpoint=env["LAKE_S3_ENDPOINT"], s3_access_key=env["LAKE_S3_ACCESS_KEY"],
                 s3_secret_key=env["LAKE_S3_SECRET_KEY"], s3_region=env["LAKE_S3_REGION"])
    dt = DeltaTable(spark_job["path"], storage_options=s.s3_storage_options())
    rows = sorted(dt.to_pyarrow_table(columns=["id", "lon", "lat", "town_code", "town"]).to_pylist(),
                  key=lambda x: x["id"])
    assert [list(x.values()) for x in rows] == spark_job["rows"]
    t = dt.to_pyarrow_dataset()  # noqa: F841 (DuckDB scans it)
    assert duckdb.sql("SELECT count(*), count(town), sum(id) FROM t").fetchall() == \
        [(2500, sum(x["town"] is not None for x in rows), sum(range(2500)))]
    # an independent S3 client (Arrow's, AWS SDK for C++) reading the Parquet files the log names
    s3 = fs.S3FileSystem(access_key=s.s3_access_key, secret_key=s.s3_secret_key, scheme="http",
                         endpoint_override=s.s3_endpoint.removeprefix("http://"), region=s.s3_region)
    log = s3.get_file_info(fs.FileSelector("lake/lake/smoke/points/_delta_log"))
    assert any(f.base_name == "00000000000000000000.json" for f in log)
    files = [u.split("://", 1)[1] for u in dt.file_uris()]
    raw = ds.dataset(files, filesystem=s3, format="parquet")  # noqa: F841 (DuckDB scans it)
    assert duckdb.sql("SELECT count(*), sum(id) FROM raw").fetchall() == [(2500, sum(range(2500)))]


def test_airflow_rest_api_lists_the_dags_from_postgresql(airflow, cluster):
    import psycopg2

    base = airflow["url"]

    def get(path: str, token: str | None):
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def token(password: str) -> str:
        req = urllib.request.Request(f"{base}/auth/token", data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["access_token"]

    with pytest.raises(urllib.error.HTTPError) as bad:
        token("not-the-password")
    assert bad.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        get("/api/v2/dags", None)
    assert anonymous.value.code in (401, 403)
    dags = get("/api/v2/dags?limit=100", token(airflow["password"]))
    api_ids = {d["dag_id"] for d in dags["dags"]}
    assert api_ids == PROJECT_DAGS
    health = get("/api/v2/monitor/health", None)
    assert {health[k]["status"] for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}
    # the metadata really is in the private PostgreSQL: read it there
    pg = json.loads((cluster["state"] / "postgres.json").read_text())
    secrets = json.loads((cluster["state"] / "secrets.json").read_text())
    con = psycopg2.connect(host="127.0.0.1", port=pg["port"], user=pg["user"], dbname=pg["database"],
                           password=secrets["postgres_password"])
    try:
        with con.cursor() as cur:
            cur.execute("SELECT dag_id FROM dag")
            assert {r[0] for r in cur.fetchall()} == PROJECT_DAGS
            cur.execute("SELECT slots FROM slot_pool WHERE pool = 'lake_writes'")
            assert cur.fetchall() == [(1,)]
    finally:
        con.close()
    # `lake airflow ...` with this AIRFLOW_HOME lists the DAGs at once (serialised at set-up)
    listed = _lake(["airflow", "dags", "list", "-o", "json"], {**airflow["env"], "AIRFLOW_HOME": str(airflow["home"])})
    assert listed.returncode == 0, listed.stderr
    table = next(line for line in listed.stdout.splitlines() if line.startswith("[{"))  # after any warnings
    assert {d["dag_id"] for d in json.loads(table)} == PROJECT_DAGS


def test_down_stops_everything_and_is_idempotent(cluster, airflow, spark_job):
    from lake.cluster import procs

    state = cluster["state"]
    pids = {p.stem: int(p.read_text()) for p in (state / "pids").glob("*.pid")}
    assert {"seaweedfs", "spark-master", "spark-worker-1", "spark-worker-2", "postgres",
            "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(pids)
    for verb in (["airflow", "down"], ["cluster", "down"], ["airflow", "down"], ["cluster", "down"]):
        r = _lake(verb, cluster["env"], timeout=300)
        assert r.returncode == 0, r.stderr
    assert not [name for name, pid in pids.items() if procs.alive(pid)]
    assert not list((state / "pids").glob("*.pid"))
    endpoint_port = int(cluster["lake_env"]["LAKE_S3_ENDPOINT"].rsplit(":", 1)[1])
    assert not procs.port_open(endpoint_port)
    st = _lake(["cluster", "status"], cluster["env"])
    assert "running" not in st.stdout
