"""Golden records, the machinery of the base databases fused from several departments (基础库:
``jobs.base.population``, ``jobs.base.legal_entity``): one golden record per entity, each value from
its one authoritative source (一数一源), with fallbacks where the authority has no value, and every
other copy cross-validated against it (多元校核). The table modules give their derivations and cross
rules (``DERIVATIONS``, ``CROSS_RULES``: name -> implementation, the names the contracts use).

Steps for a base table:

1. Each source's raw rows are prepared (the contract's ``derived_columns``, an upper-cased entity key).
   Rows without an entity key in sources where it is optional are linked to an entity by
   ``jobs.base.linkage`` (Splink); only unambiguous links take part, flagged ``_linked``.
2. Per source, rows with the same ``unique_key`` in one file are duplicates: the later row is a finding,
   ``duplicate_record`` when it names the same entity, ``id_name_conflict`` when the name differs.
   The newest batch's best row per entity (``entity_order``, then row number) represents the source.
3. Sources are joined on the entity key. A column takes the first non-null of
   [authority, fallbacks..., derivation]; ``_lineage`` records per column the source, batch, file and
   row the value came from.
4. Columns marked ``cross_check`` compare every other source's copy with the chosen value: a difference
   is a row of ``quality/conflicts`` (entity, attribute, every source's value, the authoritative value,
   the rule) and a finding for the copy's department. Linked rows are not compared: they were matched
   on these very attributes. The table contract's ``cross_rules`` add rules across columns (a death
   reported by health or civil affairs against an active register entry, an entity deregistered by its
   registering department but active in tax).
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.base import linkage
from lake import io, rules
from lake.contracts import Contracts, SourceContract, TableContract


KEY = "_key"
CONFLICTS = ("quality", "conflicts")
RECORD_LINKS = ("quality", "record_links")
REVIEW_PAIRS = ("quality", "review_pairs")
CONFLICT_COLUMNS = (
    "run_id string, domain string, entity_key string, attribute string, rule string, "
    "authority_source string, authority_value string, values map<string,string>"
)


def sources_used(tc: TableContract) -> list[str]:
    seen: list[str] = []
    for c in tc.columns:
        for s in (c.authority, *c.fallback):
            if s and s != "derived" and s not in seen:
                seen.append(s)
    return seen


def comparable(col: Column) -> Column:
    """The form two copies of a value are compared in: legal-form spellings are one (有限责任公司 is
    有限公司), full-width brackets are half-width. A plain string replace, not a regular expression."""
    return F.replace(F.translate(col.cast("string"), "（）", "()"), F.lit("有限责任公司"), F.lit("有限公司"))


def differs(a: Column, b: Column) -> Column:
    """``a`` and ``b`` differ in their comparable form (null when either is null). This runs for
    every copy of every cross-checked value and nearly all copies are equal as strings, so that
    cheap test comes first (``AND`` does not evaluate its right side after a false left side)."""
    return (a.cast("string") != b.cast("string")) & (comparable(a) != comparable(b))


def with_delivery_meta(raw: DataFrame) -> DataFrame:
    """``_as_of`` (business date of the delivery) and ``_op`` (I/U/D or null) as ingest writes them;
    frames without them (built by hand) take the landing date and no operation."""
    if "_as_of" not in raw.columns:
        raw = raw.withColumn("_as_of", F.to_date("_ingested_at"))
    if "_op" not in raw.columns:
        raw = raw.withColumn("_op", F.lit(None).cast("string"))
    return raw


def as_of_rows(raw: DataFrame, sc: SourceContract | None, as_of: str | None) -> DataFrame:
    """The rows of a source known on the business date ``as_of`` (all when None); for a source that
    sends complete snapshots, only the newest snapshot's rows (an entity missing from it is gone)."""
    df = with_delivery_meta(raw)
    if as_of is not None:
        df = df.where(F.col("_as_of") <= F.lit(as_of).cast("date"))
    if sc is not None and sc.snapshot:
        last = (df.select("_as_of", "_batch_id").distinct()
                .orderBy(F.col("_as_of").desc(), F.col("_batch_id").desc()).limit(1).collect())
        df = df.where(F.col("_batch_id") == (last[0]["_batch_id"] if last else "-"))
    return df


