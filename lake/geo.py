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
- ``district_outline`` and ``district_boundaries`` are a synthetic but plausible base map of the 22
  towns and streets (乡镇级) of Daxing, built deterministically: an outline polygon of the district,
  two small "cores" (Huangcun's six streets, the two streets of the Yizhuang development area) and
  Voronoi diagrams of fixed seed points. All the lines are noded together and polygonized, so
  neighbouring units share exactly the same edge vertices: the units tile the outline with no gap and
  no overlap (``shapely.coverage_is_valid`` holds).
- ``assign_units`` adds the unit's code and name to a Spark DataFrame of points: the polygons are
  broadcast as WKB and queried with a shapely ``STRtree`` inside ``mapInPandas`` (vectorised, one
  tree per partition). A point on a shared border belongs to the unit with the lowest code; a point
  outside the district gets NULL.

Areas (``area_km2``) use the sinusoidal projection on the authalic sphere (R = 6371.0072 km), which
is equal-area: at district scale the difference from the ellipsoidal area is about 0.3 %.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Point, Polygon, mapping, shape

CRS = ("WGS84", "CGCS2000", "GCJ02", "BD09")
IDENTITY_CRS = ("WGS84", "CGCS2000")
# the district's WGS-84 extent (lon_min, lat_min, lon_max, lat_max)
EXTENT = (116.13, 39.44, 116.72, 39.85)
DISTRICT_CODE = "110115"
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

# Outline of the district (lon, lat), counter-clockwise from the north-west; touches the extent at
# the north (Yizhuang), east (Caiyu), south (Yufa) and west (Yufa, along the Yongding river).
_OUTLINE = (
    (116.2903, 39.7748), (116.2857, 39.747), (116.281, 39.7053), (116.2717, 39.659), (116.2578, 39.6126),
    (116.23, 39.5709), (116.1929, 39.5384), (116.13, 39.505), (116.1976, 39.4967), (116.2532, 39.4828),
    (116.2996, 39.4689), (116.335, 39.44), (116.3784, 39.4782), (116.4108, 39.5013), (116.4386, 39.4782),
    (116.4664, 39.5013), (116.4989, 39.5384), (116.5267, 39.5755), (116.5545, 39.6033), (116.5916, 39.6219),
    (116.638, 39.6311), (116.6797, 39.6451), (116.72, 39.675), (116.6472, 39.7007), (116.6009, 39.7239),
    (116.5731, 39.747), (116.587, 39.7748), (116.5777, 39.8027), (116.5499, 39.8258), (116.51, 39.85),
    (116.4664, 39.8212), (116.4294, 39.8073), (116.383, 39.798), (116.3366, 39.7841),
)

# Seed point of every unit, in the order of lake.generate.DAXING_TOWNS (codes 110115001...022).
# Towns (镇) tile the district outside the two cores; streets (街道) tile their core.
_UNITS = (
    ("青云店镇", (116.490, 39.680)),
    ("采育镇", (116.640, 39.660)),
    ("安定镇", (116.500, 39.610)),
    ("礼贤镇", (116.440, 39.540)),
    ("榆垡镇", (116.270, 39.515)),
    ("庞各庄镇", (116.320, 39.600)),
    ("北臧村镇", (116.280, 39.670)),
    ("魏善庄镇", (116.405, 39.650)),
    ("长子营镇", (116.570, 39.700)),
    ("西红门镇", (116.330, 39.770)),
    ("旧宫镇", (116.440, 39.795)),
    ("黄村镇", (116.345, 39.705)),
    ("瀛海镇", (116.440, 39.745)),
    ("亦庄镇", (116.545, 39.760)),
    ("兴丰街道", (116.338, 39.728)),
    ("林校路街道", (116.318, 39.722)),
    ("清源街道", (116.352, 39.712)),
    ("观音寺街道", (116.372, 39.728)),
    ("天宫院街道", (116.335, 39.700)),
    ("高米店街道", (116.355, 39.745)),
    ("荣华街道", (116.500, 39.795)),
    ("博兴街道", (116.525, 39.782)),
)
# the two cores: centre (lon, lat), radius in km, and the streets inside
_CORES = (
    ((116.345, 39.725), 3.4, ("兴丰街道", "林校路街道", "清源街道", "观音寺街道", "天宫院街道", "高米店街道")),
    ((116.512, 39.789), 2.6, ("荣华街道", "博兴街道")),
)


def _ellipse(center: tuple[float, float], radius_km: float, n: int = 72) -> Polygon:
    lon0, lat0 = center
    dlat = radius_km / 111.195
    dlon = radius_km / (111.195 * math.cos(math.radians(lat0)))
    pts = [(round(lon0 + dlon * math.cos(2 * math.pi * i / n), 6), round(lat0 + dlat * math.sin(2 * math.pi * i / n), 6))
           for i in range(n)]
    return Polygon(pts)


def district_outline() -> Polygon:
    """The district's outline (WGS-84 Polygon, ~1,036 km²)."""
    return shapely.orient_polygons(Polygon(_OUTLINE))


def unit_kind(name: str) -> str:
    return "街道" if name.endswith("街道") else "镇"


def district_boundaries() -> list[dict]:
    """The 22 towns and streets: ``[{code, name, kind, geometry}]`` in code order (110115001...022,
    the order of ``lake.generate.DAXING_TOWNS``), WGS-84 Polygons tiling ``district_outline()``."""
    outline = district_outline()
    seeds = {name: pt for name, pt in _UNITS}
    box = shapely.box(EXTENT[0] - 0.2, EXTENT[1] - 0.2, EXTENT[2] + 0.2, EXTENT[3] + 0.2)
    cores = [(_ellipse(c, r), names) for c, r, names in _CORES]
    core_names = {n for _, names in cores for n in names}
    town_names = [n for n, _ in _UNITS if n not in core_names]
    lines = [outline.boundary]
    # Voronoi in a locally isotropic plane (longitude scaled by cos(latitude)), mapped back to degrees
    k = math.cos(math.radians((EXTENT[1] + EXTENT[3]) / 2))
    squash = lambda c: np.column_stack([c[:, 0] * k, c[:, 1]])  # noqa: E731
    stretch = lambda c: np.column_stack([c[:, 0] / k, c[:, 1]])  # noqa: E731
    for names in [town_names] + [list(n) for _, n in cores]:
        sites = shapely.transform(MultiPoint([seeds[n] for n in names]), squash)
        edges = shapely.voronoi_polygons(sites, extend_to=shapely.transform(box, squash), only_edges=True)
        lines.append(shapely.transform(edges, stretch))
    lines += [core.boundary for core, _ in cores]
    # node every line against every other: neighbouring faces share identical vertices
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.unary_union(lines, grid_size=1e-7))))
    shapely.prepare(outline)
    pieces: dict[str, list] = {n: [] for n, _ in _UNITS}
    for face in faces:
        p = face.point_on_surface()
        if not outline.contains(p):
            continue
        candidates = town_names
        for core, names in cores:
            if core.contains(p):
                candidates = names
                break
        nearest = min(candidates, key=lambda n: ((seeds[n][0] - p.x) * k) ** 2 + (seeds[n][1] - p.y) ** 2)
        pieces[nearest].append(face)
    out = []
    for i, (name, _) in enumerate(_UNITS):
        geom = shapely.orient_polygons(shapely.coverage_union_all(pieces[name]))
        out.append({"code": f"{DISTRICT_CODE}{i + 1:03d}", "name": name, "kind": unit_kind(name), "geometry": geom})
    return out


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
    return sorted(boundaries if boundaries is not None else district_boundaries(), key=lambda b: b["code"])


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


def assign_units(df, lon_col: str, lat_col: str, boundaries: list[dict] | None = None,
                 code_col: str = "town_code", name_col: str = "town"):
    """``df`` with ``code_col`` and ``name_col`` added: the unit (of ``boundaries``, default
    ``district_boundaries()``) containing the WGS-84 point (``lon_col``, ``lat_col``). On a shared
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
