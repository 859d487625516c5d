"""Timeliness (及时性): is every department delivering as often as its contract promises?

For each source the newest delivery is the latest ``ingested_at`` in ``landing/_manifest`` (the time
the file was landed). It is compared with the run's reference date ``as_of`` (from the orchestrator,
never the clock): the source is **stale** when ``as_of - last delivery date`` is more than the
contract's ``update_cycle`` in days (``lake.contracts.UPDATE_CYCLES``) plus the policy's
``timeliness.grace_days`` (``contracts/policy.yaml``). A source that was never delivered is stale too.
A delivery after ``as_of`` counts as fresh.

A stale source is a source-level finding in ``quality/findings`` (stage ``timeliness``, rule
``timeliness.cycle``, defect_type ``stale_source``, record_key null) under run id
``timeliness-<as_of>``, written only when it differs from what is there (a re-run adds no Delta
version). When the policy says ``block_publication: true`` the gate of every table that depends on a
stale source fails (``quality.gates.publish`` calls ``blocking_staleness``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import date, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake import policy as policy_mod
from lake.contracts import Contracts, TableContract
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings
from quality.gates import GateFailed

MANIFEST = ("landing", "_manifest")
STAGE = "timeliness"
RULE = "timeliness.cycle"
DEFECT = "stale_source"
SEVERITY = "warning"


@dataclass
class Delivery:
    source: str
    department: str
    department_code: str
    update_cycle: str
    allowed_days: int           # cycle days + grace days
    last_delivery: str | None   # ISO timestamp (UTC) of the newest landed file, None if never delivered
    age_days: int | None        # as_of - last delivery date
    stale: bool
    batch_id: str | None
    sha256: str | None
    file_name: str | None

    def message(self) -> str:
        if self.last_delivery is None:
            return f"no delivery yet; expected {self.update_cycle} (within {self.allowed_days} days)"
        return (f"newest delivery {self.last_delivery[:10]} is {self.age_days} days old; "
                f"{self.update_cycle} cycle allows {self.allowed_days} days including grace")


def run_id(as_of: str) -> str:
    return f"timeliness-{as_of}"


def last_deliveries(spark: SparkSession, settings: Settings) -> dict[str, dict]:
    """source -> the manifest row (as a dict) of its newest landed file."""
    path = io.table_path(settings, *MANIFEST)
    if not io.is_table(spark, path):
        return {}
    out: dict[str, dict] = {}
    rows = io.read(spark, path).select("source", "ingested_at", "batch_id", "sha256", "file_name", "rows_read").collect()
    for r in sorted(rows, key=lambda r: (r["ingested_at"], r["batch_id"])):
        out[r["source"]] = r.asDict()  # later rows win: the newest per source
    return out


def assess(contracts: Contracts, deliveries: dict[str, dict], as_of: str,
           policy: policy_mod.Policy) -> list[Delivery]:
    """One ``Delivery`` per source of the contracts, stale or not. Pure."""
    ref = date.fromisoformat(as_of)
    out = []
    for s in sorted(contracts.sources):
        sc = contracts.sources[s]
        allowed = contracts_mod.UPDATE_CYCLES[sc.update_cycle] + policy.grace_days
        d = deliveries.get(s)
        if d is None:
            out.append(Delivery(s, sc.department, sc.department_code, sc.update_cycle, allowed, None, None, True,
                                None, None, None))
            continue
        when: datetime = d["ingested_at"]
        age = (ref - when.date()).days
        out.append(Delivery(s, sc.department, sc.department_code, sc.update_cycle, allowed,
                            when.isoformat(timespec="seconds"), age, age > allowed,
                            d["batch_id"], d["sha256"], d["file_name"]))
    return out


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
    new = findings_frame(spark, items, as_of)
    path = io.table_path(settings, *findings.FINDINGS)
    rid = run_id(as_of)
    if io.is_table(spark, path):
        old = io.read(spark, path).where(F.col("run_id") == rid)
        if io.fingerprint(findings.conform(old)) == io.fingerprint(findings.conform(new)):
            return False
    elif not any(d.stale for d in items):
        return False
    findings.write(settings, new, run_id=rid)
    return True


def assess_lake(spark: SparkSession, settings: Settings, as_of: str,
                policy: policy_mod.Policy | None = None) -> list[Delivery]:
    contracts = contracts_mod.load(settings.contracts_dir)
    policy = policy or policy_mod.load(settings.contracts_dir)
    return assess(contracts, last_deliveries(spark, settings), as_of, policy)


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


# ------------------------------------------------------------------ the publication gate

def table_sources(contracts: Contracts, tc: TableContract) -> list[str]:
    """The sources a table is built from: a base table's authorities and fallbacks; a topic table's
    base table's sources (``jobs.build_topic.BUILDERS``)."""
    from jobs import build_base, build_topic

    if tc.zone == "base":
        return build_base.sources_used(tc)
    builder = build_topic.BUILDERS.get(tc.table)
    if builder is None:
        return []
    return table_sources(contracts, contracts.table(builder[0]))


class StaleSources(GateFailed):
    """Publication blocked because sources of the table are stale (policy: block_publication)."""

    def __init__(self, table: str, stale: list[Delivery]):
        self.table = table
        self.stale = stale
        self.failures = [{"expectation": "timeliness.cycle", "column": d.source, "unexpected_count": None,
                          "element_count": None, "observed": d.last_delivery} for d in stale]
        lines = [f"  - {d.source} ({d.department}): "
                 + (f"last delivery {d.last_delivery}, " if d.last_delivery else "never delivered, ")
                 + f"{d.update_cycle} cycle + grace = {d.allowed_days} days"
                 + (f", {d.age_days} days old" if d.age_days is not None else "")
                 for d in stale]
        RuntimeError.__init__(self, f"quality gate failed for {table}; not published: stale source(s) "
                         "(contracts/policy.yaml timeliness.block_publication is true):\n" + "\n".join(lines))


def blocking_staleness(spark: SparkSession, settings: Settings, tc: TableContract, as_of: str | None) -> list[Delivery]:
    """The stale sources that block publishing ``tc`` under the policy (empty when not blocking)."""
    policy = policy_mod.load(settings.contracts_dir)
    if not policy.block_publication or not as_of:
        return []
    contracts = contracts_mod.load(settings.contracts_dir)
    wanted = set(table_sources(contracts, tc))
    return [d for d in assess_lake(spark, settings, as_of, policy) if d.source in wanted and d.stale]
