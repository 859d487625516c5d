"""JVM-free view of the lake with deltalake (delta-rs) + duckdb: what a department or a portal
script uses to read tables without Spark. Works on a local root and on an s3a:// root alike: the
zone folders are listed and the tables read through ``lake.io`` (pyarrow's filesystem and delta-rs
with the settings' S3 endpoint and keys)."""
from __future__ import annotations

from lake import io
from lake.settings import Settings

ZONES = ("landing", "raw", "quarantine", "base", "topic", "share", "quality", "catalog")


def _state(uri: str, check_newest: bool = False):
    """``lake.tables.state`` of a local folder; on an object store a folder is a table when its log
    holds a commit (a commit there is one PUT, visible whole or not at all), else absent."""
    from lake import tables as tables_mod

    if "://" not in uri or uri.startswith("file://"):
        return tables_mod.state(uri, check_newest=check_newest)
    return tables_mod.TableState("table") if io.has_commit(uri) else tables_mod.TableState("absent")


def table_paths(settings: Settings) -> dict[str, str]:
    """``<zone>/<name>`` -> URI of every finished Delta table of the zones."""
    out = {}
    for zone in ZONES:
        for uri in io.list_dirs(settings.path(zone)):
            name = uri.rstrip("/").rsplit("/", 1)[1]
            if not name.startswith(".") and _state(uri).kind == "table":
                out[f"{zone}/{name}"] = uri
    return out


def tables(settings: Settings) -> list[dict]:
    """Every table folder of the zones, with version, rows and last operation. A folder whose first
    commit was interrupted is listed as unfinished with the command that completes it, a damaged one
    with what is wrong (``lake.tables``): never a traceback."""
    from lake import tables as tables_mod

    out = []
    for zone in ZONES:
        for uri in io.list_dirs(settings.path(zone)):
            name = uri.rstrip("/").rsplit("/", 1)[1]
            if name.startswith("."):
                continue
            st = _state(uri, check_newest=True)
            if st.kind == "absent":
                continue
            if st.kind != "table":
                status = (f"unfinished (first commit interrupted; {tables_mod.completing_command(zone, name)} "
                          "completes it)" if st.kind == "unfinished" else f"damaged: {st.detail}")
                out.append({"table": f"{zone}/{name}", "version": None, "rows": None, "operation": "",
                            "status": status})
                continue
            try:
                dt = io.delta_table(uri)
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

    from lake import tables as tables_mod
    from lake.files import InputError

    path = settings.path(zone, name)
    st = _state(path)
    if st.kind != "table":
        raise InputError(f"{zone}/{name} is {st.kind}" + (f" ({st.detail})" if st.detail else "")
                         + (f"; {tables_mod.completing_command(zone, name)} completes it" if st.kind == "unfinished" else ""))
    t = io.delta_table(path).to_pyarrow_dataset()  # noqa: F841 (duckdb scans it)
    return duckdb.sql(sql.replace("{t}", "t")).fetchall()
