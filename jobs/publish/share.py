"""The share zone (共享): versioned copies of the published base and topic tables for departments.

``share/<zone>__<name>`` is a Delta copy of each published base/topic table whose share type is not
"none"; Delta's versions are the table's release history. Departments never read these copies: they
read their views (``share/_views/``, masked and filtered per grant, ``sharing.views``) through the
Delta Sharing server or ``lake share read``, which ``share/_grants`` and ``sharing.access`` decide;
``lake share changes`` gives a department the rows that changed between two releases (the copies'
Change Data Feed, masked and filtered by the same plan as its view: ``sharing.reader.changes``).
"""
from __future__ import annotations

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io
from lake.contracts import TableContract
from lake.log import log
from lake.settings import Settings


def share_name(tc: TableContract) -> str:
    return f"{tc.zone}__{tc.name}"


def publish_share(spark: SparkSession, settings: Settings, tables: list[str] | None = None) -> list[dict]:
    """Copy every shared table (or only those of ``tables``: the DAG passes the ones built so far) to
    the share zone, with its grants."""
    contracts = contracts_mod.load(settings.contracts_dir)
    out = []
    for tc in sorted(contracts.tables.values(), key=lambda t: t.table):
        if tc.share_type == "none" or (tables is not None and tc.table not in tables):
            continue
        src = io.table_path(settings, tc.zone, tc.name)
        if not io.is_table(spark, src):
            raise contracts_mod.ContractError(f"{tc.table} is not published yet; build it before sharing")
        meta = io.last_metadata(spark, src)
        written = sync(spark, io.read(spark, src), io.table_path(settings, "share", share_name(tc)), list(tc.key),
                       {"source_table": tc.table, "source_version": io.version(spark, src), "as_of": meta.get("as_of")},
                       fp=meta.get("fingerprint"))
        out.append({"table": f"share.{share_name(tc)}", "status": "published" if written else "unchanged"})
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

