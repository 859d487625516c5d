"""jobs.base.admin_boundary and jobs.base.poi on small inputs landed through the real ingest: base.admin_boundary and base.poi
through their gates, outside points as findings, idempotent re-runs, the location evaluation."""
from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import shapely
from pyspark.sql import functions as F

from jobs.base import admin_boundary
from jobs.base import poi as poi_job
from jobs.landing import ingest
from lake import geo, io
from sample import basemap, evaluate_spatial
from quality import findings

AS_OF = "2026-11-01"
CLASSES = ["餐饮服务", "购物服务", "医疗保健服务", "科教文化服务", "公司企业", "产业园区"]
OUTSIDE_POINTS = [(116.05, 39.60), (116.90, 39.90), (116.2000, 39.7700)]  # the last: just west of the outline


@pytest.fixture(scope="module")
def lake(spark, settings, tmp_path_factory):
    """A lake of its own with the 22 boundaries landed and base.admin_boundary built."""
    root = tmp_path_factory.mktemp("spatial")
    s = settings.with_root(str(root / "lake"))
    units = basemap.district_boundaries()
    f = root / "ghzrzy_boundaries_20260101.geojson"
    f.write_text(json.dumps(geo.boundaries_geojson(units), ensure_ascii=False), encoding="utf-8")
    landed = ingest.ingest_file(s, "ghzrzy_boundaries", f, spark=spark)
    built = admin_boundary.build_admin_boundary(s, AS_OF, spark)
    return {"settings": s, "root": root, "units": units, "landed": landed, "built": built}


def _version(spark, s, zone, name):
    return io.version(spark, io.table_path(s, zone, name))


def test_admin_boundary_published(spark, lake):
    s, units, built = lake["settings"], lake["units"], lake["built"]
    assert (built["status"], built["rows"], built["batch_id"]) == ("published", 22, lake["landed"].batch_id)
    assert built["area_km2"] == pytest.approx(1036, rel=0.05)
    rows = io.read(spark, io.table_path(s, "base", "admin_boundary")).orderBy("code").collect()
    assert [r["code"] for r in rows] == [u["code"] for u in units]
    assert [(r["name"], r["kind"]) for r in rows] == [(u["name"], u["kind"]) for u in units]
    for r, u in zip(rows, units):
        g = shapely.from_geojson(r["geometry"])
        assert g.geom_type == "Polygon" and g.is_valid
        assert shapely.hausdorff_distance(g, u["geometry"]) < 1e-6  # WGS-84 (CGCS2000 taken as equal), 1e-7 rounding
        assert r["area_km2"] == pytest.approx(geo.area_km2(u["geometry"]), rel=1e-4)
        assert r["_lineage"]["geometry"]["row"] == int(r["code"][-3:])  # feature number in the file
        assert r["_lineage"]["code"]["file_sha256"] == lake["landed"].sha256
    val = io.read(spark, io.table_path(s, "quality", "validations")).where(F.col("table") == "base.admin_boundary")
    assert val.count() >= 8 and val.where(~F.col("success")).count() == 0
    # the boundaries read back for point in polygon are the published ones
    loaded = admin_boundary.load_boundaries(spark, s)
    assert [b["code"] for b in loaded] == [u["code"] for u in units]
    assert loaded[0]["lineage"]["source"] == "ghzrzy_boundaries"


def test_admin_boundary_rerun_changes_nothing(spark, lake):
    s = lake["settings"]
    before = _version(spark, s, "base", "admin_boundary")
    again = admin_boundary.build_admin_boundary(s, AS_OF, spark)
    assert again["status"] == "unchanged" and again["rows"] == 22
    assert _version(spark, s, "base", "admin_boundary") == before


