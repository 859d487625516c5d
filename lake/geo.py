"""Coordinates and places: the one coordinate system of the lake, Daxing's administrative units, and
point-in-polygon assignment.

- The lake stores WGS-84 only (CGCS2000 is treated as equal: the two differ by centimetres).
  Departments deliver WGS-84/CGCS2000, GCJ-02 (the "Mars" obfuscation of Chinese web maps) or BD-09
  (Baidu's further offset on top of GCJ-02). ``to_wgs84`` / ``from_wgs84`` convert numpy arrays, the
  coordinate system given once or per row.
- The transformations are the maintained ``coordTransform`` package's (C extension, vectorised).
  Its forward functions (WGS-84 -> GCJ-02 -> BD-09) are the published algorithm. Its *inverse*
  ``gcj02_to_wgs84`` is the usual one-step approximation ``w = 2g - f(g)``: it evaluates the offset at
  the GCJ-02 point instead of at the unknown WGS-84 point, which costs up to ~2.8 m in Daxing
  (measured on 100 K points, see tests/test_geo.py). That is more than the 1 m the design allows, so
  ``to_wgs84`` starts from the library's inverse and refines it by fixed-point iteration with the
  library's own forward function (``w <- w - (f(w) - g)``); the offset changes slowly with position,
  so each step gains about three orders of magnitude and two or three steps reach 1e-10 degrees.
- ``assign_units`` adds the unit's code and name to a Spark DataFrame of points: the polygons are
  broadcast as WKB and queried with a shapely ``STRtree`` inside ``mapInPandas`` (vectorised, one
  tree per partition). A point on a shared border belongs to the unit with the lowest code; a point
  outside the district gets NULL.

Areas (``area_km2``) use the sinusoidal projection on the authalic sphere (R = 6371.0072 km), which
is equal-area: at district scale the difference from the ellipsoidal area is about 0.3 %.
"""
from __future__ import annotations

import json
import random

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from lake.reference import DISTRICT

CRS = ("WGS84", "CGCS2000", "GCJ02", "BD09")
IDENTITY_CRS = ("WGS84", "CGCS2000")
# the district's WGS-84 extent (lon_min, lat_min, lon_max, lat_max)
EXTENT = tuple(DISTRICT.bbox_wgs84)
DISTRICT_CODE = DISTRICT.code
AUTHALIC_RADIUS_KM = 6371.0072
_MAX_ITER = 10
_TOL_DEG = 1e-10  # ~0.01 mm


# ---------------------------------------------------------------- coordinate systems

def canonical_crs(crs) -> str:
    """``crs`` as one of ``CRS`` (case, ``-``, ``_`` and spaces ignored: ``gcj-02`` is ``GCJ02``);
    anything else is a ValueError naming it."""
    s = str(crs).strip().upper().replace("-", "").replace("_", "").replace(" ", "") if crs is not None else ""
    if s not in CRS:
        raise ValueError(f"unknown coordinate system {crs!r}; known: {', '.join(CRS)}")
    return s


