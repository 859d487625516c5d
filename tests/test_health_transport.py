"""Medical institutions and bus lines (issue 18 item 6: jobs/base/health.py, jobs/base/transport.py,
jobs/topic/transport.py, sample/generate_services.py): the generator's truth re-derived from its files
(fast tier); the cross rules, placement and route facts on hand-written rows; the bus-line topic on
hand-written rows; on the tiny lake the findings against the truth, both base tables against their files
and the topic recomputed in plain Python from the published tables."""
from __future__ import annotations

import csv
import datetime
import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import shapely
from deltalake import DeltaTable

from lake import contracts as contracts_mod
from lake.reference import BUS_LINES, DISTRICT, HEALTH_FACILITIES, SERVICES
from sample import basemap

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
SOURCES = ("nhc_health_facilities", "jtj_bus_lines")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)
META = ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp"


def haversine(lon1, lat1, lon2, lat2) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def km(geom) -> float:
    """Great-circle km of a (multi)line, written here (the oracle of lake.geo.line_length_km)."""
    total = 0.0
    for part in shapely.get_parts(geom):
        if part.geom_type == "LineString":
            cs = list(part.coords)
            total += sum(haversine(*a, *b) for a, b in zip(cs, cs[1:]))
        elif part.geom_type in ("MultiLineString", "GeometryCollection"):
            total += 1000 * km(part)
    return total / 1000


def town_of(lon, lat, boundaries) -> str | None:
    for b in sorted(boundaries, key=lambda b: b["code"]):
        if shapely.covers(b["geometry"], shapely.Point(lon, lat)):
            return b["name"]
    return None


def route_wgs84(text: str):
    """The WGS-84 route of a WKT text, None when it is no line of two distinct points."""
    from lake import geo

    try:
        g = shapely.from_wkt(text)
    except shapely.errors.GEOSException:
        return None
    if g.geom_type != "LineString" or len(set(g.coords)) < 2:
        return None
    xs, ys = geo.to_wgs84([c[0] for c in g.coords], [c[1] for c in g.coords], "GCJ02")
    return shapely.LineString(list(zip(xs.round(7), ys.round(7))))


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


# --------------------------------------------------------------------------- the generator (fast tier)

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from sample.generate import generate

    out = tmp_path_factory.mktemp("services")
    manifest = generate(0.01, 3, out, iot_days=0)
    return {"out": out, "manifest": manifest}


def read_entry(out: Path, entry: dict) -> list[dict]:
    return list(csv.DictReader((out / entry["path"]).read_text(encoding=entry["encoding"]).splitlines()))


def stop_names(out: Path, manifest: dict, truth: set) -> set[str]:
    import re

    sv = SERVICES[BUS_LINES.stop_service]
    entry = next(e for e in manifest["spatial_files"] if e["source"] == "ghzrzy_poi")
    rows = [json.loads(x) for x in (out / entry["path"]).read_text(encoding="utf-8").splitlines()]
    outside = {t[1] for t in truth if t[0] == "ghzrzy_poi" and t[3] == "point_outside_district"}
    return {r["name"] for r in rows if r["category"] == sv.poi_category and re.search(sv.name_pattern, r["name"])
            and r["poi_id"] not in outside}


def expected_defects(source: str, rows: list[dict], boundaries, stops: set[str], as_of: datetime.date) -> set[tuple]:
    """The defects of a file by docs/defects.md, from the file alone."""
    from lake import geo
    from sample.identifiers import is_valid_uscc

    key = {"nhc_health_facilities": ("licence_no",), "jtj_bus_lines": ("line_id", "direction")}[source]
    district = shapely.union_all([b["geometry"] for b in boundaries])
    out, seen = set(), set()
    for r in rows:
        rk = r["record_id"]
        if source == "nhc_health_facilities" and not is_valid_uscc(r["credit_code"]):
            out.add((source, rk, "credit_code", "credit_code_checksum"))
            continue
        k = tuple(r[c] for c in key)
        if k in seen:
            out.add((source, rk, key[0], "duplicate_record"))
            continue
        seen.add(k)
        if source == "nhc_health_facilities":
            x, y = geo.to_wgs84([float(r["lon"])], [float(r["lat"])], "GCJ02")
            town = town_of(float(x[0]), float(y[0]), boundaries)
            if town is None:
                out.add((source, rk, "lon", "point_outside_district"))
            if r["town"] not in DISTRICT.towns:
                out.add((source, rk, "town", "unknown_town"))
            elif town is not None and town != r["town"]:
                out.add((source, rk, "town", "town_mismatch"))
            if r["category"] in HEALTH_FACILITIES.hospital_categories and r["beds"] in ("", "0"):
                out.add((source, rk, "beds", "hospital_without_beds"))
            if r["status"] == "执业" and datetime.date.fromisoformat(r["valid_to"]) < as_of:
                out.add((source, rk, "status", "licence_expired_active"))
            continue
        line = route_wgs84(r["route_wkt"])
        if line is None:
            out.add((source, rk, "route_wkt", "invalid_geometry"))
        else:
            if km(shapely.difference(line, district)) > BUS_LINES.outside_tolerance_km:
                out.add((source, rk, "route_wkt", "line_outside_district"))
            if not BUS_LINES.min_km <= km(line) <= BUS_LINES.max_km:
                out.add((source, rk, "route_wkt", "implausible_length"))
        if any(s not in stops for s in r["stops"].split("|")):
            out.add((source, rk, "stops", "stop_unknown"))
    return out


