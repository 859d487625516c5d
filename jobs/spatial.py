"""The spatial base tables (docs/spatial_iot.md): ``base.admin_boundary`` and ``base.poi``.

- ``build_admin_boundary``: the latest delivery of ``raw/ghzrzy_boundaries`` (one row per town or
  street, the geometry as GeoJSON text). Every geometry must parse, be a valid (Multi)Polygon inside
  the district's extent, codes must be unique and no two units may overlap by more than
  ``OVERLAP_TOLERANCE_KM2``; any problem stops the build with a message naming the file, row, code
  and rule (a base map with a broken unit must not be published). Geometries are converted to WGS-84
  from the contract's coordinate system, rounded to 1e-7 degrees (1 cm) and the area is computed from
  them (equal-area projection, ``lake.geo.area_km2``).
- ``build_poi``: the latest delivery of ``raw/ghzrzy_poi``; each row's position converted to WGS-84
  from the system its ``coord_sys`` names (``lake.geo.to_wgs84`` in ``mapInPandas``), the unit
  assigned with ``lake.geo.assign_units`` against ``base.admin_boundary``. A POI outside the
  district is a finding (``point_outside_district``, with the raw file and row) and is not
  published; a POI without coordinates is a ``missing_value`` finding; a POI whose key appears
  earlier in the same file is a ``duplicate_record`` finding (the first row is kept).
- ``evaluate_locations``: town assignment accuracy per source and precision/recall of
  ``point_outside_district`` against the generator's ``truth/locations.csv``.

Both tables go through ``quality.gates.publish`` (GX suite from the contract, no new version when
the content is unchanged); findings of a POI batch are written under one run id and only when they
changed, so re-running with the same inputs changes nothing.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import shapely
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from lake import contracts as contracts_mod
from lake import geo, io
from lake.files import InputError
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates

BOUNDARY_SOURCE = "ghzrzy_boundaries"
POI_SOURCE = "ghzrzy_poi"
ADMIN_BOUNDARY = "base.admin_boundary"
POI = "base.poi"
OUTSIDE = "point_outside_district"
OVERLAP_TOLERANCE_KM2 = 0.001  # 1,000 m²: more than rounding slivers, far less than any real overlap
EXTENT_MARGIN_DEG = 0.01  # ~1 km around the district's extent
AREA_WARN_RATIO = 0.02  # a delivered area further than 2 % from the computed one is logged
DECIMALS = 7  # 1e-7 degrees ~ 1 cm
LINEAGE_TYPE = "struct<source:string,batch_id:string,file_sha256:string,row:long>"


class BoundaryError(ValueError):
    """The boundary delivery cannot be published; the message lists every problem with its file,
    row, code and rule."""


# ------------------------------------------------------------------ helpers

def latest_batch(raw: DataFrame) -> tuple[DataFrame, dict]:
    """The rows of the newest batch of a raw table (latest ``_ingested_at``, then ``_batch_id``)
    and that batch's ``{batch_id, file_sha256}``."""
    last = (raw.select("_batch_id", "_file_sha256", "_ingested_at").distinct()
            .orderBy(F.col("_ingested_at").desc(), F.col("_batch_id").desc()).limit(1).collect())
    if not last:
        raise InputError("the raw table is empty")
    batch = {"batch_id": last[0]["_batch_id"], "file_sha256": last[0]["_file_sha256"]}
    return raw.where(F.col("_batch_id") == batch["batch_id"]), batch


def file_name(spark: SparkSession, settings: Settings, source: str, sha: str) -> str:
    """The name the file was delivered under (landing manifest), or its sha256."""
    from jobs.ingest import manifest_row

    row = manifest_row(spark, settings, source, sha)
    return row["file_name"] if row is not None else f"file {sha[:16]}"


def _round(geometry):
    return shapely.transform(geometry, lambda c: np.round(c, DECIMALS))


