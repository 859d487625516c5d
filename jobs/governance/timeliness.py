"""Timeliness (及时性): is every department delivering as often as its contract promises?

Every source is assessed on the run's reference date (``quality.freshness``: newest landed file
against the contract's update cycle plus the policy's grace days). A stale source is a source-level
finding in ``quality/findings`` (stage ``timeliness``, rule ``timeliness.cycle``, defect_type
``stale_source``, record_key null) under run id ``timeliness-<as_of>``, written only when it differs
from what is there (a re-run adds no Delta version). Whether staleness also blocks publication is
policy (``contracts/policy.yaml``; enforced by the gates).
"""
from __future__ import annotations

import time
from dataclasses import asdict

from pyspark.sql import DataFrame, SparkSession

from lake import policy as policy_mod
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings
from quality.freshness import (  # noqa: F401 (assess and last_deliveries: what the reports read here)
    DEFECT, RULE, SEVERITY, STAGE, Delivery, assess, assess_lake, last_deliveries, run_id,
)


def findings_frame(spark: SparkSession, items: list[Delivery], as_of: str) -> DataFrame:
    rows = [{
        "run_id": run_id(as_of), "stage": STAGE, "source": d.source, "department": d.department,
        "record_key": None, "field": None, "rule": RULE, "severity": SEVERITY, "defect_type": DEFECT,
        "message": d.message(), "value": d.last_delivery, "_file_sha256": d.sha256, "_row": None,
        "_batch_id": d.batch_id,
    } for d in items if d.stale]
    schema = ", ".join(f"`{c}` {t}" for c, t in findings.COLUMNS)
    return spark.createDataFrame(rows, schema=schema)


def write_findings(spark: SparkSession, settings: Settings, items: list[Delivery], as_of: str) -> bool:
    """Replace the timeliness findings of ``as_of`` unless they are already exactly these; True if written."""
    return findings.write_if_changed(settings, findings_frame(spark, items, as_of), run_id(as_of))


def run(settings: Settings, as_of: str, spark: SparkSession | None = None) -> dict:
    """The timeliness stage: assess every source, record stale ones as findings, report them."""
    t0 = time.time()
    spark = spark or get_spark(settings)
    policy = policy_mod.load(settings.contracts_dir)
    items = assess_lake(spark, settings, as_of, policy)
    written = write_findings(spark, settings, items, as_of)
    stale = [d for d in items if d.stale]
    for d in stale:
        log.warning("%s (%s): stale: %s", d.source, d.department, d.message())
    return {
        "as_of": as_of, "grace_days": policy.grace_days, "block_publication": policy.block_publication,
        "stale": [{"source": d.source, "department": d.department, "last_delivery": d.last_delivery,
                   "age_days": d.age_days, "allowed_days": d.allowed_days, "message": d.message()} for d in stale],
        "sources": [asdict(d) for d in items],
        "findings_written": written, "seconds": round(time.time() - t0, 2),
    }

