"""JVM-free view of the lake with deltalake (delta-rs) + duckdb: what a department or a portal
script uses to read tables without Spark."""
from __future__ import annotations

import os

from lake.settings import Settings

ZONES = ("landing", "raw", "quarantine", "base", "topic", "share", "quality", "catalog")


def tables(settings: Settings) -> list[dict]:
    """Every table folder of the zones, with version, rows and last operation. A folder whose first
    commit was interrupted is listed as unfinished with the command that completes it, a damaged one
    with what is wrong (``lake.tables``): never a traceback."""
    from deltalake import DeltaTable

    from lake import tables as tables_mod

    out = []
    for zone in ZONES:
        folder = os.path.join(settings.root, zone)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isdir(path) or name.startswith("."):
                continue
            st = tables_mod.state(path, check_newest=True)
            if st.kind == "absent":
                continue
            if st.kind != "table":
                status = (f"unfinished (first commit interrupted; {tables_mod.completing_command(zone, name)} "
                          "completes it)" if st.kind == "unfinished" else f"damaged: {st.detail}")
                out.append({"table": f"{zone}/{name}", "version": None, "rows": None, "operation": "",
                            "status": status})
                continue
            try:
                dt = DeltaTable(path)
                hist = dt.history(1)
                rows = dt.to_pyarrow_dataset().count_rows()
            except Exception as e:  # a reader must not die on one bad table
                out.append({"table": f"{zone}/{name}", "version": None, "rows": None, "operation": "",
                            "status": f"unreadable: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"})
                continue
            out.append({"table": f"{zone}/{name}", "version": dt.version(), "rows": rows,
                        "operation": hist[0].get("operation", "") if hist else "", "status": "ok"})
    return out


def query(settings: Settings, zone: str, name: str, sql: str):
    """Run ``sql`` (referring to the table as ``t``) with duckdb over a Delta table read by delta-rs."""
    import duckdb
    from deltalake import DeltaTable

    from lake import tables as tables_mod
    from lake.files import InputError

    path = os.path.join(settings.root, zone, name)
    st = tables_mod.state(path)
    if st.kind != "table":
        raise InputError(f"{zone}/{name} is {st.kind}" + (f" ({st.detail})" if st.detail else "")
                         + (f"; {tables_mod.completing_command(zone, name)} completes it" if st.kind == "unfinished" else ""))
    t = DeltaTable(path).to_pyarrow_dataset()  # noqa: F841 (duckdb scans it)
    return duckdb.sql(sql.replace("{t}", "t")).fetchall()