def prepare(raw: DataFrame, sc: SourceContract | None = None, entity_key: str | None = None) -> DataFrame:
    df = with_delivery_meta(raw)
    if sc is not None:
        for name, expr in sc.derived_columns.items():
            df = df.withColumn(name, F.expr(expr))
        entity_key = sc.entity_key
    return df.withColumn(KEY, F.upper(F.col(entity_key)))


def latest_per_entity(raw: DataFrame, entity_key: str, record_key: str, unique_key: tuple[str, ...] = (),
                      order: str = "", name_col: str | None = None, persist: bool = False) -> tuple[DataFrame, DataFrame]:
    """(one row per entity from the newest batch, duplicate rows within a batch). Pure.

    ``unique_key`` (default: the entity key) says which rows are the same record; ``order`` (a SQL
    expression, smallest first) which of an entity's rows in a batch describes it best. Duplicate rows
    carry ``_dup_kind``: ``id_name_conflict`` when ``name_col`` differs from the first row's, else
    ``duplicate_record``. Rows flagged ``_linked`` (matched without a key) are never duplicates."""
    df = with_delivery_meta(raw if KEY in raw.columns else prepare(raw, entity_key=entity_key))
    df = df.where(F.col(KEY).isNotNull())
    if "_linked" not in df.columns:
        df = df.withColumn("_linked", F.lit(False))
    # one shuffle by entity: both windows below partition by the key (plus more), so they only sort
    df = df.repartition(KEY)
    others = [F.col(c) for c in (unique_key or (entity_key,)) if c != entity_key]
    w = Window.partitionBy(KEY, *others, "_batch_id", "_linked").orderBy("_row")
    df = df.withColumn("_n_uk", F.when(~F.col("_linked"), F.row_number().over(w)).otherwise(F.lit(1)))
    if name_col:
        # the first row's name as it is; compared (normalised) only on the rare duplicate rows below
        first_name = F.first(F.col(name_col)).over(w)
        kind = F.when(differs(F.col(name_col), first_name), F.lit("id_name_conflict")).otherwise(F.lit("duplicate_record"))
    else:
        kind = F.lit("duplicate_record")
    df = df.withColumn("_dup_kind", F.when(F.col("_n_uk") > 1, kind))
    if persist:  # both results below are read from it
        from pyspark import StorageLevel
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
    dups = df.where(F.col("_n_uk") > 1).drop("_n_uk")
    keep = df.where(F.col("_n_uk") == 1).drop("_n_uk", "_dup_kind")
    # the newest delivery by business date (then batch), then a row with its own key before a linked
    # one, then the contract's order; an entity whose newest row is a deletion has no row
    best = Window.partitionBy(KEY).orderBy(
        F.col("_as_of").desc(), F.col("_batch_id").desc(), F.col("_linked").asc(),
        *([F.expr(order).asc_nulls_last()] if order else []), F.col("_row").asc())
    latest = (keep.withColumn("_n", F.row_number().over(best)).where(F.col("_n") == 1).drop("_n")
              .where(F.coalesce(F.col("_op"), F.lit("I")) != "D"))
    return latest, dups


def finding_struct(source: str, sc: SourceContract, record_key: Column, field: str, rule: str, defect: str,
             message: Column, value: Column, sha: Column, row: Column, batch: Column) -> Column:
    """A findings row as a struct (selected from the joined sources in one pass with the others)."""
    return F.struct(
        batch.alias("run_id"), F.lit("build").alias("stage"), F.lit(source).alias("source"),
        F.lit(sc.department).alias("department"), record_key.alias("record_key"), F.lit(field).alias("field"),
        F.lit(rule).alias("rule"), F.lit(rules.WARNING).alias("severity"), F.lit(defect).alias("defect_type"),
        message.alias("message"), value.cast("string").alias("value"), sha.alias("_file_sha256"),
        row.cast("long").alias("_row"), batch.alias("_batch_id"), F.col(KEY).alias("entity_key"),
    )


