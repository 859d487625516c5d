"""The grantee views, materialised at publication with Spark (native expressions, ``sharing.masks``).

For every shared table ``share/<zone>__<name>`` (the published copy) this writes
- ``share/_views/_default/<zone>__<name>``: every column protected by its grade (what a department
  reads of an unconditional table, or of a conditional table its contract grants it);
- ``share/_views/<department code>/<zone>__<name>``: one per active grant, with the grant's columns,
  row filter and clear columns;
and ``share/_grants``: one row per view and reader (``*`` = every registered department) with the
view's plan digest, which the server checks before serving it. A view is rewritten only when its
source version or its plan changed (Delta overwrite: a reader keeps the whole version it started
with; old files are not vacuumed); the views of revoked or expired grants are deleted.
"""
from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.settings import Settings
from sharing import grants as grants_mod
from sharing import masks
from sharing import policy as policy_mod
from sharing.access import DEFAULT_VIEW, GRANTS, view_path

GRANTS_SCHEMA = ("view string, table_id string, share_table string, share_type string, grade int, "
                 "department_code string, basis string, grant_id string, columns array<string>, "
                 "treatments string, row_filter string, expires_at string, purpose string, plan_digest string, "
                 "source_version long")


def _write_view(spark: SparkSession, settings: Settings, tc, p: masks.Plan, view: str, meta: dict) -> str:
    src = io.table_path(settings, "share", f"{tc.zone}__{tc.name}")
    path = settings.path("share", view)
    version = io.version(spark, src)
    current = io.last_metadata(spark, path)
    if current.get("source_version") == version and current.get("plan_digest") == p.digest():
        return "unchanged"
    df = masks.apply_plan(io.read(spark, src), tc, p)
    io.overwrite(df, path, {**meta, "source_table": tc.table, "source_version": version, "plan_digest": p.digest()})
    return "published"


def publish_views(spark: SparkSession, settings: Settings, now: datetime | None = None) -> list[dict]:
    import json

    contracts = contracts_mod.load(settings.contracts_dir)
    policy = policy_mod.load(settings.contracts_dir)
    now = now or datetime.now(timezone.utc)
    active = grants_mod.active_grants(grants_mod.requests(settings), now)
    rows, out, keep = [], [], set()
    for tc in contracts.built_tables():
        if tc.share_type == "none":
            continue
        src = io.table_path(settings, "share", f"{tc.zone}__{tc.name}")
        if not io.is_table(spark, src):
            if not io.has_commit(io.path_of(settings, tc.table)):
                continue  # not built yet (no delivery from its sources): its views come with its first share
            raise contracts_mod.ContractError(f"share/{tc.zone}__{tc.name} is not published yet; publish the share "
                                              "zone first")
        version = io.version(spark, src)
        p = masks.plan(tc, policy.grades)
        view = view_path(DEFAULT_VIEW, tc.table)
        status = _write_view(spark, settings, tc, p, view, {"kind": "view", "basis": "default"})
        keep.add(view)
        out.append({"view": f"share/{view}", "status": status, "columns": len(p.columns)})
        readers = ["*"] if tc.share_type == "unconditional" else list(tc.share_grants)
        for d in readers:
            rows.append((view, tc.table, f"{tc.zone}__{tc.name}", tc.share_type, tc.grade, d,
                         "unconditional" if d == "*" else "contract", "", p.names,
                         json.dumps(dict(p.columns), ensure_ascii=False), "[]", None,
                         "无条件共享" if d == "*" else tc.share_condition, p.digest(), version))
        for (dept, table), g in sorted(active.items()):
            if table != tc.table:
                continue
            gp = masks.plan(tc, policy.grades, g.columns, g.clear_columns, g.row_filter)
            gview = view_path(dept, tc.table)
            status = _write_view(spark, settings, tc, gp, gview, {"kind": "view", "basis": "grant",
                                                                   "grant_id": g.request_id})
            keep.add(gview)
            out.append({"view": f"share/{gview}", "status": status, "columns": len(gp.columns),
                        "grant": g.request_id})
            rows.append((gview, tc.table, f"{tc.zone}__{tc.name}", tc.share_type, tc.grade, dept, "grant",
                         g.request_id, gp.names, json.dumps(dict(gp.columns), ensure_ascii=False),
                         json.dumps(g.row_filter, ensure_ascii=False), g.expires_at.isoformat(),
                         g.purpose, gp.digest(), version))
    for folder in _dirs(settings):
        for table_dir in _subdirs(folder):
            rel = "_views/" + table_dir.split("/_views/", 1)[1]
            if rel not in keep:
                io.delete_dir(table_dir)
                out.append({"view": f"share/{rel}", "status": "deleted (grant revoked or expired)"})
    gdf = spark.createDataFrame(rows, GRANTS_SCHEMA)
    io.overwrite_if_changed(gdf, io.table_path(settings, *GRANTS), {"kind": "grants"})
    for o in out:
        log.info("%s: %s", o["view"], o["status"])
    return out


def _dirs(settings: Settings) -> list[str]:
    return _subdirs(settings.path("share", "_views"))


def _subdirs(uri: str) -> list[str]:
    import pyarrow.fs as pafs

    fs, path = io.filesystem(uri)
    info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    prefix = uri[: len(uri) - len(path)] if uri.endswith(path) else ""
    return sorted(prefix + i.path for i in info if i.type == pafs.FileType.Directory)
