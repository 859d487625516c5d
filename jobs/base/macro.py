"""The macro-economy base database (宏观经济基础库): ``base.macro_indicator`` (the current figure of
every indicator per period, town and industry) and ``base.macro_indicator_history`` (every release).

Four departments deliver figures: statistics (``nbs_indicators``: one row per indicator), tax
(``tax_revenue``), finance (``mof_budget``) and development and reform (``ndrc_investment``; these three
with one column per indicator). The indicator catalogue (``contracts/reference.yaml``
``macro.indicators``) names the one source that is each indicator's authority, its unit, frequency,
breakdown and whether its totals are sums. Each delivered figure becomes a cell value
(indicator, period, town, industry) of a release (its ``release_date``); a later release of a cell is
a revision: it replaces the figure in ``base.macro_indicator`` (with the number of revisions and the
value it replaced) and every release stays in the history, with the date the next one superseded it.

Checks (the contract's ``cross_rules``, ``CROSS_RULES`` here), each a finding for the department whose
row it is about:

- ``indicator_not_authoritative``: a figure of an indicator whose authority is another source; not used;
- ``unit_mismatch``: a unit other than the indicator's: converted when it is a unit of the same kind
  (亿元 and 元 to 万元, ``macro.unit_conversions``), otherwise the figure is not used (error);
- ``total_mismatch``: a total (全区 and/or 合计) of an additive indicator differs from the sum of its
  finest parts (the cells of single towns and, for indicators by industry, single industries) by
  more than rounding (``macro.tolerances.totals``); compared on current figures;
- ``turnover_mismatch``: tax's declared sales of a finest cell differ from the statistics bureau's
  turnover of the same cell by more than ``macro.tolerances.turnover`` (``macro.cross_checks``);
- ``entity_count_mismatch``: the statistics bureau's entity count of a finest cell, for the latest
  period it reported, differs from the active entities of that town and industry in
  ``base.legal_entity`` by more than ``macro.tolerances.entity_count``.

A period not in its indicator's frequency's form (2026-09 monthly, 2026Q3 quarterly) is an
``invalid_value`` finding and the figure is not used; a cell delivered twice in one file is a
``duplicate_record`` finding (the first row counts).
"""
from __future__ import annotations

import time
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.base import golden, records
from jobs.base.records import Rule
from lake import contracts as contracts_mod
from lake import rules
from lake.contracts import SourceContract
from lake.log import log
from lake.reference import LEGAL_ENTITY, MACRO
from lake.rules import literal_map
from lake.settings import Settings
from lake.spark import get_spark

INDICATOR, HISTORY = "base.macro_indicator", "base.macro_indicator_history"
TABLES = (INDICATOR, HISTORY)
CELL = ["indicator", "period", "town", "industry"]
PERIOD_FORMS = {"monthly": r"^[0-9]{4}-(0[1-9]|1[0-2])$", "quarterly": r"^[0-9]{4}Q[1-4]$"}

DERIVATIONS = {
    "indicator_catalogue": "the indicator's code, name, unit and frequency (contracts/reference.yaml macro.indicators)",
    "indicator_authority": "the figure of the indicator's authoritative source, in the indicator's unit",
    "revision_history": "from the releases of the cell, in release-date order",
}


def _cat(attr: str, key: Column | None = None) -> Column:
    values = {c: (",".join(getattr(i, attr)) if attr == "by" else getattr(i, attr)) for c, i in MACRO.indicators.items()}
    return literal_map(values)[F.col("indicator") if key is None else key]


# ------------------------------------------------------------------ long form (pure)

