"""Spark side of tests/test_cluster.py, run in its own process (one Spark session per process: the
test suite's shared local session is not touched). Settings come from the environment written by
`lake cluster up`: the standalone master, an s3a root on SeaweedFS.

Writes a Delta table with delta-spark under <LAKE_ROOT>/smoke/<name>, reads it back, runs the
project's own code on the executors (lake.geo.assign_units: shapely STRtree in mapInPandas, and a
Python UDF reporting which interpreter and which `lake` it imported), and prints one JSON document.
"""
from __future__ import annotations

import json
import os
import sys


def main(name: str) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    from lake.geo import assign_units
    from lake.settings import Settings
    from lake.spark import get_spark
    from sample.basemap import district_boundaries

    s = Settings.from_env(shuffle_partitions=4, driver_memory="1g")
    spark = get_spark(s)
    sc = spark.sparkContext
    path = s.path("smoke", name)

    # points on a 0.01-degree grid over Daxing (116.2-116.6 E, 39.5-39.85 N) and some outside it
    rows = [(i, 116.2 + (i % 50) * 0.008, 39.5 + (i // 50) * 0.007) for i in range(2500)]
    df = spark.createDataFrame(rows, "id long, lon double, lat double").repartition(4)

    @F.udf(StringType())
    def where_am_i(_):
        import lake

        return f"{os.getpid()}|{sys.executable}|{os.path.dirname(os.path.dirname(lake.__file__))}"

    out = assign_units(df, "lon", "lat", district_boundaries()).withColumn("runner", where_am_i(F.col("id")))
    out.write.format("delta").mode("overwrite").save(path)

    back = spark.read.format("delta").load(path)
    got = back.select("id", "lon", "lat", "town_code", "town").orderBy("id").collect()
    runners = sorted({r.runner for r in back.select("runner").distinct().collect()})
    # block managers (host:port): the driver's and one per executor
    executors = sc._jsc.sc().getExecutorMemoryStatus().keys().mkString(",").split(",")
    print(json.dumps({
        "master": sc.master,
        "path": path,
        "driver_pid": os.getpid(),
        "driver_python": sys.executable,
        "executors": executors,
        "count": back.count(),
        "rows": [list(r) for r in got],
        "runners": runners,
        "hadoop_fs": spark._jvm.org.apache.hadoop.fs.FileSystem.get(
            spark._jvm.java.net.URI(path), sc._jsc.hadoopConfiguration()).getClass().getName(),
    }))
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
