"""Road traffic per town and hour (交通运行, ``topic.traffic_flow``) from the traffic-flow detectors of the
sensing network (the device types measuring ``vehicle_count`` in ``contracts/reference.yaml``, owned by
the transport bureau). Pure transform; built by ``jobs.topic.sensing`` from the reading days' hourly
statistics, like the air-quality and flood-point topics.

Per reading day, town and hour: the vehicles counted by the town's detectors (the sum of their
``vehicle_count`` readings, each the vehicles of one report interval), the detectors that reported in
that hour and their readings, and whether the hour is the town's busiest of the day (``peak_hour``; every
hour with the day's highest count when several tie). A detector outside every town is not counted. The
count depends on how many detectors reported: ``devices`` and ``readings`` say how complete an hour is.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

TRAFFIC_METRIC = "vehicle_count"


def traffic_flow_rows(hourly: DataFrame, devices: DataFrame, boundary: DataFrame) -> DataFrame:
    """``topic.traffic_flow`` from the hourly statistics (``jobs.topic.sensing.hourly_stats``: one row
    per device, metric and hour with the readings ``n`` and their sum ``s``). Pure."""
    town = devices.where(F.col("town_code").isNotNull()).select("city_code", "town_code")
    names = boundary.select(F.col("code").alias("town_code"), F.col("name").alias("town"))
    per_hour = (hourly.where(F.col("metric") == TRAFFIC_METRIC).join(F.broadcast(town), "city_code")
                .groupBy("day", "hour", "town_code")
                .agg(F.round(F.sum("s")).cast("long").alias("vehicles"), F.countDistinct("city_code").alias("devices"),
                     F.sum("n").cast("long").alias("readings")))
    busiest = F.max("vehicles").over(Window.partitionBy("day", "town_code"))
    return (per_hour.withColumn("peak_hour", F.col("vehicles") == busiest)
            .join(F.broadcast(names), "town_code")
            .select("day", "hour", "town_code", "town", "vehicles", "devices", "readings", "peak_hour"))
