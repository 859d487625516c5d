"""JVM-free view of the lake with deltalake (delta-rs) + duckdb: what a department or a portal
script uses to read tables without Spark. Works on a local root and on an s3a:// root alike (the
folders are listed and the tables read through ``lake.io``: pyarrow's filesystem and delta-rs with
the settings' S3 endpoint and keys)."""
from __future__ import annotations

from lake import io
from lake.settings import Settings

ZONES = ("landing", "raw", "quarantine", "base", "topic", "share", "quality", "catalog")


def table_paths(settings: Settings) -> dict[str, str]:
    """``<zone>/<name>`` -> URI of every Delta table (a folder with at least one commit) of the zones."""
    out = {}
    for zone in ZONES:
        for uri in io.list_dirs(settings.path(zone)):
            if io.has_commit(uri):
                out[f"{zone}/{uri.rstrip('/').rsplit('/', 1)[1]}"] = uri
    return out


def tables(settings: Settings) -> list[dict]:
    out = []
    for name, uri in table_paths(settings).items():
        dt = io.delta_table(uri)
        hist = dt.history(1)
        rows = dt.to_pyarrow_dataset().count_rows()
        out.append({"table": name, "version": dt.version(), "rows": rows,
                    "operation": hist[0].get("operation", "") if hist else ""})
    return out


def query(settings: Settings, zone: str, name: str, sql: str):
    """Run ``sql`` (referring to the table as ``t``) with duckdb over a Delta table read by delta-rs."""
    import duckdb

    t = io.delta_table(settings.path(zone, name)).to_pyarrow_dataset()  # noqa: F841 (duckdb scans it)
    return duckdb.sql(sql.replace("{t}", "t")).fetchall()
