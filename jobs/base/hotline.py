"""12345 接诉即办 work orders (城市管理主题): ``base.hotline_order``, built incrementally per delivery day.

The centre (``csgl_hotline_orders``, 政务服务和数据管理局) delivers every day the orders accepted or changed
that day, each row the order's whole current state (``delivery: changes``). The table holds each order
as its newest delivery says (by business date ``_as_of``, then batch id); a row repeated in one file
is a ``duplicate_record`` and the first counts. De-identification is by construction: the caller's
name and phone number and the free-text content are never selected from the raw rows.

The address an operator typed is resolved with the address library's own parser and resolution
(``jobs.base.standard_address.resolve`` on ``lake.address.parse``; no second matcher): its door key is
looked up in ``base.standard_address``, which gives the address code, the town and the WGS-84 point; the
point's hotspot cell is ``grid_cell`` (the cells of ``opendata.deid.grid_cell``).

Incremental (issue 17's machinery): ``quality/base_builds`` records which deliveries (batches) the
table was built from; a build takes the orders that the new deliveries touch, recomputes them from all
their rows and MERGEs them on ``order_id`` through the gate (``quality.gates.publish_merge``); their
build findings (run ``build-base.hotline_order``, ``entity_key`` = order id) replace the old ones of
those orders. A full build (a new table, ``mode='full'``, or a change of the contracts or of
``base.standard_address``, recorded as ``build_key`` in the table's commit metadata) recomputes every
order. Both give the same table and findings (tests/test_hotline.py).

Cross rules (``CROSS_RULES``, each a warning for the centre, the order still published):
``address_unresolved``, ``timestamps_out_of_order``, ``closed_without_response``, ``unknown_category``
(published with an empty category), ``invalid_timestamp`` (published empty).
"""
from __future__ import annotations

import math
import time

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.base import incremental, records
from jobs.base import standard_address as sa
from jobs.base.records import Rule
from lake import address as addr
from lake import contracts as contracts_mod
from lake import io, rules
from lake.log import log
from lake.reference import HOTLINE
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates

SOURCE = "csgl_hotline_orders"
TABLE = "base.hotline_order"
TABLES = (TABLE,)
TIMESTAMPS = ("accepted_at", "dispatched_at", "responded_at", "closed_at")
# opendata.deid.grid_cell: cells ``km`` tall and, at the district's latitude, ``km`` wide
KM_PER_DEGREE = 111.32
GRID_KM = {"grid_1km": 1.0, "grid_5km": 5.0}
GRID_LATITUDE = 39.6

DERIVATIONS = {
    "standard_address_link": "the standard address (base.standard_address) whose door key the parsed address has",
    "grid_cell": "the hotspot cell (contracts/reference.yaml hotline.grid_level) of the standard address's point",
    "delivery_date": "the business date of the delivery the order's current row came from (_as_of)",
}


# ------------------------------------------------------------------ pure transforms

def grid_steps(level: str = HOTLINE.grid_level) -> tuple[float, float, int]:
    """(degrees of longitude, degrees of latitude, km) of a cell of ``level``."""
    km = GRID_KM[level]
    return km / (KM_PER_DEGREE * math.cos(math.radians(GRID_LATITUDE))), km / KM_PER_DEGREE, int(km)


def grid_cell(lon: Column, lat: Column, level: str = HOTLINE.grid_level) -> Column:
    """``"1km:116.330,39.730"``: the south-west corner of the cell holding (lon, lat), as
    ``opendata.deid.grid_cell`` writes it; NULL without a point."""
    dlon, dlat, km = grid_steps(level)
    x = F.floor(lon / F.lit(dlon)) * F.lit(dlon)
    y = F.floor(lat / F.lit(dlat)) * F.lit(dlat)
    return F.when(lon.isNotNull() & lat.isNotNull(),
                  F.concat(F.lit(f"{km}km:"), F.format_string("%.3f", x), F.lit(","), F.format_string("%.3f", y)))


