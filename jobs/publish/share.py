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


def publish_share(spark: SparkSession, settings: Settings) -> list[dict]:
    contracts = contracts_mod.load(settings.contracts_dir)
    out = []
    grants = []
    for tc in sorted(contracts.tables.values(), key=lambda t: t.table):
        if tc.share_type == "none":
            continue
        src = io.table_path(settings, tc.zone, tc.name)
        if not io.is_table(spark, src):
            raise contracts_mod.ContractError(f"{tc.table} is not published yet; build it before sharing")
        meta = io.last_metadata(spark, src)
        written = sync(spark, io.read(spark, src), io.table_path(settings, "share", share_name(tc)), list(tc.key),
                       {"source_table": tc.table, "source_version": io.version(spark, src), "as_of": meta.get("as_of")},
                       fp=meta.get("fingerprint"))
        for dept in (tc.share_grants if tc.share_type == "conditional" else ("*",)):
            grants.append((share_name(tc), tc.table, tc.share_type, dept, tc.share_condition, tc.grade))
        out.append({"table": f"share.{share_name(tc)}", "status": "published" if written else "unchanged"})
    gdf = spark.createDataFrame(grants, "share_table string, source_table string, share_type string, "
                                        "department string, share_condition string, grade int")
    io.overwrite_if_changed(gdf, io.table_path(settings, *GRANTS), {"kind": "grants"})
    for o in out:
        log.info("%s: %s", o["table"], o["status"])
    return out


def _differs(df, alias_t: str = "t", alias_s: str = "s") -> str:
    """SQL: a row of the target differs from the source's (null-safe; maps compared as JSON)."""
    parts = []
    for c, t in df.dtypes:
        if t.startswith("map"):
            parts.append(f"to_json({alias_t}.`{c}`) <=> to_json({alias_s}.`{c}`)")
        else:
            parts.append(f"{alias_t}.`{c}` <=> {alias_s}.`{c}`")
    return "NOT (" + " AND ".join(parts) + ")"


def sync(spark: SparkSession, df, path: str, key: list[str], meta: dict, fp: str | None = None) -> bool:
    """Make the share copy at ``path`` equal to ``df``; True if a version was written.

    A new copy is created with Delta's Change Data Feed on (``delta.enableChangeDataFeed``). Later
    releases are one MERGE on the key that updates only rows that differ, inserts new ones and deletes
    the ones gone, so the feed between two versions holds exactly the rows that changed: a department
    reads ``table_changes`` / ``readChangeFeed`` (or ``deltalake``'s ``load_cdf`` without a JVM) from
    its last version instead of the whole table. Unchanged content (fingerprint) writes nothing; a
    changed column set overwrites the copy."""
    from delta.tables import DeltaTable

    from quality.gates import _merge_meta

    fp = fp or io.fingerprint(df)
    current = io.last_metadata(spark, path)
    if current.get("fingerprint") == fp:
        return False
    commit = {**meta, "fingerprint": fp}
    if not io.is_table(spark, path) or sorted(io.read(spark, path).columns) != sorted(df.columns):
        io.overwrite(df, path, commit, properties={io.CDF_PROPERTY: "true"})
        return True
    dt = DeltaTable.forPath(spark, path)
    if dt.detail().collect()[0]["properties"].get(io.CDF_PROPERTY) != "true":
        spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('{io.CDF_PROPERTY}' = 'true')")
    cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in key)
    with _merge_meta(spark, commit):
        (dt.alias("t").merge(df.alias("s"), cond).whenMatchedUpdateAll(condition=_differs(df))
         .whenNotMatchedInsertAll().whenNotMatchedBySourceDelete().execute())
    return True


def changes(settings: Settings, table: str, department: str, since: int, until: int | None = None):
    """What changed in share table ``table`` after version ``since`` (up to ``until``), read without a
    JVM (deltalake's ``load_cdf``), as ``department`` (its grant is checked like ``read_share``):
    a pyarrow table with ``_change_type`` (insert, update_preimage, update_postimage, delete),
    ``_commit_version`` and ``_commit_timestamp``."""
    import pyarrow as pa
    from deltalake import DeltaTable

    check_grant(settings, table, department)
    dt = DeltaTable(io.table_path(settings, "share", table))
    end = dt.version() if until is None else until
    if since >= end:
        return None
    return pa.table(dt.load_cdf(starting_version=since + 1, ending_version=end).read_all())


def check_grant(settings: Settings, table: str, department: str) -> None:
    """Raise AccessDenied unless ``department`` may read share table ``table`` (read without a JVM)."""
    import os

    from deltalake import DeltaTable

    path = io.table_path(settings, *GRANTS)
    rows = []
    if os.path.isdir(os.path.join(path, "_delta_log")):
        g = DeltaTable(path).to_pyarrow_table().to_pylist()
        rows = [r for r in g if r["share_table"] == table]
    if not rows:
        raise AccessDenied(f"share table '{table}' does not exist or is not shared")
    if not any(r["department"] in ("*", department) for r in rows):
        allowed = ", ".join(sorted(r["department"] for r in rows))
        raise AccessDenied(f"{department} has no grant for {table} ({rows[0]['share_type']} sharing; granted to: {allowed})")


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
