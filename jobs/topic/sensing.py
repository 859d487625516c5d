"""The sensing topics (docs/spatial_iot.md) for the reading days a delivery touched, each through the
partition gate (``quality.gates.publish_partition``): device health (巡检: silent, flat-lining,
``topic.device_health``), the online rate per department and type (``topic.device_online_rate``),
sensor coverage per town (``topic.sensor_coverage_by_town``), and, from the same hourly statistics,
the air-quality topics (``jobs.topic.air_quality``), the flood points (``jobs.topic.flood_points``) and
the road traffic per town and hour (``jobs.topic.traffic``).

The reading days' hourly statistics, flat-lines and health rows are computed once (``day_data``)
and held for every table built from them.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.rules import literal_map as _map
from lake.sensing import CONTINUOUS_METRICS, DEVICE_TYPES, FLATLINE_MINUTES, IN_SERVICE, SILENT_HOURS, days_list as _days_list
from lake.settings import Settings
from lake.spark import get_spark
from jobs.base.iot_device import load_devices
from jobs.base.iot_reading import READINGS
from jobs.topic.air_quality import air_quality_hourly_rows, exceedance_rows
from jobs.topic.flood_points import flood_point_rows
from jobs.topic.traffic import traffic_flow_rows
from quality import gates

TABLES = ("topic.device_health", "topic.device_online_rate", "topic.air_quality_hourly",
          "topic.air_quality_exceedance", "topic.flood_points", "topic.sensor_coverage_by_town", "topic.traffic_flow")

def _devices_in_service(devices: DataFrame, day: Column) -> Column:
    """A device is expected to report on ``day``: status 在用 and installed on or before it."""
    installed = F.col("install_date").isNull() | (F.col("install_date") <= day)
    return (F.col("status") == IN_SERVICE) & installed


def hourly_stats(readings: DataFrame, devices: DataFrame) -> DataFrame:
    """Readings -> one row per device, metric and hour: count, sum, min, max, first/last ts, and for
    flood points the readings over the device's alarm threshold (count, first time). Pure."""
    thr = devices.where(F.col("device_type") == "04").select("city_code", F.col("alarm_threshold").alias("_thr"))
    r = readings.join(F.broadcast(thr), "city_code", "left")
    over = (F.col("metric") == "water_level") & F.col("_thr").isNotNull() & (F.col("value") > F.col("_thr"))
    return r.groupBy("day", "city_code", "metric", F.date_trunc("hour", "ts").alias("hour")).agg(
        F.count("*").alias("n"), F.sum("value").alias("s"), F.min("value").alias("vmin"), F.max("value").alias("vmax"),
        F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"),
        F.sum(over.cast("long")).alias("n_over"), F.min(F.when(over, F.col("ts"))).alias("first_over"))


def flatlines(readings: DataFrame, hourly: DataFrame) -> DataFrame:
    """(day, city_code, metric, minutes) of the longest run of one value of a continuous metric lasting
    at least FLATLINE_MINUTES, per device and metric. Pure.

    A run lasts from its first to its last reading. A run of 3 hours contains at least one whole
    clock hour with one value, so only the (device, metric) pairs with such an hour are read again and
    examined row by row."""
    candidates = (hourly.where(F.col("metric").isin(*CONTINUOUS_METRICS) & (F.col("n") >= 2) & (F.col("vmin") == F.col("vmax")))
                  .select("day", "city_code", "metric").distinct())
    r = readings.join(F.broadcast(candidates), ["day", "city_code", "metric"], "left_semi")
    w = Window.partitionBy("day", "city_code", "metric").orderBy("ts")
    r = r.withColumn("_new", F.coalesce(F.col("value") != F.lag("value").over(w), F.lit(True)))
    r = r.withColumn("_run", F.sum(F.col("_new").cast("long")).over(w.rowsBetween(Window.unboundedPreceding, 0)))
    runs = (r.groupBy("day", "city_code", "metric", "_run").agg(F.min("ts").alias("a"), F.max("ts").alias("b"))
            .withColumn("minutes", (F.unix_timestamp("b") - F.unix_timestamp("a")) / 60))
    return (runs.where(F.col("minutes") >= FLATLINE_MINUTES)
            .groupBy("day", "city_code", "metric").agg(F.max("minutes").cast("long").alias("minutes")))


