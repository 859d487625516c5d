"""``lake query --as-of DATE "SQL"``: read-only SQL over the base and topic tables as they stood on a
business date, without a JVM (deltalake reads the Delta tables, DuckDB runs the SQL).

Every table is a view named ``<zone>.<name>`` (``base.population``, ``topic.population_by_town_age_band``):

* a base table with a history table next to it (``base/<name>_history``: validity periods by business
  date, SCD type 2) is the history's rows valid on the date: ``valid_from <= DATE`` and
  (``valid_to`` null or ``> DATE``); the history itself is ``<zone>.<name>_history``;
* every other table is the newest Delta version whose commit says it was built for a date on or
  before DATE (the ``as_of`` of its commit metadata): Delta time travel. A table not built yet on that
  date is empty.

Only SELECT statements are run (anything else, such as COPY, ATTACH or INSTALL, is refused): the views
read the lake, nothing writes to it.
"""
from __future__ import annotations

import json
import os
from datetime import date

from lake.contracts import ContractError
from lake.settings import Settings

ZONES = ("base", "topic")


class QueryError(ValueError):
    pass


def _version_as_of(path: str, day: str) -> int | None:
    """The newest version of the Delta table at ``path`` whose commit metadata ``as_of`` is on or
    before ``day`` (commits without one, such as a history table's, count by their own metadata or
    not at all)."""
    from lake import io

    best = None
    for h in io.delta_table(path).history():
        try:
            meta = json.loads(h.get("userMetadata") or "{}")
        except ValueError:
            continue
        a = meta.get("as_of")
        if a and str(a) <= day and (best is None or h["version"] > best):
            best = h["version"]
    return best


def connect(settings: Settings, as_of: str):
    """A DuckDB connection with one view per base and topic table as of ``as_of``."""
    import duckdb

    from lake import io

    day = date.fromisoformat(as_of).isoformat()
    con = duckdb.connect()
    names = []
    for zone in ZONES:
        folder = settings.path(zone)
        tables = [u.rsplit("/", 1)[1] for u in io.list_dirs(folder) if io.has_commit(u)]
        if not tables:
            continue
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {zone}")
        for name in tables:
            path = f"{folder}/{name}"
            arrow_name = f"_{zone}__{name}"
            if f"{name}_history" in tables:
                hist = io.delta_table(f"{folder}/{name}_history").to_pyarrow_dataset()
                con.register(arrow_name, hist)
                cols = ", ".join(f'"{c}"' for c in hist.schema.names if c not in ("valid_from", "valid_to"))
                con.execute(f"CREATE VIEW {zone}.{name} AS SELECT {cols} FROM {arrow_name} "
                            f"WHERE valid_from <= DATE '{day}' AND (valid_to IS NULL OR valid_to > DATE '{day}')")
            elif name.endswith("_history"):
                con.register(arrow_name, io.delta_table(path).to_pyarrow_dataset())
                con.execute(f"CREATE VIEW {zone}.{name} AS SELECT * FROM {arrow_name}")
            else:
                v = _version_as_of(path, day)
                dt = io.delta_table(path, version=v) if v is not None else io.delta_table(path)
                con.register(arrow_name, dt.to_pyarrow_dataset())
                where = "" if v is not None else " WHERE false"  # not built yet on that date
                con.execute(f"CREATE VIEW {zone}.{name} AS SELECT * FROM {arrow_name}{where}")
            names.append(f"{zone}.{name}")
    return con, names


def query(settings: Settings, as_of: str, sql: str):
    """(column names, rows) of a read-only ``sql`` over the base and topic tables as of ``as_of``."""
    import duckdb

    try:
        date.fromisoformat(as_of)
    except ValueError:
        raise QueryError(f"--as-of must be a date YYYY-MM-DD, got '{as_of}'") from None
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"not valid SQL: {e}") from None
    if not statements:
        raise QueryError("no SQL statement given")
    bad = [s.type.name for s in statements if s.type != duckdb.StatementType.SELECT]
    if bad or len(statements) != 1:
        raise QueryError(f"only one SELECT statement is allowed (read-only); got {', '.join(bad) or len(statements)}")
    if "://" not in settings.root and not os.path.isdir(settings.root):
        raise ContractError(f"lake root {settings.root} does not exist")
    con, _ = connect(settings, as_of)
    try:
        cur = con.execute(sql)
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()
    except duckdb.Error as e:
        raise QueryError(str(e).splitlines()[0]) from None
    finally:
        con.close()