def long_rows(df: DataFrame, sc: SourceContract) -> DataFrame:
    """One row per delivered figure: ``indicator``, the cell, ``value`` and ``_unit`` as delivered,
    ``release_date``, ``_field`` (the source column holding the figure) and the row metadata. ``df``
    holds rows of ``sc`` with ``records.with_meta``. A source with an ``indicator`` column delivers
    one figure per row, in its ``unit``; the others one column per catalogue indicator, money in the
    row's ``amount_unit`` and counts in the indicator's own unit."""
    cols = ["period", "town", "industry", "release_date", *records.META]
    if "indicator" in sc.column_names:
        return df.select("indicator", *cols, F.col("value").cast("double").alias("value"),
                         F.col("unit").alias("_unit"), F.lit("value").alias("_field"))
    parts = []
    for code, ind in MACRO.indicators_of(sc.source).items():
        money = ind.unit in MACRO.unit_conversions
        parts.append(df.select(F.lit(code).alias("indicator"), *cols, F.col(ind.column).cast("double").alias("value"),
                               (F.col("amount_unit") if money else F.lit(ind.unit)).alias("_unit"),
                               F.lit(ind.column).alias("_field")))
    return reduce(DataFrame.unionByName, parts)


def _factors() -> dict[str, float]:
    out = {f"{u}|{u}": 1.0 for u in MACRO.units}
    for canonical, others in MACRO.unit_conversions.items():
        for unit in others:
            out[f"{canonical}|{unit}"] = MACRO.factor(canonical, unit)
    return out


def classify(long: DataFrame) -> DataFrame:
    """Long rows with the catalogue's view: ``_authoritative``, ``_canon_unit``, ``_factor`` (None when
    the delivered unit cannot be converted), ``_period_ok``, ``_used`` and the value in the
    indicator's unit (``_value``). Pure."""
    df = long.withColumns({
        "_cat_source": _cat("source"), "_canon_unit": _cat("unit"), "_frequency": _cat("frequency"),
        "_by": _cat("by"), "_additive": _cat("additive"),
    })
    df = df.withColumns({
        "_authoritative": F.coalesce(F.col("_cat_source") == F.col("_src"), F.lit(False)),
        "_factor": literal_map(_factors())[F.concat_ws("|", F.col("_canon_unit"), F.col("_unit"))],
        "_period_ok": F.coalesce(F.col("period").rlike(PERIOD_FORMS["monthly"]) & (F.col("_frequency") == "monthly")
                                 | F.col("period").rlike(PERIOD_FORMS["quarterly"]) & (F.col("_frequency") == "quarterly"),
                                 F.lit(False)),
    })
    return df.withColumns({
        "_value": F.col("value") * F.col("_factor"),
        "_used": F.col("_authoritative") & F.col("_factor").isNotNull() & F.col("_period_ok"),
    })


def versions(classified: DataFrame) -> DataFrame:
    """The used figures as releases of their cell: one per cell and release date (a cell released
    again on the same date in a later file replaces it), numbered ``_version`` from 1 in release
    order, ``_current`` the newest, ``_superseded`` the next release's date, ``_previous`` the figure
    it replaced. Pure."""
    used = classified.where(F.col("_used"))
    same_day = Window.partitionBy(*CELL, "release_date").orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc(),
                                                                 F.col("_row").asc())
    one = used.withColumn("_n", F.row_number().over(same_day)).where(F.col("_n") == 1).drop("_n")
    order = Window.partitionBy(*CELL).orderBy("release_date")
    whole = Window.partitionBy(*CELL)
    return one.withColumns({
        "_version": F.row_number().over(order),
        "_superseded": F.lead("release_date").over(order),
        "_previous": F.lag("_value").over(order),
        "_releases": F.count("*").over(whole),
    }).withColumn("_current", F.col("_version") == F.col("_releases"))


def _finest() -> Column:
    """A cell of one town and, for an indicator by industry, one industry section."""
    by_industry = F.col("_by").contains("industry")
    return (F.col("town") != MACRO.total_town) & (~by_industry | (F.col("industry") != MACRO.total_industry))


