"""Requests and grants (申请 -> 审核 -> 授权).

A registered department applies for a shared base or topic table, or some of its columns, with a
purpose and a legal basis, optionally a row filter (``town = '黄村镇'``: a town sees its own residents),
columns it needs in clear (only with a legal basis) and how many days it needs them. The department
that owns the table (its contract's ``owner``) approves, setting the expiry, or rejects with a reason;
it may later revoke an approved grant. Each step is one row of ``share/_requests`` (append-only); the
state of a request is the fold of its rows. A grant is an approved request that is neither revoked nor
expired; a department's newest grant for a table is the one its view follows.

Unconditional tables are readable by every registered department without a request; a conditional
table by the departments its contract grants (``share_grants``) and by approved requests; a table whose
share type is none by no one (it cannot be requested)."""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from lake.contracts import Contracts, TableContract
from lake.settings import Settings
from sharing import store


class RequestError(ValueError):
    """A request or decision that cannot be accepted; the message says why."""


_COND = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(=|(?i:in))\s*(.+?)\s*$")
_VALUE = re.compile(r"'((?:[^']|'')*)'|(-?[0-9]+(?:\.[0-9]+)?)")


def parse_row_filter(text: str | None, tc: TableContract) -> list[dict]:
    """``town = '黄村镇'``, ``town in ('黄村镇', '旧宫镇')``, joined by ``and`` -> [{column, op, values}].
    Only equality and IN on the table's columns: a row filter is a set of allowed values."""
    if not text or not text.strip():
        return []
    out = []
    for part in re.split(r"\s+(?i:and)\s+", text.strip()):
        m = _COND.match(part)
        if not m:
            raise RequestError(f"row filter '{part}': expected column = 'value' or column in ('a', 'b')")
        column, op, rest = m.group(1), m.group(2).lower(), m.group(3)
        if column not in tc.column_names:
            raise RequestError(f"row filter names column '{column}', which {tc.table} does not have")
        if op == "in":
            if not (rest.startswith("(") and rest.endswith(")")):
                raise RequestError(f"row filter '{part}': IN needs a parenthesised list of values")
            body = rest[1:-1]
        else:
            body = rest
        values, pos = [], 0
        for vm in _VALUE.finditer(body):
            between = body[pos:vm.start()].strip()
            if between not in ("", ","):
                raise RequestError(f"row filter '{part}': cannot read '{between}' (quote text values: 'x')")
            values.append(vm.group(1).replace("''", "'") if vm.group(1) is not None else vm.group(2))
            pos = vm.end()
        if body[pos:].strip() or not values or (op == "=" and len(values) != 1):
            raise RequestError(f"row filter '{part}': expected one quoted value after = or a list after in (quote text values: 'x')")
        out.append({"column": column, "op": "in", "values": values})
    return out


def row_filter_text(conds: list[dict]) -> str:
    def q(v):
        return "'" + str(v).replace("'", "''") + "'"
    return " and ".join(f"{c['column']} = {q(c['values'][0])}" if len(c["values"]) == 1
                        else f"{c['column']} in ({', '.join(q(v) for v in c['values'])})" for c in conds)


