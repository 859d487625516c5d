"""Record tables: base tables whose rows are records published by exactly one department each (the
social-credit decisions and lists, e-licences, economic statistics), as opposed to the entities that
``jobs.base.golden`` fuses from several departments.

One authority per value (一数一源) holds per row here: a decision, licence or statistic comes from the
one department that decided, issued or released it, so a table column names the sources that carry it
as its authority and fallbacks (they never overlap, as the registers of ``base.legal_entity`` do not),
and a row's ``_lineage`` names the file and row every value came from. What the table modules share:

- ``current_rows``: per source, the rows of the newest delivery of each record (``unique_key`` of the
  source contract) and the duplicates (a later row with the same key in the same file);
- ``unify``: the sources' rows with the table's column names (the contract's ``sources`` mapping),
  plus who sent each row (``_src``, ``_dept``, ``_rk``, file, row, batch), so that every finding goes
  back to the department and row it is about;
- ``link_subjects``: the subject or holder of a record linked to ``base.legal_entity`` (credit code)
  or ``base.population`` (ID number);
- ``Rule`` and ``findings_of``: the cross rules of a table as (condition, field, message, value) over
  the linked rows, evaluated in one pass into ``quality/findings`` rows;
- ``run_id``, ``write_findings`` and ``publish``: the build run id the department reports use
  (``jobs.base.incremental.run_id``: one current set per table), findings
  written only when they changed, and the gate.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.base import golden
from lake import io, rules
from lake.contracts import Contracts, SourceContract, TableContract
from lake.reference import CREDIT, LEGAL_ENTITY
from lake.settings import Settings
from quality import findings, gates

META = ["_src", "_dept", "_rk", "_file_sha256", "_row", "_batch_id", "_ingested_at"]
DEAD = tuple(LEGAL_ENTITY.deregistered_statuses)


# ------------------------------------------------------------------ rows of the sources (pure)

def current_rows(raw: DataFrame, unique_key: tuple[str, ...]) -> tuple[DataFrame, DataFrame]:
    """(the current row of each record, the duplicate rows). Pure.

    A record is a value of ``unique_key``. In one file (batch) its first row counts and every later
    row is a duplicate; across files the newest delivery (``_ingested_at``, then batch id) replaces
    the earlier ones, so a department corrects a record by sending it again."""
    uk = [F.col(c) for c in unique_key]
    in_file = Window.partitionBy(*uk, "_batch_id").orderBy("_row")
    df = raw.withColumn("_n_in_file", F.row_number().over(in_file))
    dups = df.where(F.col("_n_in_file") > 1).drop("_n_in_file")
    first = df.where(F.col("_n_in_file") == 1).drop("_n_in_file")
    newest = Window.partitionBy(*uk).orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc())
    current = first.withColumn("_n_new", F.row_number().over(newest)).where(F.col("_n_new") == 1).drop("_n_new")
    return current, dups


def with_meta(df: DataFrame, sc: SourceContract) -> DataFrame:
    """``df`` (raw rows of ``sc``) with the contract's derived columns and who sent each row."""
    for name, expr in sc.derived_columns.items():
        df = df.withColumn(name, F.expr(expr))
    return df.withColumns({"_src": F.lit(sc.source), "_dept": F.lit(sc.department),
                           "_rk": F.col(sc.record_key).cast("string")})


def source_column(tc: TableContract, column: str, source: str) -> str | None:
    """The source's column that holds the table's ``column`` (None when the source does not carry it)."""
    c = tc.column(column)
    if source != c.authority and source not in c.fallback:
        return None
    return c.sources.get(source, c.name)


def unify(tc: TableContract, frames: dict[str, DataFrame], extra: tuple[str, ...] = ()) -> DataFrame:
    """The rows of every source in ``frames`` (already ``with_meta``) with the table's source columns
    (derived columns left out), ``extra`` columns carried as they are, and the row metadata. Pure."""
    parts = []
    for s, df in frames.items():
        cols = []
        for c in tc.columns:
            if c.authority == "derived":
                continue
            src_col = source_column(tc, c.name, s)
            cols.append((F.col(src_col) if src_col else F.lit(None)).cast(c.type).alias(c.name))
        cols += [F.col(e) if e in df.columns else F.lit(None).alias(e) for e in extra]
        parts.append(df.select(*cols, *META))
    return reduce(lambda a, b: a.unionByName(b), parts)


