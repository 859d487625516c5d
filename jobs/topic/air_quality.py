"""Air quality per town (eco-environment topic): hourly means of the town's micro stations
(``topic.air_quality_hourly``) and the daily evaluation against the GB 3095-2012 grade II limits with
the standard's data-validity rules (``topic.air_quality_exceedance``). Pure transforms; built by
``jobs.topic.sensing`` from the reading days' hourly statistics."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.rules import literal_map as _map
from lake.sensing import GB3095_II, METRICS, MIN_HOURS, POLLUTANTS, WINDOW_HOURS

def air_quality_hourly_rows(hourly: DataFrame, devices: DataFrame, boundary: DataFrame) -> DataFrame:
    """``topic.air_quality_hourly``: per town and hour, the mean of every pollutant over all readings
    of the town's air stations, and the number of stations that reported. Pure."""
    town = devices.where(F.col("town_code").isNotNull()).select("city_code", "town_code")
    names = boundary.select(F.col("code").alias("town_code"), F.col("name").alias("town"))
    h = hourly.where(F.col("metric").isin(*POLLUTANTS)).join(F.broadcast(town), "city_code")
    aggs = [F.round(F.sum(F.when(F.col("metric") == p, F.col("s"))) / F.sum(F.when(F.col("metric") == p, F.col("n"))), 3).alias(p)
            for p in POLLUTANTS]
    return (h.groupBy("day", "hour", "town_code").agg(*aggs, F.countDistinct("city_code").alias("devices"))
            .join(F.broadcast(names), "town_code"))


def exceedance_rows(aq_hourly: DataFrame) -> DataFrame:
    """``topic.air_quality_exceedance``: per town, day, pollutant and averaging period of GB 3095-2012
    grade II, from the town's hourly means. Pure.

    - ``1h``: value = the highest hourly mean of the day, ``hours_over`` = hours over the 1-hour limit;
    - ``24h``: value = the mean of the day's hourly means, valid with at least 20 of them;
    - ``8h`` (O3): the 8-hour moving averages of the day (windows starting 00:00 ... 16:00), each valid
      with at least 6 hourly means in it; value = the highest valid one, valid when there is one.

    ``hours`` is the hours of the day with a mean. A row that is not valid is not judged: its value and
    ``exceeded`` are null (the standard does not allow a statement from too few hours), so a gap in the
    data never reads as clean air. The hourly means are unpivoted once, so that every pollutant and
    period comes out of one daily aggregation and one window aggregation, not one per limit. The
    windows are made by exploding each hour into the windows that contain it rather than by a range
    window, which would miss windows starting at an hour without data."""
    keys = ["day", "town_code", "town", "pollutant"]
    long = (aq_hourly.select("day", "town_code", "town", "hour", F.explode(F.array(*[
        F.struct(F.lit(p).alias("pollutant"), F.col(p).cast("double").alias("v")) for p in GB3095_II])).alias("_p"))
        .select("day", "town_code", "town", "hour", "_p.pollutant", "_p.v").where(F.col("v").isNotNull()))
    limit_1h = _map({p: lim["1h"] for p, lim in GB3095_II.items() if "1h" in lim})[F.col("pollutant")]
    daily = long.groupBy(*keys).agg(
        F.max("v").alias("_max"), F.avg("v").alias("_avg"), F.count("*").alias("hours"),
        F.sum((F.col("v") > limit_1h).cast("long")).alias("_over"))
    h = F.hour("hour")
    windows = (long.where(F.col("pollutant").isin(*[p for p, lim in GB3095_II.items() if "8h" in lim]))
               .withColumn("_start", F.explode(F.sequence(F.greatest(h - (WINDOW_HOURS - 1), F.lit(0)),
                                                          F.least(h, F.lit(24 - WINDOW_HOURS)))))
               .groupBy(*keys, "_start").agg(F.avg("v").alias("_mean"), F.count("*").alias("_n"))
               .groupBy(*keys).agg(F.max(F.when(F.col("_n") >= MIN_HOURS["8h"], F.col("_mean"))).alias("_max8")))
    periods = aq_hourly.sparkSession.createDataFrame(
        [(p, period, limit, METRICS[p][0]) for p, lim in GB3095_II.items() for period, limit in lim.items()],
        "pollutant string, period string, limit_value double, unit string")
    period = F.col("period")
    valid = (F.when(period == "1h", F.lit(True)).when(period == "24h", F.col("hours") >= MIN_HOURS["24h"])
             .otherwise(F.col("_max8").isNotNull()))
    raw = F.when(period == "1h", F.col("_max")).when(period == "24h", F.col("_avg")).otherwise(F.col("_max8"))
    value = F.when(valid, F.round(raw, 3))
    return (daily.join(windows, keys, "left").join(F.broadcast(periods), "pollutant")
            .select("day", "town_code", "town", "pollutant", "period", value.alias("value"), "limit_value", "unit",
                    F.when(period == "1h", F.col("_over")).alias("hours_over"), "hours", valid.alias("valid"),
                    (value > F.col("limit_value")).alias("exceeded")))
