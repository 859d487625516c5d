"""The one Spark session of a process, with Delta from local jars (never Ivy at start-up).

Spark start-up costs ~8 s, so every job, test and Airflow task in a process shares one session.
"""
from __future__ import annotations

import glob
import os
import sys
import threading

from lake.settings import Settings

_lock = threading.Lock()
_session = None
_session_key = None
LOG4J = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")
LOG_FILE: str | None = None  # the Spark log of this process, once a session was started


def log_file(settings: Settings) -> str:
    """Where Spark's JVM logs: ``<root>/_logs/spark.log`` for a local lake, else ``.cache/logs``."""
    from lake.settings import REPO

    folder = os.path.join(settings.root, "_logs") if "://" not in settings.root else str(REPO / ".cache" / "logs")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, "spark.log")


class SetupError(RuntimeError):
    """The environment is not set up (missing jars, wrong versions): tells the user what to run."""


def delta_jars(jars_dir: str) -> list[str]:
    jars = sorted(glob.glob(os.path.join(jars_dir, "*.jar")))
    names = [os.path.basename(j) for j in jars]
    if not any(n.startswith("delta-spark_") for n in names) or not any(n.startswith("delta-storage-") for n in names):
        raise SetupError(f"Delta jars not found in {jars_dir}: run ./setup.sh (or set LAKE_JARS_DIR)")
    import pyspark

    major_minor = ".".join(pyspark.__version__.split(".")[:2])
    if not any(n.startswith(f"delta-spark_{major_minor}_") for n in names):
        raise SetupError(
            f"the Delta jar in {jars_dir} is not built for Spark {major_minor} (found {names}); "
            "delete the folder and run ./setup.sh"
        )
    return jars


# S3A: hadoop-aws at exactly the Hadoop version pyspark bundles, the AWS SDK v2 bundle it was built
# against, and its two small runtime companions. ./setup.sh --cluster puts them in <jars_dir>/s3a/
# (a sub-folder: they are handed to Spark only when an s3a root or LAKE_S3_* settings are in use).
S3A_JAR_PREFIXES = ("hadoop-aws-", "bundle-", "analyticsaccelerator-s3-", "wildfly-openssl-")


def bundled_hadoop_version() -> str:
    """The Hadoop version inside the pinned pyspark (from its hadoop-client-api jar)."""
    import pyspark

    found = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "hadoop-client-api-*.jar"))
    if len(found) != 1:
        raise SetupError(f"cannot tell pyspark's Hadoop version: hadoop-client-api jars found: {found}")
    return os.path.basename(found[0])[len("hadoop-client-api-"):-len(".jar")]


def s3a_jars(jars_dir: str) -> list[str]:
    """The S3A jars in <jars_dir>/s3a, checked against pyspark's Hadoop version."""
    folder = os.path.join(jars_dir, "s3a")
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    names = [os.path.basename(j) for j in jars]
    hadoop = bundled_hadoop_version()
    if not any(n.startswith("hadoop-aws-") for n in names) or not any(n.startswith("bundle-") for n in names):
        raise SetupError(f"S3A jars (hadoop-aws {hadoop} + AWS SDK bundle) not found in {folder}: "
                         "run ./setup.sh --cluster")
    if f"hadoop-aws-{hadoop}.jar" not in names:
        raise SetupError(f"the hadoop-aws jar in {folder} does not match pyspark's Hadoop {hadoop} "
                         f"(found {[n for n in names if n.startswith('hadoop-aws-')]}); delete the folder "
                         "and run ./setup.sh --cluster")
    return jars


def s3a_conf(settings: Settings) -> dict:
    """Spark configuration for s3a:// paths from the settings (endpoint, keys, path style, no SSL on
    plain http). Empty when the lake does not use S3, so local runs are configured as before."""
    if not settings.uses_s3:
        return {}
    jars = s3a_jars(settings.jars_dir)
    cp = os.pathsep.join(jars)
    conf = {
        # on the class path of driver and executors, not shipped through spark.jars: the SDK bundle
        # is 640 MB (on a multi-machine cluster the jar cache must exist at the same path on workers)
        "spark.driver.extraClassPath": cp,
        "spark.executor.extraClassPath": cp,
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
    }
    if settings.s3_endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3_endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(settings.s3_endpoint.startswith("https://")).lower()
    path_style = settings.s3_path_style if settings.s3_path_style is not None else bool(settings.s3_endpoint)
    conf["spark.hadoop.fs.s3a.path.style.access"] = str(path_style).lower()
    if settings.s3_access_key or settings.s3_secret_key:
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        conf["spark.hadoop.fs.s3a.access.key"] = settings.s3_access_key
        conf["spark.hadoop.fs.s3a.secret.key"] = settings.s3_secret_key
    return conf


