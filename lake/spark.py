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
    conf.update({k: str(v) for k, v in settings.extra_spark_conf.items()})
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
    if len(argv) == 2 and argv[0] == "--check-jars":
        try:
            jars = delta_jars(argv[1])
        except SetupError as e:
            print(f"[setup] {e}", file=sys.stderr)
            return 1
        print(f"[setup] {len(jars)} jars ok for this pyspark")
        return 0
    print("usage: python -m lake.spark --check-jars DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_check_jars_main(sys.argv[1:]))