def conflict_struct(domain: str, attribute: str, rule: str, authority_source: Column, authority_value: Column,
              values: Column) -> Column:
    return F.struct(
        F.lit(None).cast("string").alias("run_id"), F.lit(domain).alias("domain"), F.col(KEY).alias("entity_key"),
        F.lit(attribute).alias("attribute"), F.lit(rule).alias("rule"), authority_source.alias("authority_source"),
        authority_value.cast("string").alias("authority_value"), values.alias("values"))


def _with_links(df: DataFrame, sc: SourceContract, links: DataFrame | None) -> DataFrame:
    """Rows without an entity key get the key of the entity they were linked to (decision 'linked')."""
    df = df.withColumn("_linked", F.lit(False))
    if links is None or not sc.entity_key_optional:
        return df
    linked = links.where((F.col("source") == sc.source) & (F.col("decision") == "linked")).select(
        F.col("record_key").alias("_lk_rk"), F.col("_batch_id").alias("_lk_batch"), "linked_key")
    no_key = df.where(F.col(KEY).isNull()).join(
        linked, (F.col(sc.record_key) == F.col("_lk_rk")) & (F.col("_batch_id") == F.col("_lk_batch")), "inner"
    ).withColumn(KEY, F.col("linked_key")).withColumn("_linked", F.lit(True)).drop("_lk_rk", "_lk_batch", "linked_key")
    return df.where(F.col(KEY).isNotNull()).unionByName(no_key)


def _name_column(tc: TableContract, source: str) -> str | None:
    return next((c.sources.get(source, c.name) for c in tc.columns if c.name == "name"
                 and source in (c.authority, *c.fallback)), None)


def implementations(tc: TableContract) -> tuple[dict, dict]:
    """(DERIVATIONS, CROSS_RULES) of the table's job module (its contract's ``built_by``)."""
    import importlib

    module = importlib.import_module(tc.built_by)
    return getattr(module, "DERIVATIONS", {}), getattr(module, "CROSS_RULES", {})


