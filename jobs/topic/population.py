"""Population topics (人口主题库) from ``base.population``: the living population per town, age band and
gender (``topic.population_by_town_age_band``). The age is taken on the run's reference date
(``as_of``, from the orchestrator, never the clock)."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake.settings import Settings
from jobs.topic.derive import UNKNOWN, count_by, publish_counts

TABLE = "topic.population_by_town_age_band"
TABLES = (TABLE,)


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


GROUPS = ["town", "age_band", "gender"]


def project(population: DataFrame, as_of: str) -> DataFrame:
    """One row per living person: the key and the person's group on ``as_of``. Pure."""
    return living(population).select(
        *[c for c in ("id_number",) if c in population.columns],
        F.coalesce(F.col("town"), F.lit(UNKNOWN)).alias("town"),
        age_band(F.col("birth_date"), as_of).alias("age_band"),
        F.coalesce(F.col("gender"), F.lit(UNKNOWN)).alias("gender"),
    )


def moved(population: DataFrame, a_old: str, a_new: str) -> DataFrame:
    """The living persons whose age band differs between two reference dates: their group on each
    (``_o_*``, ``_n_*``), in one pass (a birthday at 18, 35, 60 or 80 in between). Pure."""
    town = F.coalesce(F.col("town"), F.lit(UNKNOWN))
    gender = F.coalesce(F.col("gender"), F.lit(UNKNOWN))
    old, new = age_band(F.col("birth_date"), a_old), age_band(F.col("birth_date"), a_new)
    return living(population).where(old != new).select(
        town.alias("_o_town"), old.alias("_o_age_band"), gender.alias("_o_gender"),
        town.alias("_n_town"), new.alias("_n_age_band"), gender.alias("_n_gender"))


def population_by_town_age_band(population: DataFrame, as_of: str) -> DataFrame:
    """One row per town, age band and gender with the number of living persons. Pure."""
    return count_by(project(population, as_of), GROUPS, "persons")


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    return [publish_counts(settings, TABLE, "base.population", project, GROUPS, "persons", as_of, as_of_dependent=moved)]
