"""Quality gates with Great Expectations (write-audit-publish).

Suites are generated from the table contracts (keys not null and unique, the columns the contract
declares, plus the contract's own ``expectations``), never written by hand. ``publish`` builds the
candidate once and holds it (memory, spilling to disk); only if its content fingerprint changed it
validates exactly those rows with GX and overwrites the published table when every expectation passed
(a rejected candidate is written to ``_staging/<zone>/<name>`` for inspection). A failed gate raises
``GateFailed`` naming each failed expectation and its unexpected row count, and leaves the published
version untouched. Results go to ``quality/validations`` (Delta) and GX Data Docs (HTML).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import io, locks, tables
from lake.contracts import TableContract
from lake.log import log
from lake.settings import Settings

VALIDATIONS = ("quality", "validations")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


class GateFailed(RuntimeError):
    def __init__(self, table: str, failures: list[dict]):
        self.table = table
        self.failures = failures
        lines = [
            f"  - {f['expectation']}({f['column'] or 'table'}): {f['unexpected_count']} of {f['element_count']} rows unexpected"
            + (f", e.g. {', '.join(repr(v) for v in f['examples'][:3])}" if f.get("examples") else "")
            if f["unexpected_count"] is not None else f"  - {f['expectation']}({f['column'] or 'table'}): observed {f['observed']}"
            for f in failures
        ]
        super().__init__(f"quality gate failed for {table}; not published:\n" + "\n".join(lines))


@dataclass
class PublishResult:
    table: str
    status: str  # published | unchanged
    rows: int
    fingerprint: str
    failures: list = field(default_factory=list)


def expectation_specs(tc: TableContract, meta_columns: list[str] = ()) -> list[dict]:
    """The suite as plain dicts: generated key/column checks first, then the contract's own."""
    specs = [{"type": "columns_match", "columns": sorted([*tc.column_names, *meta_columns])}]
    for k in tc.key:
        specs.append({"type": "not_null", "column": k})
    if len(tc.key) == 1:
        specs.append({"type": "unique", "column": tc.key[0]})
    else:
        specs.append({"type": "compound_unique", "columns": list(tc.key)})
    specs.extend(dict(e) for e in tc.expectations)
    return specs


def suite_hash(specs: list[dict]) -> str:
    return hashlib.sha256(json.dumps(specs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _gx_expectation(spec: dict):
    import great_expectations.expectations as gxe

    t = spec["type"]
    kw = {"mostly": spec["mostly"]} if "mostly" in spec else {}
    if "when" in spec:  # only rows where a column has a value: {column: c, equals: v} (GX row condition)
        from great_expectations.expectations.row_conditions import Column as GxColumn

        kw["row_condition"] = GxColumn(spec["when"]["column"]) == spec["when"]["equals"]
    if t == "columns_match":
        return gxe.ExpectTableColumnsToMatchSet(column_set=spec["columns"], exact_match=True)
    if t == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=spec["column"], **kw)
    if t == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=spec["column"], **kw)
    if t == "compound_unique":
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=spec["columns"], **kw)
    if t == "regex":
        return gxe.ExpectColumnValuesToMatchRegex(column=spec["column"], regex=spec["regex"], **kw)
    if t == "not_regex":
        return gxe.ExpectColumnValuesToNotMatchRegex(column=spec["column"], regex=spec["regex"], **kw)
    if t == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=spec["column"], value_set=spec["values"], **kw)
    if t == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=spec["column"], min_value=spec.get("min"),
                                                 max_value=spec.get("max"), **kw)
    if t == "row_count_between":
        return gxe.ExpectTableRowCountToBeBetween(min_value=spec.get("min"), max_value=spec.get("max"))
    raise ValueError(f"unknown expectation type '{t}' (known: columns_match, not_null, unique, compound_unique, "
                     "regex, not_regex, in_set, between, row_count_between)")


