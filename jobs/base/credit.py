"""The social-credit base database (社会信用基础库): ``base.credit_decision`` (administrative licences and
penalties published under 双公示), ``base.credit_disclosure`` (their public part), ``base.credit_list``
(red and black lists) and ``base.credit_profile`` (one credit profile per legal entity).

Each decision comes from the department that decided it (``samr_licences``, ``mem_licences``,
``samr_penalties``, ``mee_penalties``, ``tax_penalties``, ``mem_penalties``), each list entry from the
credit office (``ndrc_credit_lists``), each tax-credit rating from tax (``tax_credit_ratings``): the
record machinery is ``jobs.base.records``. Subjects are linked to ``base.legal_entity`` (credit code:
法人及非法人组织, 个体工商户) and ``base.population`` (ID number: 自然人). The contracts' ``cross_rules``
name the checks, implemented here (``CROSS_RULES``); every finding goes to the department whose row
it is about:

- ``credit_subject_unknown``: the subject's credit code / ID number is not in the base;
- ``name_mismatch``: the subject's name differs from the base's (legal-form spellings are equal);
- ``penalty_on_deregistered``: a penalty (other than one revoking the registration) on an entity whose
  register says 注销/吊销/撤销;
- ``licence_before_establishment``: a licence decided before the entity's establishment date;
- ``invalid_period``: a licence whose validity ends before it begins;
- ``red_black_conflict``: a subject in force on a red and a black list on the reference date (the red
  listing is the finding: a subject under joint punishment cannot be a model of trustworthiness).

A record that names no subject (its identifier empty) is a ``missing_value`` finding and is not published.
The profile counts each entity's licences and penalties (base.credit_decision), lists the red and black
lists in force on the reference date (base.credit_list) and takes the newest tax-credit rating.
"""
from __future__ import annotations

import time

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.base import golden, records
from jobs.base.records import Rule
from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.reference import CREDIT
from lake.rules import literal_map
from lake.settings import Settings
from lake.spark import get_spark

DECISION, DISCLOSURE, LIST, PROFILE = ("base.credit_decision", "base.credit_disclosure", "base.credit_list",
                                       "base.credit_profile")
TABLES = (DECISION, DISCLOSURE, LIST, PROFILE)
RATINGS = "tax_credit_ratings"
LICENCE, PENALTY = "行政许可", "行政处罚"
PERSON_TYPE = next(t for t, col in CREDIT.subject_types.items() if col == "id_number")

# the contracts' derive names and what they are (rows are built in this module)
DERIVATIONS = {
    "source_department": "the department of the source the row came from (its contract's department)",
    "legal_entity_link": "entity_id of the subject's credit code in base.legal_entity",
    "population_link": "person_id of the subject's ID number in base.population",
    "list_colour": "red or black, from the list's name (contracts/reference.yaml credit.lists)",
    "legal_entity_key": "the entity's credit code and entity_id in base.legal_entity",
    "legal_entity_name": "the entity's name in base.legal_entity (its registering department's)",
    "decisions_count": "counted from the entity's rows of base.credit_decision",
}


# ------------------------------------------------------------------ cross rules (over linked rows)

def _unknown(ctx: dict) -> Rule:
    return records.unknown_subject_rule("credit_subject_unknown", "subject")


def _name_mismatch(ctx: dict) -> Rule:
    return records.name_mismatch_rule(ctx.get("name_col", "subject_name"))


def _penalty_on_deregistered(ctx: dict) -> Rule:
    return Rule(
        "penalty_on_deregistered", "cross.penalty_on_deregistered", F.lit("credit_code"),
        (F.col("kind") == PENALTY) & (F.col("_subject_kind") == "credit_code") & F.col("_le_status").isin(*records.DEAD)
        & ~F.col("category").isin(*CREDIT.revoking_penalties),
        F.concat(F.lit("a penalty ("), F.col("category"), F.lit(") on an entity whose register status is "),
                 F.col("_le_status"), F.lit(" in base.legal_entity")),
        F.col("credit_code"))


def _licence_before_establishment(ctx: dict) -> Rule:
    return Rule(
        "licence_before_establishment", "cross.licence_before_establishment", F.lit("decision_date"),
        (F.col("kind") == LICENCE) & F.col("_established").isNotNull() & (F.col("decision_date") < F.col("_established")),
        F.concat(F.lit("licence decided before the entity was established ("), F.col("_established").cast("string"),
                 F.lit(", base.legal_entity)")),
        F.col("decision_date"))


