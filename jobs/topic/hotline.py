"""The city-management topic of 12345 接诉即办 (城市管理主题库), from ``base.hotline_order``:

- ``topic.hotline_rates``: per month of acceptance, town and handling department, the orders and how
  many were dispatched, responded to, closed, rated and rated satisfied, with the response, resolution
  and satisfaction rates (shared);
- ``topic.hotline_town_counts``: the same counts per month, town and category, without rates (opened:
  the open zone suppresses small count cells, which a published rate would give away);
- ``topic.hotline_repeat_complaints``: orders whose standard address and category are those of an
  earlier order accepted at most ``hotline.repeat_window_days`` before (the latest such one);
- ``topic.hotline_hotspots``: orders and repeat complaints per 1 km cell and category, with the cell's
  centre (opened, with a GeoJSON of the centres).

An order whose address could not be placed counts in town ``未定位`` and in no cell; one outside the
category vocabulary counts as ``未分类`` and is never a repeat; one not dispatched yet counts under
handling department ``未派单``. The four tables are recomputed from the base table on every build (a
few aggregations over one table; each is published only when its content changed).
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.base import hotline as base_hotline
from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.reference import HOTLINE
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

RATES, TOWN_COUNTS, REPEATS, HOTSPOTS = ("topic.hotline_rates", "topic.hotline_town_counts",
                                         "topic.hotline_repeat_complaints", "topic.hotline_hotspots")
TABLES = (RATES, TOWN_COUNTS, REPEATS, HOTSPOTS)
UNPLACED, UNCATEGORISED, UNDISPATCHED = "未定位", "未分类", "未派单"


def _month(orders: DataFrame) -> DataFrame:
    return orders.withColumn("month", F.date_format("accepted_at", "yyyy-MM"))


def rates(orders: DataFrame) -> DataFrame:
    """``topic.hotline_rates`` from base.hotline_order rows. Pure."""
    df = _month(orders).withColumns({"town": F.coalesce("town", F.lit(UNPLACED)),
                                     "handling_department": F.coalesce("handling_department", F.lit(UNDISPATCHED))})
    agg = df.groupBy("month", "town", "handling_department").agg(
        F.count("*").alias("orders"), F.count("dispatched_at").alias("dispatched"),
        F.count("responded_at").alias("responded"), F.count("closed_at").alias("closed"),
        F.count("satisfaction").alias("rated"),
        F.count(F.when(F.col("satisfaction").isin(*HOTLINE.satisfied), 1)).alias("satisfied"))
    return agg.withColumns({
        "response_rate": F.round(F.col("responded") / F.col("orders"), 4),
        "resolution_rate": F.round(F.col("closed") / F.col("orders"), 4),
        "satisfaction_rate": F.when(F.col("rated") > 0, F.round(F.col("satisfied") / F.col("rated"), 4)),
    })


def town_counts(orders: DataFrame) -> DataFrame:
    """``topic.hotline_town_counts`` from base.hotline_order rows. Pure."""
    df = _month(orders).withColumns({"town": F.coalesce("town", F.lit(UNPLACED)),
                                     "category": F.coalesce("category", F.lit(UNCATEGORISED))})
    return df.groupBy("month", "town", "category").agg(
        F.count("*").alias("orders"), F.count("responded_at").alias("responded"),
        F.count("closed_at").alias("closed"),
        F.count(F.when(F.col("satisfaction").isin(*HOTLINE.satisfied), 1)).alias("satisfied"))


def repeats(orders: DataFrame, window_days: int = HOTLINE.repeat_window_days) -> DataFrame:
    """``topic.hotline_repeat_complaints`` from base.hotline_order rows. Pure."""
    placed = orders.where(F.col("address_code").isNotNull() & F.col("category").isNotNull())
    w = Window.partitionBy("address_code", "category").orderBy("accepted_at", "order_id")
    df = placed.withColumns({"previous_order_id": F.lag("order_id").over(w), "_prev_at": F.lag("accepted_at").over(w)})
    days = (F.col("accepted_at").cast("double") - F.col("_prev_at").cast("double")) / 86400.0
    return (df.where(F.col("previous_order_id").isNotNull() & (days <= window_days))
            .select("order_id", "previous_order_id", "address_code", "town", "category", "accepted_at",
                    F.round(days, 4).alias("days_since_previous")))


def hotspots(orders: DataFrame, repeat_rows: DataFrame) -> DataFrame:
    """``topic.hotline_hotspots`` from base.hotline_order rows and the repeat complaints. Pure."""
    dlon, dlat, _ = base_hotline.grid_steps()
    rep = repeat_rows.select("order_id", F.lit(1).alias("_rep"))
    df = (orders.where(F.col("grid_id").isNotNull()).join(rep, "order_id", "left")
          .withColumn("category", F.coalesce("category", F.lit(UNCATEGORISED))))
    agg = df.groupBy("grid_id", "category").agg(
        F.count("*").alias("orders"), F.count("_rep").alias("repeats"),
        F.first(F.floor(F.col("lon") / F.lit(dlon))).alias("_ix"), F.first(F.floor(F.col("lat") / F.lit(dlat))).alias("_iy"))
    return agg.select("grid_id", "category",
                      F.round((F.col("_ix") + 0.5) * F.lit(dlon), 6).alias("lon"),
                      F.round((F.col("_iy") + 0.5) * F.lit(dlat), 6).alias("lat"), "orders", "repeats")


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    base_path = io.path_of(settings, base_hotline.TABLE)
    orders = io.read(spark, base_path).drop("_lineage").persist()
    meta = {"as_of": as_of, "inputs": str(io.version(spark, base_path))}
    out = []
    try:
        rep = repeats(orders).persist()
        for table, df in ((RATES, rates(orders)), (TOWN_COUNTS, town_counts(orders)), (REPEATS, rep),
                          (HOTSPOTS, hotspots(orders, rep))):
            t1 = time.time()
            tc = contracts.table(table)
            res = gates.publish(spark, settings, tc, df.select(*tc.column_names), meta)
            out.append({"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t1, 2)})
    finally:
        orders.unpersist()
        spark.catalog.clearCache()
    log.info("hotline topics: %s in %.1fs", ", ".join(f"{r['table']} {r['status']}" for r in out), time.time() - t0)
    return out