def test_check_boundaries_names_every_problem(lake):
    units = lake["units"]
    fc = geo.boundaries_geojson(units[:4])
    rows = [{**f["properties"], "geometry": json.dumps(f["geometry"]), "_row": i + 1} for i, f in enumerate(fc["features"])]
    ok, problems = admin_boundary.check_boundaries(rows, "CGCS2000", "b.geojson")
    assert problems == [] and [u["code"] for u in ok] == [u["code"] for u in units[:4]]

    bowtie = {"type": "Polygon", "coordinates": [[[116.3, 39.6], [116.4, 39.7], [116.4, 39.6], [116.3, 39.7], [116.3, 39.6]]]}
    far = shapely.affinity.translate(units[2]["geometry"], xoff=1.0)
    bad = [
        {**rows[0]},
        {**rows[1], "code": rows[0]["code"]},  # the same code twice
        {**rows[2], "geometry": json.dumps(shapely.geometry.mapping(far))},  # 1 degree east
        {**rows[3], "geometry": json.dumps(bowtie)},  # self-intersecting
        {**rows[3], "_row": 5, "code": "110115023", "geometry": json.dumps(shapely.geometry.mapping(units[0]["geometry"]))},
        {**rows[3], "_row": 6, "code": "110115024", "geometry": "{not json"},
        {**rows[3], "_row": 7, "code": "110115025", "geometry": json.dumps({"type": "Point", "coordinates": [116.4, 39.7]})},
    ]
    _, problems = admin_boundary.check_boundaries(bad, "CGCS2000", "b.geojson")
    text = "\n".join(problems)
    assert len(problems) == 6, text
    assert "b.geojson rows 1 and 2: code 110115001 appears twice (rule code.unique)" in text
    assert "b.geojson row 3 (code 110115003)" in text and "(rule geometry.extent)" in text
    assert "b.geojson row 4 (code 110115004): geometry is not valid: Self-intersection" in text
    assert "b.geojson rows 1 and 5: units 110115001 and 110115023 overlap by" in text and "(rule geometry.overlap)" in text
    assert "b.geojson row 6 (code 110115024): geometry is not GeoJSON" in text
    assert "b.geojson row 7 (code 110115025): geometry is Point" in text
    # a GCJ-02 delivery is converted: the same polygons shifted into GCJ-02 come back within 1 cm
    shifted = [{**r, "geometry": json.dumps(shapely.geometry.mapping(shapely.transform(
        u["geometry"], lambda c: np.column_stack(geo.from_wgs84(c[:, 0], c[:, 1], "GCJ02")))))}
        for r, u in zip(rows, units)]
    back, problems = admin_boundary.check_boundaries(shifted, "GCJ02", "g.geojson")
    assert problems == []
    assert max(shapely.hausdorff_distance(b["geometry"], u["geometry"]) for b, u in zip(back, units)) < 2e-7


# ----------------------------------------------------------------------------- POIs

def _pois(units, n_inside=60, seed=3):
    """POIs at known WGS-84 points: inside random units, on shared vertices, and outside; each
    delivered in its own coordinate system. Returns (rows, truth {poi_id: (lon, lat, town_code)})."""
    rng = random.Random(seed)
    systems = ["WGS84", "GCJ02", "BD09"]
    points = []
    for i in range(n_inside):
        u = units[i % 22]
        points.append((*geo.random_point_in(u["geometry"], rng), u["code"]))
    # a vertex shared by several units: the lowest code covering it
    verts = shapely.get_coordinates(units[11]["geometry"])  # 黄村镇 borders the Huangcun streets
    shared = []
    for x, y in verts:
        covering = [u["code"] for u in units if u["geometry"].covers(shapely.Point(x, y))]
        if len(covering) > 1:
            shared.append((float(x), float(y), min(covering)))
    assert len(shared) >= 5
    points += shared[:5]
    for x, y in OUTSIDE_POINTS:
        points.append((x, y, ""))
    rows, truth = [], {}
    for i, (x, y, code) in enumerate(points):
        # points exactly on a border are delivered in WGS-84: a conversion would move them off it
        crs = "WGS84" if n_inside <= i < n_inside + 5 else systems[i % 3]
        dx, dy = geo.from_wgs84([x], [y], crs)
        pid = f"POI{i + 1:05d}"
        rows.append({"poi_id": pid, "name": f"测试点{i + 1}", "category": CLASSES[i % len(CLASSES)],
                     "address": f"北京市大兴区测试路{i + 1}号", "lon": round(float(dx[0]), 9), "lat": round(float(dy[0]), 9),
                     "coord_sys": crs})
        truth[pid] = (x, y, code)
    return rows, truth


