"""The e-licence base database (电子证照库): ``base.e_licence``, one row per licence or certificate.

The issuing departments deliver their licences (``samr_elicences``: business and food-operation
licences; ``zjw_elicences``: construction permits; ``psb_elicences``: electronic ID cards;
``mca_elicences``: marriage certificates). The licence catalogue (``contracts/reference.yaml``
``e_licence.catalogue``) names, per licence type, the one department that issues it, who holds it (an
entity, by credit code, or a person, by ID number) and whether it ends with its holder. The record
machinery is ``jobs.base.records``; the checks the contract names (``cross_rules``) are implemented
here (``CROSS_RULES``), each a finding for the issuing department:

- ``licence_issuer_unauthorised``: the row's issuer (or the department that delivered it) is not the
  catalogue's issuer of its type; the licence is not published (one number, one source);
- ``licence_holder_unknown``: the holder's credit code / ID number is not in the base;
- ``name_mismatch``: the holder's name differs from the base's;
- ``licence_expired_active``: the status is 有效 but the validity ended before the reference date;
- ``licence_holder_inactive``: the status is 有效 but the holder no longer exists (entity 注销/吊销/撤销,
  person dead), for the types that end with their holder;
- ``invalid_period``: the validity ends before it begins.

A row without the holder identifier its type needs is a ``missing_value`` finding and is not published.
"""
from __future__ import annotations

import time
from dataclasses import replace

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.base import golden, records
from jobs.base.records import Rule
from lake import contracts as contracts_mod
from lake import rules
from lake.log import log
from lake.reference import E_LICENCE
from lake.rules import literal_map
from lake.settings import Settings
from lake.spark import get_spark

TABLE = "base.e_licence"
TABLES = (TABLE,)
HOLDER_TYPES = {"entity": "法人", "person": "自然人"}

DERIVATIONS = {
    "catalogue_name": "the licence type's name in the licence catalogue (contracts/reference.yaml e_licence.catalogue)",
    "catalogue_holder": "法人 or 自然人: who holds the licence type, from the catalogue",
    "legal_entity_link": "entity_id of the holder's credit code in base.legal_entity",
    "population_link": "person_id of the holder's ID number in base.population",
}


def _catalogue(attr: str) -> Column:
    return literal_map({t: getattr(lt, attr) for t, lt in E_LICENCE.catalogue.items()})[F.col("licence_type")]


# ------------------------------------------------------------------ cross rules (over linked rows)

def _unauthorised(ctx: dict) -> Rule:
    return Rule("licence_issuer_unauthorised", "cross.licence_issuer", F.lit("issuer_code"), ~F.col("_authorised"),
                F.concat(F.lit("only "), F.col("_cat_issuer"), F.lit(" ("), F.col("_cat_issuer_code"),
                         F.lit(") issues "), F.col("licence_type"), F.lit("; the licence is not published")),
                F.col("issuer_code"), rules.ERROR)


def _holder_unknown(ctx: dict) -> Rule:
    return records.unknown_subject_rule("licence_holder_unknown", "holder")


def _name_mismatch(ctx: dict) -> Rule:
    return records.name_mismatch_rule("holder_name")


def _is_valid() -> Column:
    return F.col("status") == E_LICENCE.valid_status


def _expired_active(ctx: dict) -> Rule:
    day = F.lit(ctx["as_of"]).cast("date")
    return Rule("licence_expired_active", "cross.licence_expired_active", F.lit("status"),
                _is_valid() & F.col("valid_to").isNotNull() & (F.col("valid_to") < day)
                & (F.col("valid_from").isNull() | (F.col("valid_from") <= F.col("valid_to"))),
                F.concat(F.lit("status is 有效 but the validity ended on "), F.col("valid_to").cast("string")),
                F.col("status"))


def _holder_inactive(ctx: dict) -> Rule:
    return Rule("licence_holder_inactive", "cross.licence_holder_inactive", F.col("_subject_field"),
                _is_valid() & F.col("_cat_ends").cast("boolean") & F.col("_known") & F.col("_base_inactive"),
                F.concat(F.lit("status is 有效 but the holder no longer exists ("),
                         F.coalesce(F.col("_le_status"), F.when(F.col("_pop_death").isNotNull(),
                                                               F.concat(F.lit("died "), F.col("_pop_death").cast("string"))),
                                    F.col("_pop_status")), F.lit(")")),
                F.col("_subject_key"))


