"""``lake check``: what would happen to a department file if it were ingested, without landing it.

The file is parsed with the same code as ingest (``lake.files.parse_file``) into a temporary folder
outside the lake, checked with ``jobs.landing.ingest.check_rows`` and split with ``jobs.landing.ingest.split``; nothing
is written to the lake (no landing copy, no raw/quarantine/findings rows, no manifest entry).

The result says how many rows would land and how many would be quarantined, the findings by rule,
and the first problem rows with their line numbers. Findings are *blocking* under the policy
(``contracts/policy.yaml`` ``check``: by default every ``error``); a department can run this before
sending a file and fix it until nothing blocks.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import policy as policy_mod
from lake.files import InputError, parse_file, sha256_of
from lake.settings import Settings
from lake.spark import get_spark


def check_file(settings: Settings, source: str, file: str | Path, limit: int = 20,
               spark: SparkSession | None = None) -> dict:
    """Check ``file`` against ``source``'s contract; returns the summary (see module docstring).
    Raises ContractError (unknown source, bad policy) or InputError (missing or unreadable file)."""
    from jobs.landing import ingest

    sc = contracts_mod.load(settings.contracts_dir).source(source)
    policy = policy_mod.load(settings.contracts_dir)
    file = Path(file)
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    sha = sha256_of(file)
    tmp = tempfile.mkdtemp(prefix="lake-check-")
    try:
        out = str(Path(tmp) / "parsed.parquet")
        parsed = parse_file(file, sc.format, sc.column_names, sc.encoding, out, sc.record_key)
        spark = spark or get_spark(settings)
        if settings.spark_master.startswith("local"):
            df = spark.read.parquet(out)
        else:  # executors cannot see the driver's temporary folder: ship the rows from the driver
            import pyarrow.parquet as pq

            df = spark.createDataFrame(pq.read_table(out).to_pandas())
        df = (df.withColumn("_source", F.lit(source)).withColumn("_file_sha256", F.lit(sha))
              .withColumn("_batch_id", F.lit(f"{source}-{sha[:16]}"))
              .withColumn("_ingested_at", F.lit(None).cast("timestamp")))
        checked = ingest.check_rows(df, sc).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            raw, quarantine, found = ingest.split(checked, sc)
            n_raw, n_q, _ = ingest.counts(checked)
            if parsed.rows == 0:  # no data rows: the delivered_empty finding ingest would write
                from lake.hostile import delivered_empty_finding

                found = found.unionByName(delivered_empty_finding(
                    spark, source, sc.department, sha, f"{source}-{sha[:16]}", file.name, parsed.empty))
            by_rule = (found.groupBy("rule", "defect_type", "severity").agg(F.count("*").alias("count"))
                       .orderBy(F.col("count").desc(), "rule").collect())
            first = (found.orderBy("_row", "field", "rule").limit(limit)
                     .select("_row", "record_key", "field", "rule", "defect_type", "severity", "message", "value")
                     .collect())
            reasons = {r["_row"]: r["_reason"] for r in
                       quarantine.where(F.col("_row").isin([p["_row"] for p in first] or [-1]))
                       .select("_row", "_reason").collect()}
        finally:
            checked.unpersist()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rules = [{"rule": r["rule"], "defect_type": r["defect_type"], "severity": r["severity"], "count": int(r["count"]),
              "blocking": policy.is_blocking(r["severity"], r["defect_type"])} for r in by_rule]
    blocking = sum(r["count"] for r in rules if r["blocking"])
    severities: dict[str, int] = {}
    defect_types: dict[str, int] = {}
    for r in rules:
        severities[r["severity"]] = severities.get(r["severity"], 0) + r["count"]
        defect_types[r["defect_type"]] = defect_types.get(r["defect_type"], 0) + r["count"]
    return {
        "source": source, "department": sc.department, "file": str(file), "sha256": sha,
        "declared_encoding": sc.encoding, "detected_encoding": parsed.detected_encoding,
        "rows_read": parsed.rows, "would_land": n_raw, "would_quarantine": n_q,
        "findings": sum(r["count"] for r in rules), "blocking_findings": blocking,
        "by_rule": rules, "by_defect_type": defect_types, "by_severity": severities,
        "problems": [{"row": p["_row"], "record_key": p["record_key"], "field": p["field"], "rule": p["rule"],
                      "defect_type": p["defect_type"], "severity": p["severity"], "message": p["message"],
                      "value": p["value"], "quarantined": p["_row"] in reasons,
                      "blocking": policy.is_blocking(p["severity"], p["defect_type"])} for p in first],
        "policy": {"blocking_severities": list(policy.blocking_severities),
                   "blocking_defect_types": list(policy.blocking_defect_types)},
        "passed": blocking == 0,
    }
