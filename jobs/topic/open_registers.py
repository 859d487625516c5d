"""Published registers (公示信息) from the base databases, opened record by record: the register of
enterprises and other legal entities (``topic.legal_entity_register``) from ``base.legal_entity``.

Only the fields a register publishes: name, unified social credit code, type, industry, town, status
and date of establishment. The legal representative, phone numbers, the address and the tax fields
of the base record are not in the table at all (the legal representative is a person: his or her
name and ID never reach the open zone). Only entities a registering department knows (a status from
market regulation, civil affairs or the establishment office) are listed, not those known only to tax."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.topic.derive import UNKNOWN, publish_from
from jobs.topic.legal_entity import INDUSTRY_SECTIONS
from lake.rules import literal_map
from lake.settings import Settings

TABLE = "topic.legal_entity_register"
TABLES = (TABLE,)


def legal_entity_register(legal_entity: DataFrame) -> DataFrame:
    """One row per registered legal entity, public fields only. Pure."""
    return (
        legal_entity.where(F.col("status").isNotNull())
        .select(
            "credit_code", "name", "entity_type",
            F.coalesce(F.col("industry"), F.lit(UNKNOWN)).alias("industry"),
            F.coalesce(literal_map(INDUSTRY_SECTIONS)[F.col("industry")], F.lit(UNKNOWN)).alias("industry_name"),
            F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
            "status", "established_date",
        )
    )


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    return [publish_from(settings, TABLE, "base.legal_entity", legal_entity_register, as_of)]
