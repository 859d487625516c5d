"""The share zone (共享): versioned copies of the published base and topic tables for departments.

``share/<zone>__<name>`` is a Delta copy of each published base/topic table whose share type is not
"none"; Delta's versions are the table's release history. Departments never read these copies: they
read their views (``share/_views/``, masked and filtered per grant, ``sharing.views``) through the
Delta Sharing server or ``lake share read``, which ``share/_grants`` and ``sharing.access`` decide.
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
        written = io.overwrite_if_changed(
            io.read(spark, src), io.table_path(settings, "share", share_name(tc)),
            {"source_table": tc.table, "source_version": io.version(spark, src), "as_of": meta.get("as_of")},
            fp=meta.get("fingerprint"),
        )
        out.append({"table": f"share.{share_name(tc)}", "status": "published" if written else "unchanged"})
    for o in out:
        log.info("%s: %s", o["table"], o["status"])
    return out