def current_orders(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(the current row of each order, the duplicate rows). Pure.

    In one file an order's first row counts and every later one is a duplicate; across files the
    newest delivery by business date (``_as_of``, then batch id) describes the order."""
    in_file = Window.partitionBy("order_id", "_batch_id").orderBy("_row")
    df = raw.withColumn("_n_in_file", F.row_number().over(in_file))
    dups = df.where(F.col("_n_in_file") > 1).drop("_n_in_file")
    first = df.where(F.col("_n_in_file") == 1).drop("_n_in_file")
    newest = Window.partitionBy("order_id").orderBy(F.col("_as_of").desc_nulls_last(), F.col("_batch_id").desc())
    current = first.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1).drop("_n")
    return current, dups


def parse_times(df: DataFrame, fmt: str = HOTLINE.timestamp_format) -> DataFrame:
    """``_t_<column>``: each timestamp column read with the centre's format (NULL when empty or unreadable)."""
    return df.withColumns({f"_t_{c}": F.try_to_timestamp(F.col(c), F.lit(fmt)) for c in TIMESTAMPS})


def address_records(df: DataFrame) -> DataFrame:
    """Orders as address records in the shape ``jobs.base.standard_address.resolve`` reads."""
    return df.select(
        F.lit(SOURCE).alias("source"), F.col("order_id").cast("string").alias("record_key"),
        F.col("address").cast("string").alias("address_text"), F.lit(None).cast("string").alias("town_hint"),
        F.lit(None).cast("string").alias("alt_text"), F.lit(None).cast("double").alias("lon"),
        F.lit(None).cast("double").alias("lat"), F.lit(None).cast("string").alias("crs"),
        F.lit(SOURCE).alias("origin"), "_file_sha256", F.col("_row").cast("long").alias("_row"), "_batch_id")


def place(orders: DataFrame, library: DataFrame) -> DataFrame:
    """``orders`` with their standard address: ``address_code``, ``town``, ``lon``, ``lat``, ``grid_id``
    and ``_reason`` (why it could not be placed). ``library`` is base.standard_address. Pure."""
    resolved = sa.resolve(address_records(orders)).select(
        F.col("record_key").alias("_ok"), F.col("door_key").alias("_door_key"), F.col("p_reason").alias("_p_reason"))
    lib = library.select(F.col("door_key").alias("_lib_key"), "address_code", F.col("town").alias("_lib_town"),
                         F.col("lon").alias("_lib_lon"), F.col("lat").alias("_lib_lat"))
    df = (orders.join(resolved, orders["order_id"] == resolved["_ok"], "left").drop("_ok")
          .join(lib, F.col("_door_key") == F.col("_lib_key"), "left"))
    return df.withColumns({
        "town": F.col("_lib_town"), "lon": F.col("_lib_lon"), "lat": F.col("_lib_lat"),
        "grid_id": grid_cell(F.col("_lib_lon"), F.col("_lib_lat")),
        "_reason": F.when(F.col("address").isNull(), F.lit("empty"))
        .when(F.col("address_code").isNull(), F.coalesce(F.col("_p_reason"), F.lit("not_in_library"))),
    })


# ------------------------------------------------------------------ cross rules (over placed rows)

def _address_unresolved(ctx: dict) -> list[Rule]:
    reasons = rules.literal_map(dict(addr.REASONS))
    return [Rule("address_unresolved", "cross.address_unresolved", F.lit("address"), F.col("address_code").isNull(),
                 F.concat(F.lit("the address cannot be placed on a standard address: "),
                          F.coalesce(reasons[F.col("_reason")], F.col("_reason"))),
                 F.col("address"))]


def _timestamps_out_of_order(ctx: dict) -> list[Rule]:
    acc, dis, res, clo = (F.col(f"_t_{c}") for c in TIMESTAMPS)
    bad_dispatch = dis < acc
    bad_response = res < F.coalesce(dis, acc)
    bad_close = clo < F.coalesce(res, dis, acc)
    field = (F.when(F.coalesce(bad_dispatch, F.lit(False)), F.lit("dispatched_at"))
             .when(F.coalesce(bad_response, F.lit(False)), F.lit("responded_at"))
             .when(F.coalesce(bad_close, F.lit(False)), F.lit("closed_at")))
    return [Rule("timestamps_out_of_order", "cross.timestamp_order", field, field.isNotNull(),
                 F.concat(field, F.lit(" is earlier than the step before it (acceptance → dispatch → response → closure)")),
                 F.when(field == "dispatched_at", F.col("dispatched_at")).when(field == "responded_at", F.col("responded_at"))
                 .otherwise(F.col("closed_at")))]


def _closed_without_response(ctx: dict) -> list[Rule]:
    return [Rule("closed_without_response", "cross.closed_without_response", F.lit("closed_at"),
                 F.col("closed_at").isNotNull() & F.col("responded_at").isNull(),
                 F.lit("the order is closed but was never responded to (响应时间 empty)"), F.col("closed_at"))]


def _unknown_category(ctx: dict) -> list[Rule]:
    return [Rule("unknown_category", "cross.hotline_category", F.lit("category"),
                 ~F.col("category").isin(*HOTLINE.categories),
                 F.lit("the category is not in the hotline vocabulary (contracts/reference.yaml hotline.categories); "
                       "published empty"), F.col("category"))]


def _invalid_timestamp(ctx: dict) -> list[Rule]:
    return [Rule("invalid_timestamp", "type.timestamp", F.lit(c), F.col(c).isNotNull() & F.col(f"_t_{c}").isNull(),
                 F.lit(f"not a timestamp in the form {HOTLINE.timestamp_format}; published empty"), F.col(c))
            for c in TIMESTAMPS]


CROSS_RULES = {
    "address_unresolved": _address_unresolved,
    "timestamps_out_of_order": _timestamps_out_of_order,
    "closed_without_response": _closed_without_response,
    "unknown_category": _unknown_category,
    "invalid_timestamp": _invalid_timestamp,
}


def rules_of(tc) -> list[Rule]:
    return [r for name in tc.cross_rules for r in CROSS_RULES[name]({})]


def order_findings(placed: DataFrame, tc) -> DataFrame:
    """The cross rules' findings over placed current rows (with ``_src``/``_dept``/``_rk`` and the row
    metadata), each with ``entity_key`` = the order id. Pure."""
    structs = [records._struct(r) for r in rules_of(tc)]
    out = (placed.select(F.col("order_id").alias("_ek"), F.explode(F.array(*structs)).alias("_f"))
           .where(F.col("_f").isNotNull()).select("_f.*", F.col("_ek").alias("entity_key")))
    return findings.conform(out)


def candidate(placed: DataFrame, tc) -> DataFrame:
    """The published rows: contract columns, de-identified (no caller, no content), ``_lineage``."""
    values = {
        "category": F.when(F.col("category").isin(*HOTLINE.categories), F.col("category")),
        "accepted_at": F.col("_t_accepted_at"), "dispatched_at": F.col("_t_dispatched_at"),
        "responded_at": F.col("_t_responded_at"), "closed_at": F.col("_t_closed_at"),
        "as_of": F.col("_as_of"),
    }
    cols = [values.get(c.name, F.col(c.name)).cast(c.type).alias(c.name) for c in tc.columns]
    return placed.select(*cols, records.lineage(tc))


def build_orders(raw: DataFrame, library: DataFrame, tc, sc) -> tuple[DataFrame, DataFrame]:
    """(candidate rows, findings) of the orders in ``raw`` (all their rows). Pure."""
    current, dups = current_orders(raw)
    placed = place(parse_times(records.with_meta(current, sc)), library)
    found = order_findings(placed, tc).unionByName(
        findings.conform(records.duplicate_findings(dups, sc).withColumn("entity_key", F.col("value"))))
    return candidate(placed, tc), found


# ------------------------------------------------------------------ job

def build_key(spark: SparkSession, settings: Settings) -> str:
    """What forces a full build when it changes: the contracts and base.standard_address's content."""
    lib = io.last_metadata(spark, io.path_of(settings, "base.standard_address")).get("fingerprint", "")
    return io.inputs_hash([lib, incremental.contracts_hash(settings)])[:16]


def build(settings: Settings, as_of: str, mode: str = "auto", **context) -> list[dict]:
    """Build ``base.hotline_order`` from the deliveries not built yet (``mode='full'``: from all)."""
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc, sc = contracts.table(TABLE), contracts.source(SOURCE)
    raw_path = io.table_path(settings, "raw", SOURCE)
    if not io.is_table(spark, raw_path):
        return [records.skipped(TABLE, f"no raw data yet from {SOURCE}")]
    raw = io.read(spark, raw_path)
    delivered = [{"source": SOURCE, "batch_id": r["_batch_id"], "as_of": r["_as_of"]}
                 for r in raw.select("_batch_id", "_as_of").distinct().collect()]
    path = io.path_of(settings, TABLE)
    key = build_key(spark, settings)
    exists = io.is_table(spark, path)
    full = mode == "full" or not exists or io.last_metadata(spark, path).get("build_key") != key
    built = set() if full else incremental.built_batches(spark, settings, TABLE)
    new = [d for d in delivered if d["batch_id"] not in built]
    if not new:
        rows = int(str(io.last_metadata(spark, path).get("fingerprint", "0:")).split(":")[0])
        return [{"table": TABLE, "status": "unchanged", "rows": rows, "mode": "incremental", "touched": 0,
                 "seconds": round(time.time() - t0, 2)}]
    library = records.read_base(spark, settings, "standard_address")
    if full:
        rows = raw
    else:
        batches = spark.createDataFrame([(d["batch_id"],) for d in new], "_batch_id string")
        touched = raw.join(F.broadcast(batches), "_batch_id", "left_semi").select("order_id").distinct()
        rows = raw.join(touched, "order_id", "left_semi")
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    n_touched = rows.select("order_id").distinct().count()
    cand, found = build_orders(rows, library, tc, sc)
    cand = cand.persist(StorageLevel.MEMORY_AND_DISK)
    run = incremental.build_run(TABLE)
    fpath = io.table_path(settings, *findings.FINDINGS)
    try:
        if not full and io.is_table(spark, fpath):
            keep = (io.read(spark, fpath).where(F.col("run_id") == run)
                    .join(rows.select(F.col("order_id").alias("entity_key")).distinct(), "entity_key", "left_anti"))
            found = findings.conform(keep).unionByName(found)
        found = found.withColumn("run_id", F.lit(run)).persist(StorageLevel.MEMORY_AND_DISK)
        n_found = found.count()
        meta = {"as_of": as_of, "inputs": run, "build_key": key}
        if full:
            res = gates.publish(spark, settings, tc, cand, meta)
        else:
            deleted = spark.createDataFrame([], "order_id string")
            res = gates.publish_merge(spark, settings, tc, cand, deleted, meta)
        findings.write_if_changed(settings, found, run)
        incremental.record_builds(spark, settings, TABLE, delivered)
        counts = records.counts_by_defect(found)
    finally:
        rows.unpersist()
        spark.catalog.clearCache()
    out = {"table": TABLE, "status": res.status, "rows": res.rows, "mode": "full" if full else "incremental",
           "touched": n_touched, "findings": counts, "seconds": round(time.time() - t0, 2)}
    log.info("%s: %s (%s, %d orders touched, %d findings) in %.1fs", TABLE, res.status, out["mode"], n_touched,
             n_found, out["seconds"])
    return [out]