def _invalid_period(ctx: dict) -> Rule:
    return Rule(
        "invalid_period", "cross.validity_order", F.lit("valid_to"),
        F.col("valid_to").isNotNull() & F.col("valid_from").isNotNull() & (F.col("valid_to") < F.col("valid_from")),
        F.concat(F.lit("the validity ends before it begins ("), F.col("valid_from").cast("string"), F.lit(")")),
        F.col("valid_to"))


def _red_black_conflict(ctx: dict) -> Rule:
    return Rule(
        "red_black_conflict", "cross.red_black_conflict", F.lit("list_name"),
        F.col("_active") & (F.col("colour") == "red") & F.col("_black_active"),
        F.concat(F.lit("the subject is on a black list in force ("), F.col("_black_names"),
                 F.lit(") and on this red list")),
        F.col("list_name"))


CROSS_RULES = {
    "credit_subject_unknown": _unknown,
    "name_mismatch": _name_mismatch,
    "penalty_on_deregistered": _penalty_on_deregistered,
    "licence_before_establishment": _licence_before_establishment,
    "invalid_period": _invalid_period,
    "red_black_conflict": _red_black_conflict,
}


def rules_of(tc, ctx: dict, missing_subject: bool = True) -> list[Rule]:
    """The rules the table's contract names (``cross_rules``), after the missing-subject rule."""
    return ([records.missing_subject_rule()] if missing_subject else []) + [CROSS_RULES[n](ctx) for n in tc.cross_rules]


# ------------------------------------------------------------------ transforms (pure)

def link(rows: DataFrame, entities: DataFrame, people: DataFrame) -> DataFrame:
    """Decision or list rows with their subject linked (by the identifier its subject type names)."""
    return records.link_subjects(rows, entities, people, "credit_code", "id_number",
                                 records.subject_kind_of_type(F.col("subject_type")))


def with_list_state(linked: DataFrame, as_of: str) -> DataFrame:
    """List rows with ``colour``, ``_active`` (in force on ``as_of``) and, per subject, whether a black
    list is in force (``_black_active``) and which (``_black_names``)."""
    day = F.lit(as_of).cast("date")
    df = linked.withColumn("colour", literal_map(dict(CREDIT.lists))[F.col("list_name")])
    df = df.withColumn("_active", (F.col("status") == CREDIT.active_list_status) & (F.col("included_date") <= day)
                       & (F.col("valid_until").isNull() | (F.col("valid_until") >= day)))
    w = Window.partitionBy("_subject_kind", "_subject_key")
    black = F.when(F.col("_active") & (F.col("colour") == "black"), F.col("list_name"))
    return df.withColumns({
        "_black_active": F.col("_subject_key").isNotNull() & (F.count(black).over(w) > 0),
        "_black_names": F.array_join(F.array_sort(F.collect_set(black).over(w)), ";"),
    })


def candidate(linked: DataFrame, tc, derived: dict[str, Column]) -> DataFrame:
    """The published rows: those naming a subject, in contract column order, with ``_lineage``."""
    cols = [(derived[c.name] if c.authority == "derived" else F.col(c.name)).cast(c.type).alias(c.name) for c in tc.columns]
    return linked.where(F.col("_subject_key").isNotNull()).select(*cols, records.lineage(tc))


def decision_derived() -> dict[str, Column]:
    """The derived columns of base.credit_decision (and base.credit_list's links)."""
    return {"department": F.col("_dept"), "entity_id": F.col("entity_id"), "person_id": F.col("person_id")}


def disclosed(linked: DataFrame, tc, as_of: str) -> DataFrame:
    """``base.credit_disclosure``: decisions on legal entities and individual businesses, penalties only
    within their publicity period on ``as_of``."""
    day = F.lit(as_of).cast("date")
    keep = (F.col("subject_type") != PERSON_TYPE) & F.col("credit_code").isNotNull() & (
        (F.col("kind") == LICENCE) | F.col("publicity_end").isNull() | (F.col("publicity_end") >= day))
    return candidate(linked.where(keep), tc, {"department": F.col("_dept")})