@dataclass
class Request:
    request_id: str
    department_code: str
    table: str
    columns: list[str] | None
    clear_columns: list[str]
    row_filter: list[dict]
    purpose: str
    legal_basis: str
    days: int
    applied_at: datetime
    status: str = "pending"  # pending | approved | rejected | revoked
    decided_at: datetime | None = None
    decided_by: str = ""
    expires_at: datetime | None = None
    note: str = ""
    history: list[dict] = field(default_factory=list)

    def active(self, now: datetime) -> bool:
        return self.status == "approved" and self.expires_at is not None and now < self.expires_at

    def state(self, now: datetime) -> str:
        if self.status == "approved" and not self.active(now):
            return "expired"
        return self.status

    def as_dict(self, now: datetime) -> dict:
        return {"request_id": self.request_id, "department_code": self.department_code, "table": self.table,
                "columns": self.columns, "clear_columns": self.clear_columns,
                "row_filter": row_filter_text(self.row_filter), "purpose": self.purpose,
                "legal_basis": self.legal_basis, "days": self.days, "applied_at": self.applied_at.isoformat(),
                "status": self.state(now), "decided_at": self.decided_at.isoformat() if self.decided_at else None,
                "decided_by": self.decided_by, "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "note": self.note}


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def requests(settings: Settings) -> dict[str, Request]:
    """Every request with its current state, folded from ``share/_requests``."""
    out: dict[str, Request] = {}
    for r in sorted(store.read(settings, store.REQUESTS), key=lambda r: (r["at"], r["event"] != "applied")):
        rid = r["request_id"]
        if r["event"] == "applied":
            out[rid] = Request(rid, r["department_code"], r["table"], r["columns"], list(r["clear_columns"] or []),
                               json.loads(r["row_filter"] or "[]"), r["purpose"] or "", r["legal_basis"] or "",
                               r["days"] or 0, r["at"])
        elif rid in out:
            q = out[rid]
            if r["event"] in ("approved", "rejected"):
                q.status, q.decided_at, q.decided_by, q.note = r["event"], r["at"], r["actor"], r["note"] or ""
                q.expires_at = r["expires_at"]
            elif r["event"] == "revoked":
                q.status, q.note = "revoked", r["note"] or q.note
        if rid in out:
            out[rid].history.append({"event": r["event"], "at": r["at"].isoformat(), "by": r["actor"],
                                     "note": r["note"] or ""})
    return out


def _shared_table(contracts: Contracts, table: str) -> TableContract:
    tc = contracts.tables.get(table)
    if tc is None or not tc.built:
        known = ", ".join(t.table for t in contracts.built_tables() if t.share_type != "none")
        raise RequestError(f"unknown table '{table}'; shared tables: {known}")
    if tc.share_type == "none":
        raise RequestError(f"{table} is not shared (share type none, 不予共享): it cannot be requested")
    return tc


def apply(settings: Settings, contracts: Contracts, department_code: str, table: str, purpose: str,
          legal_basis: str, columns: list[str] | None = None, clear: list[str] = (), row_filter: str = "",
          days: int = 365, max_days: int = 730, now: datetime | None = None) -> Request:
    contracts.department(department_code)
    tc = _shared_table(contracts, table)
    if not purpose.strip():
        raise RequestError("a request needs a purpose (--purpose)")
    if not legal_basis.strip():
        raise RequestError("a request needs a legal basis (--legal-basis), e.g. the law or duty it serves")
    if columns is not None:
        unknown = [c for c in columns if c not in tc.column_names]
        if unknown or not columns:
            raise RequestError(f"{table} has no column(s) {unknown}; its columns: {', '.join(tc.column_names)}")
    clear = list(clear or [])
    bad = [c for c in clear if c not in (columns if columns is not None else tc.column_names)]
    if bad:
        raise RequestError(f"clear column(s) {bad} are not among the columns requested")
    if not 0 < days <= max_days:
        raise RequestError(f"--days must be between 1 and {max_days} (contracts/sharing.yaml grants.max_days)")
    conds = parse_row_filter(row_filter, tc)
    now = now or now_utc()
    rid = f"R{now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    store.append(settings, store.REQUESTS, [{
        "request_id": rid, "event": "applied", "at": now, "actor": department_code, "department_code": department_code,
        "table": table, "columns": columns, "clear_columns": clear, "row_filter": json.dumps(conds, ensure_ascii=False),
        "purpose": purpose, "legal_basis": legal_basis, "days": days}])
    return requests(settings)[rid]


def _decidable(settings: Settings, contracts: Contracts, request_id: str, by: str, want: str) -> Request:
    q = requests(settings).get(request_id)
    if q is None:
        raise RequestError(f"unknown request '{request_id}' (lake share requests lists them)")
    tc = contracts.table(q.table)
    owner = contracts.department_named(tc.owner)
    contracts.department(by)
    if by != owner.code:
        raise RequestError(f"only the department that owns {q.table}, {owner.name} ({owner.code}), can decide on it; "
                           f"{by} cannot")
    if want == "pending" and q.status != "pending":
        raise RequestError(f"request {request_id} is already {q.state(now_utc())}")
    if want == "approved" and q.status != "approved":
        raise RequestError(f"request {request_id} is {q.state(now_utc())}, not an approved grant")
    return q


def approve(settings: Settings, contracts: Contracts, request_id: str, by: str, days: int | None = None,
            max_days: int = 730, note: str = "", now: datetime | None = None) -> Request:
    q = _decidable(settings, contracts, request_id, by, "pending")
    days = days or q.days
    if not 0 < days <= max_days:
        raise RequestError(f"--days must be between 1 and {max_days} (contracts/sharing.yaml grants.max_days)")
    now = now or now_utc()
    store.append(settings, store.REQUESTS, [{"request_id": request_id, "event": "approved", "at": now, "actor": by,
                                             "department_code": q.department_code, "table": q.table, "days": days,
                                             "expires_at": now + timedelta(days=days), "note": note}])
    return requests(settings)[request_id]


def reject(settings: Settings, contracts: Contracts, request_id: str, by: str, reason: str,
           now: datetime | None = None) -> Request:
    if not reason.strip():
        raise RequestError("a rejection needs a reason (--reason)")
    q = _decidable(settings, contracts, request_id, by, "pending")
    store.append(settings, store.REQUESTS, [{"request_id": request_id, "event": "rejected", "at": now or now_utc(),
                                             "actor": by, "department_code": q.department_code, "table": q.table,
                                             "note": reason}])
    return requests(settings)[request_id]


def revoke(settings: Settings, contracts: Contracts, request_id: str, by: str, reason: str,
           now: datetime | None = None) -> Request:
    if not reason.strip():
        raise RequestError("a revocation needs a reason (--reason)")
    q = _decidable(settings, contracts, request_id, by, "approved")
    store.append(settings, store.REQUESTS, [{"request_id": request_id, "event": "revoked", "at": now or now_utc(),
                                             "actor": by, "department_code": q.department_code, "table": q.table,
                                             "note": reason}])
    return requests(settings)[request_id]


def active_grants(reqs: dict[str, Request], now: datetime) -> dict[tuple[str, str], Request]:
    """(department code, table) -> the newest active grant."""
    out: dict[tuple[str, str], Request] = {}
    for q in sorted(reqs.values(), key=lambda q: q.decided_at or q.applied_at):
        if q.active(now):
            out[(q.department_code, q.table)] = q
    return out