def cluster_conf(settings: Settings) -> dict:
    """Executor sizing and driver address for a cluster master; nothing for local[*]."""
    conf = {}
    if settings.executor_memory:
        conf["spark.executor.memory"] = settings.executor_memory
    if settings.driver_host:
        conf["spark.driver.host"] = settings.driver_host
        conf["spark.driver.bindAddress"] = settings.driver_host
    return conf


def spark_conf(settings: Settings, jars: list[str], log: str) -> dict[str, str]:
    """The lake's Spark configuration (the session's and the JVM's, which is started with it)."""
    conf = {
        "spark.app.name": "daxing-lake",
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "Asia/Shanghai",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # The status store keeps jobs, stages, tasks and SQL plans even without the UI (defaults: 1000
        # jobs, 1000 stages, 100 000 tasks per stage, 1000 SQL executions); a long-lived process (the
        # test session, a scheduler worker, the sharing server) filled a 2 GB heap with them and died.
        "spark.ui.retainedJobs": "50",
        "spark.ui.retainedStages": "50",
        "spark.ui.retainedTasks": "1000",
        "spark.sql.ui.retainedExecutions": "20",
        "spark.ui.retainedDeadExecutors": "10",
        # Delta keeps every table's log (and its cached snapshot state) for an hour, up to 10 000 tables
        "spark.databricks.delta.delta.log.cacheSize": "200",
        "spark.sql.ansi.enabled": "true",
        # Tables stay readable by delta-rs/duckdb without a JVM: no deletion vectors.
        "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Delta's log replay defaults to 50 partitions: far too many for a 2-core machine.
        "spark.databricks.delta.snapshotPartitions": str(settings.shuffle_partitions),
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        # a department file is staged as one Parquet file with 100 K-row row groups: split it
        # so that every core checks rows, not one
        "spark.sql.files.maxPartitionBytes": "16m",
        # the JVM's log to a file (the run report names it), not to the user's terminal
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J} -Dlake.log.file={log}",
    }
    conf.update({k: str(v) for k, v in {**s3a_conf(settings), **cluster_conf(settings),
                                         **settings.extra_spark_conf}.items()})
    return conf


def _start_jvm(conf) -> None:
    """Start Spark's JVM with its own output (JVM warnings before log4j is up, such as 'Using
    incubator modules') appended to the log file instead of the user's terminal."""
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or os.environ.get("PYSPARK_GATEWAY_PORT"):
        return
    with open(LOG_FILE, "ab") as out:
        try:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out})
        except Exception as e:  # the JVM's own words are in the log
            with open(LOG_FILE, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace")
            raise SetupError(f"Spark's JVM did not start ({e}); the end of {LOG_FILE}:\n{tail}") from None
    SparkContext._gateway = gateway
    SparkContext._jvm = gateway.jvm


def get_spark(settings: Settings | None = None):
    """Return the process-wide SparkSession, creating it on first use."""
    global _session, _session_key, LOG_FILE
    settings = settings or Settings.from_env()
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        from pyspark import SparkConf
        from pyspark.sql import SparkSession

        jars = delta_jars(settings.jars_dir)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        LOG_FILE = log_file(settings)
        conf = SparkConf()
        for k, v in spark_conf(settings, jars, LOG_FILE).items():
            conf.set(k, v)
        _start_jvm(conf)
        _session = SparkSession.builder.config(conf=conf).getOrCreate()
        _session.sparkContext.setLogLevel("ERROR")
        _session_key = settings
        return _session


def _check_jars_main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--check-s3a-jars":
        try:
            jars = s3a_jars(argv[1])
        except SetupError as e:
            print(f"[setup] {e}", file=sys.stderr)
            return 1
        print(f"[setup] {len(jars)} S3A jars ok for Hadoop {bundled_hadoop_version()}")
        return 0
    if len(argv) == 2 and argv[0] == "--check-jars":
        try:
            jars = delta_jars(argv[1])
        except SetupError as e:
            print(f"[setup] {e}", file=sys.stderr)
            return 1
        print(f"[setup] {len(jars)} jars ok for this pyspark")
        return 0
    print("usage: python -m lake.spark --check-jars DIR | --check-s3a-jars DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_check_jars_main(sys.argv[1:]))
