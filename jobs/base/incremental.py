"""Building a golden-record base table day after day: full or incremental, with history.

A base table (``base.population``, ``base.legal_entity``) is a function of the deliveries of its
sources, ordered by business date (``_as_of``), not of the order they were landed in. Its state on a
date D is ``jobs.base.golden.golden_records`` over the rows delivered by D (``as_of``). This module
keeps three things equal to that function whatever the order days arrive in:

* the table itself (the state on the newest delivery date): a **full** build computes every entity;
  an **incremental** build only the entities the new deliveries touch (rows of a change file, every
  entity of a snapshot and of the snapshot before it), and publishes them with one Delta MERGE on the
  key through the gate (``quality.gates.publish_merge``);
* its history ``base/<name>_history``: one row per entity and validity period (SCD type 2 by
  business date: ``valid_from`` inclusive, ``valid_to`` exclusive, null while current). A period
  closes when the entity changes or disappears (a deletion, a deregistration that removes it); it is
  never erased. A delivery dated K recomputes the touched entities' states on K and on every later
  delivery date, so a day delivered late rewrites exactly the periods it changes;
* the build's findings and conflicts (run id ``build-<table>``): those of the touched entities are
  replaced, never added twice.

Rows without an entity key are linked (``jobs.base.linkage``) per delivery against the register as of
that delivery's date, so a link does not depend on when it was computed; a delivery landed late
re-links the later deliveries' rows. Which deliveries a table has been built from is recorded in
``quality/base_builds``; a change of the contracts makes the next build a full one.
"""
from __future__ import annotations

import time
from functools import reduce

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.base import golden, linkage
from lake import contracts as contracts_mod
from lake import io
from lake.contracts import Contracts, TableContract
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates, history_checks

KEY = golden.KEY
BUILDS = ("quality", "base_builds")
BUILDS_SCHEMA = "table string, source string, batch_id string, as_of date"
HISTORY_COLUMNS = ("valid_from", "valid_to")


def build_run(table: str) -> str:
    return f"build-{table}"


def links_run(table: str) -> str:
    return f"links-{table}"


def history_id(table: str) -> str:
    return f"{table}_history"


def contracts_hash(settings: Settings) -> str:
    return io.inputs_hash([], io.contract_files(settings.contracts_dir))[:16]


# ------------------------------------------------------------------ what has been delivered and built

def deliveries(spark: SparkSession, settings: Settings, sources: list[str]) -> list[dict]:
    """Every landed delivery of ``sources``: source, batch_id, as_of, kind (from the profiles ingest
    writes), ordered by business date."""
    found = io.rows_where(io.table_path(settings, *history_checks.PROFILES),  # small: no Spark job
                          f"source IN ({', '.join(repr(s) for s in sources) or 'NULL'})",
                          "DISTINCT source, batch_id, as_of, kind")
    rows = [] if found is None else found.to_pylist()
    return sorted(rows, key=lambda r: (r["as_of"], r["source"], r["batch_id"]))


def built_batches(spark: SparkSession, settings: Settings, table: str) -> set[str]:
    found = io.rows_where(io.table_path(settings, *BUILDS), f"`table` = '{table}'", "batch_id")  # small: no Spark job
    return set() if found is None else set(found.column("batch_id").to_pylist())


def record_builds(spark: SparkSession, settings: Settings, table: str, batches: list[dict]) -> None:
    rows = io.arrow_rows([(table, b["source"], b["batch_id"], b["as_of"]) for b in batches], BUILDS_SCHEMA)
    io.replace_if_changed_rows(spark, rows, io.table_path(settings, *BUILDS), f"`table` = '{table}'")


# ------------------------------------------------------------------ linkage per delivery date

def _no_key_rows(tc: TableContract, contracts: Contracts, raw: dict, batch_ids: list[str]) -> DataFrame | None:
    parts = []
    for s in golden.sources_used(tc):
        if s not in raw or not contracts.source(s).entity_key_optional:
            continue
        sc = contracts.source(s)
        df = golden.prepare(raw[s], sc).where(F.col(KEY).isNull() & F.col("_batch_id").isin(batch_ids))
        parts.append(df.select(
            F.lit(s).alias("source"), F.col(sc.record_key).alias("record_key"), "_batch_id", "_file_sha256", "_row",
            *[(F.col(c) if c in df.columns else F.lit(None)).cast("string").alias(c) for c in linkage.LINK_COLUMNS]))
    return reduce(DataFrame.unionByName, parts) if parts else None


