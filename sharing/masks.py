"""Protection of graded columns (分级保护, DB11/T 1918): masking, generalisation, exclusion.

What a department sees of a column is decided per column from its grade and the sharing policy
(``contracts/sharing.yaml``): in clear, protected by the column's ``protect`` function, or excluded;
an approved grant may name columns (a grade-4 column is shown only when named) and give some in clear.
``plan`` turns a table contract, the policy and a grant into one treatment per visible column;
``apply_plan`` applies it to a Spark DataFrame with native Spark expressions; the plain-Python functions
(``PY``) are the oracle the tests compare the Spark expressions with.

Functions:
- ``mask_id``: keep the first 6 and last 4 characters (region code and the end): ``110115********1234``;
- ``mask_mobile``: keep the first 3 and last 4: ``138****5678``;
- ``mask_name``: keep the first character (the surname): ``张*``, ``欧阳**``;
- ``to_year``: a date -> its year (int);
- ``to_town``: an address -> the town or street it names (registry name, e.g. 黄村地区 -> 黄村镇), else null;
- ``exclude``: the column is left out.
Shorter values than the kept parts are starred entirely; null stays null.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime

from lake.contracts import TableContract
from lake.reference import REF

TREATMENTS = ("clear", "mask_id", "mask_mobile", "mask_name", "to_year", "to_town")


def _town_aliases() -> dict[str, str]:
    """alias -> registry town name: the full names and their official variants (黄村地区, 黄村乡,
    清源街道办事处), never the bare stem (清源 is also a road)."""
    out = {}
    for t in REF.district.towns:
        if t.endswith("镇"):
            stem = t[:-1]
            for a in (t, stem + "地区", stem + "乡"):
                out[a] = t
        elif t.endswith("街道"):
            stem = t[:-2]
            for a in (t, stem + "街道办事处", stem + "街道办"):
                out[a] = t
        else:
            out[t] = t
    return out


TOWN_ALIASES = _town_aliases()


# ---------------------------------------------------------------- plain Python (the oracle)

def _keep(v: str | None, head: int, tail: int) -> str | None:
    if v is None:
        return None
    n = len(v)
    if n <= head + tail:
        return "*" * n
    return v[:head] + "*" * (n - head - tail) + v[n - tail:]


def mask_id(v: str | None) -> str | None:
    return _keep(v, 6, 4)


def mask_mobile(v: str | None) -> str | None:
    return _keep(v, 3, 4)


def mask_name(v: str | None) -> str | None:
    if v is None:
        return None
    return v[:1] + "*" * (len(v) - 1) if len(v) > 1 else "*" * len(v)


def to_year(v) -> int | None:
    if v is None:
        return None
    if isinstance(v, (date, datetime)):
        return v.year
    try:
        return date.fromisoformat(str(v)[:10]).year
    except ValueError:
        return None


def to_town(v: str | None) -> str | None:
    """The town named earliest in the address (the longest name where two start at the same place)."""
    if v is None:
        return None
    best = None
    for alias, town in TOWN_ALIASES.items():
        i = v.find(alias)
        if i >= 0 and (best is None or (i, -len(alias)) < (best[0], -best[1])):
            best = (i, len(alias), town)
    return best[2] if best else None


PY = {"mask_id": mask_id, "mask_mobile": mask_mobile, "mask_name": mask_name, "to_year": to_year,
      "to_town": to_town, "clear": lambda v: v}


# ---------------------------------------------------------------- native Spark expressions

def spark_expr(column: str, treatment: str, dtype: str = "string"):
    """A Spark Column computing ``treatment`` of ``column`` (named ``column``), natively."""
    from pyspark.sql import functions as F

    c = F.col(f"`{column}`")
    if treatment == "clear":
        out = c
    elif treatment in ("mask_id", "mask_mobile"):
        head, tail = (6, 4) if treatment == "mask_id" else (3, 4)
        s = c.cast("string")
        n = F.length(s)
        out = F.when(s.isNull(), F.lit(None).cast("string")).when(
            n <= head + tail, F.expr(f"repeat('*', length(cast(`{column}` as string)))")
        ).otherwise(F.concat(F.substring(s, 1, head), F.expr(f"repeat('*', length(cast(`{column}` as string)) - {head + tail})"),
                             F.expr(f"substring(cast(`{column}` as string), -{tail}, {tail})")))
    elif treatment == "mask_name":
        s = c.cast("string")
        out = F.when(s.isNull(), F.lit(None).cast("string")).when(
            F.length(s) > 1, F.concat(F.substring(s, 1, 1), F.expr(f"repeat('*', length(cast(`{column}` as string)) - 1)"))
        ).otherwise(F.expr(f"repeat('*', length(cast(`{column}` as string)))"))
    elif treatment == "to_year":
        d = c if dtype in ("date", "timestamp") else F.expr(f"try_cast(substring(cast(`{column}` as string), 1, 10) as date)")
        out = F.year(d).cast("int")
    elif treatment == "to_town":
        aliases = sorted(TOWN_ALIASES, key=len, reverse=True)  # at one position, the longest name wins
        pattern = "(" + "|".join(aliases) + ")"
        hit = F.regexp_extract(c.cast("string"), pattern, 1)
        lookup = F.create_map(*[x for a in aliases for x in (F.lit(a), F.lit(TOWN_ALIASES[a]))])
        out = F.when(hit == "", F.lit(None).cast("string")).otherwise(F.element_at(lookup, hit))
    else:
        raise ValueError(f"unknown treatment '{treatment}'; known: {', '.join(TREATMENTS)}")
    return out.alias(column)


# ---------------------------------------------------------------- the plan of a view

@dataclass(frozen=True)
class Plan:
    """What one view shows: each visible column with its treatment, and the rows (row filter)."""
    table: str
    columns: tuple[tuple[str, str], ...]  # (column, treatment), in contract order
    row_filter: tuple[dict, ...] = ()  # [{column, op: "in", values: [...]}], AND-ed
    hidden: tuple[str, ...] = field(default=())  # columns of the table not shown (excluded or not granted)

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def treatment(self, column: str) -> str | None:
        return dict(self.columns).get(column)

    def digest(self) -> str:
        """A hash of everything that decides the view's content (besides the source version)."""
        doc = {"table": self.table, "columns": [list(c) for c in self.columns], "row_filter": list(self.row_filter)}
        return hashlib.sha256(json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def plan(tc: TableContract, grades: dict, columns: list[str] | None = None, clear: list[str] = (),
         row_filter: list[dict] = ()) -> Plan:
    """The treatment of every column of ``tc`` a reader sees, from its grade's protection (``grades``:
    grade -> clear | protect | exclude). ``columns`` (a grant's columns; None = the whole table) limit
    what is shown and are the only way a grade-4 (``exclude``) column is shown; ``clear`` columns (an
    approved grant with a legal basis) are shown unprotected."""
    shown, hidden = [], []
    for c in tc.columns:
        level = grades[c.grade or tc.grade]
        named = columns is not None and c.name in columns
        if columns is not None and not named:
            hidden.append(c.name)
            continue
        if c.name in clear:
            t = "clear"
        elif level == "clear":
            t = "clear"
        elif level == "protect" or (level == "exclude" and named):
            t = c.protect or "exclude"
        else:
            t = "exclude"
        if t == "exclude":
            hidden.append(c.name)
        else:
            shown.append((c.name, t))
    return Plan(table=tc.table, columns=tuple(shown), row_filter=tuple(row_filter), hidden=tuple(hidden))


def apply_plan(df, tc: TableContract, p: Plan):
    """``df`` (the published table) filtered by the plan's row filter, then reduced to its visible
    columns with their treatments: the view a reader gets."""
    from pyspark.sql import functions as F

    for cond in p.row_filter:
        df = df.where(F.col(f"`{cond['column']}`").cast("string").isin([str(v) for v in cond["values"]]))
    types = {c.name: c.type for c in tc.columns}
    return df.select(*[spark_expr(name, t, types[name]) for name, t in p.columns])


def apply_plan_py(rows: list[dict], p: Plan) -> list[dict]:
    """The same view of plain Python rows (the oracle)."""
    out = []
    for r in rows:
        if all(str(r.get(cond["column"])) in {str(v) for v in cond["values"]} and r.get(cond["column"]) is not None
               for cond in p.row_filter):
            out.append({name: PY[t](r.get(name)) for name, t in p.columns})
    return out
