"""Legal-entity topics (法人主题库) from ``base.legal_entity``: entities per town, GB/T 4754-2017 industry
section and status group (``topic.legal_entity_by_town_industry``)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.reference import LEGAL_ENTITY
from lake.rules import literal_map
from lake.settings import Settings
from jobs.topic.derive import UNKNOWN, count_by, publish_counts

TABLE = "topic.legal_entity_by_town_industry"
TABLES = (TABLE,)
INDUSTRY_SECTIONS = {
    "A": "农、林、牧、渔业", "B": "采矿业", "C": "制造业", "D": "电力、热力、燃气及水生产和供应业",
    "E": "建筑业", "F": "批发和零售业", "G": "交通运输、仓储和邮政业", "H": "住宿和餐饮业",
    "I": "信息传输、软件和信息技术服务业", "J": "金融业", "K": "房地产业", "L": "租赁和商务服务业",
    "M": "科学研究和技术服务业", "N": "水利、环境和公共设施管理业", "O": "居民服务、修理和其他服务业",
    "P": "教育", "Q": "卫生和社会工作", "R": "文化、体育和娱乐业", "S": "公共管理、社会保障和社会组织",
    "T": "国际组织",
}


GROUPS = ["town", "industry", "status_group"]


def project(legal_entity: DataFrame, as_of: str = "") -> DataFrame:
    """One row per entity: its credit code, town, industry section and status group (active /
    closed / unknown). Pure."""
    status_group = (
        F.when(F.col("status").isin(*LEGAL_ENTITY.active_statuses), F.lit("active"))
        .when(F.col("status").isin(*LEGAL_ENTITY.deregistered_statuses), F.lit("closed"))
        .otherwise(F.lit(UNKNOWN))
    )
    return legal_entity.select(
        *[c for c in ("credit_code",) if c in legal_entity.columns],
        F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
        F.coalesce(F.col("industry"), F.lit(UNKNOWN)).alias("industry"),
        status_group.alias("status_group"),
    )


def with_industry_name(df: DataFrame) -> DataFrame:
    return df.withColumn("industry_name", F.coalesce(literal_map(INDUSTRY_SECTIONS)[F.col("industry")], F.lit(UNKNOWN)))


def legal_entity_by_town_industry(legal_entity: DataFrame) -> DataFrame:
    """One row per town, industry section and status group (active / closed / unknown). Pure."""
    return with_industry_name(count_by(project(legal_entity), GROUPS, "entities"))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    return [publish_counts(settings, TABLE, "base.legal_entity", project, GROUPS, "entities", as_of,
                           finalize=with_industry_name)]
