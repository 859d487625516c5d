"""The sandbox (可用不可见): an approved applicant runs SQL over a table it may not download, and only
results that pass disclosure control leave.

``lake sandbox query --as <applicant> "SQL"``:

1. The SQL is parsed by DuckDB itself (``json_serialize_sql``: what is checked is what runs) and must
   be one ``SELECT`` over one sandbox table (a contract with ``sandbox: {k: ...}``), named
   ``<zone>.<table>`` (``base.population``), without joins, subqueries, CTEs, table functions, set
   operations, window functions, ``QUALIFY``, ``SAMPLE``, ``DISTINCT`` or ``GROUP BY ALL``.
2. Aggregates only: every output column is a grouping expression or an aggregate of them; the
   aggregates are ``count``, ``sum`` and ``avg``/``mean`` of a plain column or ``count(*)``
   (``min``, ``max``, ``median``, quantiles, ``list``, ``first``... return one record's value and are
   refused; so are ``FILTER`` and expressions inside an aggregate, which could single out a record).
3. The applicant holds an approved, unexpired sandbox application for the table
   (``opendata.access``) and proves it with the token the approval issued (hashed, expiring, revocable), and the query names only the columns it was approved for. Personal columns
   (``pii: true``) are never loaded.
4. The query runs in an in-memory DuckDB holding a copy of the allowed columns, with external access
   disabled and the configuration locked (read-only: the lake's files cannot be reached from SQL). The
   engine adds ``count(*)`` and ``count(<column>)`` of every aggregated column to the query: every
   output row must stand for at least k records, and every count and every aggregate's number of
   contributing records must be 0 or at least k ("every cell at least k"). Otherwise the whole result
   is refused, saying why.
5. The query and the outcome are audited (``opendata.access.audit``: decision, reason, rows, the
   columns read, the SQL, the result's sha256). A refusal exits 1.

What threshold rules do not stop: differences between two allowed queries (a group with and without
one person). Every query is audited under the applicant's name and agreement, so such use is traced.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io as pyio
import json
from dataclasses import dataclass
from datetime import datetime

from lake import contracts as contracts_mod
from lake.settings import Settings
from opendata import access
from opendata.access import AccessError

ALLOWED_AGGREGATES = {"count", "count_star", "sum", "avg", "mean"}
EXPRESSION_CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "FUNCTION", "CASE",
                      "CAST", "BETWEEN", "COLLATE"}
MARK = "__lake_"


class Refused(AccessError):
    """The sandbox refuses a query; the message says why."""


@dataclass
class Result:
    columns: list[str]
    rows: list[tuple]

    def csv(self) -> str:
        buf = pyio.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows(["" if v is None else v for v in r] for r in self.rows)
        return buf.getvalue()


def _duck(sql: str, params: list) -> list:
    """One statement on a throwaway in-memory DuckDB, closed after use."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _aggregates() -> set[str]:
    return {r[0] for r in _duck("SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'", [])}


def parse(sql: str) -> dict:
    """DuckDB's own syntax tree of ``sql`` (one SELECT statement), or Refused."""
    import duckdb

    try:
        tree = json.loads(_duck("SELECT json_serialize_sql(?)", [sql])[0][0])
    except duckdb.Error as e:
        raise Refused(f"the query cannot be read: {str(e).splitlines()[0]}") from None
    if tree.get("error"):
        msg = tree.get("error_message", "")
        if "Only SELECT" in msg:
            raise Refused("only SELECT queries run in the sandbox (it is read-only)")
        raise Refused(f"the query cannot be read: {msg.splitlines()[0] if msg else tree.get('error_type')}")
    if len(tree["statements"]) != 1:
        raise Refused("one SELECT statement at a time")
    return tree


def _strip(e):
    """An expression without its position and alias, to compare two expressions."""
    if isinstance(e, dict):
        return {k: _strip(v) for k, v in e.items() if k not in ("query_location", "query_location_length", "alias")}
    if isinstance(e, list):
        return [_strip(v) for v in e]
    return e