def with_totals(current: DataFrame) -> DataFrame:
    """Current figures with, on every total row of an additive indicator, the sum and number of its
    finest parts (``_parts_sum``, ``_parts``). Pure."""
    parts = current.where(F.col("_additive").cast("boolean") & _finest())
    T, I = MACRO.total_town, MACRO.total_industry  # noqa: E741
    sums = [
        parts.groupBy("indicator", "period", "industry").agg(F.sum("_value").alias("_parts_sum"), F.count("*").alias("_parts"))
        .withColumn("town", F.lit(T)),                                                   # (全区, X)
        parts.groupBy("indicator", "period", "town").agg(F.sum("_value").alias("_parts_sum"), F.count("*").alias("_parts"))
        .withColumn("industry", F.lit(I)),                                               # (T, 合计)
        parts.groupBy("indicator", "period").agg(F.sum("_value").alias("_parts_sum"), F.count("*").alias("_parts"))
        .withColumns({"town": F.lit(T), "industry": F.lit(I)}),                         # (全区, 合计)
    ]
    # only total rows look their sums up; for an indicator by town only (its parts are (T, 合计)) the
    # first and the last sum are both the (全区, 合计) one: kept once
    sums = reduce(DataFrame.unionByName, [s.select(*CELL, "_parts_sum", "_parts") for s in sums]).dropDuplicates(CELL)
    is_total = F.col("_additive").cast("boolean") & ~_finest()
    totals = current.where(is_total).join(sums, CELL, "left")
    return current.where(~is_total).withColumns({"_parts_sum": F.lit(None).cast("double"),
                                                 "_parts": F.lit(None).cast("long")}).unionByName(totals)


def _tolerance_exceeded(reported: Column, expected: Column, name: str) -> Column:
    tol = MACRO.tolerances[name]
    return F.abs(reported - expected) > F.greatest(F.lit(tol.absolute), F.lit(tol.relative) * F.abs(expected))


def with_cross_checks(current: DataFrame, entity_counts: DataFrame | None) -> DataFrame:
    """Current figures with ``_against`` (the figure another source's cell is checked against, by the
    cross check named in ``_check``): tax's declared sales against turnover per finest cell, entity
    counts of the latest period against ``entity_counts`` (town, industry, entities). Pure."""
    out = current.withColumns({"_against": F.lit(None).cast("double"), "_check": F.lit(None).cast("string")})
    for name, cc in MACRO.cross_checks.items():
        ref = (current.where((F.col("indicator") == cc.against) & _finest())
               .select("period", "town", "industry", F.col("_value").alias("_ref")))
        mine = (F.col("indicator") == cc.indicator) & _finest()
        out = (out.join(ref, ["period", "town", "industry"], "left")
               .withColumns({"_against": F.when(mine & F.col("_ref").isNotNull(), F.col("_ref")).otherwise(F.col("_against")),
                             "_check": F.when(mine & F.col("_ref").isNotNull(), F.lit(name)).otherwise(F.col("_check"))})
               .drop("_ref"))
    if entity_counts is not None:
        latest = current.where(F.col("indicator") == "entity_count").agg(F.max("period")).collect()[0][0]
        if latest is not None:
            counts = entity_counts.select("town", "industry", F.col("entities").cast("double").alias("_count"))
            mine = (F.col("indicator") == "entity_count") & (F.col("period") == latest) & _finest()
            out = (out.join(counts, ["town", "industry"], "left")
                   .withColumns({"_against": F.when(mine, F.coalesce(F.col("_count"), F.lit(0.0))).otherwise(F.col("_against")),
                                 "_check": F.when(mine, F.lit("entity_count")).otherwise(F.col("_check"))})
                   .drop("_count"))
    return out


def active_entity_counts(legal_entity: DataFrame) -> DataFrame:
    """Active entities of base.legal_entity per town and industry section. Pure."""
    return (legal_entity.where(F.col("status").isin(*LEGAL_ENTITY.active_statuses) & F.col("town").isNotNull()
                               & F.col("industry").isNotNull())
            .groupBy("town", "industry").agg(F.count("*").alias("entities")))


# ------------------------------------------------------------------ cross rules

