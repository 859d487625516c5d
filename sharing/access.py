"""The one access decision every read goes through, from the server and from the CLI.

Names follow lake_layout.md: share ``daxing`` (contracts/sharing.yaml), schema = zone (``base``,
``topic``), table = name: ``daxing.base.population`` is the table ``base.population``, published as
``share/base__population``. A department reads a **view** of it, never the copy itself:

- with an active grant (an approved request): ``share/_views/<department code>/<zone>__<name>``, the
  grant's columns and row filter, protected by grade (clear columns only where the grant says so);
- otherwise, for an unconditional table or a conditional table its contract grants to the department:
  ``share/_views/_default/<zone>__<name>``, every column protected by grade;
- otherwise it is refused, saying why (not shared, no grant, grant expired or revoked).

A view is served only when ``share/_grants`` (written with the views at publication) lists it with
the same plan as the decision computes now: a view built under an older policy is never served."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from lake.contracts import Contracts
from lake.settings import Settings
from sharing import grants as grants_mod
from sharing import masks
from sharing.errors import Refused
from sharing.policy import NAME, Policy

GRANTS = ("share", "_grants")
DEFAULT_VIEW = "_default"


def view_path(key: str, table: str) -> str:
    zone, name = table.split(".", 1)
    return f"_views/{key}/{zone}__{name}"


@dataclass
class Access:
    department_code: str
    table: str  # table id, base.population
    view: str  # under share/: _views/_default/base__population
    plan: masks.Plan
    basis: str  # unconditional | contract | grant
    grant_id: str = ""
    purpose: str = ""

    @property
    def columns(self) -> list[str]:
        return self.plan.names


def check_name(kind: str, value: str) -> str:
    """A share, schema or table name as the protocol allows it here (case-insensitive); a path-like or
    malformed name is refused (400) before anything is looked up."""
    v = (value or "").lower()
    if not re.fullmatch(NAME, v):
        raise Refused(400, f"malformed {kind} name {value[:80]!r}: expected lower-case letters, digits and '_' "
                           "(no '/', '.', '..' or spaces)")
    return v


def table_id(policy: Policy, contracts: Contracts, share: str, schema: str, table: str) -> str:
    share, schema, table = check_name("share", share), check_name("schema", schema), check_name("table", table)
    if share != policy.share:
        raise Refused(404, f"no share '{share}' here; the share is '{policy.share}'")
    if schema not in ("base", "topic"):
        raise Refused(404, f"no schema '{schema}' in share {policy.share}; schemas: base, topic")
    tid = f"{schema}.{table}"
    tc = contracts.tables.get(tid)
    if tc is None or not tc.built:
        raise Refused(404, f"no table {policy.share}.{schema}.{table} in this share")
    return tid


def published(settings: Settings) -> dict[str, dict]:
    """view -> its row of ``share/_grants`` (what the last publication materialised)."""
    from lake import ledger

    rows = ledger.read(settings.path(*GRANTS))
    return {r["view"]: r for r in rows}


def decide(settings: Settings, contracts: Contracts, policy: Policy, department_code: str, table: str,
           now: datetime, reqs: dict | None = None, views: dict | None = None) -> Access:
    if department_code not in contracts.departments:
        raise Refused(403, f"department {department_code} is not registered (contracts/departments.yaml)")
    tc = contracts.tables.get(table)
    if tc is None or not tc.built:
        raise Refused(404, f"no table {table} in this share")
    name = f"{policy.share}.{table}"
    if tc.share_type == "none":
        raise Refused(403, f"{name} is not shared (share type none, 不予共享)")
    reqs = grants_mod.requests(settings) if reqs is None else reqs
    grant = grants_mod.active_grants(reqs, now).get((department_code, table))
    if grant is not None:
        p = masks.plan(tc, policy.grades, grant.columns, grant.clear_columns, grant.row_filter)
        acc = Access(department_code, table, view_path(department_code, table), p, "grant", grant.request_id,
                     grant.purpose)
    elif tc.share_type == "unconditional" or department_code in tc.share_grants:
        p = masks.plan(tc, policy.grades)
        acc = Access(department_code, table, view_path(DEFAULT_VIEW, table), p,
                     "unconditional" if tc.share_type == "unconditional" else "contract",
                     purpose="无条件共享" if tc.share_type == "unconditional" else tc.share_condition)
    else:
        lapsed = [q for q in reqs.values() if q.department_code == department_code and q.table == table
                  and q.state(now) in ("expired", "revoked")]
        why = ""
        if lapsed:
            q = max(lapsed, key=lambda q: q.decided_at or q.applied_at)
            why = (f"; its grant {q.request_id} expired on {q.expires_at:%Y-%m-%d}" if q.state(now) == "expired"
                   else f"; its grant {q.request_id} was revoked")
        raise Refused(403, f"department {department_code} has no grant for {name} (conditional sharing: "
                           f"{tc.share_condition or 'by request'}){why}; apply with `lake share request`")
    views = published(settings) if views is None else views
    row = views.get(acc.view)
    if row is None or row.get("plan_digest") != acc.plan.digest():
        raise Refused(403, f"the view of {name} for department {department_code} is not published yet (or was "
                           "built under another policy); it is materialised by the next publication")
    return acc


def readable(settings: Settings, contracts: Contracts, policy: Policy, department_code: str,
             now: datetime) -> list[Access]:
    """Every table the department can read now, by table id."""
    reqs, views = grants_mod.requests(settings), published(settings)
    out = []
    for tc in contracts.built_tables():
        try:
            out.append(decide(settings, contracts, policy, department_code, tc.table, now, reqs, views))
        except Refused:
            continue
    return out


# ---------------------------------------------------------------- predicate hints vs the grant

def _json_constraints(node, out: dict, columns: set) -> None:
    """Collect the equality constraints of a jsonPredicateHints tree: column -> values it asks for
    (only where the tree pins the column to a set of values under ANDs)."""
    if not isinstance(node, dict) or "op" not in node:
        raise Refused(400, "malformed jsonPredicateHints: every node needs an 'op'")
    op = node["op"]
    kids = node.get("children") or []
    if op == "column":
        columns.add(str(node.get("name", "")))
        return
    if op == "literal":
        return
    for k in kids:
        _json_constraints(k, {}, columns)
    if op == "and":
        for k in kids:
            _json_constraints(k, out, set())
    elif op == "equal" and len(kids) == 2:
        col = next((k for k in kids if k.get("op") == "column"), None)
        lit = next((k for k in kids if k.get("op") == "literal"), None)
        if col and lit:
            out.setdefault(col.get("name"), set()).add(str(lit.get("value")))
    elif op == "or":
        sub = [{} for _ in kids]
        for k, s in zip(kids, sub):
            _json_constraints(k, s, set())
        common = set.intersection(*[set(s) for s in sub]) if sub else set()
        for c in common:
            out.setdefault(c, set()).update(*[s[c] for s in sub])


_SQL = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s*(=|<>|!=|>=|<=|>|<|(?i:is\s+not\s+null)|(?i:is\s+null))\s*(.*)$")


def check_hints(acc: Access, json_hints: str | None, sql_hints: list | None) -> None:
    """Refuse a query whose predicate hints name a column the grant does not show (403), ask for rows
    outside the grant's row filter (403), or cannot be read (400). Hints only ever narrow what the
    view holds; these refusals say so instead of silently returning less."""
    visible = set(acc.plan.names)
    asked: dict[str, set] = {}
    named: set = set()
    if json_hints:
        try:
            tree = json.loads(json_hints) if isinstance(json_hints, str) else json_hints
        except ValueError:
            raise Refused(400, "malformed jsonPredicateHints: not JSON") from None
        _json_constraints(tree, asked, named)
    for h in sql_hints or []:
        m = _SQL.match(str(h))
        if not m:
            raise Refused(400, f"malformed predicateHints entry {str(h)[:80]!r}: expected column <op> value")
        named.add(m.group(1))
        if m.group(2) == "=":
            v = m.group(3).strip()
            asked.setdefault(m.group(1), set()).add(v[1:-1].replace("''", "'") if v.startswith("'") else v)
    hidden = sorted(c for c in named if c not in visible)
    if hidden:
        raise Refused(403, f"the query names column(s) {hidden}, which are not granted to department "
                           f"{acc.department_code} for {acc.table}; granted columns: {', '.join(acc.plan.names)}")
    for cond in acc.plan.row_filter:
        want = asked.get(cond["column"])
        allowed = {str(v) for v in cond["values"]}
        if want and not want <= allowed:
            raise Refused(403, f"the query asks for {cond['column']} in {sorted(want)}, outside the grant's row filter "
                               f"({grants_mod.row_filter_text([cond])})")
