"""Build the base databases (基础库): one golden record per entity, each value from its one
authoritative source (一数一源), with fallbacks where the authority has no value.

For every source of the domain the latest batch's first row per entity is taken; other rows with the
same entity key in the same batch are duplicates (findings). Sources are joined on the entity key; a
column takes the first non-null of [authority, fallbacks..., derivation], and ``_lineage`` records,
per column, the batch (source + file) the value came from. Columns marked ``cross_check`` compare each
non-authoritative copy with the authority; a difference is a finding for the copy's department.
"""
from __future__ import annotations

import hashlib
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io, rules
from lake.contracts import Contracts, TableContract
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates

DERIVATIONS = {
    "gender_from_id": lambda key: rules.gender_from_id(key),
    "birth_date_from_id": lambda key: rules.birth_date_from_id(key),
}
KEY = "_key"


def sources_used(tc: TableContract) -> list[str]:
    seen: list[str] = []
    for c in tc.columns:
        for s in (c.authority, *c.fallback):
            if s and s != "derived" and s not in seen:
                seen.append(s)
    return seen


def latest_per_entity(raw: DataFrame, entity_key: str, record_key: str) -> tuple[DataFrame, DataFrame]:
    """(one row per entity from the newest batch, duplicate rows within a batch). Pure."""
    df = raw.where(F.col(entity_key).isNotNull()).withColumn(KEY, F.upper(F.col(entity_key)))
    in_batch = Window.partitionBy(KEY, "_batch_id").orderBy("_row")
    df = df.withColumn("_n_in_batch", F.row_number().over(in_batch))
    dups = df.where(F.col("_n_in_batch") > 1)
    firsts = df.where(F.col("_n_in_batch") == 1)
    newest = Window.partitionBy(KEY).orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc())
    latest = firsts.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1).drop("_n", "_n_in_batch")
    return latest, dups.drop("_n_in_batch")


def golden_records(tc: TableContract, contracts: Contracts, raw: dict[str, DataFrame]) -> tuple[DataFrame, DataFrame]:
    """(golden records, findings) for a base table from the raw frames of its sources. Pure."""
    joined = None
    found = []
    for s in sources_used(tc):
        sc = contracts.source(s)
        latest, dups = latest_per_entity(raw[s], sc.entity_key, sc.record_key)
        found.append(dups.select(
            F.col("_batch_id").alias("run_id"), F.lit("build").alias("stage"), F.lit(s).alias("source"),
            F.lit(sc.department).alias("department"), F.col(sc.record_key).alias("record_key"),
            F.lit(sc.entity_key).alias("field"), F.lit("duplicate.entity_key").alias("rule"),
            F.lit(rules.WARNING).alias("severity"), F.lit("duplicate_record").alias("defect_type"),
            F.lit(f"same {sc.entity_key} appears earlier in the same file").alias("message"),
            F.col(sc.entity_key).alias("value"), "_file_sha256", "_row", "_batch_id",
        ))
        cols = [F.col(KEY)]
        for c in tc.columns:
            if s == c.authority or s in c.fallback:
                cols.append(F.col(c.sources.get(s, c.name)).alias(f"{c.name}__{s}"))
        cols += [F.col("_batch_id").alias(f"_batch__{s}"), F.col(sc.record_key).alias(f"_rk__{s}"),
                 F.col("_file_sha256").alias(f"_sha__{s}"), F.col("_row").alias(f"_row__{s}")]
        part = latest.select(*cols)
        joined = part if joined is None else joined.join(part, on=KEY, how="full_outer")

    key = F.col(KEY)
    out = [key]
    lineage = []
    prefix = "P" if tc.domain == "population" else "E"
    for c in tc.columns:
        if c.authority == "derived":
            if c.derive == "surrogate_id":
                expr = F.concat(F.lit(prefix), F.substring(F.sha2(key, 256), 1, 16))
            else:
                expr = DERIVATIONS[c.derive](key)
            out.append(expr.cast(c.type).alias(c.name))
            continue
        chain = [s for s in (c.authority, *c.fallback)]
        values = [F.col(f"{c.name}__{s}") for s in chain]
        origins = [F.when(v.isNotNull(), F.col(f"_batch__{s}")) for v, s in zip(values, chain)]
        if c.derive:
            values.append(DERIVATIONS[c.derive](key))
            origins.append(F.when(values[-1].isNotNull(), F.lit("derived:" + c.derive)))
        out.append(F.coalesce(*values).cast(c.type).alias(c.name))
        lineage += [F.lit(c.name), F.coalesce(*origins)]
        if c.cross_check:
            auth = F.col(f"{c.name}__{c.authority}")
            for s in c.fallback:
                sc = contracts.source(s)
                other = F.col(f"{c.name}__{s}")
                found.append(joined.where(auth.isNotNull() & other.isNotNull() & (auth != other)).select(
                    F.col(f"_batch__{s}").alias("run_id"), F.lit("build").alias("stage"), F.lit(s).alias("source"),
                    F.lit(sc.department).alias("department"), F.col(f"_rk__{s}").alias("record_key"),
                    F.lit(c.sources.get(s, c.name)).alias("field"), F.lit("consistency.authority").alias("rule"),
                    F.lit(rules.WARNING).alias("severity"), F.lit(f"{c.name}_mismatch").alias("defect_type"),
                    F.concat(F.lit(f"differs from the authoritative source {c.authority}: "), auth).alias("message"),
                    other.alias("value"), F.col(f"_sha__{s}").alias("_file_sha256"),
                    F.col(f"_row__{s}").alias("_row"), F.col(f"_batch__{s}").alias("_batch_id"),
                ))
    golden = joined.select(*out, F.map_from_arrays(
        F.array(*lineage[0::2]), F.array(*lineage[1::2])).alias("_lineage"))
    all_found = found[0]
    for f in found[1:]:
        all_found = all_found.unionByName(f)
    return golden, all_found


def input_state(spark: SparkSession, settings: Settings, sources: list[str]) -> str:
    """A deterministic id of the inputs: the Delta versions of the raw tables."""
    parts = [f"{s}={io.version(spark, io.table_path(settings, 'raw', s))}" for s in sources]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def build_table(settings: Settings, table: str, as_of: str, spark: SparkSession | None = None) -> dict:
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(table)
    sources = sources_used(tc)
    missing = [s for s in sources if not io.is_table(spark, io.table_path(settings, "raw", s))]
    if missing:
        raise contracts_mod.ContractError(f"{table}: no raw data yet for source(s) {missing}; ingest them first")
    raw = {s: io.read(spark, io.table_path(settings, "raw", s)) for s in sources}
    golden, found = golden_records(tc, contracts, raw)
    run_id = f"build-{tc.name}-{input_state(spark, settings, sources)}"
    if not findings.has_run(spark, settings, run_id):
        findings.write(settings, found.withColumn("run_id", F.lit(run_id)), run_id=run_id)
    n_findings = io.read(spark, io.table_path(settings, *findings.FINDINGS)).where(F.col("run_id") == run_id).count()
    res = gates.publish(spark, settings, tc, golden.drop(KEY), {"as_of": as_of, "inputs": run_id})
    return {"table": table, "status": res.status, "rows": res.rows, "findings": n_findings,
            "seconds": round(time.time() - t0, 2)}


def run(settings: Settings, as_of: str, domain: str | None = None) -> list[dict]:
    contracts = contracts_mod.load(settings.contracts_dir)
    tables = [t for t in contracts.tables.values() if t.zone == "base" and (domain is None or t.domain == domain)]
    return [build_table(settings, t.table, as_of) for t in sorted(tables, key=lambda t: t.table)]