def _not_authoritative(ctx: dict) -> Rule:
    return Rule("indicator_not_authoritative", "cross.indicator_authority", F.lit("indicator"),
                F.col("_cat_source").isNotNull() & ~F.col("_authoritative"),
                F.concat(F.lit("the authority for "), F.col("indicator"), F.lit(" is "), F.col("_cat_source"),
                         F.lit("; this figure is not used")),
                F.col("indicator"))


def _unit_field() -> Column:
    return F.when(F.col("_field") == "value", F.lit("unit")).otherwise(F.lit("amount_unit"))


def _unit_converted(ctx: dict) -> Rule:
    return Rule("unit_mismatch", "indicator.unit_converted", _unit_field(),
                F.col("_authoritative") & (F.col("_unit") != F.col("_canon_unit")) & F.col("_factor").isNotNull(),
                F.concat(F.col("indicator"), F.lit(" is published in "), F.col("_canon_unit"), F.lit("; converted from "),
                         F.col("_unit")),
                F.col("_unit"))


def _unit_unknown() -> Rule:
    return Rule("unit_mismatch", "indicator.unit_unknown", _unit_field(),
                F.col("_authoritative") & F.col("_factor").isNull(),
                F.concat(F.col("indicator"), F.lit(" is published in "), F.col("_canon_unit"), F.lit("; "),
                         F.col("_unit"), F.lit(" cannot be converted, the figure is not used")),
                F.col("_unit"), rules.ERROR)


def _period_invalid() -> Rule:
    return Rule("invalid_value", "indicator.period", F.lit("period"),
                F.col("_authoritative") & ~F.col("_period_ok"),
                F.concat(F.lit("not a "), F.col("_frequency"), F.lit(" period (2026-09 monthly, 2026Q3 quarterly); not used")),
                F.col("period"), rules.ERROR)


def _total_mismatch(ctx: dict) -> Rule:
    tol = MACRO.tolerances["totals"]
    return Rule("total_mismatch", "cross.total_equals_parts", F.col("_field"),
                F.col("_parts_sum").isNotNull()
                & _tolerance_exceeded(F.col("_value"), F.col("_parts_sum"), "totals"),
                F.concat(F.lit("the total "), F.format_number(F.col("_value"), 2), F.lit(" differs from the sum of its "),
                         F.col("_parts").cast("string"), F.lit(" parts "), F.format_number(F.col("_parts_sum"), 2),
                         F.lit(f" (tolerance {tol.absolute:g} or {tol.relative:g} relative)")),
                F.col("value"))


def _cross_check_rule(name: str, defect: str, what: str, against: str) -> Rule:
    tol = MACRO.tolerances[name]
    return Rule(defect, f"cross.{name}", F.col("_field"),
                (F.col("_check") == name) & _tolerance_exceeded(F.col("_value"), F.col("_against"), name),
                F.concat(F.lit(f"{what} "), F.format_number(F.col("_value"), 2), F.lit(f" differs from {against} "),
                         F.format_number(F.col("_against"), 2),
                         F.lit(f" by more than {tol.relative:.0%}" + (f" or {tol.absolute:g}" if tol.absolute else ""))),
                F.col("value"))


def _turnover_mismatch(ctx: dict) -> Rule:
    return _cross_check_rule("turnover", "turnover_mismatch", "declared sales",
                             "the statistics bureau's turnover of the cell")


def _entity_count_mismatch(ctx: dict) -> Rule:
    return _cross_check_rule("entity_count", "entity_count_mismatch", "the entity count",
                             "the active entities of base.legal_entity in the town and industry")


CROSS_RULES = {
    "indicator_not_authoritative": _not_authoritative,
    "unit_mismatch": _unit_converted,
    "total_mismatch": _total_mismatch,
    "turnover_mismatch": _turnover_mismatch,
    "entity_count_mismatch": _entity_count_mismatch,
}
ROW_RULES = ("indicator_not_authoritative", "unit_mismatch")   # about the delivered row: every release
CURRENT_RULES = ("total_mismatch", "turnover_mismatch", "entity_count_mismatch")   # about current figures