def geometry_text(geometry) -> str:
    """Compact GeoJSON text of a geometry (coordinates as rounded)."""
    return json.dumps(shapely.geometry.mapping(geometry), separators=(",", ":"))


def geometry_to_wgs84(geometry, crs: str):
    """``geometry`` with every vertex converted from ``crs`` to WGS-84 (and rounded to 1e-7°)."""
    crs = geo.canonical_crs(crs)

    def convert(c: np.ndarray) -> np.ndarray:
        x, y = geo.to_wgs84(c[:, 0], c[:, 1], crs)
        return np.round(np.column_stack([x, y]), DECIMALS)

    return shapely.transform(geometry, convert)


def wgs84_columns(df: DataFrame, geometry: dict, lon_out: str = "lon", lat_out: str = "lat") -> DataFrame:
    """``df`` with ``lon_out``/``lat_out`` (double, WGS-84, full precision) computed from the columns a source
    contract's ``geometry`` names (``{lon, lat, crs}`` or ``{lon, lat, crs_column}``), in
    ``mapInPandas`` with ``lake.geo.to_wgs84``. Rows without coordinates get NULL; a row naming an
    unknown coordinate system fails the job with its file and row."""
    lon_c, lat_c, crs_c, crs = geometry["lon"], geometry["lat"], geometry.get("crs_column"), geometry.get("crs")
    fields = [f for f in df.schema.fields if f.name not in (lon_out, lat_out)]
    schema = StructType(fields + [StructField(lon_out, DoubleType()), StructField(lat_out, DoubleType())])
    names = [f.name for f in schema.fields]

    def convert(batches):
        import pandas as pd

        for pdf in batches:
            lon = pd.to_numeric(pdf[lon_c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            lat = pd.to_numeric(pdf[lat_c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            located = np.isfinite(lon) & np.isfinite(lat)
            if crs_c:
                systems = pdf[crs_c].to_numpy(dtype=object).copy()
                systems[~located] = "WGS84"  # nothing to convert
                for value in set(systems.tolist()):
                    try:
                        geo.canonical_crs(value)
                    except ValueError as e:
                        i = int(np.flatnonzero(systems == value)[0]) if value is not None else \
                            int(np.flatnonzero(pd.isna(systems))[0])
                        where = (f"file {pdf['_file_sha256'].iloc[i][:16]} row {pdf['_row'].iloc[i]}"
                                 if "_row" in pdf and "_file_sha256" in pdf else f"row {i}")
                        raise ValueError(f"{where}: {crs_c}: {e} (rule geometry.crs)") from None
            else:
                systems = crs
            x, y = geo.to_wgs84(lon, lat, systems)
            out = pdf.assign(**{lon_out: x, lat_out: y})
            yield out[names]

    return df.mapInPandas(convert, schema)


def load_boundaries(spark: SparkSession, settings: Settings) -> list[dict]:
    """The published ``base.admin_boundary`` as ``[{code, name, kind, geometry, lineage}]``."""
    path = io.table_path(settings, "base", "admin_boundary")
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{ADMIN_BOUNDARY} has not been built yet; run build_admin_boundary first")
    rows = io.read(spark, path).collect()
    out = geo.boundaries_from_rows(rows)
    lineage = {r["code"]: (r["_lineage"] or {}).get("code") for r in rows} if rows and "_lineage" in rows[0] else {}
    for b in out:
        lin = lineage.get(b["code"])
        b["lineage"] = lin.asDict() if lin is not None else None
    return out


def _lineage(columns: list[str], source: str, batch_id: str, sha: str, row) -> dict:
    return {c: {"source": source, "batch_id": batch_id, "file_sha256": sha, "row": int(row)} for c in columns}


# ------------------------------------------------------------------ base.admin_boundary

def check_boundaries(rows: list[dict], crs: str, name: str = "") -> tuple[list[dict], list[str]]:
    """Boundaries (``[{code, name, kind, geometry, area_km2, row, delivered_area_km2}]``, WGS-84, code
    order) from raw rows, and the list of problems (empty when they can be published). Pure."""
    where = (lambda r: f"{name} row {r.get('_row')} (code {r.get('code')})")
    problems, units = [], []
    west, south, east, north = geo.EXTENT
    m = EXTENT_MARGIN_DEG
    for r in rows:
        try:
            g = geo.geometry_from_text(r["geometry"])
        except Exception as e:  # noqa: BLE001 - any parse error is the department's problem
            problems.append(f"{where(r)}: geometry is not GeoJSON: {e} (rule geometry.parse)")
            continue
        if g.geom_type not in ("Polygon", "MultiPolygon") or g.is_empty:
            problems.append(f"{where(r)}: geometry is {g.geom_type}, expected a non-empty Polygon or MultiPolygon "
                            "(rule geometry.type)")
            continue
        g = geometry_to_wgs84(g, crs)
        if not g.is_valid:
            problems.append(f"{where(r)}: geometry is not valid: {shapely.is_valid_reason(g)} (rule geometry.valid)")
            continue
        x0, y0, x1, y1 = g.bounds
        if x0 < west - m or y0 < south - m or x1 > east + m or y1 > north + m:
            problems.append(f"{where(r)}: geometry extends to ({x0:.4f}, {y0:.4f})-({x1:.4f}, {y1:.4f}), outside the "
                            f"district's extent {geo.EXTENT} (rule geometry.extent)")
            continue
        units.append({"code": r["code"], "name": r["name"], "kind": r["kind"], "geometry": shapely.orient_polygons(g),
                      "area_km2": round(geo.area_km2(g), 4), "row": r.get("_row"),
                      "delivered_area_km2": r.get("area_km2")})
    seen: dict = {}
    for u in units:
        if u["code"] in seen:
            problems.append(f"{name} rows {seen[u['code']]} and {u['row']}: code {u['code']} appears twice (rule code.unique)")
        seen.setdefault(u["code"], u["row"])
    if len(units) > 1:
        geoms = [u["geometry"] for u in units]
        left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        for i, j in zip(left.tolist(), right.tolist()):
            if i < j:
                overlap = geo.area_km2(shapely.intersection(geoms[i], geoms[j]))
                if overlap > OVERLAP_TOLERANCE_KM2:
                    a, b = units[i], units[j]
                    problems.append(f"{name} rows {a['row']} and {b['row']}: units {a['code']} and {b['code']} overlap by "
                                    f"{overlap:.4f} km² (tolerance {OVERLAP_TOLERANCE_KM2} km²) (rule geometry.overlap)")
    return sorted(units, key=lambda u: u["code"]), problems


def build_admin_boundary(settings: Settings, as_of: str, spark: SparkSession | None = None) -> dict:
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    sc, tc = contracts.source(BOUNDARY_SOURCE), contracts.table(ADMIN_BOUNDARY)
    raw_path = io.table_path(settings, "raw", BOUNDARY_SOURCE)
    if not io.is_table(spark, raw_path):
        raise contracts_mod.ContractError(f"{ADMIN_BOUNDARY}: no raw data yet from {BOUNDARY_SOURCE}; ingest it first")
    rows_df, batch = latest_batch(io.read(spark, raw_path))
    name = file_name(spark, settings, BOUNDARY_SOURCE, batch["file_sha256"])
    q_path = io.table_path(settings, "quarantine", BOUNDARY_SOURCE)
    if io.is_table(spark, q_path):
        bad = (io.read(spark, q_path).where(F.col("_file_sha256") == batch["file_sha256"])
               .select("_row", "code", "_rule", "_reason").orderBy("_row").collect())
        if bad:
            raise BoundaryError(f"{ADMIN_BOUNDARY}: {name} has {len(bad)} quarantined feature(s); a base map with a "
                                "missing unit is not published:\n" + "\n".join(
                                    f"  - {name} row {b['_row']} (code {b['code']}): {b['_reason']} (rule {b['_rule']})"
                                    for b in bad))
    rows = [r.asDict() for r in rows_df.orderBy("_row").collect()]
    crs = (sc.geometry or {}).get("crs", "WGS84")
    units, problems = check_boundaries(rows, crs, name)
    if problems:
        raise BoundaryError(f"{ADMIN_BOUNDARY}: {len(problems)} problem(s) in {name}; not published:\n"
                            + "\n".join(f"  - {p}" for p in problems))
    for u in units:
        d = u["delivered_area_km2"]
        if d is not None and abs(d - u["area_km2"]) > AREA_WARN_RATIO * u["area_km2"]:
            log.warning("%s row %s (code %s): delivered area %.3f km², computed %.3f km²", name, u["row"], u["code"],
                        d, u["area_km2"])
    cols = tc.column_names
    records = [{"code": u["code"], "name": u["name"], "kind": u["kind"], "area_km2": float(u["area_km2"]),
                "geometry": geometry_text(u["geometry"]),
                "_lineage": _lineage(cols, BOUNDARY_SOURCE, batch["batch_id"], batch["file_sha256"], u["row"])}
               for u in units]
    schema = f"code string, name string, kind string, area_km2 double, geometry string, _lineage map<string,{LINEAGE_TYPE}>"
    candidate = spark.createDataFrame(records, schema=schema)
    res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of, "inputs": batch["batch_id"]})
    return {"table": ADMIN_BOUNDARY, "status": res.status, "rows": res.rows, "batch_id": batch["batch_id"],
            "area_km2": round(sum(u["area_km2"] for u in units), 3), "seconds": round(time.time() - t0, 2)}


# ------------------------------------------------------------------ base.poi

def _address_codes(spark: SparkSession, settings: Settings, batch_id: str) -> DataFrame | None:
    """``(record_key, address_code)`` of the batch's POIs matched by the address library, when it
    has run (jobs/address_library.py reads raw/ghzrzy_poi, so there is no cycle)."""
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
    return geo.assign_units(wgs84_columns(df, geometry, "_wgs_lon", "_wgs_lat"), "_wgs_lon", "_wgs_lat", boundaries,
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
    written = _write_findings_if_changed(spark, settings, found, run_id)
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


def _write_findings_if_changed(spark: SparkSession, settings: Settings, found: DataFrame, run_id: str) -> bool:
    path = io.table_path(settings, *findings.FINDINGS)
    new_fp = io.fingerprint(found)
    if io.is_table(spark, path):
        old = findings.conform(io.read(spark, path).where(F.col("run_id") == run_id))
        if io.fingerprint(old) == new_fp:
            return False
    elif new_fp.startswith("0:"):
        return False
    findings.write(settings, found, run_id)
    return True


PARTS = ("boundaries", "poi")


def run(settings: Settings, as_of: str, parts: tuple[str, ...] = PARTS) -> list[dict]:
    """Build base.admin_boundary (``boundaries``), then base.poi (``poi``, when POIs have been
    delivered). The pipeline builds the POIs after the standard address library
    (jobs/address_library.py), whose links give them their address codes: built before it, a second
    run would publish them again with the codes."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown} of the base map; choose from {list(PARTS)}")
    spark = get_spark(settings)
    out = []
    if "boundaries" in parts:
        out.append(build_admin_boundary(settings, as_of, spark))
    if "poi" in parts:
        if io.is_table(spark, io.table_path(settings, "raw", POI_SOURCE)):
            out.append(build_poi(settings, as_of, spark))
        else:
            log.warning("%s: no raw data yet from %s; not built", POI, POI_SOURCE)
    return out


# ------------------------------------------------------------------ evaluation

def _read_truth(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def assigned_locations(spark: SparkSession, settings: Settings, shas: list[str] | None = None) -> dict:
    """``{source: {record_key: town_code or ""}}`` as the lake decided it: every base table with a
    ``town_code`` whose key is a source's record key (``base.poi`` -> ghzrzy_poi, ...), the
    ``town_code`` of ``quality/address_links`` when it has one, and ``""`` for every
    ``point_outside_district`` finding (of the files ``shas`` when given)."""
    contracts = contracts_mod.load(settings.contracts_dir)
    out: dict = {}
    for tc in contracts.tables.values():
        if tc.zone != "base" or "town_code" not in tc.column_names or len(tc.key) != 1:
            continue
        src = tc.columns[tc.column_names.index(tc.key[0])].authority
        if src not in contracts.sources or contracts.sources[src].record_key != tc.key[0]:
            continue
        path = io.table_path(settings, tc.zone, tc.name)
        if io.is_table(spark, path):
            for r in io.read(spark, path).select(tc.key[0], "town_code").collect():
                out.setdefault(src, {})[str(r[0])] = r[1] or ""
    links = io.table_path(settings, "quality", "address_links")
    if io.is_table(spark, links):
        ldf = io.read(spark, links)
        if {"source", "record_key", "town_code"} <= set(ldf.columns):
            for r in ldf.select("source", "record_key", "town_code").distinct().collect():
                out.setdefault(r[0], {}).setdefault(str(r[1]), r[2] or "")
    fpath = io.table_path(settings, *findings.FINDINGS)
    if io.is_table(spark, fpath):
        fdf = io.read(spark, fpath).where(F.col("defect_type") == OUTSIDE)
        if shas is not None:
            fdf = fdf.where(F.col("_file_sha256").isin(shas))
        for r in fdf.select("source", "record_key").distinct().collect():
            out.setdefault(r[0], {})[str(r[1])] = ""
    return out


def evaluate_locations(spark: SparkSession, settings: Settings, truth_dir: str | Path) -> dict:
    """Town assignment against ``truth/locations.csv`` (``source, record_key, town_code``; empty =
    outside the district) for every source present in both: per source the records compared, the
    accuracy (assigned code == true code, outside == outside) and the records the lake never
    placed (quarantined earlier); and precision/recall of ``point_outside_district``. When the folder
    has ``manifest.json``, only findings on its files count (as in jobs/evaluate.py)."""
    path = Path(truth_dir) / "truth" / "locations.csv"
    if not path.exists():
        raise InputError(f"{path}: not found; evaluate_locations needs the folder written by the generator")
    truth: dict = {}
    for r in _read_truth(path):
        truth.setdefault(r["source"], {})[r["record_key"]] = (r.get("town_code") or "").strip()
    manifest = Path(truth_dir) / "manifest.json"  # written by `lake generate`: the generated files
    shas = None
    if manifest.exists():  # every list of file entries: "files", "spatial_files", ...
        shas = [f["sha256"] for v in json.loads(manifest.read_text(encoding="utf-8")).values() if isinstance(v, list)
                for f in v if isinstance(f, dict) and "sha256" in f]
    assigned = assigned_locations(spark, settings, shas)
    per_source = {}
    tp = fp = fn = 0
    for src in sorted(set(truth) & set(assigned)):
        t, a = truth[src], assigned[src]
        common = set(t) & set(a)
        right = sum(1 for k in common if t[k] == a[k])
        s_tp = sum(1 for k in common if t[k] == "" and a[k] == "")
        s_fp = sum(1 for k, v in a.items() if v == "" and t.get(k, "x") != "")
        s_fn = sum(1 for k in common if t[k] == "" and a[k] != "")
        tp, fp, fn = tp + s_tp, fp + s_fp, fn + s_fn
        per_source[src] = {
            "truth": len(t), "compared": len(common), "not_placed": len(set(t) - set(a)),
            "accuracy": round(right / len(common), 4) if common else None,
            "outside_truth": sum(1 for v in t.values() if v == ""), "outside_found": sum(1 for v in a.values() if v == ""),
            "wrong_examples": sorted((k, t[k], a[k]) for k in common if t[k] != a[k])[:5],
        }
    outside = {
        "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
    }
    return {"sources": per_source, OUTSIDE: outside}
