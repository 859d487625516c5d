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


def get_spark(settings: Settings | None = None):
    """Return the process-wide SparkSession, creating it on first use."""
    global _session, _session_key
    settings = settings or Settings.from_env()
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None:
            return _session
        from pyspark.sql import SparkSession

        jars = delta_jars(settings.jars_dir)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            SparkSession.builder.appName("daxing-lake")
            .master(settings.spark_master)
            .config("spark.jars", ",".join(jars))
            .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
            .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
            .config("spark.driver.memory", settings.driver_memory)
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.session.timeZone", "Asia/Shanghai")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.ansi.enabled", "true")
            # Tables stay readable by delta-rs/duckdb without a JVM: no deletion vectors.
            .config("spark.databricks.delta.properties.defaults.enableDeletionVectors", "false")
            .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
            # Delta's log replay defaults to 50 partitions: far too many for a 2-core machine.
            .config("spark.databricks.delta.snapshotPartitions", str(settings.shuffle_partitions))
            .config("spark.sql.adaptive.coalescePartitions.enabled", "true")
            # a department file is staged as one Parquet file with 100 K-row row groups: split it
            # so that every core checks rows, not one
            .config("spark.sql.files.maxPartitionBytes", "16m")
        )
        for k, v in settings.extra_spark_conf.items():
            builder = builder.config(k, v)
        _session = builder.getOrCreate()
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