def gx_dir(settings: Settings) -> str:
    """GX keeps its project (suites, results, Data Docs) on a local path: ``<root>/quality/gx`` when
    the root is local; for an object-store root a local working copy (LAKE_GX_DIR, default
    ``.cache/gx/<hash of the root>``), pulled from and mirrored to ``<root>/quality/gx``."""
    if "://" in settings.root:
        from lake.settings import REPO

        key = hashlib.sha256(settings.root.encode()).hexdigest()[:12]
        return os.environ.get("LAKE_GX_DIR") or str(REPO / ".cache" / "gx" / key)
    return os.path.join(settings.root, "quality", "gx")


def docs_index(settings: Settings) -> str:
    return os.path.join(gx_dir(settings), "gx", "uncommitted", "data_docs", "local_site", "index.html")


_contexts: dict = {}
_mirrored: dict[str, dict[str, tuple]] = {}  # local GX folder -> {relative path: (size, mtime)} as pushed


def _local_files(root: str) -> dict[str, tuple]:
    out = {}
    for folder, _, files in os.walk(root):
        for n in files:
            p = os.path.join(folder, n)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def _pull(settings: Settings, root: str) -> None:
    """An object-store root: copy ``<root>/quality/gx`` into the local working copy (the suites,
    results and Data Docs of earlier runs, written by other processes)."""
    import shutil

    import pyarrow.fs as pafs

    if not os.environ.get("LAKE_GX_DIR"):  # the default working copy: the object store is the truth
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root, exist_ok=True)
    fs, remote = io.filesystem(settings.path("quality", "gx"))
    for i in fs.get_file_info(pafs.FileSelector(remote, allow_not_found=True, recursive=True)):
        if i.type != pafs.FileType.File:
            continue
        local = os.path.join(root, i.path[len(remote):].lstrip("/"))
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with fs.open_input_stream(i.path) as f, open(local, "wb") as out:
            out.write(f.read())
    _mirrored[root] = _local_files(root)


def _push(settings: Settings) -> None:
    """An object-store root: upload what GX wrote or changed in the working copy to ``<root>/quality/gx``."""
    if "://" not in settings.root:
        return
    root = gx_dir(settings)
    now = _local_files(root)
    before = _mirrored.get(root, {})
    for rel, stamp in sorted(now.items()):
        if before.get(rel) != stamp:
            io.upload(os.path.join(root, rel), settings.path("quality", "gx", *rel.split(os.sep)))
    _mirrored[root] = now


def _context(settings: Settings):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    root = gx_dir(settings)
    if root not in _contexts:
        os.makedirs(root, exist_ok=True)
        if "://" in settings.root:
            _pull(settings, root)
        ctx = gx.get_context(mode="file", project_root_dir=root)
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        _contexts[root] = ctx
    return _contexts[root]


def validate(spark: SparkSession, settings: Settings, name: str, df: DataFrame, specs: list[dict],
             run_id: str) -> list[dict]:
    """Run the GX suite ``specs`` on ``df``; record results; return the failed expectations.

    The suite runs first without sample values: GX looks for up to N unexpected values of every
    expectation with a scan of its own, even when it found none (13 of base.population's 20 seconds).
    Only when something fails does it run again with samples, which the failure names and the Data
    Docs page of that run shows."""
    rows = _run_suite(settings, name, df, specs, run_id, samples=0)
    if not all(r["success"] for r in rows):
        rows = _run_suite(settings, name, df, specs, run_id, samples=SAMPLES)
    _push(settings)
    out = io.arrow_rows([{k: v for k, v in r.items() if k != "examples"} for r in rows], (
        "run_id string, table string, expectation string, column string, kwargs string, success boolean, "
        "unexpected_count long, element_count long, observed string"))
    io.replace_where_rows(spark, out, io.table_path(settings, *VALIDATIONS), f"run_id = '{run_id}' AND `table` = '{name}'")
    return [r for r in rows if not r["success"]]


SAMPLES = 20  # unexpected values kept per failed expectation (GX's partial_unexpected_list)


