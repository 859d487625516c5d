"""lake.geo: coordinate transformations against an independent implementation, the district's units,
point-in-polygon (Spark STRtree) against a brute-force oracle, and GeoJSON through the ingest."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import prcoords
import pyarrow.parquet as pq
import pytest
import shapely

from lake import geo
from sample import basemap
from lake.contracts import ContractError, parse_source
from lake.files import InputError, parse_geojson
from sample.generate import DAXING_TOWNS

REPO = Path(__file__).resolve().parent.parent
N_POINTS = 100_000
MAX_ERROR_M = 1.0


# ----------------------------------------------------------------------------- transformations

@pytest.fixture(scope="module")
def wgs_points():
    """100 K WGS-84 points in and around Daxing (the district's extent plus ~20 km each way)."""
    rng = np.random.default_rng(20260401)
    return rng.uniform(115.9, 117.0, N_POINTS), rng.uniform(39.25, 40.05, N_POINTS)


PRCOORDS = {  # crs -> (forward WGS-84 -> crs, precise inverse crs -> WGS-84), each on Coords(lat, lon)
    "GCJ02": (prcoords.wgs_gcj, prcoords.gcj_wgs_bored),
    "BD09": (prcoords.wgs_bd, prcoords.bd_wgs_bored),
}


def _prcoords(fn, lon, lat):
    out = np.array([fn((la, lo), False) for lo, la in zip(lon.tolist(), lat.tolist())])
    return out[:, 1], out[:, 0]


@pytest.mark.parametrize("crs", ["GCJ02", "BD09"])
def test_transforms_agree_with_prcoords_within_1m(wgs_points, crs):
    lon, lat = wgs_points
    fwd, inv = PRCOORDS[crs]
    t0 = time.time()
    x, y = geo.from_wgs84(lon, lat, crs)
    back_lon, back_lat = geo.to_wgs84(x, y, crs)
    ours = time.time() - t0
    ref_x, ref_y = _prcoords(fwd, lon, lat)
    ref_back_lon, ref_back_lat = _prcoords(inv, ref_x, ref_y)

    forward_err = geo.distance_m(x, y, ref_x, ref_y)  # WGS-84 -> crs, both implementations
    cross_err = geo.distance_m(*geo.to_wgs84(ref_x, ref_y, crs), ref_back_lon, ref_back_lat)  # crs -> WGS-84
    round_trip = geo.distance_m(lon, lat, back_lon, back_lat)
    truth_err = geo.distance_m(*geo.to_wgs84(ref_x, ref_y, crs), lon, lat)  # inverse of prcoords' forward
    print(f"\n{crs}: {N_POINTS} points both ways in {ours:.2f}s; max error forward {forward_err.max():.2e} m, "
          f"inverse vs prcoords {cross_err.max():.2e} m, round trip {round_trip.max():.2e} m")
    assert np.isfinite(x).all() and np.isfinite(back_lon).all()
    assert forward_err.max() < MAX_ERROR_M
    assert cross_err.max() < MAX_ERROR_M
    assert round_trip.max() < MAX_ERROR_M
    assert truth_err.max() < MAX_ERROR_M
    # the offsets are real (hundreds of metres), so the comparison is not trivially passing
    assert geo.distance_m(lon, lat, x, y).min() > 100


def test_library_inverse_alone_is_not_good_enough(wgs_points):
    """Why to_wgs84 refines coordTransform's gcj02_to_wgs84: the one-step inverse is metres off."""
    import coordTransform

    lon, lat = wgs_points
    x, y = geo.from_wgs84(lon, lat, "GCJ02")
    raw = np.asarray(coordTransform.gcj02_to_wgs84(x, y), dtype=float)
    raw_err = geo.distance_m(lon, lat, raw[0], raw[1]).max()
    refined_err = geo.distance_m(lon, lat, *geo.to_wgs84(x, y, "GCJ02")).max()
    print(f"\ncoordTransform.gcj02_to_wgs84 max error {raw_err:.2f} m; refined {refined_err:.2e} m")
    assert raw_err > MAX_ERROR_M > 1000 * refined_err


def test_crs_per_row_identity_nan_and_unknown():
    lon = np.array([116.40, 116.40, 116.40, 116.40, np.nan])
    lat = np.array([39.70, 39.70, 39.70, 39.70, 39.70])
    crs = np.array(["WGS84", "CGCS2000", "gcj-02", "BD09", None], dtype=object)
    x, y = geo.to_wgs84(lon, lat, crs)
    assert (x[:2], y[:2]) == (pytest.approx([116.40, 116.40]), pytest.approx([39.70, 39.70]))
    gx, gy = geo.to_wgs84(lon[2:3], lat[2:3], "GCJ02")
    bx, by = geo.to_wgs84(lon[3:4], lat[3:4], "BD09")
    assert (x[2], y[2], x[3], y[3]) == (gx[0], gy[0], bx[0], by[0])
    assert np.isnan(x[4]) and np.isnan(y[4])  # no coordinates: nothing converted, no error for its crs
    with pytest.raises(ValueError, match="unknown coordinate system 'EPSG:3857'"):
        geo.to_wgs84([116.4], [39.7], "EPSG:3857")
    with pytest.raises(ValueError, match="'MARS'"):
        geo.from_wgs84([116.4, 116.5], [39.7, 39.7], np.array(["GCJ02", "MARS"], dtype=object))
    with pytest.raises(ValueError, match="crs has 1 values for 2 points"):
        geo.to_wgs84([116.4, 116.5], [39.7, 39.7], ["GCJ02"])


# ----------------------------------------------------------------------------- units

@pytest.fixture(scope="module")
def units():
    return basemap.district_boundaries()


def test_outline_is_daxing_sized(units):
    outline = basemap.district_outline()
    assert outline.is_valid and outline.geom_type == "Polygon"
    assert outline.bounds == pytest.approx(geo.EXTENT)
    assert geo.area_km2(outline) == pytest.approx(1036, rel=0.05)


def test_22_units_in_code_order(units):
    assert [u["code"] for u in units] == [f"110115{i:03d}" for i in range(1, 23)]
    assert [u["name"] for u in units] == DAXING_TOWNS
    assert [u["kind"] for u in units] == ["街道" if n.endswith("街道") else "镇" for n in DAXING_TOWNS]
    assert sum(u["kind"] == "街道" for u in units) == 8
    assert all(u["geometry"].geom_type == "Polygon" and u["geometry"].is_valid for u in units)


def test_units_tile_the_outline(units):
    outline = basemap.district_outline()
    geoms = [u["geometry"] for u in units]
    areas = [geo.area_km2(g) for g in geoms]
    union = shapely.coverage_union_all(geoms)
    assert shapely.coverage_is_valid(geoms)  # neighbours share exactly the same edges
    assert geo.area_km2(union) == pytest.approx(geo.area_km2(outline), rel=1e-6)
    assert sum(areas) == pytest.approx(geo.area_km2(outline), rel=1e-6)
    assert sum(areas) == pytest.approx(1036, rel=0.05)
    assert shapely.hausdorff_distance(union, outline) < 1e-6  # degrees: the same outline
    overlaps = [geo.area_km2(geoms[i].intersection(geoms[j])) for i in range(22) for j in range(i + 1, 22)]
    assert max(overlaps) < 1e-6  # km²
    assert sum(1 for i in range(22) for j in range(i + 1, 22) if geoms[i].touches(geoms[j])) >= 40


def test_units_are_plausibly_placed(units):
    by_name = {u["name"]: u for u in units}
    c = {n: u["geometry"].centroid for n, u in by_name.items()}
    area = {n: geo.area_km2(u["geometry"]) for n, u in by_name.items()}
    streets = [n for n in by_name if n.endswith("街道")]
    towns = [n for n in by_name if not n.endswith("街道")]
    assert max(area[s] for s in streets) < min(area[t] for t in towns)
    huangcun = ("兴丰街道", "林校路街道", "清源街道", "观音寺街道", "天宫院街道", "高米店街道")
    for s in huangcun:  # the six Huangcun streets within ~5 km of (116.34, 39.73)
        assert abs(c[s].x - 116.34) < 0.06 and abs(c[s].y - 39.725) < 0.045, s
    assert c["亦庄镇"].x > 116.5 and c["亦庄镇"].y > 39.74  # north-east
    assert c["荣华街道"].x > 116.45 and c["博兴街道"].x > 116.45  # the Yizhuang development area
    assert c["榆垡镇"].y < 39.56 and c["礼贤镇"].y < 39.58  # the south
    assert c["采育镇"].x > 116.6  # the east
    assert basemap.district_boundaries()[5]["geometry"].equals_exact(by_name["庞各庄镇"]["geometry"], 0)  # deterministic


def test_geojson_round_trip(units):
    fc = json.loads(json.dumps(geo.boundaries_geojson(units), ensure_ascii=False))
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 22
    props = fc["features"][14]["properties"]
    assert (props["code"], props["name"], props["kind"]) == ("110115015", "兴丰街道", "街道")
    assert sum(f["properties"]["area_km2"] for f in fc["features"]) == pytest.approx(1036, rel=0.05)
    rows = [{**f["properties"], "geometry": json.dumps(f["geometry"])} for f in reversed(fc["features"])]
    back = geo.boundaries_from_rows(rows)
    assert [b["code"] for b in back] == [u["code"] for u in units]
    assert all(b["geometry"].equals_exact(u["geometry"], 0) for b, u in zip(back, units))


def test_random_point_in_is_inside_and_deterministic(units):
    g = units[18]["geometry"]  # 天宫院街道, one of the smallest
    a = [geo.random_point_in(g, random.Random(5)) for _ in range(3)]
    rng = random.Random(5)
    b = [geo.random_point_in(g, rng) for _ in range(200)]
    assert a[0] == a[1] == a[2] == b[0]
    assert len(set(b)) == 200
    assert all(g.contains(shapely.Point(p)) for p in b)


# ----------------------------------------------------------------------------- point in polygon

N_RANDOM = 18_000


def _test_points(units, n_random: int = N_RANDOM):
    """Random points over a box larger than the district (many outside), every unit vertex (on
    shared borders: two or three units cover it) and points along the unit boundaries."""
    rng = np.random.default_rng(11)
    lon = [rng.uniform(116.08, 116.77, n_random)]
    lat = [rng.uniform(39.40, 39.89, n_random)]
    verts = np.unique(np.concatenate([shapely.get_coordinates(u["geometry"]) for u in units]), axis=0)
    lon.append(verts[:, 0])
    lat.append(verts[:, 1])
    edges = [shapely.line_interpolate_point(u["geometry"].exterior, np.linspace(0, 1, 150, endpoint=False),
                                            normalized=True) for u in units]
    pts = shapely.get_coordinates(np.concatenate(edges))
    lon.append(pts[:, 0])
    lat.append(pts[:, 1])
    lon.append(np.array([np.nan, 116.4, 0.0]))
    lat.append(np.array([39.7, np.nan, 0.0]))
    return np.concatenate(lon), np.concatenate(lat), len(verts)


def test_assign_units_equals_brute_force_oracle(spark, units):
    lon, lat, n_vertices = _test_points(units)
    n = lon.size
    assert n >= 20_000
    pdf = pd.DataFrame({"id": np.arange(n), "lon": lon, "lat": lat})
    df = spark.createDataFrame(pdf, "id long, lon double, lat double").repartition(3)
    t0 = time.time()
    got = geo.assign_units(df, "lon", "lat", units).toPandas().sort_values("id").reset_index(drop=True)
    spark_s = time.time() - t0
    t0 = time.time()
    want = geo.assign_units_pandas(lon, lat, units)
    oracle_s = time.time() - t0
    print(f"\nassign_units: {n} points in {spark_s:.1f}s (Spark, STRtree); oracle {oracle_s:.1f}s")
    assert list(got.columns) == ["id", "lon", "lat", "town_code", "town"]
    assert got["town_code"].tolist() == want["town_code"].tolist()
    assert got["town"].tolist() == want["town"].tolist()

    outside = got["town_code"].isna()
    assert outside.sum() > 2000 and (~outside).sum() > 8000
    assert outside.iloc[-3:].all()  # NaN or null-island coordinates
    # every vertex lies on the district (inside or on its edge): all get exactly one unit, the
    # lowest code of the units covering it
    v = slice(N_RANDOM, N_RANDOM + n_vertices)
    assert got["town_code"].iloc[v].notna().all()
    pts = shapely.points(lon[v], lat[v])
    covering = np.array([shapely.covers(u["geometry"], pts) for u in units])  # units x points
    shared = covering.sum(axis=0) >= 2
    assert shared.sum() > 100  # many points really are on a border
    lowest = np.array([units[i]["code"] for i in covering.argmax(axis=0)], dtype=object)
    assert (got["town_code"].iloc[v].to_numpy() == lowest).all()
    # names follow codes
    codes = {u["code"]: u["name"] for u in units}
    assert all(codes[c] == t for c, t in zip(got["town_code"][~outside], got["town"][~outside]))


def test_assign_units_refuses_to_overwrite_a_column(spark, units):
    df = spark.createDataFrame([(116.4, 39.7, "黄村镇")], "lon double, lat double, town string")
    with pytest.raises(ValueError, match="already has a column 'town'"):
        geo.assign_units(df, "lon", "lat", units)
    got = geo.assign_units(df, "lon", "lat", units, name_col="unit").collect()[0]
    assert (got["town"], got["unit"], got["town_code"]) == ("黄村镇", "黄村镇", "110115012")


# ----------------------------------------------------------------------------- GeoJSON files and contracts

def _write_fc(path: Path, features) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False), encoding="utf-8")
    return path