def _columns(e, out: set[str]) -> set[str]:
    if isinstance(e, dict):
        if e.get("class") == "COLUMN_REF":
            out.add(e["column_names"][-1])
        for v in e.values():
            _columns(v, out)
    elif isinstance(e, list):
        for v in e:
            _columns(v, out)
    return out


def _nodes(obj):
    """Every expression node (a dict with a ``class``) inside ``obj``, at any depth."""
    if isinstance(obj, dict):
        if "class" in obj:
            yield obj
        for v in obj.values():
            yield from _nodes(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _nodes(v)


def _check_scalar(e: dict, aggs: set[str], where: str) -> None:
    """A row-level expression (WHERE, GROUP BY): no aggregate, no subquery, no window."""
    for n in _nodes(e):
        cls = n.get("class")
        if cls not in EXPRESSION_CLASSES:
            raise Refused(f"{where}: {str(cls).lower().replace('_', ' ')} expressions are not allowed in the sandbox")
        if cls == "FUNCTION" and n["function_name"] in aggs:
            raise Refused(f"{where}: aggregate {n['function_name']} where a row-level value is expected")


def _having(e: dict, groups: list, aggs: set[str]) -> None:
    """HAVING: comparisons and AND/OR/NOT over output expressions (grouped columns, aggregates, constants)."""
    cls = e.get("class")
    if cls in ("COMPARISON", "CONJUNCTION", "BETWEEN") or (cls == "OPERATOR"):
        kids = [e[k] for k in ("left", "right", "input", "lower", "upper") if isinstance(e.get(k), dict)]
        kids += e.get("children", [])
        for k in kids:
            _having(k, groups, aggs)
        return
    _output(e, groups, aggs, [])


def _args(e: dict) -> list[dict]:
    return [a["expression"] if "expression" in a else a for a in e.get("arguments", [])]


def _output(e: dict, groups: list, aggs: set[str], found: list[dict]) -> None:
    """An output expression: a grouping expression, an allowed aggregate, or an operator/cast over those
    and constants; aggregates found are collected in ``found``."""
    if _strip(e) in groups or (e.get("class") == "COLUMN_REF" and any(
            g.get("class") == "COLUMN_REF" and g["column_names"][-1] == e["column_names"][-1] for g in groups)):
        return
    cls = e.get("class")
    if cls == "CONSTANT":
        return
    if cls == "FUNCTION" and e["function_name"] in aggs:
        name = e["function_name"]
        if name not in ALLOWED_AGGREGATES:
            raise Refused(f"aggregate {name}() returns a single record's value; allowed: count, sum, avg")
        if e.get("filter") is not None:
            raise Refused(f"{name}() FILTER (...) is not allowed: filter with WHERE and group with GROUP BY")
        if e.get("order_bys", {}).get("orders"):
            raise Refused(f"{name}(... ORDER BY) is not allowed")
        args = _args(e)
        if name == "count_star" or (name == "count" and not args):
            found.append(e)
            return
        if len(args) != 1 or args[0].get("class") != "COLUMN_REF":
            raise Refused(f"{name}() takes one plain column in the sandbox (an expression inside an aggregate could "
                          "single out a record)")
        found.append(e)
        return
    if cls == "STAR":
        raise Refused("SELECT * is row-level output; the sandbox returns aggregates only")
    if cls in ("FUNCTION", "CAST", "OPERATOR") and not (cls == "FUNCTION" and e["function_name"] in aggs):
        kids = _args(e) if cls == "FUNCTION" else ([e["child"]] if cls == "CAST" else e.get("children", []))
        if kids:
            for k in kids:
                _output(k, groups, aggs, found)
            return
    if cls == "COLUMN_REF":
        raise Refused(f"column {e['column_names'][-1]} is neither grouped nor aggregated: row-level output is refused")
    raise Refused(f"output expression of kind {str(cls).lower()} is not allowed: aggregates (count, sum, avg) and "
                  "grouped columns only")


def check(tree: dict) -> dict:
    """Check the statement; return what it reads and aggregates (Refused when it breaks a rule)."""
    node = tree["statements"][0]["node"]
    if node.get("type") != "SELECT_NODE":
        raise Refused("one plain SELECT (no UNION, INTERSECT or EXCEPT)")
    if node.get("cte_map", {}).get("map"):
        raise Refused("WITH (common table expressions) is not allowed: query the table directly")
    for m in node.get("modifiers", []):
        if m["type"] == "DISTINCT_MODIFIER":
            raise Refused("SELECT DISTINCT is not allowed: use GROUP BY")
    for key in ("qualify", "sample"):
        if node.get(key):
            raise Refused(f"{key.upper()} is not allowed in the sandbox")
    if node.get("aggregate_handling") != "STANDARD_HANDLING":
        raise Refused("GROUP BY ALL is not allowed: name the grouping columns")
    src = node.get("from_table") or {}
    if src.get("type") != "BASE_TABLE":
        kinds = {"JOIN": "joins", "SUBQUERY": "subqueries", "TABLE_FUNCTION": "table functions", "EMPTY": "a query without a table"}
        raise Refused(f"{kinds.get(src.get('type'), src.get('type'))} are not allowed: one sandbox table, "
                      "e.g. FROM base.population" if src.get("type") != "EMPTY" else "name a sandbox table: FROM <zone>.<table>")
    if src.get("catalog_name") or src.get("at_clause") or src.get("sample"):
        raise Refused("name the table as <zone>.<table> (no catalogue, no time travel, no sample)")
    table = f"{src['schema_name']}.{src['table_name']}" if src.get("schema_name") else src["table_name"]
    aggs = _aggregates()
    for key, label in (("where_clause", "WHERE"), ("having", "HAVING")):
        if node.get(key):
            if key == "having":
                _having(node[key], [_strip(g) for g in node.get("group_expressions", [])], aggs)
            else:
                _check_scalar(node[key], aggs, label)
    groups = node.get("group_expressions", [])
    for g in groups:
        _check_scalar(g, aggs, "GROUP BY")
    found: list[dict] = []
    for item in node["select_list"]:
        if str(item.get("alias", "")).startswith(MARK):
            raise Refused(f"aliases starting with {MARK} are reserved")
        _output(item, [_strip(g) for g in groups], aggs, found)
    if not found:
        raise Refused("no aggregate in the output: the sandbox returns aggregates (count, sum, avg), never rows")
    for m in node.get("modifiers", []):
        for o in m.get("orders", []) if m["type"] == "ORDER_MODIFIER" else []:
            if o["expression"].get("class") not in ("COLUMN_REF", "CONSTANT"):
                _output(o["expression"], [_strip(g) for g in groups], aggs, [])
    return {"table": table, "columns": sorted(_columns(node, set())), "aggregates": found}


def instrument(tree: dict, aggregates: list[dict]) -> str:
    """The query with ``count(*)`` and a ``count(<column>)`` per aggregate appended to its output."""
    tree = copy.deepcopy(tree)
    node = tree["statements"][0]["node"]
    star = {"class": "FUNCTION", "type": "FUNCTION", "alias": f"{MARK}n", "query_location": 0, "query_location_length": 0,
            "function_name": "count_star", "schema": "", "filter": None,
            "order_bys": {"type": "ORDER_MODIFIER", "orders": []}, "distinct": False, "is_operator": False,
            "export_state": False, "catalog": "", "arguments": [], "qualified_name": {"path": ["count_star"]}}
    node["select_list"].append(star)
    for i, a in enumerate(aggregates):
        if a["function_name"] == "count_star" or not a.get("arguments"):
            continue
        c = copy.deepcopy(a)
        c.update(alias=f"{MARK}c{i}", function_name="count", distinct=False, qualified_name={"path": ["count"]})
        node["select_list"].append(c)
    return _duck("SELECT json_deserialize_sql(?::JSON)", [json.dumps(tree)])[0][0]


def _load(settings: Settings, table: str, columns: list[str]):
    """An in-memory DuckDB holding ``table``'s allowed ``columns``, sealed: no external access."""
    import duckdb

    from lake import io

    zone, name = table.split(".", 1)
    path = settings.path(zone, name)
    if not io.has_commit(path):
        raise Refused(f"{table} has not been built yet")
    ds = io.delta_table(path).to_pyarrow_dataset()
    con = duckdb.connect(":memory:")
    con.register("lake_src", ds.to_table(columns=columns))
    con.execute(f'CREATE SCHEMA "{zone}"')
    con.execute(f'CREATE TABLE "{zone}"."{name}" AS SELECT * FROM lake_src')
    con.unregister("lake_src")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def query(settings: Settings, applicant: str, sql: str, token: str | None, now: datetime | None = None) -> Result:
    """Run ``sql`` for ``applicant`` (proven by ``token``, issued at the approval of its sandbox
    application) under disclosure control; audited either way."""
    import duckdb

    contracts = contracts_mod.load(settings.contracts_dir)
    table, columns = "", None
    try:
        tree = parse(sql)
        info = check(tree)
        table, columns = info["table"], info["columns"]
        tc = contracts.tables.get(table)
        if tc is None or not tc.sandbox:
            known = ", ".join(sorted(t.table for t in contracts.tables.values() if t.sandbox)) or "none"
            raise Refused(f"{table} is not a sandbox table (sandbox tables: {known})")
        grant = access.sandbox_grant(settings, applicant, table, token, now)
        allowed = list(grant["columns"] or [c.name for c in tc.columns if not c.pii])
        pii = {c.name for c in tc.columns if c.pii}
        outside = [c for c in columns if c not in allowed]
        if outside:
            why = "personal columns never enter the sandbox" if set(outside) & pii else "not in the approved application"
            raise Refused(f"column(s) {outside} of {table}: {why}; approved: {', '.join(allowed)}")
        k = int(tc.sandbox["k"])
        con = _load(settings, table, allowed)
        try:
            cur = con.execute(instrument(tree, info["aggregates"]))
            names = [d[0] for d in cur.description]
            data = cur.fetchall()
        except duckdb.Error as e:  # an error in the user's SQL (unknown function or column, bad types, ...)
            raise Refused(f"the query failed: {str(e).splitlines()[0]}") from None
        finally:
            con.close()
        keep = [i for i, n in enumerate(names) if not n.startswith(MARK)]
        marks = [i for i, n in enumerate(names) if n.startswith(MARK)]
        small = 0
        for row in data:
            cells = [row[i] for i in marks]  # count(*) per row, count(<column>) per aggregate (a count's own value)
            if row[names.index(f"{MARK}n")] < k or any(v is not None and 0 < v < k for v in cells):
                small += 1
        if small:
            raise Refused(f"{small} of {len(data)} result row(s) stand for fewer than {k} records (every cell must "
                          f"count at least {k}); group more coarsely or filter less")
        result = Result([names[i] for i in keep], [tuple(r[i] for i in keep) for r in data])
    except AccessError as e:
        access.audit(settings, action="sandbox_query", decision="refused", applicant=applicant, resource=table,
                     columns=columns, reason=str(e), request=sql, now=now)
        raise
    text = result.csv()
    access.audit(settings, action="sandbox_query", decision="granted", applicant=applicant, resource=table,
                 columns=columns, rows=len(result.rows), purpose=grant["purpose"], reason=f"k={k}", request=sql,
                 token_id=grant.get("token_id", ""),
                 result_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), now=now)
    return result