def _run_suite(settings: Settings, name: str, df: DataFrame, specs: list[dict], run_id: str,
               samples: int) -> list[dict]:
    import great_expectations as gx

    ctx = _context(settings)
    ds = ctx.data_sources.add_or_update_spark("lake")
    names = [a.name for a in ds.assets]
    asset = ds.get_asset(name) if name in names else ds.add_dataframe_asset(name)
    bd = asset.batch_definitions[0] if asset.batch_definitions else asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=name, expectations=[_gx_expectation(s) for s in specs])
    suite = ctx.suites.add_or_update(suite)
    vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(data=bd, suite=suite, name=name))
    cp = ctx.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[vd],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        # LIMIT 0 is optimised away by Spark: counts without the per-expectation sample scans
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": samples},
    ))
    result = cp.run(batch_parameters={"dataframe": df}, run_id=gx.core.run_identifier.RunIdentifier(run_name=run_id))
    rows = []
    for vr in result.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            res = r.result or {}
            rows.append({
                "run_id": run_id, "table": name, "expectation": cfg.type,
                "column": cfg.kwargs.get("column") or ",".join(cfg.kwargs.get("column_list") or []) or None,
                "kwargs": json.dumps({k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)},
                                     ensure_ascii=False, sort_keys=True, default=str),
                "success": bool(r.success),
                "unexpected_count": res.get("unexpected_count"),
                "element_count": res.get("element_count"),
                "observed": None if res.get("observed_value") is None else str(res.get("observed_value"))[:500],
                "examples": list(res.get("partial_unexpected_list") or []),
            })
    return rows


class StaleSources(GateFailed):
    """Publication blocked because sources of the table are stale (policy: block_publication)."""

    def __init__(self, table: str, stale: list):
        self.table = table
        self.stale = stale
        self.failures = [{"expectation": "timeliness.cycle", "column": d.source, "unexpected_count": None,
                          "element_count": None, "observed": d.last_delivery} for d in stale]
        lines = [f"  - {d.source} ({d.department}): "
                 + (f"last delivery {d.last_delivery}, " if d.last_delivery else "never delivered, ")
                 + f"{d.update_cycle} cycle + grace = {d.allowed_days} days"
                 + (f", {d.age_days} days old" if d.age_days is not None else "")
                 for d in stale]
        RuntimeError.__init__(self, f"quality gate failed for {table}; not published: stale source(s) "
                         "(contracts/policy.yaml timeliness.block_publication is true):\n" + "\n".join(lines))


def timeliness_gate(spark: SparkSession, settings: Settings, tc: TableContract, as_of: str | None) -> None:
    """When contracts/policy.yaml says ``timeliness.block_publication: true``, refuse to publish a
    table one of whose sources is stale on ``as_of`` (raises ``StaleSources``, a ``GateFailed``,
    naming each source and its last delivery)."""
    from quality import freshness

    stale = freshness.blocking_staleness(spark, settings, tc, as_of)
    if stale:
        raise StaleSources(tc.table, stale)


class HistoryChecksFailed(GateFailed):
    """Publication blocked because the newest delivery of a source failed a check against its
    history (policy: history.block_publication)."""

    def __init__(self, table: str, failed: list[dict]):
        self.table = table
        self.failed = failed
        self.failures = [{"expectation": f"history.{f['metric']}", "column": f["column"] or f["source"],
                          "unexpected_count": None, "element_count": None, "observed": f["observed"]} for f in failed]
        lines = [f"  - {f['source']} batch {f['batch_id']} ({f['as_of']}): {f['message']}" for f in failed]
        RuntimeError.__init__(self, f"quality gate failed for {table}; not published: the newest delivery of a source "
                              "is out of its history bounds (contracts/policy.yaml history.block_publication is "
                              "true):\n" + "\n".join(lines))


def history_gate(spark: SparkSession, settings: Settings, tc: TableContract) -> None:
    """When the policy says ``history.block_publication: true``, refuse to publish a table one of
    whose sources' newest delivery failed a check against the last deliveries (``HistoryChecksFailed``)."""
    from lake import policy as policy_mod
    from quality import history_checks

    if not policy_mod.load(settings.contracts_dir).history_block_publication:
        return
    sources = [u.split(".", 1)[1] for u in tc.upstream if u.startswith("raw.")]
    failed = history_checks.blocking(spark, settings, sources)
    if failed:
        raise HistoryChecksFailed(tc.table, failed)


