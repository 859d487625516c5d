"""Build the topic databases (主题库) from the base databases. Transforms are pure functions of
DataFrames and the run's reference date (``as_of``, from the orchestrator, never the clock)."""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

# GB/T 4754-2017 sections (门类)
INDUSTRY_SECTIONS = {
    "A": "农、林、牧、渔业", "B": "采矿业", "C": "制造业", "D": "电力、热力、燃气及水生产和供应业",
    "E": "建筑业", "F": "批发和零售业", "G": "交通运输、仓储和邮政业", "H": "住宿和餐饮业",
    "I": "信息传输、软件和信息技术服务业", "J": "金融业", "K": "房地产业", "L": "租赁和商务服务业",
    "M": "科学研究和技术服务业", "N": "水利、环境和公共设施管理业", "O": "居民服务、修理和其他服务业",
    "P": "教育", "Q": "卫生和社会工作", "R": "文化、体育和娱乐业", "S": "公共管理、社会保障和社会组织",
    "T": "国际组织",
}
UNKNOWN = "unknown"


def age_band(birth_date: F.Column, as_of: str) -> F.Column:
    age = F.floor(F.months_between(F.lit(as_of).cast("date"), birth_date) / 12)
    return (
        F.when(birth_date.isNull() | (age < 0), F.lit(UNKNOWN))
        .when(age < 18, "0-17").when(age < 35, "18-34").when(age < 60, "35-59").when(age < 80, "60-79")
        .otherwise("80+")
    )


def living(population: DataFrame) -> DataFrame:
    """People the district still has: not dead (register or a reported death) and not moved out."""
    if "register_status" in population.columns:
        population = population.where(F.coalesce(F.col("register_status"), F.lit("正常")) == "正常")
    if "death_date" in population.columns:
        population = population.where(F.col("death_date").isNull())
    return population


def population_by_town_age_band(population: DataFrame, as_of: str) -> DataFrame:
    return (
        living(population).select(
            F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
            age_band(F.col("birth_date"), as_of).alias("age_band"),
            F.coalesce(F.col("gender"), F.lit(UNKNOWN)).alias("gender"),
        )
        .groupBy("town", "age_band", "gender").agg(F.count("*").alias("persons"))
    )


def legal_entity_by_town_industry(legal_entity: DataFrame) -> DataFrame:
    names = F.create_map(*[x for k, v in INDUSTRY_SECTIONS.items() for x in (F.lit(k), F.lit(v))])
    status_group = (
        F.when(F.col("status").isin("存续", "在业", "正常"), F.lit("active"))
        .when(F.col("status").isin("注销", "吊销", "撤销"), F.lit("closed"))
        .otherwise(F.lit(UNKNOWN))
    )
    return (
        legal_entity.select(
            F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
            F.coalesce(F.col("industry"), F.lit(UNKNOWN)).alias("industry"),
            status_group.alias("status_group"),
        )
        .groupBy("town", "industry", "status_group").agg(F.count("*").alias("entities"))
        .withColumn("industry_name", F.coalesce(names[F.col("industry")], F.lit(UNKNOWN)))
    )


BUILDERS = {
    "topic.population_by_town_age_band": ("base.population", lambda df, as_of: population_by_town_age_band(df, as_of)),
    "topic.legal_entity_by_town_industry": ("base.legal_entity", lambda df, as_of: legal_entity_by_town_industry(df)),
}


def build_table(settings: Settings, table: str, as_of: str, spark: SparkSession | None = None) -> dict:
    t0 = time.time()
    spark = spark or get_spark(settings)
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    if table not in BUILDERS:
        raise contracts_mod.ContractError(f"{table}: no builder in jobs/build_topic.py")
    base_table, fn = BUILDERS[table]
    zone, name = base_table.split(".")
    path = io.table_path(settings, zone, name)
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{table}: {base_table} has not been built yet")
    candidate = fn(io.read(spark, path), as_of)
    res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of, "inputs": f"{base_table}@v{io.version(spark, path)}"})
    return {"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}


def run(settings: Settings, as_of: str) -> list[dict]:
    contracts = contracts_mod.load(settings.contracts_dir)
    # the IoT topics are rebuilt per delivery day by jobs/iot.py
    tables = sorted(t.table for t in contracts.tables.values() if t.zone == "topic" and t.table in BUILDERS)
    return [build_table(settings, t, as_of) for t in tables]
