"""Supply and demand of the share zone (供需对接, monitoring of use), JVM-free.

- supply: the unconditional share rate of the catalogue's base and topic resources against the target
  (contracts/sharing.yaml; the Daxing plan asks >= 80 %), and the tables by share type;
- demand: open (pending) requests with their age, requests per table, decisions and the time from
  application to decision (median and mean hours);
- use: granted and refused reads per resource (queries through the server and CLI reads, from the audit),
  and the departments that read each."""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import datetime, timezone

from lake import contracts as contracts_mod
from lake.settings import Settings
from sharing import audit as audit_mod
from sharing import grants as grants_mod
from sharing import policy as policy_mod

READS = ("query", "read")


def compute(settings: Settings, now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    c = contracts_mod.load(settings.contracts_dir)
    pol = policy_mod.load(settings.contracts_dir)
    tables = c.built_tables()
    by_type = Counter(t.share_type for t in tables)
    rate = by_type["unconditional"] / len(tables) if tables else None
    reqs = grants_mod.requests(settings)
    pending = [q for q in reqs.values() if q.status == "pending"]
    decided = [q for q in reqs.values() if q.decided_at is not None]
    hours = [(q.decided_at - q.applied_at).total_seconds() / 3600 for q in decided]
    reads: dict[str, Counter] = defaultdict(Counter)
    readers: dict[str, set] = defaultdict(set)
    for r in audit_mod.records(settings):
        if r["action"] in READS and r["resource"]:
            reads[r["resource"]][r["decision"]] += 1
            if r["decision"] == "granted":
                readers[r["resource"]].add(r["department_code"])
    return {
        "supply": {
            "tables": len(tables), "by_share_type": dict(sorted(by_type.items())),
            "unconditional_share_rate": round(rate, 4) if rate is not None else None,
            "target": pol.rate_target, "target_met": rate is not None and rate >= pol.rate_target,
        },
        "demand": {
            "requests": len(reqs), "open_requests": len(pending),
            "open": [{"request_id": q.request_id, "department_code": q.department_code, "table": q.table,
                      "age_hours": round((now - q.applied_at).total_seconds() / 3600, 2)}
                     for q in sorted(pending, key=lambda q: q.applied_at)],
            "by_table": dict(sorted(Counter(q.table for q in reqs.values()).items())),
            "decisions": dict(sorted(Counter(q.state(now) for q in decided).items())),
            "time_to_decision_hours": {"median": round(statistics.median(hours), 3) if hours else None,
                                       "mean": round(statistics.fmean(hours), 3) if hours else None,
                                       "decided": len(hours)},
            "active_grants": len(grants_mod.active_grants(reqs, now)),
        },
        "use": {
            "reads_per_resource": {t: {"granted": n["granted"], "refused": n["refused"],
                                       "departments": sorted(readers[t])} for t, n in sorted(reads.items())},
        },
    }