def _invalid_period(ctx: dict) -> Rule:
    return Rule("invalid_period", "cross.validity_order", F.lit("valid_to"),
                F.col("valid_to").isNotNull() & F.col("valid_from").isNotNull() & (F.col("valid_to") < F.col("valid_from")),
                F.concat(F.lit("the validity ends before it begins ("), F.col("valid_from").cast("string"), F.lit(")")),
                F.col("valid_to"))


CROSS_RULES = {
    "licence_issuer_unauthorised": _unauthorised,
    "licence_holder_unknown": _holder_unknown,
    "name_mismatch": _name_mismatch,
    "licence_expired_active": _expired_active,
    "licence_holder_inactive": _holder_inactive,
    "invalid_period": _invalid_period,
}


# ------------------------------------------------------------------ transforms (pure)

def link(rows: DataFrame, entities: DataFrame, people: DataFrame, departments: dict[str, str]) -> DataFrame:
    """Licence rows with the catalogue's view of their type (``_cat_*``), whether the issuer is the
    type's authority (``_authorised``: the row's issuer code and the delivering department's code,
    ``departments``: source -> department code) and the holder linked."""
    df = rows.withColumns({
        "_cat_issuer": _catalogue("issuer"), "_cat_issuer_code": _catalogue("issuer_code"),
        "_cat_holder": _catalogue("holder"), "_cat_ends": _catalogue("ends_with_holder"),
        "_src_dept_code": literal_map(departments)[F.col("_src")],
    })
    df = df.withColumn("_authorised", F.coalesce(
        (F.col("issuer_code") == F.col("_cat_issuer_code")) & (F.col("_src_dept_code") == F.col("_cat_issuer_code")),
        F.lit(False)))
    kind = F.when(F.col("_cat_holder") == "person", F.lit("id_number")).otherwise(F.lit("credit_code"))
    return records.link_subjects(df, entities, people, "holder_credit_code", "holder_id_number", kind)


def rules_of(tc, as_of: str) -> list[Rule]:
    """The missing-holder rule, then the contract's cross rules. Only an authorised row is checked
    further than its issuer: an unauthorised one is not the record of the licence."""
    out = []
    for r in [records.missing_subject_rule("holder"), *[CROSS_RULES[n]({"as_of": as_of}) for n in tc.cross_rules]]:
        if r.defect != "licence_issuer_unauthorised":
            r = replace(r, when=F.col("_authorised") & r.when)
        out.append(r)
    return out


def candidate(linked: DataFrame, tc) -> DataFrame:
    """The published licences: authorised, naming their holder; contract column order, ``_lineage``."""
    derived = {"licence_name": _catalogue("name"),
               "holder_type": literal_map(HOLDER_TYPES)[F.col("_cat_holder")],
               "entity_id": F.col("entity_id"), "person_id": F.col("person_id")}
    cols = [(derived[c.name] if c.authority == "derived" else F.col(c.name)).cast(c.type).alias(c.name) for c in tc.columns]
    return (linked.where(F.col("_authorised") & F.col("_subject_key").isNotNull())
            .select(*cols, records.lineage(tc)))


# ------------------------------------------------------------------ job

def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish ``base.e_licence`` (skipped when no issuing department has delivered)."""
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(TABLE)
    present = records.present_sources(spark, settings, tc)
    if not present:
        return [records.skipped(TABLE, f"no raw data yet from any of {', '.join(golden.sources_used(tc))}")]
    entities = records.entity_view(records.read_base(spark, settings, "legal_entity"))
    people = records.person_view(records.read_base(spark, settings, "population"))
    frames, dups = records.source_frames(spark, settings, contracts, present)
    departments = {s: contracts.source(s).department_code for s in present}
    linked = link(records.unify(tc, frames), entities, people, departments).persist()
    try:
        rid = records.run_id(spark, settings, tc)
        found = records.findings_of(linked, rules_of(tc, as_of))
        for d in dups:
            found = found.unionByName(d)
        found = found.persist()
        records.write_findings(settings, found, rid)
        counts = records.counts_by_defect(found)
        res = records.publish(spark, settings, tc, candidate(linked, tc), as_of, rid)
    finally:
        spark.catalog.clearCache()
    res.update({"findings": counts, "sources": present, "seconds": round(time.time() - t0, 2)})
    log.info("%s: %s (%d rows) in %.1fs", TABLE, res["status"], res["rows"], res["seconds"])
    return [res]