def test_generator_truth_is_the_defects_of_its_files(sample):
    out, manifest = sample["out"], sample["manifest"]
    with open(out / "truth" / "defects.csv", encoding="utf-8") as f:
        every = {tuple(r.values()) for r in csv.DictReader(f)}
    truth = {t for t in every if t[0] in SOURCES}
    stops = stop_names(out, manifest, every)
    got = set()
    for entry in manifest["topic_files"]:
        if entry["source"] in SOURCES:
            got |= expected_defects(entry["source"], read_entry(out, entry), basemap.district_boundaries(), stops,
                                    datetime.date(2026, 11, 1))
    assert got == truth
    kinds = {(t[0], t[3]) for t in truth}
    assert {d for s, d in kinds if s == "nhc_health_facilities"} == {
        "point_outside_district", "unknown_town", "town_mismatch", "hospital_without_beds", "licence_expired_active",
        "credit_code_checksum", "duplicate_record"}
    assert {d for s, d in kinds if s == "jtj_bus_lines"} == {
        "invalid_geometry", "line_outside_district", "implausible_length", "stop_unknown", "duplicate_record"}
    lines = read_entry(out, next(e for e in manifest["topic_files"] if e["source"] == "jtj_bus_lines"))
    assert all(s in stops for r in lines for s in r["stops"].split("|")
               if (r["record_id"], "stop_unknown") not in {(t[1], t[3]) for t in truth})


# --------------------------------------------------------------------------- rules on hand-written rows (Spark)

def test_health_rules_and_placement_on_hand_written_rows(spark, contracts):
    from jobs.base import health
    from lake import geo

    sc, tc = contracts.source(health.SOURCE), contracts.table(health.TABLE)
    b = {x["name"]: x for x in basemap.district_boundaries()}
    inside = b["黄村镇"]["geometry"].representative_point()
    (gx,), (gy,) = geo.from_wgs84([inside.x], [inside.y], "GCJ02")
    D = datetime.date

    def row(rid, no, cat="诊所", beds=None, town="黄村镇", lon=gx, lat=gy, to=D(2030, 1, 1), status="执业", r=None, batch="b2"):
        return (rid, no, "12110115MB0000000X", "x", cat, "未定级", beds, town, None, float(lon), float(lat),
                D(2025, 1, 1), to, status, "nhc_health_facilities", "f" * 64, r or int(rid[1:]) + 1, batch,
                TS if batch == "b2" else TS - datetime.timedelta(days=30))

    schema = ", ".join(f"`{c.name}` {c.type}" for c in sc.columns) + META
    raw = spark.createDataFrame([
        row("R1", "L1"), row("R2", "L2", lon=117.5, lat=40.5), row("R3", "L3", town="大兴区"),
        row("R4", "L4", town="旧宫镇"), row("R5", "L5", cat="综合医院", beds=0), row("R6", "L6", cat="综合医院", beds=200),
        row("R7", "L7", to=D(2026, 10, 1)), row("R8", "L8", to=D(2026, 10, 1), status="停业"), row("R9", "L1", r=30),
        row("R10", "L10", batch="b1"),     # only in the earlier snapshot: gone
    ], schema)
    cand, found = health.build_table(raw, sc, tc, basemap.district_boundaries(), "2026-11-01")
    assert {(r["record_key"], r["field"], r["defect_type"]) for r in found.collect()} == {
        ("R2", "lon", "point_outside_district"), ("R3", "town", "unknown_town"), ("R4", "town", "town_mismatch"),
        ("R5", "beds", "hospital_without_beds"), ("R7", "status", "licence_expired_active"),
        ("R9", "licence_no", "duplicate_record")}
    rows = {r["licence_no"]: r for r in cand.collect()}
    assert set(rows) == {f"L{i}" for i in range(1, 9)}
    assert rows["L1"]["town"] == "黄村镇" and rows["L1"]["town_code"] == b["黄村镇"]["code"]
    assert abs(rows["L1"]["lon"] - inside.x) < 1e-5 and rows["L2"]["town"] is None and rows["L4"]["town"] == "黄村镇"