def test_parse_geojson_rows(tmp_path, units):
    fc = geo.boundaries_geojson(units[:3])
    fc["features"].append({"type": "Feature", "properties": {"code": "110115099", "name": "无边界", "kind": "镇"},
                           "geometry": None})
    fc["features"].append("not a feature")
    fc["features"].append({"type": "Feature", "properties": {"code": "110115098", "colour": "red"},
                           "geometry": {"type": "Point", "coordinates": [116.4, 39.7]}})
    src = _write_fc(tmp_path / "b.geojson", fc["features"])
    cols = ["code", "name", "kind", "area_km2", "geometry"]
    res = parse_geojson(src, cols, "utf-8", str(tmp_path / "b.parquet"), "code")
    rows = sorted(pq.read_table(tmp_path / "b.parquet").to_pylist(), key=lambda r: r["_row"])
    assert (res.rows, res.malformed) == (6, 3)
    assert [r["_row"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["_field_count"] for r in rows] == [5, 5, 5, -1, -1, -1]
    assert rows[0]["code"] == "110115001" and rows[0]["kind"] == "镇" and float(rows[0]["area_km2"]) > 10
    assert shapely.from_geojson(rows[0]["geometry"]).equals_exact(units[0]["geometry"], 0)
    assert rows[0]["geometry"].startswith('{"type":"Polygon","coordinates":[[[')  # compact GeoJSON text
    assert rows[0]["_raw_line"] is None
    assert rows[3]["code"] == "110115099" and rows[3]["name"] is None and '"geometry":null' in rows[3]["_raw_line"]
    assert rows[4]["_raw_line"] == '"not a feature"'
    assert rows[5]["code"] == "110115098"  # unknown property: malformed, the record key is kept
    for bad, msg in ((b'{"type": "Feature"}', "not a GeoJSON FeatureCollection"), (b"[1, 2", "not valid JSON")):
        (tmp_path / "bad.geojson").write_bytes(bad)
        with pytest.raises(InputError, match=f"bad.geojson: {msg}"):
            parse_geojson(tmp_path / "bad.geojson", cols, "utf-8", str(tmp_path / "x.parquet"), "code")


def test_source_contract_geometry(tmp_path):
    sc = parse_source(REPO / "contracts" / "sources" / "ghzrzy_boundaries.yaml")
    assert sc.format == "geojson" and sc.geometry == {"column": "geometry", "crs": "CGCS2000"}
    base = (REPO / "contracts" / "sources" / "ghzrzy_boundaries.yaml").read_text(encoding="utf-8")
    for bad, msg in (("{column: geometry, crs: EPSG4326}", "geometry.crs 'EPSG4326' is not one of"),
                     ("{column: shape, crs: WGS84}", "geometry.column names column 'shape'"),
                     ("{lon: code, crs: WGS84}", "geometry has keys")):
        p = tmp_path / "ghzrzy_boundaries.yaml"
        p.write_text(base.replace("{column: geometry, crs: CGCS2000}", bad), encoding="utf-8")
        with pytest.raises(ContractError, match=msg):
            parse_source(p)
    p.write_text(base.replace("{column: geometry, crs: CGCS2000}", "{column: geometry, crs: gcj-02}"), encoding="utf-8")
    assert parse_source(p).geometry["crs"] == "GCJ02"


def test_geojson_file_lands_through_ingest(spark, settings, tmp_path, units):
    from jobs.landing import ingest
    from lake import io

    s = settings.with_root(str(tmp_path / "lake"))
    good = tmp_path / "ghzrzy_boundaries_20260101.geojson"
    good.write_text(json.dumps(geo.boundaries_geojson(units), ensure_ascii=False, indent=1), encoding="utf-8")
    res = ingest.ingest_file(s, "ghzrzy_boundaries", good, spark=spark)
    assert (res.rows_read, res.rows_raw, res.rows_quarantined) == (22, 22, 0)
    raw = io.read(spark, io.table_path(s, "raw", "ghzrzy_boundaries")).orderBy("_row").collect()
    assert [r["_row"] for r in raw] == list(range(1, 23))
    assert [r["code"] for r in raw] == [u["code"] for u in units]
    assert isinstance(raw[0]["area_km2"], float)
    assert all(shapely.from_geojson(r["geometry"]).equals_exact(u["geometry"], 0) for r, u in zip(raw, units))
    assert ingest.ingest_file(s, "ghzrzy_boundaries", good, spark=spark).skipped  # same file: nothing added

    fc = geo.boundaries_geojson(units[:2])
    fc["features"][1]["geometry"] = None
    fc["features"][0]["properties"]["kind"] = "区"
    bad = _write_fc(tmp_path / "ghzrzy_boundaries_20260102.geojson", fc["features"])
    res = ingest.ingest_file(s, "ghzrzy_boundaries", bad, spark=spark)
    assert (res.rows_read, res.rows_raw, res.rows_quarantined) == (2, 0, 2)
    q = (io.read(spark, io.table_path(s, "quarantine", "ghzrzy_boundaries"))
         .where(f"_file_sha256 = '{res.sha256}'").orderBy("_row").collect())
    assert [(r["_row"], r["code"], r["_rule"]) for r in q] == [(1, "110115001", "allowed_values"),
                                                               (2, "110115002", "parse.field_count")]