@pytest.fixture(scope="module")
def pois(spark, lake):
    s, root = lake["settings"], lake["root"]
    rows, truth = _pois(lake["units"])
    f = root / "ghzrzy_poi_20261001.jsonl"
    again = {**rows[1], "name": rows[1]["name"] + "（重复）"}  # the same poi_id later in the file: a duplicate
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*rows, again]), encoding="utf-8")
    landed = ingest.ingest_file(s, "ghzrzy_poi", f, spark=spark)
    # the address library matched one POI's address (jobs.base.standard_address writes these links)
    links = spark.createDataFrame(
        [("address-test", "ghzrzy_poi", "POI00001", "11011500101234ABC", landed.batch_id)],
        "run_id string, source string, record_key string, address_code string, _batch_id string")
    io.replace_where(links, io.table_path(s, "quality", "address_links"), "run_id = 'address-test'")
    built = poi_job.build_poi(s, AS_OF, spark)
    return {"rows": rows, "truth": truth, "landed": landed, "built": built}


def test_poi_published_with_towns(spark, lake, pois):
    s, truth, built = lake["settings"], pois["truth"], pois["built"]
    n_out = len(OUTSIDE_POINTS)
    assert pois["landed"].rows_raw == len(truth) + 1 and pois["landed"].rows_quarantined == 0
    assert (built["status"], built["rows"], built["outside"]) == ("published", len(truth) - n_out, n_out)
    assert built["duplicates"] == 1
    assert built["findings_written"] is True
    got = {r["poi_id"]: r for r in io.read(spark, io.table_path(s, "base", "poi")).collect()}
    assert set(got) == {k for k, v in truth.items() if v[2]}
    for pid, r in got.items():
        x, y, code = truth[pid]
        assert r["town_code"] == code, pid
        assert geo.distance_m(r["lon"], r["lat"], x, y) < 0.05  # back to WGS-84 within 5 cm
        assert r["_lineage"]["lon"]["row"] == int(pid[3:])  # JSON lines: line number
        assert r["_lineage"]["town_code"]["source"] == "ghzrzy_boundaries"
    assert got["POI00001"]["address_code"] == "11011500101234ABC"
    assert got["POI00002"]["name"] == "测试点2"  # the first of the duplicates is kept
    assert got["POI00002"]["address_code"] is None
    names = {u["code"]: u["name"] for u in lake["units"]}
    assert all(r["town"] == names[r["town_code"]] for r in got.values())
    val = io.read(spark, io.table_path(s, "quality", "validations")).where(F.col("table") == "base.poi")
    assert val.count() >= 9 and val.where(~F.col("success")).count() == 0


def test_outside_points_are_findings(spark, lake, pois):
    s, truth, landed = lake["settings"], pois["truth"], pois["landed"]
    f = (io.read(spark, io.table_path(s, *findings.FINDINGS))
         .where(F.col("defect_type") == poi_job.OUTSIDE).orderBy("_row").collect())
    outside = sorted(k for k, v in truth.items() if not v[2])
    assert [r["record_key"] for r in f] == outside
    for r in f:
        assert (r["source"], r["field"], r["rule"], r["stage"]) == ("ghzrzy_poi", "lon", "geometry.outside_district", "spatial")
        assert r["_file_sha256"] == landed.sha256 and r["_batch_id"] == landed.batch_id
        assert r["_row"] == int(r["record_key"][3:])  # the line of the POI in the file
        assert r["department"] == "北京市规划和自然资源委员会大兴分局"
        assert r["value"].endswith(("WGS84", "GCJ02", "BD09"))
    dup = (io.read(spark, io.table_path(s, *findings.FINDINGS)).where(F.col("defect_type") == "duplicate_record")
           .select("source", "record_key", "field", "rule", "_row").collect())
    assert [tuple(r) for r in dup] == [("ghzrzy_poi", "POI00002", "poi_id", "duplicate.entity_key", len(truth) + 1)]


def test_poi_rerun_changes_nothing(spark, lake, pois):
    s = lake["settings"]
    versions = [_version(spark, s, "base", "poi"), _version(spark, s, "quality", "findings")]
    again = poi_job.build_poi(s, AS_OF, spark)
    assert (again["status"], again["findings_written"], again["outside"]) == ("unchanged", False, len(OUTSIDE_POINTS))
    assert [_version(spark, s, "base", "poi"), _version(spark, s, "quality", "findings")] == versions
    assert [r["status"] for r in admin_boundary.build(s, AS_OF) + poi_job.build(s, AS_OF)] == ["unchanged", "unchanged"]