def gcj_wkt(coords) -> str:
    from lake import geo

    xs, ys = geo.from_wgs84([c[0] for c in coords], [c[1] for c in coords], "GCJ02")
    return "LINESTRING (" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in zip(xs, ys)) + ")"


def test_bus_line_rules_and_facts_on_hand_written_rows(spark, contracts):
    from jobs.base import transport

    sc, tc = contracts.source(transport.SOURCE), contracts.table(transport.TABLE)
    b = {x["name"]: x for x in basemap.district_boundaries()}
    p = b["黄村镇"]["geometry"].representative_point()
    q = b["旧宫镇"]["geometry"].representative_point()
    good = gcj_wkt([(p.x, p.y), (q.x, q.y)])
    far = gcj_wkt([(p.x, p.y), (116.80, p.y), (q.x, q.y)])   # ~10 km east of the district
    short = gcj_wkt([(p.x, p.y), (p.x + 0.001, p.y)])

    def row(rid, line, direction="上行", stops="甲公交站|乙公交站", wkt=good, r=None):
        return (rid, line, direction, "x", "op", stops, wkt, "jtj_bus_lines", "f" * 64, r or int(rid[1:]) + 1, "b1", TS)

    schema = ", ".join(f"`{c.name}` {c.type}" for c in sc.columns) + META
    raw = spark.createDataFrame([
        row("R1", "A"), row("R2", "A", "下行"), row("R3", "B", wkt="LINESTRING (116.3 39.7"),
        row("R4", "C", wkt="POINT (116.3 39.7)"), row("R5", "D", wkt=far), row("R6", "E", wkt=short),
        row("R7", "F", stops="甲公交站|丙公交场站|丁站"), row("R8", "A", r=40),
    ], schema)
    cand, found = transport.build_table(raw, sc, tc, basemap.district_boundaries(), {"甲公交站", "乙公交站"})
    assert {(r["record_key"], r["field"], r["defect_type"]) for r in found.collect()} == {
        ("R3", "route_wkt", "invalid_geometry"), ("R4", "route_wkt", "invalid_geometry"),
        ("R5", "route_wkt", "line_outside_district"), ("R6", "route_wkt", "implausible_length"),
        ("R7", "stops", "stop_unknown"), ("R8", "line_id", "duplicate_record")}
    rows = {(r["line_id"], r["direction"]): r for r in cand.collect()}
    a = rows[("A", "上行")]
    line = shapely.LineString([(p.x, p.y), (q.x, q.y)])
    assert math.isclose(a["length_km"], km(line), abs_tol=2e-3)
    crossed = [x["name"] for x in basemap.district_boundaries() if km(shapely.intersection(line, x["geometry"])) > 0]
    assert a["towns"] == "|".join(crossed) and {"黄村镇", "旧宫镇"} <= set(crossed)
    assert json.loads(a["geometry"])["type"] == "LineString" and (a["stop_count"], a["stops_matched"]) == (2, 2)
    assert rows[("B", "上行")]["geometry"] is None and rows[("B", "上行")]["length_km"] is None
    assert (rows[("F", "上行")]["stop_count"], rows[("F", "上行")]["stops_matched"]) == (3, 1)
    assert BUS_LINES.min_km < rows[("D", "上行")]["length_km"] < BUS_LINES.max_km and len(rows) == 7


def test_bus_lines_by_town_on_hand_written_rows():
    from jobs.topic import transport

    boundaries = basemap.district_boundaries()
    b = {x["name"]: x for x in boundaries}
    p = b["黄村镇"]["geometry"].representative_point()
    q = b["旧宫镇"]["geometry"].representative_point()
    line = shapely.LineString([(p.x, p.y), (q.x, q.y)])
    geom = json.dumps(shapely.geometry.mapping(line))
    lines = [{"line_id": "A", "stops": "甲公交站|乙公交站", "geometry": geom},
             {"line_id": "A", "stops": "乙公交站|甲公交站", "geometry": geom},
             {"line_id": "B", "stops": "丙公交站", "geometry": None}]
    stops = [{"poi_id": "P1", "name": "甲公交站", "town": "黄村镇"}, {"poi_id": "P2", "name": "丙公交站", "town": "黄村镇"},
             {"poi_id": "P3", "name": "乙公交站", "town": "旧宫镇"}, {"poi_id": "P4", "name": "丁地铁站", "town": None}]
    got = {r[0]: r for r in transport.by_town(lines, stops, boundaries)}
    assert set(got) == set(DISTRICT.towns)
    inside = km(shapely.intersection(line, b["黄村镇"]["geometry"]))
    assert got["黄村镇"][2] == 1 and math.isclose(got["黄村镇"][3], round(2 * inside, 3), abs_tol=2e-3)
    assert got["黄村镇"][4:] == (2, 2) and got["旧宫镇"][4:] == (1, 1)   # 丙 is a stop of B, which has no route
    assert got["礼贤镇"][1:] == (b["礼贤镇"]["code"], 0, 0.0, 0, 0)
    # a town no route crosses has 0.0 km, a float: Spark's double column refuses an int 0 (the crash
    # suite's sample, seed 1, stopped there)
    assert all(type(r[3]) is float for r in got.values())