def publish(spark: SparkSession, settings: Settings, tc: TableContract, candidate: DataFrame,
            meta: dict) -> PublishResult:
    """Write-audit-publish ``candidate`` as ``<zone>/<name>``; idempotent (no new version when the
    content and the suite are unchanged)."""
    path = io.table_path(settings, tc.zone, tc.name)
    timeliness_gate(spark, settings, tc, meta.get("as_of"))
    history_gate(spark, settings, tc)
    meta_columns = [c for c in candidate.columns if c.startswith("_")]
    specs = expectation_specs(tc, meta_columns)
    s_hash = suite_hash(specs)
    # computed once: for the fingerprint, the audit and the write
    from pyspark import StorageLevel
    candidate = candidate.select(*tc.column_names, *meta_columns).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _publish(spark, settings, tc, candidate, meta, path, specs, s_hash)
    finally:
        candidate.unpersist()


def _publish(spark, settings, tc, candidate, meta, path, specs, s_hash) -> PublishResult:
    t0 = time.time()
    fp = io.fingerprint(candidate)
    log.info("%s: fingerprint in %.1fs", tc.table, time.time() - t0)
    current = io.last_metadata(spark, path)
    rows = int(fp.split(":")[0])
    if current.get("fingerprint") == fp and current.get("suite_hash") == s_hash:
        log.info("%s: unchanged (%d rows); nothing published", tc.table, rows)
        return PublishResult(tc.table, "unchanged", rows, fp)
    # audit the candidate as it is held in memory (the exact rows that will be written), then publish
    # it in one write; a rejected candidate is written to _staging for inspection instead
    run_id = f"{tc.table}@{fp.split(':')[1][:12]}-{s_hash[:8]}"
    t0 = time.time()
    failures = validate(spark, settings, tc.table, candidate, specs, run_id)
    t1 = time.time()
    if failures:
        io.overwrite(candidate, settings.path("_staging", tc.zone, tc.name), {"fingerprint": fp, "gate_run_id": run_id})
        raise GateFailed(tc.table, failures)
    # Change Data Feed: the topics built from a base table read only what a merge changed
    io.overwrite(candidate, path, {**meta, "fingerprint": fp, "suite_hash": s_hash, "gate_run_id": run_id},
                 stats_columns=list(tc.key), properties={io.CDF_PROPERTY: "true"})
    log.info("%s: gate passed (%d expectations), published %d rows (validated %.1fs, written %.1fs)",
             tc.table, len(specs), rows, t1 - t0, time.time() - t1)
    return PublishResult(tc.table, "published", rows, fp)


def _sql_literal(v) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def partition_condition(partition_col: str, values) -> str:
    """``partition_col IN (...)`` for a replaceWhere (values as SQL string literals, cast by Spark)."""
    if not values:
        raise ValueError(f"no {partition_col} values to replace")
    return f"`{partition_col}` IN ({', '.join(_sql_literal(v) for v in sorted(set(map(str, values))))})"