def lineage(tc: TableContract, from_row: tuple[str, ...] = ()) -> Column:
    """``_lineage`` of a record row: every source column, and the derived columns in ``from_row``
    (a value the row carries under another name), come from the row's own file and row; any other
    derived column names its derivation (``derived:<derive>``)."""
    own = F.struct(F.col("_src").alias("source"), F.col("_batch_id").alias("batch_id"),
                   F.col("_file_sha256").alias("file_sha256"), F.col("_row").cast("long").alias("row"))
    pairs = []
    for c in tc.columns:
        if c.authority == "derived" and c.name not in from_row:
            origin = F.struct(F.lit(f"derived:{c.derive}").alias("source"), F.lit(None).cast("string").alias("batch_id"),
                              F.lit(None).cast("string").alias("file_sha256"), F.lit(None).cast("long").alias("row"))
        else:
            origin = own
        pairs += [F.lit(c.name), origin.cast(io.LINEAGE_TYPE)]
    return F.create_map(*pairs).alias("_lineage")


# ------------------------------------------------------------------ subjects (pure)

def entity_view(legal_entity: DataFrame) -> DataFrame:
    """What a record's subject is checked against in ``base.legal_entity``."""
    return legal_entity.select(F.col("credit_code").alias("_le_code"), F.col("entity_id").alias("_le_id"),
                               F.col("name").alias("_le_name"), F.col("status").alias("_le_status"),
                               F.col("established_date").alias("_le_established"))


def person_view(population: DataFrame) -> DataFrame:
    """What a record's subject is checked against in ``base.population``."""
    return population.select(F.col("id_number").alias("_pop_id"), F.col("person_id").alias("_pop_pid"),
                             F.col("name").alias("_pop_name"), F.col("register_status").alias("_pop_status"),
                             F.col("death_date").alias("_pop_death"))


def link_subjects(df: DataFrame, entities: DataFrame, people: DataFrame, code_col: str, id_col: str,
                  kind: Column) -> DataFrame:
    """``df`` with its subject linked. Pure.

    ``kind`` says per row whether the subject is identified by ``code_col`` (``'credit_code'``: a legal
    entity) or ``id_col`` (``'id_number'``: a person). Adds ``_subject_field`` (the column naming the
    subject), ``_subject_key`` (its value), ``_known`` (the base has it), ``_base_name``,
    ``_base_inactive`` (an entity deregistered / a person dead), ``_established``, ``entity_id`` and
    ``person_id``."""
    df = df.withColumn("_subject_kind", kind)
    by_code = F.col("_subject_kind") == "credit_code"
    df = df.withColumn("_subject_field", F.when(by_code, F.lit(code_col)).otherwise(F.lit(id_col)))
    df = df.withColumn("_subject_key", F.when(by_code, F.col(code_col)).otherwise(F.col(id_col)))
    df = df.join(entities, by_code & (F.col(code_col) == F.col("_le_code")), "left")
    df = df.join(people, ~by_code & (F.col(id_col) == F.col("_pop_id")), "left")
    return df.withColumns({
        "_known": F.col("_le_code").isNotNull() | F.col("_pop_id").isNotNull(),
        "_base_name": F.coalesce(F.col("_le_name"), F.col("_pop_name")),
        "_base_inactive": F.coalesce(F.col("_le_status").isin(*DEAD), F.lit(False))
        | F.coalesce(F.col("_pop_status") == "死亡", F.lit(False)) | F.col("_pop_death").isNotNull(),
        "_established": F.col("_le_established"),
        "entity_id": F.col("_le_id"),
        "person_id": F.col("_pop_pid"),
    })