# --------------------------------------------------------------------------- the tiny lake

def lake_rows(root, rel):
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def entries(tiny_lake):
    return [e for e in tiny_lake["manifest"]["topic_files"] if e["source"] in SOURCES]


def test_findings_are_the_truth(tiny_lake):
    """Per source: the findings of its file (by sha256) are exactly its rows of truth/defects.csv."""
    sha_of = {e["sha256"]: e["source"] for e in entries(tiny_lake)}
    found, truth = defaultdict(set), defaultdict(set)
    for r in lake_rows(tiny_lake["settings"].root, "quality/findings"):
        if r["_file_sha256"] in sha_of and r["record_key"] is not None:
            found[sha_of[r["_file_sha256"]]].add((r["record_key"], r["field"], r["defect_type"]))
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        for t in csv.DictReader(f):
            if t["source"] in SOURCES:
                truth[t["source"]].add((t["record_key"], t["field"], t["defect_type"]))
    for s in SOURCES:
        assert truth[s] and found[s] == truth[s], s


def test_base_tables_equal_their_files(tiny_lake):
    from sample.identifiers import is_valid_uscc

    root = tiny_lake["settings"].root
    boundaries = basemap.district_boundaries()
    files = {e["source"]: read_entry(tiny_lake["inbox"], e) for e in entries(tiny_lake)}
    facilities = {r["licence_no"]: r for r in lake_rows(root, "base/health_facility")}
    first = {}
    for r in files["nhc_health_facilities"]:
        if is_valid_uscc(r["credit_code"]):
            first.setdefault(r["licence_no"], r)
    assert set(facilities) == set(first)
    from lake import geo

    for k, r in first.items():
        x, y = geo.to_wgs84([float(r["lon"])], [float(r["lat"])], "GCJ02")
        assert facilities[k]["town"] == town_of(float(x[0]), float(y[0]), boundaries), k
    lines = {(r["line_id"], r["direction"]): r for r in lake_rows(root, "base/bus_line")}
    rows = {}
    for r in files["jtj_bus_lines"]:
        rows.setdefault((r["line_id"], r["direction"]), r)
    assert set(lines) == set(rows)
    for k, r in rows.items():
        line = route_wgs84(r["route_wkt"])
        g = lines[k]
        assert g["stop_count"] == len(r["stops"].split("|"))
        if line is None:
            assert g["geometry"] is None
            continue
        assert math.isclose(g["length_km"], km(line), abs_tol=2e-3), k
        assert g["towns"] == "|".join(b["name"] for b in boundaries if km(shapely.intersection(line, b["geometry"])) > 0)


def test_bus_topic_and_health_coverage_equal_a_plain_recomputation(tiny_lake):
    import re

    root = tiny_lake["settings"].root
    boundaries = basemap.district_boundaries()
    lines = [r for r in lake_rows(root, "base/bus_line")]
    sv = SERVICES[BUS_LINES.stop_service]
    stops = [p for p in lake_rows(root, "base/poi") if p["category"] == sv.poi_category and p["lon"] is not None
             and re.search(sv.name_pattern, p["name"])]
    served = {s for ln in lines for s in ln["stops"].split("|")}
    got = {r["town"]: r for r in lake_rows(root, "topic/bus_lines_by_town")}
    assert set(got) == set(DISTRICT.towns)
    for b in boundaries:
        g = got[b["name"]]
        per = [(ln["line_id"], km(shapely.intersection(shapely.geometry.shape(json.loads(ln["geometry"])), b["geometry"])))
               for ln in lines if ln["geometry"]]
        assert g["lines"] == len({i for i, k in per if k > 0}), b["name"]
        assert math.isclose(g["route_km"], sum(k for _, k in per), abs_tol=5e-3), b["name"]
        mine = [p for p in stops if p["town"] == b["name"]]
        assert (g["stops"], g["stops_served"]) == (len(mine), sum(1 for p in mine if p["name"] in served))
    assert sum(g["route_km"] for g in got.values()) > 0
    facilities = defaultdict(int)
    for r in lake_rows(root, "base/health_facility"):
        if r["status"] == "执业" and r["town"]:
            facilities[r["town"]] += 1
    cov = {r["town"]: r["facilities"] for r in lake_rows(root, "topic/service_coverage_by_town") if r["service"] == "health"}
    assert cov == {t: facilities[t] for t in DISTRICT.towns} and sum(cov.values()) > 0