def golden_records(tc: TableContract, contracts: Contracts, raw: dict[str, DataFrame],
                   links: DataFrame | None = None, persist: bool = False, derivations: dict | None = None,
                   cross_rules: dict | None = None, keys: DataFrame | None = None,
                   as_of: str | None = None) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(golden records, findings, conflicts) for a base table from the raw frames of its sources
    (sources missing from ``raw`` have not delivered yet and are skipped). Pure.

    With ``persist`` the joined sources are kept (memory, spilling to disk) because the golden rows,
    every finding and every conflict are selected from them; the caller unpersists. ``derivations``
    and ``cross_rules`` map the contract's ``derive`` and ``cross_rules`` names to the table module's
    implementations. ``keys`` (a frame with one column ``_key``) restricts the result to those
    entities; ``as_of`` to what was delivered by that business date (``as_of_rows``)."""
    if derivations is None or cross_rules is None:
        module = implementations(tc)
        derivations = module[0] if derivations is None else derivations
        cross_rules = module[1] if cross_rules is None else cross_rules
    used = [s for s in sources_used(tc) if s in raw]
    parts: list[DataFrame] = []
    found: list[DataFrame] = []
    for s in used:
        sc = contracts.source(s)
        df = _with_links(prepare(as_of_rows(raw[s], sc, as_of), sc), sc, links)
        if keys is not None:
            df = df.join(F.broadcast(keys.select(KEY).distinct()), KEY, "left_semi")
        name_col = _name_column(tc, s)
        latest, dups = latest_per_entity(df, sc.entity_key, sc.record_key, sc.unique_key, sc.entity_order, name_col,
                                         persist=persist)
        found.append(dups.select(
            F.col("_batch_id").alias("run_id"), F.lit("build").alias("stage"), F.lit(s).alias("source"),
            F.lit(sc.department).alias("department"), F.col(sc.record_key).alias("record_key"),
            F.when(F.col("_dup_kind") == "id_name_conflict", F.lit(name_col)).otherwise(F.lit(sc.entity_key)).alias("field"),
            F.when(F.col("_dup_kind") == "id_name_conflict", F.lit("duplicate.name_conflict"))
            .otherwise(F.lit("duplicate.entity_key")).alias("rule"),
            F.lit(rules.WARNING).alias("severity"), F.col("_dup_kind").alias("defect_type"),
            F.when(F.col("_dup_kind") == "id_name_conflict",
                   F.lit(f"the same {sc.entity_key} appears earlier in the same file with another name"))
            .otherwise(F.lit(f"the same {sc.entity_key} appears earlier in the same file")).alias("message"),
            F.when(F.col("_dup_kind") == "id_name_conflict", F.col(name_col) if name_col else F.lit(None))
            .otherwise(F.col(sc.entity_key)).cast("string").alias("value"),
            "_file_sha256", F.col("_row").cast("long"), "_batch_id", F.col(KEY).alias("entity_key"),
        ))
        cols = [F.col(KEY)]
        for c in tc.columns:
            if s == c.authority or s in c.fallback:
                cols.append(F.col(c.sources.get(s, c.name)).alias(f"{c.name}__{s}"))
        cols += [F.col("_batch_id").alias(f"_batch__{s}"), F.col(sc.record_key).alias(f"_rk__{s}"),
                 F.col("_file_sha256").alias(f"_sha__{s}"), F.col("_row").alias(f"_row__{s}"),
                 F.col("_linked").alias(f"_linked__{s}")]
        parts.append(latest.select(*cols))
    # every source has at most one row per entity: stacking them and taking, per entity and column,
    # the one value there is replaces a chain of full outer joins (one shuffle instead of one per source)
    stacked = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    value_cols = [c for c in stacked.columns if c != KEY]
    joined = stacked.groupBy(KEY).agg(*[F.max(c).alias(c) for c in value_cols])
    # an entity exists while some source's current row carries its key itself: rows linked to it
    # (matched without a key) describe it but do not keep it alive once those rows are deleted
    joined = joined.where(reduce(lambda a, b: a | b, [~F.coalesce(F.col(f"_linked__{s}"), F.lit(True)) for s in used]))
    if persist:
        from pyspark import StorageLevel
        joined = joined.persist(StorageLevel.MEMORY_AND_DISK)

    def has(s: str) -> bool:
        return s in used

    key = F.col(KEY)
    out = [key]
    lineage = []
    row_findings: list[Column] = []   # finding structs (or null), one pass over the joined sources
    row_conflicts: list[Column] = []
    prefix = "P" if tc.domain == "population" else "E"
    for c in tc.columns:
        if c.authority == "derived":
            if c.derive == "surrogate_id":
                expr = F.concat(F.lit(prefix), F.substring(F.sha2(key, 256), 1, 16))
            else:
                expr = derivations[c.derive](key)
            out.append(expr.cast(c.type).alias(c.name))
            continue
        chain = [s for s in (c.authority, *c.fallback) if has(s)]
        values = [F.col(f"{c.name}__{s}") for s in chain]
        origins = [F.when(v.isNotNull(), F.struct(
            F.lit(s).alias("source"), F.col(f"_batch__{s}").alias("batch_id"),
            F.col(f"_sha__{s}").alias("file_sha256"), F.col(f"_row__{s}").cast("long").alias("row")))
            for v, s in zip(values, chain)]
        if c.derive:
            values.append(derivations[c.derive](key))
            origins.append(F.when(values[-1].isNotNull(), F.struct(
                F.lit("derived:" + c.derive).alias("source"), F.lit(None).cast("string").alias("batch_id"),
                F.lit(None).cast("string").alias("file_sha256"), F.lit(None).cast("long").alias("row"))))
        chosen = F.coalesce(*values).cast(c.type) if values else F.lit(None).cast(c.type)
        out.append(chosen.alias(c.name))
        lineage += [F.lit(c.name), F.coalesce(*origins).cast(io.LINEAGE_TYPE) if origins else F.lit(None).cast(io.LINEAGE_TYPE)]
        if c.cross_check and len(chain) > 1:
            origin = F.coalesce(*[F.when(v.isNotNull(), F.lit(s)) for v, s in zip(values, chain)])
            copies = values_map([(s, F.col(f"{c.name}__{s}")) for s in chain])
            mismatch = {}
            for s in chain:
                other = F.col(f"{c.name}__{s}")
                mismatch[s] = (other.isNotNull() & (origin != F.lit(s)) & ~F.col(f"_linked__{s}")
                               & differs(other, chosen))
                sc = contracts.source(s)
                row_findings.append(F.when(F.coalesce(mismatch[s], F.lit(False)), finding_struct(
                    s, sc, F.col(f"_rk__{s}"), c.sources.get(s, c.name), "consistency.authority", f"{c.name}_mismatch",
                    F.concat(F.lit(f"{c.name} differs from the authoritative value ("), origin, F.lit("): "), chosen.cast("string")),
                    other, F.col(f"_sha__{s}"), F.col(f"_row__{s}"), F.col(f"_batch__{s}"))))
            any_differs = F.coalesce(reduce(lambda a, b: a | b, mismatch.values()), F.lit(False))
            row_conflicts.append(F.when(any_differs, conflict_struct(
                tc.domain, c.name, "consistency.authority", origin, chosen, copies)))
    for rule in tc.cross_rules:
        spec = cross_rules[rule](tc, contracts, has)
        if spec is not None:
            cond, finding, conflict = spec
            row_findings.append(F.when(F.coalesce(cond, F.lit(False)), finding))
            row_conflicts.append(F.when(F.coalesce(cond, F.lit(False)), conflict))
    golden = joined.select(*out, F.map_from_arrays(F.array(*lineage[0::2]), F.array(*lineage[1::2])).alias("_lineage"))
    spark = joined.sparkSession
    if row_findings:
        found.append(_non_null_rows(joined, row_findings))
    all_found = reduce(DataFrame.unionByName, found)
    all_conflicts = (
        _non_null_rows(joined, row_conflicts) if row_conflicts else spark.createDataFrame([], CONFLICT_COLUMNS))
    return golden, all_found, all_conflicts


# No lambda higher-order functions (filter/transform) below: a projection holding one is not compiled
# by whole-stage code generation, and these run once per golden record over every cross-checked column.

def _non_null_rows(df: DataFrame, structs: list[Column]) -> DataFrame:
    """One row per non-null struct of ``structs`` per row of ``df``, its fields as columns."""
    return df.select(F.explode(F.array(*structs)).alias("_s")).where(F.col("_s").isNotNull()).select("_s.*")


VALUES_ENTRY = "struct<key:string,value:string>"


def values_map(pairs: list[tuple[str, Column]]) -> Column:
    """source -> value (as a string) for the sources in ``pairs`` that have a value, in order."""
    entries = [F.when(v.isNotNull(), F.struct(F.lit(k).alias("key"), v.cast("string").alias("value"))) for k, v in pairs]
    return F.map_from_entries(rules.non_null_array(entries, VALUES_ENTRY))


# ------------------------------------------------------------------ job

def link_query(tc: TableContract, contracts: Contracts, raw: dict[str, DataFrame]) -> tuple[DataFrame | None, DataFrame | None]:
    """(reference, query) for record linkage, or (None, None) when no source has rows without a key."""
    key_col = tc.columns[tc.column_names.index(tc.key[0])]
    ref_src = key_col.authority
    optional = [s for s in sources_used(tc) if s in raw and contracts.source(s).entity_key_optional]
    if ref_src not in raw or not optional:
        return None, None
    rsc = contracts.source(ref_src)
    # built exactly as golden_records builds it (and kept), so that Spark computes it only once
    latest, _ = latest_per_entity(_with_links(prepare(raw[ref_src], rsc), rsc, None), rsc.entity_key, rsc.record_key,
                                  rsc.unique_key, rsc.entity_order, _name_column(tc, ref_src), persist=True)
    reference = latest.select(KEY, *[c for c in linkage.LINK_COLUMNS if c in latest.columns])
    parts = []
    for s in optional:
        sc = contracts.source(s)
        df = prepare(raw[s], sc).where(F.col(KEY).isNull())
        parts.append(df.select(
            F.lit(s).alias("source"), F.col(sc.record_key).alias("record_key"), "_batch_id", "_file_sha256", "_row",
            *[(F.col(c) if c in df.columns else F.lit(None)).cast("string").alias(c) for c in linkage.LINK_COLUMNS]))
    return reference, reduce(DataFrame.unionByName, parts)
