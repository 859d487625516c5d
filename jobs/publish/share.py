"""The share zone (共享): versioned copies of the published base and topic tables for departments.

``share/<zone>__<name>`` is a Delta copy of each published base/topic table whose share type is not
"none"; Delta's versions are the table's release history. ``share/_grants`` lists which departments
may read which table (generated from the contracts) and ``lake share read`` enforces it.
"""
from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake.contracts import TableContract
from lake.log import log
from lake.settings import Settings

GRANTS = ("share", "_grants")


def share_name(tc: TableContract) -> str:
    return f"{tc.zone}__{tc.name}"


def publish_share(spark: SparkSession, settings: Settings, tables: list[str] | None = None) -> list[dict]:
    """Copy every shared table (or only those of ``tables``: the DAG passes the ones built so far) to
    the share zone, with its grants."""
    contracts = contracts_mod.load(settings.contracts_dir)
    out = []
    grants = []
    for tc in sorted(contracts.tables.values(), key=lambda t: t.table):
        if tc.share_type == "none" or (tables is not None and tc.table not in tables):
            continue
        src = io.table_path(settings, tc.zone, tc.name)
        if not io.is_table(spark, src):
            raise contracts_mod.ContractError(f"{tc.table} is not published yet; build it before sharing")
        meta = io.last_metadata(spark, src)
        written = io.overwrite_if_changed(
            io.read(spark, src), io.table_path(settings, "share", share_name(tc)),
            {"source_table": tc.table, "source_version": io.version(spark, src), "as_of": meta.get("as_of")},
            fp=meta.get("fingerprint"),
        )
        for dept in (tc.share_grants if tc.share_type == "conditional" else ("*",)):
            grants.append((share_name(tc), tc.table, tc.share_type, dept, tc.share_condition, tc.grade))
        out.append({"table": f"share.{share_name(tc)}", "status": "published" if written else "unchanged"})
    gdf = spark.createDataFrame(grants, "share_table string, source_table string, share_type string, "
                                        "department string, share_condition string, grade int")
    io.overwrite_if_changed(gdf, io.table_path(settings, *GRANTS), {"kind": "grants"})
    for o in out:
        log.info("%s: %s", o["table"], o["status"])
    return out


class AccessDenied(PermissionError):
    pass


def read_share(spark: SparkSession, settings: Settings, table: str, department: str):
    """Read a share-zone table as ``department``; raises AccessDenied without a grant."""
    path = io.table_path(settings, *GRANTS)
    rows = io.read(spark, path).where(F.col("share_table") == table).collect() if io.is_table(spark, path) else []
    if not rows:
        raise AccessDenied(f"share table '{table}' does not exist or is not shared")
    if not any(r["department"] in ("*", department) for r in rows):
        allowed = ", ".join(sorted(r["department"] for r in rows))
        raise AccessDenied(f"{department} has no grant for {table} ({rows[0]['share_type']} sharing; granted to: {allowed})")
    return io.read(spark, io.table_path(settings, "share", table))
