"""``base.admin_boundary`` (一张底图): the towns and streets of the district as WGS-84 polygons
(docs/spatial_iot.md).

The latest delivery of ``raw/ghzrzy_boundaries`` (one row per town or street, the geometry as
GeoJSON text). Every geometry must parse, be a valid (Multi)Polygon inside the district's extent,
codes must be unique and no two units may overlap by more than ``OVERLAP_TOLERANCE_KM2``; any problem
stops the build with a message naming the file, row, code and rule (a base map with a broken unit
must not be published). Geometries are converted to WGS-84 from the contract's coordinate system,
rounded to 1e-7 degrees (1 cm) and the area is computed from them (equal-area projection,
``lake.geo.area_km2``). Published through ``quality.gates.publish`` (no new version when the content
is unchanged). ``load_boundaries`` is how every other job reads the base map.
"""
from __future__ import annotations

import json
import time

import numpy as np
import shapely
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import geo, io
from lake.files import InputError
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

TABLES = ("base.admin_boundary",)
LINEAGE_TYPE = io.LINEAGE_TYPE

BOUNDARY_SOURCE = "ghzrzy_boundaries"


ADMIN_BOUNDARY = "base.admin_boundary"


OVERLAP_TOLERANCE_KM2 = 0.001  # 1,000 m²: more than rounding slivers, far less than any real overlap


EXTENT_MARGIN_DEG = 0.01  # ~1 km around the district's extent


AREA_WARN_RATIO = 0.02  # a delivered area further than 2 % from the computed one is logged


DECIMALS = 7  # 1e-7 degrees ~ 1 cm


class BoundaryError(ValueError):
    """The boundary delivery cannot be published; the message lists every problem with its file,
    row, code and rule."""


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
    from jobs.landing.ingest import manifest_row

    row = manifest_row(settings, source, sha)
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


def load_boundaries(spark: SparkSession, settings: Settings) -> list[dict]:
    """The published ``base.admin_boundary`` as ``[{code, name, kind, geometry, lineage}]``."""
    path = io.table_path(settings, "base", "admin_boundary")
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{ADMIN_BOUNDARY} has not been built yet; build it first (`lake build`)")
    rows = io.read(spark, path).collect()
    out = geo.boundaries_from_rows(rows)
    lineage = {r["code"]: (r["_lineage"] or {}).get("code") for r in rows} if rows and "_lineage" in rows[0] else {}
    for b in out:
        lin = lineage.get(b["code"])
        b["lineage"] = lin.asDict() if lin is not None else None
    return out


def _lineage(columns: list[str], source: str, batch_id: str, sha: str, row) -> dict:
    return {c: {"source": source, "batch_id": batch_id, "file_sha256": sha, "row": int(row)} for c in columns}


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


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    """Build and publish ``base.admin_boundary``."""
    return [build_admin_boundary(settings, as_of)]