def subject_kind_of_type(subject_type: Column) -> Column:
    """``'credit_code'`` or ``'id_number'`` from a 双公示 subject type (contracts/reference.yaml
    credit.subject_types); an unknown type is named by its credit code."""
    return F.coalesce(rules.literal_map(dict(CREDIT.subject_types))[subject_type], F.lit("credit_code"))


# ------------------------------------------------------------------ rules and findings (pure)

@dataclass(frozen=True)
class Rule:
    """A cross rule over linked rows: where ``when`` holds, a finding for the row's department."""
    defect: str       # docs/defects.md
    rule: str         # rule id, e.g. cross.credit_subject_unknown
    field: Column     # the column of the department's file the finding is about
    when: Column
    message: Column
    value: Column
    severity: str = rules.WARNING


def _struct(r: Rule) -> Column:
    return F.when(F.coalesce(r.when, F.lit(False)), F.struct(
        F.lit(None).cast("string").alias("run_id"), F.lit("build").alias("stage"), F.col("_src").alias("source"),
        F.col("_dept").alias("department"), F.col("_rk").alias("record_key"), r.field.cast("string").alias("field"),
        F.lit(r.rule).alias("rule"), F.lit(r.severity).alias("severity"), F.lit(r.defect).alias("defect_type"),
        r.message.cast("string").alias("message"), r.value.cast("string").alias("value"),
        F.col("_file_sha256").alias("_file_sha256"), F.col("_row").cast("long").alias("_row"),
        F.col("_batch_id").alias("_batch_id")))


def findings_of(df: DataFrame, rule_list: list[Rule]) -> DataFrame:
    """Every finding of ``rule_list`` over ``df`` (one pass: an array of structs, exploded). Pure."""
    spark = df.sparkSession
    if not rule_list:
        return empty_findings(spark)
    out = df.select(F.explode(F.array(*[_struct(r) for r in rule_list])).alias("_f")).where(F.col("_f").isNotNull())
    return findings.conform(out.select("_f.*"))


def empty_findings(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([], ", ".join(f"`{c}` {t}" for c, t in findings.COLUMNS))


def duplicate_findings(dups: DataFrame, sc: SourceContract) -> DataFrame:
    """``duplicate_record`` findings for the later rows of a record in one file (same rule and words as
    ``jobs.base.golden``). ``dups`` are raw rows of ``sc``. Pure."""
    key = ", ".join(sc.unique_key)
    return findings.conform(dups.select(
        F.lit(None).cast("string").alias("run_id"), F.lit("build").alias("stage"), F.lit(sc.source).alias("source"),
        F.lit(sc.department).alias("department"), F.col(sc.record_key).cast("string").alias("record_key"),
        F.lit(sc.entity_key).alias("field"), F.lit("duplicate.entity_key").alias("rule"),
        F.lit(rules.WARNING).alias("severity"), F.lit("duplicate_record").alias("defect_type"),
        F.lit(f"the same {key} appears earlier in the same file").alias("message"),
        F.col(sc.entity_key).cast("string").alias("value"), "_file_sha256", F.col("_row").cast("long"), "_batch_id"))


def missing_subject_rule(label: str = "subject") -> Rule:
    """A record naming no subject (its identifier column empty): not published."""
    return Rule("missing_value", "required.subject", F.col("_subject_field"), F.col("_subject_key").isNull(),
                F.concat(F.col("_subject_field"), F.lit(f" is empty; the record names no {label} and is not published")),
                F.lit(None), rules.ERROR)


def unknown_subject_rule(defect: str, label: str) -> Rule:
    """A record whose subject (or holder) the base does not know."""
    where = F.when(F.col("_subject_kind") == "id_number", F.lit(" is not in base.population")) \
        .otherwise(F.lit(" is not in base.legal_entity"))
    return Rule(defect, f"cross.{defect}", F.col("_subject_field"),
                F.col("_subject_key").isNotNull() & ~F.col("_known"),
                F.concat(F.lit(f"the {label} "), F.col("_subject_key"), where), F.col("_subject_key"))


def name_mismatch_rule(name_col: str) -> Rule:
    return Rule("name_mismatch", "consistency.authority", F.lit(name_col),
                F.col("_known") & golden.differs(F.col(name_col), F.col("_base_name")),
                F.concat(F.lit("differs from the name in the base ("), F.col("_base_name"), F.lit(")")),
                F.col(name_col))


# ------------------------------------------------------------------ job helpers

def present_sources(spark: SparkSession, settings: Settings, tc: TableContract) -> list[str]:
    """The table's sources (authority and fallbacks of its columns) that have delivered."""
    return [s for s in golden.sources_used(tc) if io.is_table(spark, io.table_path(settings, "raw", s))]


def run_id(spark: SparkSession, settings: Settings, tc: TableContract) -> str:
    """The table's build run id, as the department reports compute it (``jobs.base.incremental.run_id``:
    one current set of build findings per table)."""
    from jobs.base import incremental

    return incremental.run_id(spark, settings, tc, present_sources(spark, settings, tc))


def read_raw(spark: SparkSession, settings: Settings, source: str) -> DataFrame:
    return io.read(spark, io.table_path(settings, "raw", source))


def read_base(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    return io.read(spark, io.table_path(settings, "base", name))


def write_findings(settings: Settings, found: DataFrame, rid: str) -> bool:
    """The run's findings, replaced only when they changed (a re-run adds no Delta version)."""
    return findings.write_if_changed(settings, found.withColumn("run_id", F.lit(rid)), rid)


def publish(spark: SparkSession, settings: Settings, tc: TableContract, candidate: DataFrame, as_of: str,
            rid: str) -> dict:
    res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of, "inputs": rid})
    return {"table": tc.table, "status": res.status, "rows": res.rows}


