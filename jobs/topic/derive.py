"""What every topic built from one base table does: read the base table, apply the module's pure
transform, publish the result through its gate with the base table's version as the input."""
from __future__ import annotations

import time
from functools import reduce
from typing import Callable

from pyspark.sql import DataFrame

from lake import contracts as contracts_mod
from lake import io
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

UNKNOWN = "unknown"


def publish_from(settings: Settings, table: str, base_table: str, transform: Callable[[DataFrame], DataFrame],
                 as_of: str) -> dict:
    """Publish ``table`` = ``transform(base_table)`` through its gate."""
    t0 = time.time()
    spark = get_spark(settings)
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    path = io.path_of(settings, base_table)
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{table}: {base_table} has not been built yet; build it first (`lake build`)")
    candidate = transform(io.read(spark, path))
    res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of, "inputs": f"{base_table}@v{io.version(spark, path)}"})
    return {"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}


def _merges_only(spark, path: str, since: int, until: int) -> bool:
    """True when every commit of ``path`` in (since, until] is a MERGE (no overwrite), with the
    Change Data Feed on: then the feed lists exactly the rows that changed."""
    if until <= since:
        return True
    dt = io.delta_table(path)  # the log read by delta-rs: no Spark job
    if dt.metadata().configuration.get(io.CDF_PROPERTY) != "true":
        return False
    ops = [h["operation"] for h in dt.history(dt.version() - since) if since < h["version"] <= until]
    return len(ops) == until - since and all(op == "MERGE" for op in ops)


def count_by(df: DataFrame, groups: list[str], count_col: str, sign: int = 1) -> DataFrame:
    from pyspark.sql import functions as F

    return df.groupBy(*groups).agg((F.count("*") * sign).alias(count_col))


def publish_counts(settings: Settings, table: str, base_table: str, project: Callable[[DataFrame, str], DataFrame],
                   groups: list[str], count_col: str, as_of: str, as_of_dependent: bool = False,
                   finalize: Callable[[DataFrame], DataFrame] = lambda df: df) -> dict:
    """Publish a topic of counts per group of a base table's rows (``project(base, as_of)`` gives one
    row per counted entity with the base key and the ``groups`` columns).

    When the topic was built before from an earlier version of the base table, and the base table
    changed since only by merges (its Change Data Feed on), only the groups the changed entities
    leave or enter are recomputed: the changed keys come from the feed, their rows before (time
    travel to the version the topic was built from) count -1 in their old group, their rows now +1 in
    the new one; when the reference date moved (``as_of_dependent``: the age bands), every other
    entity whose group moved with it counts too (``as_of_dependent`` may be a function giving those
    rows' old and new groups in one pass, ``_o_<group>`` and ``_n_<group>``). The affected groups' new counts are merged through
    the gate (a group down to 0 is removed). Otherwise the whole topic is recomputed. The reference
    date is the latest of the run's, the base table's and the topic's previous one, so that a day
    delivered late does not move it back."""
    from pyspark.sql import functions as F

    t0 = time.time()
    spark = get_spark(settings)
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    bpath, tpath = io.path_of(settings, base_table), io.path_of(settings, table)
    if not io.is_table(spark, bpath):
        raise contracts_mod.ContractError(f"{table}: {base_table} has not been built yet; build it first (`lake build`)")
    btc = contracts_mod.load(settings.contracts_dir).table(base_table)
    key = btc.key[0]
    cur_v = io.version(spark, bpath)
    prev = io.last_metadata(spark, tpath)
    a_new = max(x for x in (as_of, io.last_metadata(spark, bpath).get("as_of"), prev.get("as_of")) if x)
    meta = {"as_of": a_new, "inputs": f"{base_table}@v{cur_v}", "base_version": cur_v}
    specs_hash = gates.suite_hash(gates.expectation_specs(tc, []))
    prev_v = prev.get("base_version")
    incremental = (prev_v is not None and prev.get("suite_hash") == specs_hash and prev.get("fingerprint")
                   and _merges_only(spark, bpath, int(prev_v), cur_v))
    if not incremental:
        cand = finalize(count_by(project(io.read(spark, bpath), a_new), groups, count_col))
        res = gates.publish(spark, settings, tc, cand, meta)
        return {"table": table, "status": res.status, "rows": res.rows, "mode": "full",
                "seconds": round(time.time() - t0, 2)}
    a_old = prev.get("as_of") or a_new
    if int(prev_v) == cur_v and a_old == a_new:
        return {"table": table, "status": "unchanged", "rows": int(prev["fingerprint"].split(":")[0]),
                "mode": "incremental", "seconds": round(time.time() - t0, 2)}
    parts = []
    changed = None
    if int(prev_v) < cur_v:
        changed = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", int(prev_v) + 1)
                   .option("endingVersion", cur_v).load(bpath).select(key).distinct())
        before = spark.read.format("delta").option("versionAsOf", int(prev_v)).load(bpath).join(changed, key, "left_semi")
        now = io.read(spark, bpath).join(changed, key, "left_semi")
        parts += [count_by(project(now, a_new), groups, count_col), count_by(project(before, a_old), groups, count_col, -1)]
    if as_of_dependent and a_old != a_new:  # entities whose group moves with the reference date
        rest = io.read(spark, bpath)
        if changed is not None:
            rest = rest.join(changed, key, "left_anti")
        if callable(as_of_dependent):  # one pass: (old groups, new groups) of the rows that moved
            moved = as_of_dependent(rest, a_old, a_new).persist()
        else:
            p_new = project(rest, a_new).select(key, *[F.col(g).alias(f"_n_{g}") for g in groups])
            p_old = project(rest, a_old).select(key, *[F.col(g).alias(f"_o_{g}") for g in groups])
            moved = p_new.join(p_old, key, "full_outer").where(
                ~reduce(lambda a, b: a & b, [F.col(f"_n_{g}").eqNullSafe(F.col(f"_o_{g}")) for g in groups])).persist()
        parts += [count_by(moved.where(F.col(f"_n_{groups[0]}").isNotNull()).select(
                      *[F.col(f"_n_{g}").alias(g) for g in groups]), groups, count_col),
                  count_by(moved.where(F.col(f"_o_{groups[0]}").isNotNull()).select(
                      *[F.col(f"_o_{g}").alias(g) for g in groups]), groups, count_col, -1)]
    if not parts:
        return {"table": table, "status": "unchanged", "rows": int(prev["fingerprint"].split(":")[0]),
                "mode": "incremental", "seconds": round(time.time() - t0, 2)}
    delta = reduce(DataFrame.unionByName, parts).groupBy(*groups).agg(F.sum(count_col).alias("_d"))
    delta = delta.where(F.col("_d") != 0).persist()
    old = io.read(spark, tpath).select(*groups, count_col)
    merged = (delta.join(old, groups, "left")
              .select(*groups, (F.coalesce(F.col(count_col), F.lit(0)) + F.col("_d")).cast("long").alias(count_col)))
    merged = merged.persist()
    upserts = finalize(merged.where(F.col(count_col) > 0))
    deleted = merged.where(F.col(count_col) <= 0).select(*groups)
    res = gates.publish_merge(spark, settings, tc, upserts.select(*tc.column_names), deleted, meta)
    n_groups = delta.count()
    delta.unpersist()
    merged.unpersist()
    return {"table": table, "status": res.status, "rows": res.rows, "mode": "incremental", "groups": n_groups,
            "seconds": round(time.time() - t0, 2)}