def device_health_rows(hourly: DataFrame, flat: DataFrame, devices: DataFrame, days: list[dt.date]) -> DataFrame:
    """``topic.device_health`` rows: every ledger device on every day. Pure."""
    spark = hourly.sparkSession
    day_df = spark.createDataFrame([(d,) for d in days], "day date")
    per_dev = hourly.groupBy("day", "city_code").agg(
        F.sum("n").alias("readings"), F.max("last_ts").alias("last_seen"))
    per_flat = flat.groupBy("day", "city_code").agg(
        F.max("minutes").alias("flatline_minutes"),
        F.min_by("metric", F.struct(-F.col("minutes"), F.col("metric"))).alias("flatline_metric"))
    n_metrics = _map({k: len(v[2]) for k, v in DEVICE_TYPES.items()})[F.col("device_type")]
    dev = devices.select("city_code", "device_type", "owner_department", "town_code", "status", "install_date",
                         "report_interval_min")
    base = dev.crossJoin(F.broadcast(day_df))
    in_service = _devices_in_service(base, F.col("day"))
    silent_from = F.col("day").cast("timestamp") + F.expr(f"INTERVAL {24 - SILENT_HOURS} HOURS")
    out = (base.join(per_dev, ["day", "city_code"], "left").join(per_flat, ["day", "city_code"], "left")
           .withColumn("_in_service", in_service))
    return out.select(
        "day", "city_code", "device_type", "owner_department", "town_code", "status",
        F.coalesce(F.col("readings"), F.lit(0)).cast("long").alias("readings"),
        F.when(F.col("_in_service"), n_metrics * (1440 / F.col("report_interval_min"))).otherwise(F.lit(0)).cast("long").alias("expected"),
        "last_seen",
        (F.col("_in_service") & (F.col("last_seen").isNull() | (F.col("last_seen") < silent_from))).alias("silent"),
        F.col("flatline_minutes").isNotNull().alias("flatline"), "flatline_metric",
        F.coalesce(F.col("flatline_minutes"), F.lit(0)).cast("long").alias("flatline_minutes"),
    )


def online_rate_rows(health: DataFrame) -> DataFrame:
    """``topic.device_online_rate``: per day, department and type, the devices in service, those not
    silent, and the rate. Pure."""
    in_service = F.col("expected") > 0
    return (health.where(in_service).groupBy("day", "owner_department", "device_type")
            .agg(F.count("*").alias("devices"), F.sum((~F.col("silent")).cast("long")).alias("online"))
            .withColumn("rate", F.round(F.col("online") / F.col("devices"), 4)))


def coverage_rows(health: DataFrame, boundary: DataFrame) -> DataFrame:
    """``topic.sensor_coverage_by_town``: per day, town and type, the devices in service, online, and
    per km² (area from ``base.admin_boundary``). Devices outside every town are not counted. Pure."""
    area = boundary.select(F.col("code").alias("town_code"), F.col("name").alias("town"), "area_km2")
    return (health.where((F.col("expected") > 0) & F.col("town_code").isNotNull())
            .groupBy("day", "town_code", "device_type")
            .agg(F.count("*").alias("devices"), F.sum((~F.col("silent")).cast("long")).alias("online"))
            .join(F.broadcast(area), "town_code")
            .withColumn("devices_per_km2", F.round(F.col("devices") / F.col("area_km2"), 4))
            .withColumn("online_per_km2", F.round(F.col("online") / F.col("area_km2"), 4))
            .drop("area_km2"))


@dataclass
class DayData:
    days: list
    hourly: DataFrame
    flat: DataFrame
    health: DataFrame
    devices: DataFrame
    boundary: DataFrame
    inputs: str

    def release(self) -> None:
        for df in (self.hourly, self.flat, self.health):
            df.unpersist()