def write_and_publish(spark: SparkSession, settings: Settings, tc: TableContract, candidate: DataFrame,
                      found: DataFrame, as_of: str, started: float) -> dict:
    """A one-table build's end: its findings written, its candidate through the gate (both persisted
    for the while), the result with the findings per defect type and the seconds since ``started``."""
    import time

    candidate, found = candidate.persist(), found.persist()
    try:
        rid = run_id(spark, settings, tc)
        write_findings(settings, found, rid)
        res = publish(spark, settings, tc, candidate, as_of, rid)
        res.update({"findings": counts_by_defect(found), "seconds": round(time.time() - started, 2)})
    finally:
        candidate.unpersist()
        found.unpersist()
    return res


def build_one(settings: Settings, as_of: str, table: str, source: str, make) -> dict:
    """The build of a table made from one source: skipped until the source has delivered, else
    ``make(spark, raw rows, source contract, table contract)`` gives (candidate, findings), which
    ``write_and_publish`` writes and publishes."""
    import time

    from lake import contracts as contracts_mod
    from lake.spark import get_spark

    t0 = time.time()
    spark = get_spark(settings)
    if not io.is_table(spark, io.table_path(settings, "raw", source)):
        return skipped(table, f"no raw data yet from {source}")
    contracts = contracts_mod.load(settings.contracts_dir)
    tc, sc = contracts.table(table), contracts.source(source)
    cand, found = make(spark, read_raw(spark, settings, source), sc, tc)
    try:
        return write_and_publish(spark, settings, tc, cand, found, as_of, t0)
    finally:
        spark.catalog.clearCache()


def skipped(table: str, reason: str) -> dict:
    return {"table": table, "status": "skipped", "rows": 0, "reason": reason}


def counts_by_defect(found: DataFrame) -> dict[str, int]:
    return {r["defect_type"]: r["count"] for r in found.groupBy("defect_type").count().collect()}


def source_frames(spark: SparkSession, settings: Settings, contracts: Contracts, sources: list[str]
                  ) -> tuple[dict[str, DataFrame], list[DataFrame]]:
    """(current rows per source with metadata, duplicate findings of every source)."""
    frames, dup_findings = {}, []
    for s in sources:
        sc = contracts.source(s)
        current, dups = current_rows(read_raw(spark, settings, s), sc.unique_key)
        frames[s] = with_meta(current, sc)
        dup_findings.append(duplicate_findings(dups, sc))
    return frames, dup_findings
