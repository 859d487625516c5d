"""`lake cluster up|down|status`: a Spark standalone master and workers from the pinned pyspark's own
jars and SeaweedFS (``weed mini``) as the S3 object store, both on 127.0.0.1.

Spark: ``spark-class org.apache.spark.deploy.master.Master`` and ``...worker.Worker spark://...``
from the venv's pyspark (no other Spark download); executors run the venv's python
(PYSPARK_PYTHON), so they import the project's packages. SeaweedFS: master, volume server, filer and
S3 gateway in one ``weed mini`` process, its identities (generated access/secret key) in
<home>/secrets/s3.json, its data in <home>/seaweedfs.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lake.cluster import procs
from lake.cluster.install import weed_installed, weed_path
from lake.cluster.procs import HOST, ClusterError

BUCKET = "lake"
S3_REGION = "us-east-1"
SPARK_MASTER_PORT = 7077  # the usual ports are taken when free, other free ones otherwise
SPARK_MASTER_UI = 8090
S3_PORT = 8333

DEFAULT_WORKERS = 2
# A 2-core, 24 GB machine: one core per worker; the driver (LAKE_DRIVER_MEMORY, 6g) stays on it too.
DEFAULT_WORKER_MEMORY = "5g"
DEFAULT_EXECUTOR_MEMORY = "4g"
START_TIMEOUT = float(os.environ.get("LAKE_CLUSTER_TIMEOUT", "120"))


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def venv_bin() -> Path:
    return Path(sys.executable).parent


def _spark_env(extra: dict) -> dict:
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": HOST,
           "SPARK_DAEMON_MEMORY": "512m", "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    for k in ("SPARK_CONF_DIR", "SPARK_MASTER_OPTS", "SPARK_WORKER_OPTS"):
        env.pop(k, None)
    env.update(extra)
    return env


# ---------------------------------------------------------------- Spark standalone

def start_spark(workers: int, worker_memory: str) -> dict:
    home = procs.home()
    taken: set[int] = set()
    state = procs.read_state("spark")
    if procs.running("spark-master") and state:
        master_port, ui_port = state["master_port"], state["master_ui"]
    else:
        master_port = procs.free_port(SPARK_MASTER_PORT, taken)
        ui_port = procs.free_port(SPARK_MASTER_UI, taken)
    spark_class = str(spark_home() / "bin" / "spark-class")
    procs.start("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
                                 "--port", str(master_port), "--webui-port", str(ui_port)],
                env=_spark_env({}), cwd=home)
    procs.wait_until(lambda: procs.port_open(master_port), "Spark master", "spark-master", START_TIMEOUT)
    url = f"spark://{HOST}:{master_port}"
    worker_uis = []
    for i in range(1, workers + 1):
        name = f"spark-worker-{i}"
        old = state.get("worker_uis", [])
        wui = old[i - 1] if procs.running(name) and len(old) >= i else procs.free_port(None, taken)
        work = home / "spark" / f"work-{i}"
        local = home / "spark" / f"local-{i}"
        work.mkdir(parents=True, exist_ok=True)
        local.mkdir(parents=True, exist_ok=True)
        procs.start(name, [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", HOST,
                           "--cores", "1", "--memory", worker_memory, "--webui-port", str(wui),
                           "--work-dir", str(work), url],
                    env=_spark_env({"SPARK_LOCAL_DIRS": str(local), "SPARK_WORKER_DIR": str(work)}), cwd=home)
        worker_uis.append(wui)

    def all_alive() -> bool:
        info = procs.http_json(f"http://{HOST}:{ui_port}/json/")
        return sum(1 for w in info.get("workers", []) if w.get("state") == "ALIVE") >= workers

    # a worker that dies is named with its own log; otherwise the master's page is the judge
    deadline = time.monotonic() + START_TIMEOUT
    for i in range(1, workers + 1):
        procs.wait_until(lambda i=i: procs.running(f"spark-worker-{i}") is not None and _worker_registered(i),
                         f"Spark worker {i}", f"spark-worker-{i}", max(5.0, deadline - time.monotonic()))
    procs.wait_until(all_alive, f"Spark master ({workers} workers ALIVE)", "spark-master",
                     max(5.0, deadline - time.monotonic()))
    state = {"master_url": url, "master_port": master_port, "master_ui": ui_port, "worker_uis": worker_uis,
             "workers": workers, "worker_memory": worker_memory}
    procs.write_state("spark", state)
    return state


def _worker_registered(i: int) -> bool:
    log = procs.log_file(f"spark-worker-{i}")
    text = log.read_text(errors="replace") if log.exists() else ""
    last = text.rsplit("=== ", 1)[-1]  # this start's output only
    return "Successfully registered with master" in last


# ---------------------------------------------------------------- SeaweedFS

def s3_keys() -> tuple[str, str]:
    return procs.secret("s3_access_key", 10), procs.secret("s3_secret_key", 30)


def _s3_config() -> Path:
    import json

    access, secret_key = s3_keys()
    path = procs.home() / "secrets" / "s3.json"
    procs.write_private(path, json.dumps({"identities": [{
        "name": "lake", "credentials": [{"accessKey": access, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}, indent=2) + "\n")
    return path


def s3_filesystem(endpoint: str):
    """A pyarrow S3 client (AWS SDK for C++): the independent S3 client used to create the bucket and
    to check that the store answers signed requests."""
    from pyarrow import fs

    access, secret_key = s3_keys()
    return fs.S3FileSystem(access_key=access, secret_key=secret_key, endpoint_override=endpoint,
                           scheme="http", region=S3_REGION, allow_bucket_creation=True,
                           force_virtual_addressing=False, connect_timeout=2, request_timeout=10)


def start_s3() -> dict:
    if not weed_installed():
        raise ClusterError(f"SeaweedFS is not built ({weed_path()}): run `lake cluster install` "
                           "(or ./setup.sh --cluster)")
    home = procs.home()
    # SeaweedFS keeps its master's identity (and so its volumes) tied to the addresses it first ran
    # with: a state folder keeps its ports; a taken one is an error, not a silent move
    state = procs.read_state("s3")
    ports = state.get("ports")
    if ports and not procs.running("seaweedfs"):
        busy = [f"{k} {p}" for k, p in ports.items() if not procs.port_free(p)]
        if busy:
            raise ClusterError(f"SeaweedFS in {home} was set up on ports now taken ({', '.join(busy)}): "
                               "free them, or use another LAKE_CLUSTER_HOME")
    if not ports:
        taken: set[int] = set()
        ports = {"s3": procs.free_port(S3_PORT, taken)}
        for k in ("s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
                  "admin", "admin_grpc"):
            ports[k] = procs.free_port(None, taken)
        procs.write_state("s3", {"ports": ports})
    data = home / "seaweedfs"
    run = home / "run"
    data.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    config = _s3_config()
    argv = [str(weed_path()), "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            f"-admin.port={ports['admin']}", f"-admin.port.grpc={ports['admin_grpc']}", "-admin.port.legacy=0",
            f"-admin.password={procs.secret('seaweedfs_admin_password')}",
            "-master.telemetry=false", f"-s3.config={config}",
            f"-filer.localSocket={run / 'filer.sock'}", f"-s3.localSocket={run / 's3.sock'}"]
    procs.start("seaweedfs", argv, env={**os.environ}, cwd=home)
    endpoint = f"http://{HOST}:{ports['s3']}"
    procs.wait_until(lambda: procs.port_open(ports["s3"]), "SeaweedFS S3 gateway", "seaweedfs", START_TIMEOUT)
    s3 = s3_filesystem(endpoint)

    def bucket_ready() -> bool:
        from pyarrow import fs

        if s3.get_file_info(BUCKET).type != fs.FileType.Directory:
            s3.create_dir(BUCKET)
        return s3.get_file_info(BUCKET).type == fs.FileType.Directory

    procs.wait_until(_quiet(bucket_ready), f"SeaweedFS S3 gateway (bucket {BUCKET})", "seaweedfs", START_TIMEOUT)
    state = {"endpoint": endpoint, "bucket": BUCKET, "ports": ports, "data": str(data)}
    procs.write_state("s3", state)
    return state


def _quiet(check):
    def run() -> bool:
        try:
            return check()
        except OSError:  # pyarrow raises OSError for S3 errors (not ready yet, 5xx)
            return False
    return run


# ---------------------------------------------------------------- up / down / status

def up(workers: int = DEFAULT_WORKERS, worker_memory: str = DEFAULT_WORKER_MEMORY,
       executor_memory: str = DEFAULT_EXECUTOR_MEMORY, env_file: Path | None = None, log=print) -> dict:
    """Start (or keep) the object store and the Spark cluster, wait until they answer, write the
    environment to <home>/cluster.env and ``env_file``. Returns that environment."""
    t0 = time.monotonic()
    s3 = start_s3()
    log(f"SeaweedFS S3 at {s3['endpoint']} (bucket {s3['bucket']}), {time.monotonic() - t0:.0f} s")
    spark = start_spark(workers, worker_memory)
    log(f"Spark master at {spark['master_url']} with {workers} workers (UI http://{HOST}:{spark['master_ui']}), "
        f"{time.monotonic() - t0:.0f} s")
    access, secret_key = s3_keys()
    env = {
        "LAKE_SPARK_MASTER": spark["master_url"],
        "LAKE_SPARK_DRIVER_HOST": HOST,
        "LAKE_EXECUTOR_MEMORY": executor_memory,
        "LAKE_ROOT": f"s3a://{s3['bucket']}/lake",
        "LAKE_S3_ENDPOINT": s3["endpoint"],
        "LAKE_S3_ACCESS_KEY": access,
        "LAKE_S3_SECRET_KEY": secret_key,
        "LAKE_S3_REGION": S3_REGION,
        "LAKE_S3_PATH_STYLE": "true",
    }
    procs.write_env_file(procs.home() / "cluster.env", env)
    if env_file:
        procs.write_env_file(Path(env_file), env)
    return env


def _names() -> list[str]:
    pids = procs.home() / "pids"
    names = sorted(p.stem for p in pids.glob("*.pid")) if pids.exists() else []
    return [n for n in names if n == "seaweedfs" or n.startswith("spark-")]


def down(log=print) -> list[str]:
    """Stop what `up` started (by pid file): workers, master, object store. Idempotent."""
    stopped = []
    names = _names()
    order = [n for n in names if n.startswith("spark-worker")] + [n for n in names if n == "spark-master"] + \
            [n for n in names if n == "seaweedfs"]
    for name in order:
        if procs.stop(name):
            stopped.append(name)
            log(f"stopped {name}")
    return stopped


def status() -> list[dict]:
    """One row per component: name, pid (None when not running), URL."""
    spark = procs.read_state("spark")
    s3 = procs.read_state("s3")
    rows = []
    if s3 or procs.read_pid("seaweedfs"):
        rows.append({"component": "seaweedfs (S3)", "pid": procs.running("seaweedfs"),
                     "url": f"{s3.get('endpoint', '?')} bucket {s3.get('bucket', '?')}"})
    if spark or procs.read_pid("spark-master"):
        rows.append({"component": "spark-master", "pid": procs.running("spark-master"),
                     "url": f"{spark.get('master_url', '?')} (UI http://{HOST}:{spark.get('master_ui', '?')})"})
        for i, ui in enumerate(spark.get("worker_uis", []), 1):
            rows.append({"component": f"spark-worker-{i}", "pid": procs.running(f"spark-worker-{i}"),
                         "url": f"http://{HOST}:{ui}"})
    return rows