def link_deliveries(spark: SparkSession, settings: Settings, tc: TableContract, contracts: Contracts, raw: dict,
                    batches: list[dict]) -> DataFrame | None:
    """Decide the links of the rows without a key of ``batches``, each delivery date against the
    register as it stood on that date (only its blocking candidates are scored; the prior uses the
    register's size on that date), store them and return every link of the table."""
    key_col = tc.columns[tc.column_names.index(tc.key[0])]
    ref_src = key_col.authority
    path = io.table_path(settings, *golden.RECORD_LINKS)
    optional = [s for s in golden.sources_used(tc) if s in raw and contracts.source(s).entity_key_optional]
    if ref_src not in raw or not optional:
        return None
    run = links_run(tc.table)
    rsc = contracts.source(ref_src)
    model = linkage.model_for(settings.contracts_dir, tc.domain)
    by_date: dict = {}
    for b in batches:
        if b["source"] in optional:
            by_date.setdefault(b["as_of"], []).append(b["batch_id"])
    for d, ids in sorted(by_date.items()):
        query = _no_key_rows(tc, contracts, raw, ids)
        q = query.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            if q.limit(1).count() == 0:
                decided = review = None
            else:
                register = golden.prepare(golden.as_of_rows(raw[ref_src], rsc, str(d)), rsc).where(F.col(KEY).isNotNull())
                n_ref = register.select(KEY).distinct().count()
                typed = register.select(KEY, *[F.col(c).cast("string").alias(f"_b_{c}") for c in linkage.LINK_COLUMNS
                                             if c in register.columns])
                cand = None
                for rule in model.blocking:
                    vals = q.select(*[F.col(c).alias(f"_b_{c}") for c in rule]).dropna().distinct()
                    hit = typed.join(F.broadcast(vals), [f"_b_{c}" for c in rule], "left_semi").select(KEY)
                    cand = hit if cand is None else cand.unionByName(hit)
                rows = register.join(F.broadcast(cand.distinct()), KEY, "left_semi")
                latest, _ = golden.latest_per_entity(rows, rsc.entity_key, rsc.record_key, rsc.unique_key,
                                                     rsc.entity_order, golden._name_column(tc, ref_src))
                reference = latest.select(KEY, *[c for c in linkage.LINK_COLUMNS if c in latest.columns])
                decided, review = linkage.link(spark, model, reference, q, n_reference=n_ref)
            cond = f"run_id = '{run}' AND _batch_id IN ({', '.join(repr(i) for i in sorted(ids))})"
            if decided is not None:
                io.replace_where_small(decided.withColumn("run_id", F.lit(run)), path, cond)
                io.replace_where_small(review.withColumn("run_id", F.lit(run)),
                                       io.table_path(settings, *golden.REVIEW_PAIRS), cond)
        finally:
            q.unpersist()
    if not io.is_table(spark, path):
        return None
    return io.read(spark, path).where(F.col("run_id") == run)


# ------------------------------------------------------------------ touched entities

def touched_keys(tc: TableContract, contracts: Contracts, raw: dict, links: DataFrame | None, batches: list[dict],
                 all_deliveries: list[dict]) -> DataFrame:
    """The entities (``_key``) that ``batches`` touch: every key of a change file's rows (and of
    rows linked to one); for a snapshot, every key of it and of the source's previous snapshot."""
    spark = next(iter(raw.values())).sparkSession
    ids: dict[str, set] = {}
    for b in batches:
        ids.setdefault(b["source"], set()).add(b["batch_id"])
        sc = contracts.source(b["source"])
        if sc.snapshot:
            earlier = [x for x in all_deliveries if x["source"] == b["source"]
                       and (x["as_of"], x["batch_id"]) < (b["as_of"], b["batch_id"])]
            if earlier:
                ids[b["source"]].add(max(earlier, key=lambda x: (x["as_of"], x["batch_id"]))["batch_id"])
    parts = []
    for s, bs in ids.items():
        if s not in raw:
            continue
        sc = contracts.source(s)
        df = golden._with_links(golden.prepare(raw[s].where(F.col("_batch_id").isin(sorted(bs))), sc), sc, links)
        parts.append(df.where(F.col(KEY).isNotNull()).select(KEY))
    if not parts:
        return spark.createDataFrame([], f"{KEY} string")
    return reduce(DataFrame.unionByName, parts).distinct()


# ------------------------------------------------------------------ history