def row_rules(tc) -> list[Rule]:
    out = [CROSS_RULES[n]({}) for n in tc.cross_rules if n in ROW_RULES]
    if "unit_mismatch" in tc.cross_rules:
        out.append(_unit_unknown())
    return out + [_period_invalid()]


def current_rules(tc) -> list[Rule]:
    return [CROSS_RULES[n]({}) for n in tc.cross_rules if n in CURRENT_RULES]


def dedupe(found: DataFrame) -> DataFrame:
    """One finding per row, field and rule (a wide row's unit is one finding, not one per indicator):
    the first by message, so the same one whatever the partitioning (dropDuplicates keeps whichever row
    a partition holds first: local[2] and a standalone cluster named different indicators)."""
    w = Window.partitionBy("source", "record_key", "field", "rule", "_file_sha256", "_row").orderBy(
        F.col("message").asc_nulls_last(), F.col("value").asc_nulls_last())
    return found.withColumn("_n", F.row_number().over(w)).where(F.col("_n") == 1).drop("_n")


# ------------------------------------------------------------------ candidates (pure)

def indicator_rows(versioned: DataFrame, tc) -> DataFrame:
    cur = versioned.where(F.col("_current"))
    derived = {"indicator_name": _cat("name"), "frequency": F.col("_frequency"), "value": F.col("_value"),
               "unit": F.col("_canon_unit"), "revisions": F.col("_version") - 1, "previous_value": F.col("_previous"),
               "source": F.col("_src"), "department": F.col("_dept"), "indicator": F.col("indicator")}
    cols = [(derived.get(c.name, F.col(c.name))).cast(c.type).alias(c.name) for c in tc.columns]
    return cur.select(*cols, records.lineage(tc, from_row=("indicator", "value", "source", "department")))


def history_rows(versioned: DataFrame, tc) -> DataFrame:
    derived = {"version": F.col("_version"), "value": F.col("_value"), "unit": F.col("_canon_unit"),
               "superseded_date": F.col("_superseded"), "current": F.col("_current"), "source": F.col("_src"),
               "indicator": F.col("indicator")}
    cols = [(derived.get(c.name, F.col(c.name))).cast(c.type).alias(c.name) for c in tc.columns]
    return versioned.select(*cols, records.lineage(tc, from_row=("indicator", "value", "source")))


# ------------------------------------------------------------------ job

def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish the current indicators and their history (skipped when no department has
    delivered)."""
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc, htc = contracts.table(INDICATOR), contracts.table(HISTORY)
    present = records.present_sources(spark, settings, tc)
    if not present:
        reason = f"no raw data yet from any of {', '.join(golden.sources_used(tc))}"
        return [records.skipped(INDICATOR, reason), records.skipped(HISTORY, reason)]
    frames, dups = records.source_frames(spark, settings, contracts, present)
    long = reduce(DataFrame.unionByName, [long_rows(frames[s], contracts.source(s)) for s in present])
    classified = classify(long).persist()
    try:
        versioned = versions(classified).persist()
        current = versioned.where(F.col("_current"))
        counts_le = active_entity_counts(records.read_base(spark, settings, "legal_entity"))
        checked = with_cross_checks(with_totals(current), counts_le)
        found = dedupe(records.findings_of(classified, row_rules(tc))
                       .unionByName(records.findings_of(checked, current_rules(tc))))
        for d in dups:
            found = found.unionByName(d)
        found = found.persist()
        rid = records.run_id(spark, settings, tc)
        records.write_findings(settings, found, rid)
        counts = records.counts_by_defect(found)
        res = records.publish(spark, settings, tc, indicator_rows(versioned, tc), as_of, rid)
        hres = records.publish(spark, settings, htc, history_rows(versioned, htc), as_of, rid)
    finally:
        spark.catalog.clearCache()
    res.update({"findings": counts, "sources": present, "seconds": round(time.time() - t0, 2)})
    log.info("%s: %s (%d rows), %s: %s (%d rows) in %.1fs", INDICATOR, res["status"], res["rows"], HISTORY,
             hres["status"], hres["rows"], res["seconds"])
    return [res, hres]
