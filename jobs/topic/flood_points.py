"""Flood points (积水点) over their alarm threshold per day (``topic.flood_points``). Pure transform;
built by ``jobs.topic.sensing`` from the reading days' hourly statistics."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

def point_code(city_code: Column) -> Column:
    """A city code written with hyphens (110115-04-01-0000123-5): the open zone's PII gate would take
    18 plain digits for an ID or mobile number."""
    return F.concat_ws("-", F.substring(city_code, 1, 6), F.substring(city_code, 7, 2), F.substring(city_code, 9, 2),
                       F.substring(city_code, 11, 7), F.substring(city_code, 18, 1))


def flood_point_rows(hourly: DataFrame, devices: DataFrame) -> DataFrame:
    """``topic.flood_points``: flood points (type 04) over their alarm threshold on a day: highest
    level, first reading over, minutes over (readings over x report interval). Pure."""
    fp = devices.where(F.col("device_type") == "04").select(
        "city_code", "device_name", "town_code", "town", "lon", "lat", "alarm_threshold", "report_interval_min")
    return (hourly.where(F.col("metric") == "water_level").groupBy("day", "city_code").agg(
        F.max("vmax").alias("max_level"), F.min("first_over").alias("first_over"), F.sum("n_over").alias("n_over"))
        .where(F.col("n_over") > 0).join(F.broadcast(fp), "city_code")
        .select("day", point_code(F.col("city_code")).alias("point_code"), "device_name", "town_code", "town", "lon", "lat",
                "alarm_threshold", "max_level", "first_over",
                (F.col("n_over") * F.col("report_interval_min")).cast("long").alias("minutes_over")))
