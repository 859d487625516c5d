"""Freshness of the sources (及时性), as the publication gate and the timeliness job read it.

For each source the newest delivery is the latest ``ingested_at`` in ``landing/_manifest`` (the time
the file was landed). It is compared with the run's reference date ``as_of`` (from the orchestrator,
never the clock): the source is **stale** when ``as_of - last delivery date`` is more than the
contract's ``update_cycle`` in days (``lake.contracts.UPDATE_CYCLES``) plus the policy's
``timeliness.grace_days`` (``contracts/policy.yaml``). A source that was never delivered is stale too.
A delivery after ``as_of`` counts as fresh. When the policy says ``block_publication: true`` the gate
of every table built from a stale source (``lake.registry``: its upstream, transitively) fails.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io
from lake import policy as policy_mod
from lake import registry
from lake.contracts import Contracts, TableContract
from lake.settings import Settings

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


def assess_lake(spark: SparkSession, settings: Settings, as_of: str,
                policy: policy_mod.Policy | None = None) -> list[Delivery]:
    contracts = contracts_mod.load(settings.contracts_dir)
    policy = policy or policy_mod.load(settings.contracts_dir)
    return assess(contracts, last_deliveries(spark, settings), as_of, policy)


def blocking_staleness(spark: SparkSession, settings: Settings, tc: TableContract, as_of: str | None) -> list[Delivery]:
    """The stale sources that block publishing ``tc`` under the policy (empty when not blocking)."""
    policy = policy_mod.load(settings.contracts_dir)
    if not policy.block_publication or not as_of:
        return []
    wanted = set(registry.load(settings.contracts_dir).sources_of(tc.table))
    return [d for d in assess_lake(spark, settings, as_of, policy) if d.source in wanted and d.stale]
