"""Vital events (出生、死亡) from the health commission's medical certificates (``raw.nhc_vital_events``,
the authority for deaths): ``topic.vital_events``, one row per certificate.

A certificate delivered again in a later file is counted once (the latest delivery's copy), and so is
a person's event certified twice (same ID number and event type). The place of a death without a
medical institution is 家中或其他 (at home or elsewhere). The table holds personal data (ID number,
name, birth date: grade 3); it is opened only as a de-identified record-level dataset under directed
opening, through the k-anonymity and l-diversity gate (contracts/tables/topic_vital_events.yaml,
opendata/deid.py)."""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.topic.derive import UNKNOWN, publish_from
from lake.settings import Settings

TABLE = "topic.vital_events"
TABLES = (TABLE,)
AT_HOME = "家中或其他"


def vital_events(raw: DataFrame) -> DataFrame:
    """One row per vital event certificate. Pure."""
    latest = Window.partitionBy("record_id").orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc(),
                                                      F.col("_row").desc())
    events = raw.withColumn("_n", F.row_number().over(latest)).where("_n = 1").drop("_n")
    person = Window.partitionBy("id_number", "event_type").orderBy(F.col("event_date").desc(), F.col("record_id"))
    events = (events.withColumn("_n", F.when(F.col("id_number").isNull(), F.lit(1)).otherwise(F.row_number().over(person)))
              .where("_n = 1").drop("_n"))
    place = F.when(F.coalesce(F.trim(F.col("institution")), F.lit("")) != "", F.trim(F.col("institution")))
    return events.select(
        "record_id", "event_type", "event_date", "id_number", "name", "gender", "birth_date",
        F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
        F.coalesce(place, F.when(F.col("event_type") == "死亡", F.lit(AT_HOME)), F.lit(UNKNOWN)).alias("institution"),
    )


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    return [publish_from(settings, TABLE, "raw.nhc_vital_events", vital_events, as_of)]