def profile(legal_entity: DataFrame, decisions: DataFrame, lists: DataFrame, ratings: DataFrame, tc) -> DataFrame:
    """``base.credit_profile``: one row per entity of ``legal_entity``. ``decisions`` are rows of
    base.credit_decision, ``lists`` rows of base.credit_list with ``_active`` and ``colour``,
    ``ratings`` the current rating rows (credit_code, rating_year, rating, metadata). Pure."""
    is_penalty = F.col("kind") == PENALTY
    dec = decisions.where(F.col("credit_code").isNotNull()).groupBy("credit_code").agg(
        F.count(F.when(F.col("kind") == LICENCE, 1)).alias("licences"),
        F.count(F.when(is_penalty, 1)).alias("penalties"),
        F.sum(F.when(is_penalty, F.col("amount"))).alias("penalty_amount"),
        F.max(F.when(is_penalty, F.col("decision_date"))).alias("last_penalty_date"))

    def names(colour: str) -> Column:
        return F.array_join(F.array_sort(F.collect_set(F.when(F.col("_active") & (F.col("colour") == colour),
                                                              F.col("list_name")))), ";")

    lst = lists.where(F.col("credit_code").isNotNull() & F.col("_active")).groupBy("credit_code").agg(
        names("red").alias("red_lists"), names("black").alias("black_lists"), F.max("_batch_id").alias("_list_batch"))
    newest = Window.partitionBy("credit_code").orderBy(F.col("rating_year").desc(), F.col("_ingested_at").desc(),
                                                       F.col("_batch_id").desc(), F.col("_row").asc())
    rat = (ratings.where(F.col("credit_code").isNotNull()).withColumn("_n", F.row_number().over(newest))
           .where(F.col("_n") == 1)
           .select("credit_code", F.col("rating").alias("tax_rating"), "rating_year",
                   F.struct(F.lit(RATINGS).alias("source"), F.col("_batch_id").alias("batch_id"),
                            F.col("_file_sha256").alias("file_sha256"), F.col("_row").cast("long").alias("row"))
                   .alias("_rating_origin")))
    df = (legal_entity.select("credit_code", "entity_id", "name")
          .join(dec, "credit_code", "left").join(lst, "credit_code", "left").join(rat, "credit_code", "left"))

    def derived(label: str) -> Column:
        return F.struct(F.lit(f"derived:{label}").alias("source"), F.lit(None).cast("string").alias("batch_id"),
                        F.lit(None).cast("string").alias("file_sha256"), F.lit(None).cast("long").alias("row"))

    lists_origin = F.when(F.col("_list_batch").isNotNull(), F.struct(
        F.lit("ndrc_credit_lists").alias("source"), F.col("_list_batch").alias("batch_id"),
        F.lit(None).cast("string").alias("file_sha256"), F.lit(None).cast("long").alias("row")))
    values = {
        "licences": F.coalesce(F.col("licences"), F.lit(0)), "penalties": F.coalesce(F.col("penalties"), F.lit(0)),
        "red_lists": F.when(F.col("red_lists") != "", F.col("red_lists")),
        "black_lists": F.when(F.col("black_lists") != "", F.col("black_lists")),
    }
    origins = {"red_lists": lists_origin, "black_lists": lists_origin, "tax_rating": F.col("_rating_origin"),
               "rating_year": F.col("_rating_origin")}
    cols, lineage = [], []
    for c in tc.columns:
        cols.append(values.get(c.name, F.col(c.name)).cast(c.type).alias(c.name))
        lineage += [F.lit(c.name), origins.get(c.name, derived(c.derive or c.name)).cast(io.LINEAGE_TYPE)]
    return df.select(*cols, F.create_map(*lineage).alias("_lineage"))


# ------------------------------------------------------------------ job