def _events(tc: TableContract, contracts: Contracts, raw: dict, links, keys: DataFrame, d) -> DataFrame:
    """The state of ``keys`` on business date ``d``: one row per key, ``_absent`` when the entity
    does not exist then."""
    g, _, _ = golden.golden_records(tc, contracts, raw, links, keys=keys, as_of=str(d))
    k = tc.key[0]
    present = g.select(*tc.column_names, F.lit(False).alias("_absent"))
    absent = keys.join(g.select(KEY), KEY, "left_anti").select(F.col(KEY).alias(k)).select(
        *[(F.col(k) if c == k else F.lit(None).cast(tc.column(c).type)).alias(c) for c in tc.column_names],
        F.lit(True).alias("_absent"))
    return present.unionByName(absent).withColumn("_d", F.lit(str(d)).cast("date"))


def collapse(events: DataFrame, tc: TableContract) -> DataFrame:
    """Validity periods from states on dates: a state equal to the one before it continues it, an
    absent entity closes it. Pure."""
    k = tc.key[0]
    business = events.select(*tc.column_names)
    sig = F.when(F.col("_absent"), F.lit(None)).otherwise(io.row_hash(business))
    w = Window.partitionBy(k).orderBy("_d")
    ev = events.withColumn("_sig", sig).withColumn("_prev", F.lag("_sig").over(w))
    kept = ev.where(~F.col("_sig").eqNullSafe(F.col("_prev")))
    kept = kept.withColumn("valid_to", F.lead("_d").over(w))
    return kept.where(~F.col("_absent")).select(*tc.column_names, F.col("_d").alias("valid_from"), "valid_to")


def history_rows(tc: TableContract, contracts: Contracts, raw: dict, links, dates: list, touched: dict,
                 keys: DataFrame | None, prior: DataFrame | None, current: DataFrame | None = None) -> DataFrame:
    """History rows of the entities whose states on ``dates`` are computed: on each date the
    entities ``touched[d]`` (limited to ``keys``), after the ``prior`` periods (rows open on the
    first date, as events on their own ``valid_from``). ``current``: the golden records of ``keys``
    on the last date, already computed (the table's new rows), used instead of computing them again."""
    parts = []
    if prior is not None:
        parts.append(prior.select(*tc.column_names, F.lit(False).alias("_absent"), F.col("valid_from").alias("_d")))
    for d in dates:
        t = touched[d]
        if keys is not None:
            t = t.join(F.broadcast(keys), KEY, "left_semi")
        if current is not None and d == dates[-1]:
            k = tc.key[0]
            g = current.join(t, KEY, "left_semi")
            present = g.select(*tc.column_names, F.lit(False).alias("_absent"))
            absent = t.join(current.select(KEY), KEY, "left_anti").select(F.col(KEY).alias(k)).select(
                *[(F.col(k) if c == k else F.lit(None).cast(tc.column(c).type)).alias(c) for c in tc.column_names],
                F.lit(True).alias("_absent"))
            parts.append(present.unionByName(absent).withColumn("_d", F.lit(str(d)).cast("date")))
            continue
        parts.append(_events(tc, contracts, raw, links, t, d))
    return collapse(reduce(DataFrame.unionByName, parts), tc)


def _write_history(spark: SparkSession, settings: Settings, tc: TableContract, rows: DataFrame, keys: DataFrame | None,
                   since, meta: dict) -> str:
    """Full (``keys`` None): overwrite. Incremental: one MERGE on (key, valid_from) that updates and
    inserts the recomputed periods of ``keys`` and removes their periods starting on or after
    ``since`` that no longer exist."""
    from delta.tables import DeltaTable

    path = io.path_of(settings, history_id(tc.table))
    k = tc.key[0]
    if keys is None or not io.is_table(spark, path):
        fp = io.fingerprint(rows)
        io.overwrite(rows.select(*tc.column_names, *HISTORY_COLUMNS), path, {**meta, "fingerprint": fp},
                     stats_columns=[k, "valid_from"])
        return "published"
    rows = rows.localCheckpoint()  # the days' golden states, computed once (their plan is large)
    target = io.read(spark, path)
    mine = target.join(F.broadcast(keys.select(F.col(KEY).alias(k))), k, "left_semi")
    stale = (mine.where(F.col("valid_from") >= F.lit(str(since)).cast("date"))
             .join(rows.select(k, "valid_from"), [k, "valid_from"], "left_anti"))
    old_h = mine.select(k, "valid_from", io.row_hash(mine).alias("_oh"))
    changed = (rows.withColumn("_h", io.row_hash(rows)).join(old_h, [k, "valid_from"], "left")
               .where(F.col("_oh").isNull() | (F.col("_oh") != F.col("_h"))).drop("_h", "_oh"))
    src = changed.withColumn("_del", F.lit(False)).unionByName(stale.withColumn("_del", F.lit(True)))
    src = src.persist(StorageLevel.MEMORY_AND_DISK)
    if src.limit(1).count() == 0:
        return "unchanged"
    cols = [*tc.column_names, *HISTORY_COLUMNS]
    assign = {c: f"s.`{c}`" for c in cols}
    with gates._merge_meta(spark, {**meta, "operation": "merge"}):
        (DeltaTable.forPath(spark, path).alias("t")
         .merge(src.alias("s"), f"t.`{k}` = s.`{k}` AND t.valid_from = s.valid_from")
         .whenMatchedDelete(condition="s._del").whenMatchedUpdate(set=assign)
         .whenNotMatchedInsert(condition="NOT s._del", values=assign).execute())
    src.unpersist()
    return "published"


