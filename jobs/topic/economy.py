"""Economic operation (经济运行主题库): ``topic.economic_births`` and ``topic.economic_deaths`` from
``base.legal_entity`` and ``topic.macro_trend`` from ``base.macro_indicator``.

Births are entities by month of establishment, town and industry; deaths are entities by month of
deregistration (注销/吊销日期, given by the market-regulation register only), town and industry, of which
revoked (吊销). An entity counts as dead when its status is a dead one and its date is usable: a date
before establishment or after the build's business date is reported to 市场监管 at ingest and not
counted. The trend pairs each figure with the same cell's previous
period present in the table (periods sort as text: 2026-09 < 2026-10, 2026Q2 < 2026Q3).
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.reference import LEGAL_ENTITY
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

BIRTHS, DEATHS, TREND = "topic.economic_births", "topic.economic_deaths", "topic.macro_trend"
TABLES = (BIRTHS, DEATHS, TREND)
UNKNOWN = "未知"
REVOKED = "吊销"  # 吊销营业执照: the licence revoked, among the deregistered statuses


def births(legal_entity: DataFrame) -> DataFrame:
    """``topic.economic_births``. Pure."""
    df = legal_entity.where(F.col("established_date").isNotNull()).select(
        F.date_format("established_date", "yyyy-MM").alias("month"), F.coalesce("town", F.lit(UNKNOWN)).alias("town"),
        F.coalesce("industry", F.lit(UNKNOWN)).alias("industry"), "status")
    return df.groupBy("month", "town", "industry").agg(
        F.count("*").alias("births"),
        F.count(F.when(F.col("status").isin(*LEGAL_ENTITY.active_statuses), 1)).alias("active"))


def deaths(legal_entity: DataFrame, as_of: str | None = None) -> DataFrame:
    """``topic.economic_deaths``: entities with a dead status (``legal_entity.deregistered_statuses``)
    and a deregistration date neither before their establishment nor after ``as_of``. Pure."""
    date = F.col("deregistered_date")
    usable = (F.col("status").isin(*LEGAL_ENTITY.deregistered_statuses) & date.isNotNull()
              & (F.col("established_date").isNull() | (date >= F.col("established_date"))))
    if as_of is not None:
        usable = usable & (date <= F.lit(as_of).cast("date"))
    df = legal_entity.where(usable).select(
        F.date_format(date, "yyyy-MM").alias("month"), F.coalesce("town", F.lit(UNKNOWN)).alias("town"),
        F.coalesce("industry", F.lit(UNKNOWN)).alias("industry"), "status")
    return df.groupBy("month", "town", "industry").agg(
        F.count("*").alias("deaths"), F.count(F.when(F.col("status") == REVOKED, 1)).alias("revoked"))


def trend(macro: DataFrame) -> DataFrame:
    """``topic.macro_trend``. Pure."""
    w = Window.partitionBy("indicator", "town", "industry").orderBy("period")
    df = macro.withColumns({"previous_period": F.lag("period").over(w), "previous_value": F.lag("value").over(w)})
    rate = F.when(F.col("previous_value").isNotNull() & (F.col("previous_value") != 0),
                  F.round((F.col("value") - F.col("previous_value")) / F.abs(F.col("previous_value")), 6))
    return df.select("indicator", "indicator_name", "period", "town", "industry", "value", "unit", "previous_period",
                     "previous_value", rate.alias("change_rate"))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    out = []
    jobs = ((BIRTHS, "base.legal_entity", births), (DEATHS, "base.legal_entity", lambda df: deaths(df, as_of)),
            (TREND, "base.macro_indicator", trend))
    for table, upstream, fn in jobs:
        t0 = time.time()
        path = io.path_of(settings, upstream)
        if not io.is_table(spark, path):
            out.append({"table": table, "status": "skipped", "rows": 0, "reason": f"{upstream} not built yet"})
            continue
        tc = contracts.table(table)
        res = gates.publish(spark, settings, tc, fn(io.read(spark, path)).select(*tc.column_names),
                            {"as_of": as_of, "inputs": str(io.version(spark, path))})
        out.append({"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)})
    log.info("economy topics: %s", ", ".join(f"{r['table']} {r['status']}" for r in out))
    return out