def _arrays(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    lon = np.ascontiguousarray(np.asarray(lon, dtype=np.float64).ravel())
    lat = np.ascontiguousarray(np.asarray(lat, dtype=np.float64).ravel())
    if lon.shape != lat.shape:
        raise ValueError(f"lon and lat differ in length ({lon.size} and {lat.size})")
    return lon, lat


def _call(fn, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if lon.size == 0:
        return lon.copy(), lat.copy()
    x, y = fn(np.ascontiguousarray(lon), np.ascontiguousarray(lat))
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _forward(crs: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import coordTransform as ct

    if crs in IDENTITY_CRS:
        return lon.copy(), lat.copy()
    return _call(ct.wgs84_to_gcj02 if crs == "GCJ02" else ct.wgs84_to_bd09, lon, lat)


def _inverse(crs: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The library's approximate inverse, refined by iterating the library's forward function."""
    import coordTransform as ct

    if crs in IDENTITY_CRS:
        return lon.copy(), lat.copy()
    wx, wy = _call(ct.gcj02_to_wgs84 if crs == "GCJ02" else ct.bd09_to_wgs84, lon, lat)
    for _ in range(_MAX_ITER):
        fx, fy = _forward(crs, wx, wy)
        dx, dy = fx - lon, fy - lat
        wx, wy = wx - dx, wy - dy
        if max(np.abs(dx).max(initial=0.0), np.abs(dy).max(initial=0.0)) < _TOL_DEG:
            break
    return wx, wy


def _per_crs(fn, lon, lat, crs) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _arrays(lon, lat)
    out_x, out_y = np.full(lon.size, np.nan), np.full(lon.size, np.nan)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if isinstance(crs, str) or crs is None or np.ndim(crs) == 0:
        c = canonical_crs(crs)
        out_x[ok], out_y[ok] = fn(c, lon[ok], lat[ok])
        return out_x, out_y
    crs = np.asarray(crs, dtype=object).ravel()
    if crs.size != lon.size:
        raise ValueError(f"crs has {crs.size} values for {lon.size} points")
    keys = np.array(["" if v is None else str(v) for v in crs], dtype=object)
    for value in sorted(set(keys[ok].tolist())):  # a row without coordinates needs no system
        c = canonical_crs(None if value == "" else value)
        m = (keys == value) & ok
        out_x[m], out_y[m] = fn(c, lon[m], lat[m])
    return out_x, out_y


def to_wgs84(lon, lat, crs) -> tuple[np.ndarray, np.ndarray]:
    """WGS-84 (lon, lat) arrays from coordinates in ``crs`` (a name from ``CRS`` or an array with
    one name per row). NaN stays NaN (whatever its row's system); an unknown name is a ValueError
    naming it."""
    return _per_crs(_inverse, lon, lat, crs)


def from_wgs84(lon, lat, crs) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) in ``crs`` from WGS-84 arrays (the library's forward transformation)."""
    return _per_crs(_forward, lon, lat, crs)


def distance_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance in metres (haversine, mean Earth radius)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371008.8 * np.arcsin(np.sqrt(h))


def line_length_km(geometry) -> float:
    """Great-circle length in km of a WGS-84 (Multi)LineString or GeometryCollection of lines (the sum of
    ``distance_m`` over consecutive vertices of every part); 0 for an empty or point geometry."""
    if geometry is None or geometry.is_empty:
        return 0.0
    total = 0.0
    for part in shapely.get_parts(geometry):
        if part.geom_type == "LineString":
            xy = np.asarray(part.coords)[:, :2]
            total += float(distance_m(xy[:-1, 0], xy[:-1, 1], xy[1:, 0], xy[1:, 1]).sum())
        elif part.geom_type in ("MultiLineString", "GeometryCollection"):
            total += 1000 * line_length_km(part)
    return total / 1000


# ---------------------------------------------------------------- areas

def _sinusoidal(lon0: float):
    def project(coords: np.ndarray) -> np.ndarray:
        lat = np.radians(coords[:, 1])
        return np.column_stack([AUTHALIC_RADIUS_KM * np.radians(coords[:, 0] - lon0) * np.cos(lat),
                                AUTHALIC_RADIUS_KM * lat])
    return project


def area_km2(geometry) -> float:
    """Area in km² of a WGS-84 geometry (equal-area sinusoidal projection centred on it)."""
    if geometry is None or geometry.is_empty:
        return 0.0
    lon0 = (geometry.bounds[0] + geometry.bounds[2]) / 2
    return float(shapely.transform(geometry, _sinusoidal(lon0)).area)


# ---------------------------------------------------------------- the district and its units

def unit_kind(name: str) -> str:
    return "街道" if name.endswith("街道") else "镇"


def boundaries_geojson(boundaries: list[dict]) -> dict:
    """A GeoJSON FeatureCollection (properties code, name, kind, area_km2) of ``boundaries``."""
    features = []
    for b in boundaries:
        features.append({
            "type": "Feature",
            "properties": {"code": b["code"], "name": b["name"], "kind": b["kind"],
                           "area_km2": round(area_km2(b["geometry"]), 3)},
            "geometry": mapping(b["geometry"]),
        })
    return {"type": "FeatureCollection", "features": features}


def geometry_from_text(text: str):
    """A shapely geometry from GeoJSON geometry text."""
    return shape(json.loads(text))


def boundaries_from_rows(rows) -> list[dict]:
    """Boundaries (``[{code, name, kind, geometry}]`` in code order) from rows (dicts or Spark Rows)
    with ``code``, ``name``, ``kind`` and ``geometry`` as GeoJSON text."""
    out = []
    for r in rows:
        r = r.asDict() if hasattr(r, "asDict") else dict(r)
        out.append({"code": str(r["code"]), "name": r["name"], "kind": r.get("kind"),
                    "geometry": geometry_from_text(r["geometry"])})
    return sorted(out, key=lambda b: b["code"])


def random_point_in(geometry, rng: random.Random, max_tries: int = 100_000) -> tuple[float, float]:
    """A uniformly random (lon, lat) inside ``geometry`` (rejection sampling in its bounds);
    deterministic for a given ``rng`` state."""
    minx, miny, maxx, maxy = geometry.bounds
    shapely.prepare(geometry)
    for _ in range(max_tries):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.contains_xy(geometry, x, y):
            return x, y
    raise ValueError(f"no point found inside the geometry after {max_tries} tries (is it empty?)")


# ---------------------------------------------------------------- point in polygon

def _sorted(boundaries) -> list[dict]:
    if boundaries is None:
        raise ValueError("no boundaries given: pass the units of base.admin_boundary (jobs.base.admin_boundary.load_boundaries)")
    return sorted(boundaries, key=lambda b: b["code"])


def _lookup(tree, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Index (into the tree's geometries) of the first geometry covering each point, -1 for none."""
    n = lon.size
    best = np.full(n, -1, dtype=np.int64)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return best
    pos = np.flatnonzero(ok)
    pts = shapely.points(lon[ok], lat[ok])
    inp, geo = tree.query(pts, predicate="intersects")  # a point on an edge intersects both sides
    if inp.size:
        order = np.lexsort((geo, inp))
        first_inp, first = np.unique(inp[order], return_index=True)
        best[pos[first_inp]] = geo[order][first]
    return best


def assign_units(df, lon_col: str, lat_col: str, boundaries: list[dict],
                 code_col: str = "town_code", name_col: str = "town"):
    """``df`` with ``code_col`` and ``name_col`` added: the unit (of ``boundaries``) containing the WGS-84 point (``lon_col``, ``lat_col``). On a shared
    border the lowest code wins; outside every unit (or no coordinates) both are NULL."""
    from pyspark.sql.types import StringType, StructField, StructType

    for c in (code_col, name_col):
        if c in df.columns:
            raise ValueError(f"assign_units: the DataFrame already has a column '{c}'; pass another code_col/name_col")
    for c in (lon_col, lat_col):
        if c not in df.columns:
            raise ValueError(f"assign_units: no column '{c}' in the DataFrame (columns: {', '.join(df.columns)})")
    units = _sorted(boundaries)
    payload = [(b["code"], b["name"], shapely.to_wkb(b["geometry"])) for b in units]
    shared = df.sparkSession.sparkContext.broadcast(payload)
    schema = StructType(df.schema.fields + [StructField(code_col, StringType()), StructField(name_col, StringType())])

    def assign(batches):
        import pandas as pd

        codes, names, wkbs = zip(*shared.value)
        tree = shapely.STRtree(shapely.from_wkb(np.array(wkbs, dtype=object)))
        codes = np.array(codes + (None,), dtype=object)  # index -1 -> None
        names = np.array(names + (None,), dtype=object)
        for pdf in batches:
            lon = pd.to_numeric(pdf[lon_col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            lat = pd.to_numeric(pdf[lat_col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            idx = _lookup(tree, lon, lat)
            pdf[code_col] = codes[idx]
            pdf[name_col] = names[idx]
            yield pdf

    return df.mapInPandas(assign, schema)


def assign_units_pandas(lon, lat, boundaries: list[dict] | None = None):
    """Brute-force oracle for ``assign_units``: every polygon tested against every point with
    ``shapely.covers``, in code order, the first (lowest code) kept. Returns a pandas DataFrame
    with ``town_code`` and ``town``."""
    import pandas as pd

    lon, lat = _arrays(lon, lat)
    pts = shapely.points(lon, lat)
    code = np.full(lon.size, None, dtype=object)
    name = np.full(lon.size, None, dtype=object)
    for b in _sorted(boundaries):
        hit = shapely.covers(b["geometry"], pts) & (code == None)  # noqa: E711 (element-wise)
        code[hit] = b["code"]
        name[hit] = b["name"]
    return pd.DataFrame({"town_code": code, "town": name})


def wgs84_columns(df, geometry: dict, lon_out: str = "lon", lat_out: str = "lat", decimals: int | None = None):
    """``df`` with ``lon_out``/``lat_out`` (double, WGS-84, full precision) computed from the columns a source
    contract's ``geometry`` names (``{lon, lat, crs}`` or ``{lon, lat, crs_column}``), in
    ``mapInPandas`` with ``lake.geo.to_wgs84``. Rows without coordinates get NULL; a row naming an
    unknown coordinate system fails the job with its file and row. With ``decimals`` the coordinates
    are rounded (1e-7 degrees is about 1 cm)."""
    from pyspark.sql.types import DoubleType, StructField, StructType

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
                        canonical_crs(value)
                    except ValueError as e:
                        i = int(np.flatnonzero(systems == value)[0]) if value is not None else \
                            int(np.flatnonzero(pd.isna(systems))[0])
                        where = (f"file {pdf['_file_sha256'].iloc[i][:16]} row {pdf['_row'].iloc[i]}"
                                 if "_row" in pdf and "_file_sha256" in pdf else f"row {i}")
                        raise ValueError(f"{where}: {crs_c}: {e} (rule geometry.crs)") from None
            else:
                systems = crs
            x, y = to_wgs84(lon, lat, systems)
            if decimals is not None:
                x, y = np.round(x, decimals), np.round(y, decimals)
            out = pdf.assign(**{lon_out: x, lat_out: y})
            yield out[names]

    return df.mapInPandas(convert, schema)
