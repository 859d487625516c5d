"""JVM-free view of the lake with deltalake (delta-rs) + duckdb: what a department or a portal
script uses to read tables without Spark."""
from __future__ import annotations

import os

from lake.settings import Settings

ZONES = ("landing", "raw", "quarantine", "base", "topic", "share", "quality", "catalog")


def tables(settings: Settings) -> list[dict]:
    from deltalake import DeltaTable

    out = []
    for zone in ZONES:
        folder = os.path.join(settings.root, zone)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isdir(os.path.join(path, "_delta_log")):
                continue
            dt = DeltaTable(path)
            hist = dt.history(1)
            rows = dt.to_pyarrow_dataset().count_rows()
            out.append({"table": f"{zone}/{name}", "version": dt.version(), "rows": rows,
                        "operation": hist[0].get("operation", "") if hist else ""})
    return out


def query(settings: Settings, zone: str, name: str, sql: str):
    """Run ``sql`` (referring to the table as ``t``) with duckdb over a Delta table read by delta-rs."""
    import duckdb
    from deltalake import DeltaTable

    t = DeltaTable(os.path.join(settings.root, zone, name)).to_pyarrow_dataset()  # noqa: F841 (duckdb scans it)
    return duckdb.sql(sql.replace("{t}", "t")).fetchall()
