"""``base.poi``: points of interest in 24 classes placed on the base map (docs/spatial_iot.md).

The latest delivery of ``raw/ghzrzy_poi``; each row's position converted to WGS-84 from the system
its ``coord_sys`` names (``lake.geo.to_wgs84`` in ``mapInPandas``), the unit assigned with
``lake.geo.assign_units`` against ``base.admin_boundary``, the address code taken from the standard
address library's links (``quality/address_links``: built after ``base.standard_address``). A POI
outside the district is a finding (``point_outside_district``, with the raw file and row) and is not
published; a POI without coordinates is a ``missing_value`` finding; a POI whose key appears earlier
in the same file is a ``duplicate_record`` finding (the first row is kept). Findings of a batch are
written under one run id and only when they changed, so re-running with the same inputs changes
nothing.
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import geo, io
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from jobs.base.admin_boundary import ADMIN_BOUNDARY, DECIMALS, latest_batch, load_boundaries
from quality import findings, gates

TABLES = ("base.poi",)
LINEAGE_TYPE = io.LINEAGE_TYPE

POI_SOURCE = "ghzrzy_poi"


POI = "base.poi"


OUTSIDE = "point_outside_district"


def _address_codes(spark: SparkSession, settings: Settings, batch_id: str) -> DataFrame | None:
    """``(record_key, address_code)`` of the batch's POIs matched by the address library, when it
    has run (jobs.base.standard_address reads raw/ghzrzy_poi, so there is no cycle)."""
    path = io.table_path(settings, "quality", "address_links")
    if not io.is_table(spark, path):
        return None
    links = io.read(spark, path)
    if not {"source", "record_key", "address_code"} <= set(links.columns):
        log.warning("quality/address_links has no source/record_key/address_code columns; base.poi without address codes")
        return None
    links = links.where((F.col("source") == POI_SOURCE) & F.col("address_code").isNotNull())
    if "_batch_id" in links.columns:
        links = links.where(F.col("_batch_id") == batch_id)
    return links.groupBy("record_key").agg(F.min("address_code").alias("address_code"))


def locate(df: DataFrame, geometry: dict, boundaries: list[dict]) -> DataFrame:
    """Raw rows with WGS-84 ``lon``/``lat`` and ``town_code``/``town`` (NULL outside). Pure."""
    return geo.assign_units(geo.wgs84_columns(df, geometry, "_wgs_lon", "_wgs_lat"), "_wgs_lon", "_wgs_lat", boundaries,
                            code_col="_town_code", name_col="_town")


def build_poi(settings: Settings, as_of: str, spark: SparkSession | None = None) -> dict:
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    sc, tc = contracts.source(POI_SOURCE), contracts.table(POI)
    if not sc.geometry or "lon" not in sc.geometry:
        raise contracts_mod.ContractError(f"{sc.path}: {POI_SOURCE} needs a geometry: {{lon, lat, crs_column}} mapping")
    raw_path = io.table_path(settings, "raw", POI_SOURCE)
    if not io.is_table(spark, raw_path):
        raise contracts_mod.ContractError(f"{POI}: no raw data yet from {POI_SOURCE}; ingest it first")
    raw, batch = latest_batch(io.read(spark, raw_path))
    boundaries = load_boundaries(spark, settings)
    kept, dups = first_of_each(raw, sc.unique_key or (sc.entity_key,))
    located = locate(kept, sc.geometry, boundaries).persist()
    try:
        return _build_poi(spark, settings, sc, tc, located, dups, batch, boundaries, as_of, t0)
    finally:
        located.unpersist()


def first_of_each(raw: DataFrame, unique_key) -> tuple[DataFrame, DataFrame]:
    """(first row of each unique key in the batch, the later rows: duplicates). Pure."""
    from pyspark.sql import Window

    w = Window.partitionBy(*[F.col(c) for c in unique_key]).orderBy("_row")
    df = raw.withColumn("_n", F.row_number().over(w))
    return df.where(F.col("_n") == 1).drop("_n"), df.where(F.col("_n") > 1).drop("_n")


def _duplicate_findings(dups: DataFrame, sc, run_id: str) -> DataFrame:
    """``duplicate_record`` findings (the same vocabulary and rule as jobs/build_base)."""
    return findings.conform(dups.select(
        F.lit(run_id).alias("run_id"), F.lit("spatial").alias("stage"), F.lit(sc.source).alias("source"),
        F.lit(sc.department).alias("department"), F.col(sc.record_key).cast("string").alias("record_key"),
        F.lit(sc.entity_key).alias("field"), F.lit("duplicate.entity_key").alias("rule"), F.lit("warning").alias("severity"),
        F.lit("duplicate_record").alias("defect_type"),
        F.lit(f"the same {sc.entity_key} appears earlier in the same file").alias("message"),
        F.col(sc.entity_key).cast("string").alias("value"), "_file_sha256", "_row", "_batch_id",
    ))


def _build_poi(spark, settings, sc, tc, located, dups, batch, boundaries, as_of, t0) -> dict:
    key, lon_c = sc.record_key, sc.geometry["lon"]
    has_point = F.col("_wgs_lon").isNotNull() & F.col("_wgs_lat").isNotNull()
    raw_value = F.concat_ws(",", F.col(lon_c).cast("string"), F.col(sc.geometry["lat"]).cast("string"),
                            *([F.col(sc.geometry["crs_column"])] if "crs_column" in sc.geometry else [F.lit(sc.geometry["crs"])]))
    run_id = f"{POI}@{batch['batch_id']}"
    found = located.where(F.col("_town_code").isNull()).select(
        F.lit(run_id).alias("run_id"), F.lit("spatial").alias("stage"), F.lit(POI_SOURCE).alias("source"),
        F.lit(sc.department).alias("department"), F.col(key).cast("string").alias("record_key"),
        F.lit(lon_c).alias("field"),
        F.when(has_point, F.lit("geometry.outside_district")).otherwise(F.lit("geometry.missing")).alias("rule"),
        F.lit("error").alias("severity"),
        F.when(has_point, F.lit(OUTSIDE)).otherwise(F.lit("missing_value")).alias("defect_type"),
        F.when(has_point, F.concat(F.lit("WGS-84 "), F.col("_wgs_lon").cast("string"), F.lit(","),
                                   F.col("_wgs_lat").cast("string"), F.lit(" is outside every unit of base.admin_boundary")))
        .otherwise(F.lit("no coordinates: the POI cannot be placed")).alias("message"),
        raw_value.alias("value"), "_file_sha256", "_row", "_batch_id",
    )
    found = findings.conform(found).unionByName(_duplicate_findings(dups, sc, run_id))
    written = findings.write_if_changed(settings, found, run_id)
    counts = {r["defect_type"]: r["count"] for r in found.groupBy("defect_type").count().collect()}

    lin = F.struct(F.lit(POI_SOURCE).alias("source"), F.col("_batch_id").alias("batch_id"),
                   F.col("_file_sha256").alias("file_sha256"), F.col("_row").cast("long").alias("row"))
    unit_lineage = spark.createDataFrame(
        [(b["code"], b.get("lineage")) for b in boundaries], f"_town_code string, _unit_lineage {LINEAGE_TYPE}")
    inside = located.where(F.col("_town_code").isNotNull()).join(F.broadcast(unit_lineage), "_town_code", "left")
    codes = _address_codes(spark, settings, batch["batch_id"])
    if codes is not None:
        inside = inside.join(codes.withColumnRenamed("record_key", "_addr_key"),
                             F.col(key).cast("string") == F.col("_addr_key"), "left")
    else:
        inside = inside.withColumn("address_code", F.lit(None).cast("string"))
    source_cols = [c.name for c in tc.columns if c.authority == POI_SOURCE and c.name not in ("lon", "lat", "address_code")]
    names = tc.column_names
    candidate = inside.select(
        *[F.col(c) for c in source_cols],
        F.round("_wgs_lon", DECIMALS).alias("lon"), F.round("_wgs_lat", DECIMALS).alias("lat"),  # assigned unrounded
        F.col("_town_code").alias("town_code"), F.col("_town").alias("town"), F.col("address_code"),
        F.create_map(*[x for c in names for x in (
            F.lit(c), F.col("_unit_lineage") if c in ("town_code", "town") else lin)]).alias("_lineage"),
    ).select(*names, "_lineage")
    b_version = io.version(spark, io.table_path(settings, "base", "admin_boundary"))
    res = gates.publish(spark, settings, tc, candidate,
                        {"as_of": as_of, "inputs": f"{batch['batch_id']};{ADMIN_BOUNDARY}@v{b_version}"})
    return {"table": POI, "status": res.status, "rows": res.rows, "batch_id": batch["batch_id"],
            "outside": counts.get(OUTSIDE, 0), "missing_coordinates": counts.get("missing_value", 0),
            "duplicates": counts.get("duplicate_record", 0),
            "findings_written": written, "seconds": round(time.time() - t0, 2)}


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish ``base.poi`` (nothing when no POIs have been delivered yet)."""
    spark = get_spark(settings)
    if not io.is_table(spark, io.table_path(settings, "raw", POI_SOURCE)):
        log.warning("%s: no raw data yet from %s; not built", POI, POI_SOURCE)
        return []
    return [build_poi(settings, as_of, spark)]