def publish_partition(spark: SparkSession, settings: Settings, tc: TableContract, candidate: DataFrame,
                      partition_col: str, values, meta: dict, partitioned: bool = False) -> PublishResult:
    """Write-audit-publish only the partitions ``partition_col IN values`` of ``<zone>/<name>``.

    The candidate holds exactly the new rows of those partitions (rows with other values are an
    error: they would be silently dropped by the replace). It is validated with the contract's GX suite
    and written with ``replaceWhere``, so every other partition keeps its rows; a partition value
    without candidate rows is emptied. Idempotent: when the content of those partitions (fingerprint of
    the rows now stored there) and the suite are unchanged, nothing is written and no Delta version is
    added. ``partition_col`` must be part of the table key (keys are then unique table-wide when they
    are unique in every partition). ``partitioned`` makes a new table physically partitioned by it."""
    if partition_col not in tc.key:
        raise ValueError(f"{tc.table}: partition column '{partition_col}' must be part of the key {list(tc.key)}")
    values = sorted({str(v) for v in values})
    path = io.table_path(settings, tc.zone, tc.name)
    timeliness_gate(spark, settings, tc, meta.get("as_of"))
    history_gate(spark, settings, tc)
    meta_columns = [c for c in candidate.columns if c.startswith("_")]
    specs = expectation_specs(tc, meta_columns)
    s_hash = suite_hash(specs)
    cond = partition_condition(partition_col, values)
    from pyspark import StorageLevel
    candidate = candidate.select(*tc.column_names, *meta_columns).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        outside = candidate.where(~F.expr(cond)).select(partition_col).distinct().limit(5).collect()
        if outside:
            raise ValueError(f"{tc.table}: candidate has rows with {partition_col} "
                             f"{[str(r[0]) for r in outside]} outside the partitions to publish {values}")
        fp = io.fingerprint(candidate)
        rows = int(fp.split(":")[0])
        exists = io.is_table(spark, path)
        if exists:
            current = io.read(spark, path)
            if sorted(current.columns) == sorted(candidate.columns):
                current_fp = io.fingerprint(current.where(F.expr(cond)).select(*candidate.columns))
                if current_fp == fp and io.last_metadata(spark, path).get("suite_hash") == s_hash:
                    log.info("%s: %s unchanged (%d rows); nothing published", tc.table, cond, rows)
                    return PublishResult(tc.table, "unchanged", rows, fp)
        part_hash = hashlib.sha256(cond.encode()).hexdigest()[:8]
        run_id = f"{tc.table}@{part_hash}-{fp.split(':')[1][:12]}-{s_hash[:8]}"
        failures = validate(spark, settings, tc.table, candidate, specs, run_id)
        if failures:
            io.overwrite(candidate, settings.path("_staging", tc.zone, tc.name),
                         {"fingerprint": fp, "gate_run_id": run_id, "partitions": values})
            raise GateFailed(tc.table, failures)
        commit = {**meta, "partitions": values, "partition_fingerprint": fp, "suite_hash": s_hash,
                  "gate_run_id": run_id}
        w = candidate.write.format("delta").option("userMetadata", json.dumps(commit, ensure_ascii=False,
                                                                               sort_keys=True, default=str))
        with locks.table_lock(path):  # one writer per table (lake.locks); "exists" again under the lease
            tables.prepare_for_write(path)
            if io.is_table(spark, path):
                w.mode("overwrite").option("replaceWhere", cond).save(path)
            else:
                (w.partitionBy(partition_col) if partitioned else w).mode("overwrite").save(path)
        log.info("%s: gate passed (%d expectations), published %d rows for %s", tc.table, len(specs), rows, cond)
        return PublishResult(tc.table, "published", rows, fp)
    finally:
        candidate.unpersist()


TABLE_LEVEL = ("row_count_between",)  # expectations about the whole table, not the rows a merge writes


def _merge_meta(spark: SparkSession, meta: dict):
    """Commit metadata for a MERGE (the DeltaTable API has no userMetadata option): set on the
    session for the one commit."""
    from contextlib import contextmanager

    @contextmanager
    def cm():
        key = "spark.databricks.delta.commitInfo.userMetadata"
        spark.conf.set(key, json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str))
        try:
            yield
        finally:
            spark.conf.unset(key)
    return cm()