def day_data(spark: SparkSession, settings: Settings, days) -> DayData:
    """The reading days' hourly statistics, flat-lines and health rows, held (memory, then disk) for
    the health and topic tables built from them."""
    days = _days_list(days)
    path = io.table_path(settings, *READINGS)
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError("base/iot_reading has no readings yet; run ingest_readings first")
    readings = io.read(spark, path).where(F.col("day").isin(days))
    devices = load_devices(spark, settings)
    b_path = io.path_of(settings, "base.admin_boundary")
    if not io.is_table(spark, b_path):
        raise contracts_mod.ContractError("base.admin_boundary has not been built yet; build it first (`lake build`)")
    boundary = io.read(spark, b_path)
    hourly = hourly_stats(readings, devices).persist(StorageLevel.MEMORY_AND_DISK)
    flat = flatlines(readings, hourly).persist(StorageLevel.MEMORY_AND_DISK)
    health = device_health_rows(hourly, flat, devices, days).persist(StorageLevel.MEMORY_AND_DISK)
    inputs = (f"base.iot_reading@v{io.version(spark, path)};base.iot_device@v{io.version(spark, io.table_path(settings, 'base', 'iot_device'))};"
              f"base.admin_boundary@v{io.version(spark, io.table_path(settings, 'base', 'admin_boundary'))}")
    return DayData(days, hourly, flat, health, devices, boundary, inputs)


def _publish(spark: SparkSession, settings: Settings, table: str, candidate: DataFrame, data: DayData,
             partitioned: bool = False) -> dict:
    t0 = time.time()
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    res = gates.publish_partition(spark, settings, tc, candidate, "day", [d.isoformat() for d in data.days],
                                  {"as_of": data.days[-1].isoformat(), "inputs": data.inputs}, partitioned=partitioned)
    return {"table": table, "status": res.status, "rows": res.rows, "days": [d.isoformat() for d in data.days],
            "seconds": round(time.time() - t0, 2)}


def device_health(settings: Settings, day, spark: SparkSession | None = None, data: DayData | None = None) -> dict:
    """Publish ``topic.device_health`` for the reading day(s) ``day`` (a date or a list)."""
    spark = spark or get_spark(settings)
    own = data is None
    data = data or day_data(spark, settings, day)
    try:
        return _publish(spark, settings, "topic.device_health", data.health, data, partitioned=True)
    finally:
        if own:
            data.release()


def build_topics(settings: Settings, days, spark: SparkSession | None = None, data: DayData | None = None) -> list[dict]:
    """Publish the IoT topic tables other than device health for the reading day(s) ``days``."""
    spark = spark or get_spark(settings)
    own = data is None
    data = data or day_data(spark, settings, days)
    try:
        aq = air_quality_hourly_rows(data.hourly, data.devices, data.boundary).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            return [
                _publish(spark, settings, "topic.device_online_rate", online_rate_rows(data.health), data),
                _publish(spark, settings, "topic.air_quality_hourly", aq, data),
                _publish(spark, settings, "topic.air_quality_exceedance", exceedance_rows(aq), data),
                _publish(spark, settings, "topic.flood_points", flood_point_rows(data.hourly, data.devices), data),
                _publish(spark, settings, "topic.sensor_coverage_by_town", coverage_rows(data.health, data.boundary), data),
                _publish(spark, settings, "topic.traffic_flow", traffic_flow_rows(data.hourly, data.devices, data.boundary),
                         data),
            ]
        finally:
            aq.unpersist()
    finally:
        if own:
            data.release()


def latest_reading_days(spark: SparkSession, settings: Settings) -> list[str]:
    """The reading days of the newest delivery day in ``quality/iot_reading_counts`` (what a run
    triggered without a list of days rebuilds); [] before any delivery."""
    from jobs.base.iot_reading import COUNTS

    path = io.table_path(settings, *COUNTS)
    if not io.is_table(spark, path):
        return []
    rows = io.read(spark, path).orderBy(F.col("delivery_day").desc()).select("delivery_day", "reading_days").collect()
    if not rows:
        return []
    newest = rows[0]["delivery_day"]
    return sorted({d for r in rows if r["delivery_day"] == newest for d in (r["reading_days"] or "").split(",") if d}
                  or {newest.isoformat()})


def build(settings: Settings, as_of, reading_days=None, **context) -> list[dict]:
    """Device health and every other sensing topic for ``reading_days`` (default: those of the newest
    delivery day), from one computation of the days' hourly statistics."""
    spark = get_spark(settings)
    days = reading_days or latest_reading_days(spark, settings)
    if not days:
        log.info("topic.sensing: no sensor readings delivered yet; nothing to do")
        return []
    data = day_data(spark, settings, days)
    try:
        return [device_health(settings, days, spark, data), *build_topics(settings, days, spark, data)]
    finally:
        data.release()