def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish the four social-credit tables (a table none of whose sources has delivered
    is skipped, saying so)."""
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    entities = records.entity_view(records.read_base(spark, settings, "legal_entity"))
    people = records.person_view(records.read_base(spark, settings, "population"))
    out: list[dict] = []
    try:
        out += _decisions(spark, settings, contracts, entities, people, as_of)
        out += _lists(spark, settings, contracts, entities, people, as_of)
        out += _profile(spark, settings, contracts, entities, people, as_of)
    finally:
        spark.catalog.clearCache()
    log.info("social credit: %s in %.1fs", ", ".join(f"{r['table']} {r['status']}" for r in out), time.time() - t0)
    return out


def _linked(spark, settings, contracts, tc, present, entities, people, shape=lambda df: df):
    """The present sources' current rows of ``tc`` unified and linked to their subjects (``shape``
    applied, persisted: the caller unpersists), the run id, and the findings written for that run
    (counts by defect type)."""
    frames, dups = records.source_frames(spark, settings, contracts, present)
    linked = shape(link(records.unify(tc, frames), entities, people)).persist()
    rid = records.run_id(spark, settings, tc)
    found = records.findings_of(linked, rules_of(tc, {"name_col": "subject_name"}))
    for d in dups:
        found = found.unionByName(d)
    found = found.persist()
    records.write_findings(settings, found, rid)
    counts = records.counts_by_defect(found)
    found.unpersist()
    return linked, rid, counts


def _decisions(spark, settings, contracts, entities, people, as_of) -> list[dict]:
    tc = contracts.table(DECISION)
    present = records.present_sources(spark, settings, tc)
    if not present:
        reason = f"no raw data yet from any of {', '.join(golden.sources_used(tc))}"
        return [records.skipped(DECISION, reason), records.skipped(DISCLOSURE, reason)]
    t0 = time.time()
    linked, rid, counts = _linked(spark, settings, contracts, tc, present, entities, people)
    res = records.publish(spark, settings, tc, candidate(linked, tc, decision_derived()), as_of, rid)
    res.update({"findings": counts, "sources": present, "seconds": round(time.time() - t0, 2)})
    t1 = time.time()
    dtc = contracts.table(DISCLOSURE)
    dres = records.publish(spark, settings, dtc, disclosed(linked, dtc, as_of), as_of, rid)
    dres["seconds"] = round(time.time() - t1, 2)
    linked.unpersist()
    return [res, dres]


def _lists(spark, settings, contracts, entities, people, as_of) -> list[dict]:
    tc = contracts.table(LIST)
    present = records.present_sources(spark, settings, tc)
    if not present:
        return [records.skipped(LIST, f"no raw data yet from {', '.join(golden.sources_used(tc))}")]
    t0 = time.time()
    linked, rid, counts = _linked(spark, settings, contracts, tc, present, entities, people,
                                  lambda df: with_list_state(df, as_of))
    derived = {**decision_derived(), "colour": F.col("colour")}
    res = records.publish(spark, settings, tc, candidate(linked, tc, derived), as_of, rid)
    res.update({"findings": counts, "seconds": round(time.time() - t0, 2)})
    linked.unpersist()
    return [res]


def _profile(spark, settings, contracts, entities, people, as_of) -> list[dict]:
    t0 = time.time()
    tc = contracts.table(PROFILE)
    legal_entity = records.read_base(spark, settings, "legal_entity")
    decisions = (records.read_base(spark, settings, "credit_decision") if _exists(spark, settings, DECISION)
                 else spark.createDataFrame([], "credit_code string, kind string, amount decimal(18,4), decision_date date"))
    if _exists(spark, settings, LIST):
        lists = with_list_state(
            records.read_base(spark, settings, "credit_list").withColumns({
                "_subject_kind": records.subject_kind_of_type(F.col("subject_type")),
                "_subject_key": F.coalesce(F.col("credit_code"), F.col("id_number")),
                "_batch_id": F.col("_lineage")["entry_no"]["batch_id"]}).drop("colour"), as_of)
    else:
        lists = spark.createDataFrame([], "credit_code string, list_name string, colour string, _active boolean, "
                                          "_batch_id string")
    rid = records.run_id(spark, settings, tc)
    if io.is_table(spark, io.table_path(settings, "raw", RATINGS)):
        sc = contracts.source(RATINGS)
        current, dups = records.current_rows(records.read_raw(spark, settings, RATINGS), sc.unique_key)
        rows = records.with_meta(current, sc).withColumn("id_number", F.lit(None).cast("string"))
        linked = records.link_subjects(rows, entities, people, "credit_code", "id_number", F.lit("credit_code")).persist()
        found = records.findings_of(linked, rules_of(tc, {"name_col": "taxpayer_name"}, missing_subject=False))
        found = found.unionByName(records.duplicate_findings(dups, sc)).persist()
        records.write_findings(settings, found, rid)
        counts = records.counts_by_defect(found)
        ratings = linked.where(F.col("_known"))
    else:
        counts = {}
        ratings = spark.createDataFrame([], "credit_code string, rating_year int, rating string, _ingested_at timestamp, "
                                            "_batch_id string, _file_sha256 string, _row long")
    res = records.publish(spark, settings, tc, profile(legal_entity, decisions, lists, ratings, tc), as_of, rid)
    res.update({"findings": counts, "seconds": round(time.time() - t0, 2)})
    return [res]


def _exists(spark, settings, table: str) -> bool:
    return io.is_table(spark, io.path_of(settings, table))