def publish_merge(spark: SparkSession, settings: Settings, tc: TableContract, upserts: DataFrame,
                  deleted: DataFrame, meta: dict, path: str | None = None, gate: bool = True) -> PublishResult:
    """Write-audit-publish a change of some entities of a published table by a Delta MERGE on its key.

    ``upserts`` are the new rows of the entities that (still) exist, ``deleted`` the keys (the key
    columns) of those that no longer do. Rows equal to the stored ones are left alone; the changed
    and new rows are validated with the contract's GX suite (expectations about the whole table
    aside) and then merged in one commit: matched and changed rows updated, new rows inserted, deleted
    keys removed. The content fingerprint in the commit metadata is kept exact without reading the
    whole table (it is a count and a sum of row hashes: the old rows' part is taken out, the new
    rows' put in), so it equals the fingerprint of a full rebuild with the same rows. Nothing is
    written when nothing changed."""
    from delta.tables import DeltaTable
    from pyspark import StorageLevel

    path = path or io.table_path(settings, tc.zone, tc.name)
    if gate:
        timeliness_gate(spark, settings, tc, meta.get("as_of"))
        history_gate(spark, settings, tc)
    keys = list(tc.key)
    meta_columns = [c for c in upserts.columns if c.startswith("_")]
    cols = [*tc.column_names, *meta_columns] if gate else list(upserts.columns)
    specs = expectation_specs(tc, meta_columns) if gate else []
    s_hash = suite_hash(specs) if gate else ""
    current = io.last_metadata(spark, path)
    upserts = upserts.select(*cols)
    new_h = upserts.select(*keys, io.row_hash(upserts).alias("_h"))
    target = io.read(spark, path).select(*cols)
    affected = new_h.select(*keys).unionByName(deleted.select(*keys)).distinct()
    old = target.join(affected, keys, "left_semi")
    old_h = old.select(*keys, io.row_hash(old).alias("_oh")).persist(StorageLevel.MEMORY_AND_DISK)
    new_h = new_h.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        changed = new_h.join(old_h, keys, "left").where(F.col("_oh").isNull() | (F.col("_oh") != F.col("_h")))
        upd = upserts.join(changed.select(*keys), keys, "left_semi").persist(StorageLevel.MEMORY_AND_DISK)
        gone = old_h.join(deleted.select(*keys).distinct(), keys, "left_semi").join(new_h.select(*keys), keys, "left_anti")
        out_old = old_h.join(changed.select(*keys), keys, "left_semi").unionByName(gone)
        agg = out_old.agg(F.count("*").alias("n"), F.sum(F.col("_oh").cast("decimal(38,0)")).alias("s")).collect()[0]
        n_out, s_out = int(agg["n"]), int(agg["s"] or 0)
        n_in, s_in = io.hash_sum(upd)
        n_gone = gone.count()
        if n_in == 0 and n_gone == 0:
            rows = int(str(current.get("fingerprint", "0:0:")).split(":")[0])
            log.info("%s: merge changes nothing; nothing published", tc.table)
            return PublishResult(tc.table, "unchanged", rows, current.get("fingerprint", ""))
        n0, s0 = (int(x) for x in str(current["fingerprint"]).split(":")[:2])
        fp = f"{n0 - n_out + n_in}:{s0 - s_out + s_in}:{','.join(sorted(cols))}"
        run_id = f"{tc.table}@merge-{fp.split(':')[1][:12]}-{s_hash[:8]}"
        if gate and n_in:
            row_specs = [sp for sp in specs if sp["type"] not in TABLE_LEVEL]
            failures = validate(spark, settings, tc.table, upd, row_specs, run_id)
            if failures:
                io.overwrite(upd, settings.path("_staging", tc.zone, tc.name), {"fingerprint": fp, "gate_run_id": run_id})
                raise GateFailed(tc.table, failures)
        # a removed row needs only its key (the delete clause reads nothing else): no second scan of the table
        removed = gone.select(*keys, *[F.lit(None).cast(target.schema[c].dataType).alias(c) for c in cols if c not in keys])
        src = upd.withColumn("_del", F.lit(False)).unionByName(removed.select(*cols).withColumn("_del", F.lit(True)))
        cond = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        assign = {c: f"s.`{c}`" for c in cols}
        commit = {**current, **meta, "fingerprint": fp, "gate_run_id": run_id, "operation": "merge",
                  "merged": {"upserted": n_in, "deleted": n_gone}}
        if gate:
            commit["suite_hash"] = s_hash
        with _merge_meta(spark, commit):
            (DeltaTable.forPath(spark, path).alias("t").merge(src.alias("s"), cond)
             .whenMatchedDelete(condition="s._del").whenMatchedUpdate(set=assign)
             .whenNotMatchedInsert(condition="NOT s._del", values=assign).execute())
        log.info("%s: merged %d changed or new rows, %d removed", tc.table, n_in, n_gone)
        upd.unpersist()
        return PublishResult(tc.table, "published", n0 - n_out + n_in, fp)
    finally:
        old_h.unpersist()
        new_h.unpersist()