def test_evaluate_locations(spark, lake, pois, tmp_path):
    truth = pois["truth"]
    (tmp_path / "truth").mkdir()

    def write(rows):
        with open(tmp_path / "truth" / "locations.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "record_key", "town_code"])
            w.writerows(rows)

    rows = [("ghzrzy_poi", k, v[2]) for k, v in truth.items()] + [("psb_doorplates", "D1", "110115001")]
    write(rows)
    res = evaluate_spatial.evaluate_locations(spark, lake["settings"], tmp_path)
    assert list(res["sources"]) == ["ghzrzy_poi"]  # doorplates are not in this lake
    poi = res["sources"]["ghzrzy_poi"]
    assert (poi["truth"], poi["compared"], poi["not_placed"], poi["accuracy"]) == (len(truth), len(truth), 0, 1.0)
    assert res[poi_job.OUTSIDE] == {"true_positives": 3, "false_positives": 0, "false_negatives": 0,
                                    "precision": 1.0, "recall": 1.0}
    # a truth file that disagrees: one inside POI really outside, one outside POI really inside
    rows[0] = ("ghzrzy_poi", rows[0][1], "")
    rows[-2] = ("ghzrzy_poi", rows[-2][1], "110115005")
    write(rows)
    res = evaluate_spatial.evaluate_locations(spark, lake["settings"], tmp_path)
    assert res["sources"]["ghzrzy_poi"]["accuracy"] == round((len(truth) - 2) / len(truth), 4)
    assert res[poi_job.OUTSIDE] == {"true_positives": 2, "false_positives": 1, "false_negatives": 1,
                                    "precision": round(2 / 3, 4), "recall": round(2 / 3, 4)}


def test_bad_boundary_delivery_is_not_published(spark, lake):
    s, root, units = lake["settings"], lake["root"], lake["units"]
    before = _version(spark, s, "base", "admin_boundary")
    fc = geo.boundaries_geojson(units)
    fc["features"][3]["geometry"] = shapely.geometry.mapping(units[3]["geometry"].buffer(0.02))  # grows into its neighbours
    f = root / "ghzrzy_boundaries_20270101.geojson"
    f.write_text(json.dumps(fc, ensure_ascii=False), encoding="utf-8")
    ingest.ingest_file(s, "ghzrzy_boundaries", f, spark=spark)
    with pytest.raises(admin_boundary.BoundaryError) as e:
        admin_boundary.build_admin_boundary(s, AS_OF, spark)
    msg = str(e.value)
    assert "ghzrzy_boundaries_20270101.geojson rows 4 and " in msg and "(rule geometry.overlap)" in msg
    assert "not published" in msg
    assert _version(spark, s, "base", "admin_boundary") == before


def test_generated_pois_are_located_as_the_truth_says(spark, lake, tmp_path):
    """The spatial generator's POIs (every row in its own coord_sys, ~0.3 % outside the district, a few
    duplicates) through ingest and build_poi, scored with evaluate_locations against its truth."""
    from sample.generate_spatial import generate_spatial

    s = lake["settings"]
    out = generate_spatial(0.01, 7, tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"files": out["files"]}), encoding="utf-8")
    poi_file = tmp_path / next(e["path"] for e in out["files"] if e["source"] == "ghzrzy_poi")
    landed = ingest.ingest_file(s, "ghzrzy_poi", poi_file, spark=spark)
    assert landed.rows_quarantined == 0
    built = poi_job.build_poi(s, AS_OF, spark)
    assert built["batch_id"] == landed.batch_id and built["status"] == "published"
    with open(tmp_path / "truth" / "defects.csv", encoding="utf-8") as f:
        defects = [r for r in csv.DictReader(f) if r["source"] == "ghzrzy_poi"]
    n_outside = sum(r["defect_type"] == poi_job.OUTSIDE for r in defects)
    assert built["outside"] == n_outside > 0
    assert built["duplicates"] == sum(r["defect_type"] == "duplicate_record" for r in defects)
    res = evaluate_spatial.evaluate_locations(spark, s, tmp_path)
    poi = res["sources"]["ghzrzy_poi"]
    print(f"\ngenerated POIs: {poi['compared']} compared, accuracy {poi['accuracy']}, outside {res[poi_job.OUTSIDE]}")
    assert poi["not_placed"] == 0 and poi["accuracy"] >= 0.99
    assert res[poi_job.OUTSIDE]["precision"] == 1.0 and res[poi_job.OUTSIDE]["recall"] == 1.0