# ------------------------------------------------------------------ the build

def build(settings: Settings, table: str, as_of: str, spark: SparkSession | None = None, mode: str = "auto") -> dict:
    """Build ``table`` from what has been delivered: incrementally when it was built before from the
    same contracts (only the deliveries not yet built, only the entities they touch), else in full."""
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(table)
    sources = golden.sources_used(tc)
    present = [s for s in sources if io.is_table(spark, io.table_path(settings, "raw", s))]
    key_authority = tc.columns[tc.column_names.index(tc.key[0])].authority
    if key_authority not in present:
        raise contracts_mod.ContractError(
            f"{table}: no raw data yet from {key_authority}, the authority for {tc.key[0]}; ingest it first")
    raw = {s: golden.with_delivery_meta(io.read(spark, io.table_path(settings, "raw", s))) for s in present}
    delivered = deliveries(spark, settings, present)
    if not delivered:  # landed before profiles existed: one delivery per batch, dated as landed
        delivered = [r.asDict() | {"source": s, "kind": "full"} for s in present for r in
                     raw[s].select("_batch_id", "_as_of").distinct().withColumnRenamed("_batch_id", "batch_id")
                     .withColumnRenamed("_as_of", "as_of").collect()]
    path = io.table_path(settings, tc.zone, tc.name)
    meta_now = io.last_metadata(spark, path)
    c_hash = contracts_hash(settings)
    built = built_batches(spark, settings, table)
    new = [b for b in delivered if b["batch_id"] not in built]
    incremental = (mode != "full" and io.is_table(spark, path) and built and meta_now.get("contracts") == c_hash
                   and io.is_table(spark, io.path_of(settings, history_id(table))))
    stats: dict = {"table": table, "run_id": build_run(table), "mode": "incremental" if incremental else "full"}
    if incremental and not new:
        stats.update({"status": "unchanged", "rows": int(str(meta_now.get("fingerprint", "0:")).split(":")[0]),
                      "findings": None, "touched": 0, "seconds": round(time.time() - t0, 2)})
        return stats
    dates = sorted({b["as_of"] for b in delivered})
    newest = str(dates[-1])
    since = min(b["as_of"] for b in new) if incremental else dates[0]
    meta = {"as_of": max(as_of, newest), "inputs": build_run(table), "contracts": c_hash, "delivered_through": newest}
    try:
        # links: the new deliveries' rows, and (a late delivery) those of every later delivery
        relink = [b for b in delivered if b["batch_id"] not in built or b["as_of"] > since] if incremental else delivered
        old_linked: list[str] = []
        lpath = io.table_path(settings, *golden.RECORD_LINKS)
        if incremental:  # the entities relinked rows were linked to before (a small table: read JVM-free)
            ids = ", ".join(repr(b["batch_id"]) for b in relink) or "NULL"
            found = io.rows_where(lpath, f"run_id = '{links_run(table)}' AND linked_key IS NOT NULL AND _batch_id IN ({ids})",
                                  "DISTINCT linked_key")
            old_linked = [] if found is None else sorted(found.column("linked_key").to_pylist())
        t1 = time.time()
        links = link_deliveries(spark, settings, tc, contracts, raw, relink)
        if links is not None:
            links = links.persist(StorageLevel.MEMORY_AND_DISK)
            counts = {r["decision"]: r["count"] for r in links.groupBy("decision").count().collect()}
            stats["linkage"] = {"linked": counts.get("linked", 0), "review": counts.get("review", 0),
                                "unmatched": counts.get("unmatched", 0), "seconds": round(time.time() - t1, 2)}
        log.info("%s: links in %.1fs", table, time.time() - t1)
        t1 = time.time()
        touched = {}
        for d in dates:
            if d < since:
                continue
            at_d = [b for b in delivered if b["as_of"] == d]
            # computed once, lineage cut: each day's history part and the MERGE join them again
            touched[d] = touched_keys(tc, contracts, raw, links, at_d, delivered).localCheckpoint()
        keys = None
        if incremental:
            keys = touched_keys(tc, contracts, raw, links, new, delivered)
            if links is not None:  # relinked rows: the entities they were and are linked to
                keys = keys.unionByName(links.where(F.col("linked_key").isNotNull()).join(
                    F.broadcast(spark.createDataFrame([(b["batch_id"],) for b in relink], "_batch_id string")),
                    "_batch_id", "left_semi").select(F.col("linked_key").alias(KEY)))
            if old_linked:
                lost = spark.createDataFrame([(k,) for k in old_linked], f"{KEY} string")
                keys = keys.unionByName(lost)
                for d in {b["as_of"] for b in relink}:  # their states change where the rows were relinked
                    touched[d] = touched[d].unionByName(lost).distinct()
            keys = keys.distinct().localCheckpoint()
            stats["touched"] = keys.count()
        log.info("%s: %s entities touched, found in %.1fs", table, stats.get("touched", "all"), time.time() - t1)
        g, found, conflicts = golden.golden_records(tc, contracts, raw, links, persist=True, keys=keys)
        g = g.persist(StorageLevel.MEMORY_AND_DISK)
        run = build_run(table)
        fpath, cpath = io.table_path(settings, *findings.FINDINGS), io.table_path(settings, *golden.CONFLICTS)
        found = findings.conform(found.withColumn("run_id", F.lit(run)))
        conflicts = conflicts.withColumn("run_id", F.lit(run))
        if incremental:
            if io.is_table(spark, fpath):
                found = io.read(spark, fpath).where(F.col("run_id") == run).join(
                    keys.select(F.col(KEY).alias("entity_key")), "entity_key", "left_anti").select(*found.columns
                ).unionByName(found)
            if io.is_table(spark, cpath):
                conflicts = io.read(spark, cpath).where(F.col("run_id") == run).join(
                    keys.select(F.col(KEY).alias("entity_key")), "entity_key", "left_anti").select(*conflicts.columns
                ).unionByName(conflicts)
        t1 = time.time()
        # the table first (through its gate): a blocked publication leaves findings to tell why
        if incremental:
            deleted = keys.join(g.select(KEY), KEY, "left_anti").select(F.col(KEY).alias(tc.key[0]))
            res = gates.publish_merge(spark, settings, tc, g.drop(KEY), deleted, meta)
        else:
            res = gates.publish(spark, settings, tc, g.drop(KEY), meta)
        log.info("%s: golden records computed and the table %s in %.1fs", table, res.status, time.time() - t1)
        findings.write_if_changed(settings, found.persist(StorageLevel.MEMORY_AND_DISK), run_id=run)
        io.replace_if_changed_small(conflicts, cpath, f"run_id = '{run}'")
        log.info("%s: %s, findings and conflicts in %.1fs", table, res.status, time.time() - t1)
        # history
        t1 = time.time()
        prior = None
        if incremental:
            hist = io.read(spark, io.path_of(settings, history_id(table)))
            s = F.lit(str(since)).cast("date")
            prior = (hist.join(F.broadcast(keys.select(F.col(KEY).alias(tc.key[0]))), tc.key[0], "left_semi")
                     .where((F.col("valid_from") < s) & (F.col("valid_to").isNull() | (F.col("valid_to") >= s))))
        hdates = [d for d in dates if d >= since]
        hrows = history_rows(tc, contracts, raw, links, hdates, touched, keys, prior, current=g)
        stats["history"] = _write_history(spark, settings, tc, hrows, keys, since, {"as_of": meta["as_of"],
                                                                                   "contracts": c_hash})
        stats["history_seconds"] = round(time.time() - t1, 2)
        record_builds(spark, settings, table, delivered)
        found_now = io.rows_where(fpath, f"run_id = '{run}'", "count(*) AS n")
        n_findings = 0 if found_now is None else found_now.column("n")[0].as_py()
    finally:
        spark.catalog.clearCache()
    stats.update({"status": res.status, "rows": res.rows, "findings": n_findings, "since": str(since),
                  "seconds": round(time.time() - t0, 2)})
    return stats


def build_table(settings: Settings, table: str, as_of: str, spark: SparkSession | None = None,
                mode: str = "auto") -> dict:
    """Build and publish the golden records of ``table`` (with its history, findings and conflicts)."""
    return build(settings, table, as_of, spark=spark, mode=mode)


def run_id(spark: SparkSession, settings: Settings, tc: TableContract, present: list[str]) -> str:
    """The run id of the table's build findings and conflicts: one current set per table."""
    return build_run(tc.table)
