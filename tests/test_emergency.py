"""Emergency management (jobs/base/emergency.py, jobs/topic/emergency.py, sample/generate_emergency.py):
the cross rules and placement on hand-written rows, shelter reach against a brute-force haversine
oracle; the generator's truth re-derived from its files (fast tier); on the tiny lake the findings
against the truth, the registers' towns against the files, and both topics recomputed in plain Python
from the published tables."""
from __future__ import annotations

import csv
import datetime
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import shapely
from deltalake import DeltaTable

from lake import contracts as contracts_mod
from lake.reference import DISTRICT, EMERGENCY
from sample import basemap

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
SOURCES = ("mem_shelters", "mem_hazard_sources", "mem_rescue_teams")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)


def haversine(lon1, lat1, lon2, lat2) -> float:
    """Great-circle distance in metres, written here (the oracle of lake.geo.distance_m)."""
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def town_of(lon, lat, boundaries) -> str | None:
    """Brute-force point in polygon (lowest code on a border), the oracle of lake.geo.assign_units."""
    for b in sorted(boundaries, key=lambda b: b["code"]):
        if shapely.covers(b["geometry"], shapely.Point(lon, lat)):
            return b["name"]
    return None


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


# --------------------------------------------------------------------------- the generator (fast tier)

@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    from sample.generate_emergency import generate_emergency
    from sample.generate_spatial import AddressBook

    out = tmp_path_factory.mktemp("emergency")
    book = AddressBook(3, 0.01)
    res = generate_emergency(0.01, 3, out, book, datetime.date(2026, 11, 1), [])
    return {"out": out, **res}


def read_entry(out: Path, entry: dict) -> list[dict]:
    text = (out / entry["path"]).read_text(encoding=entry["encoding"])
    if entry["format"] == "jsonl":
        return [{k: "" if v is None else str(v) for k, v in json.loads(line).items()} for line in text.splitlines()]
    return list(csv.DictReader(text.splitlines()))


def expected_defects(source: str, rows: list[dict], boundaries) -> set[tuple]:
    """The defects of a register's rows by docs/defects.md, from the file alone."""
    from lake import geo

    ids = {"mem_shelters": "shelter_id", "mem_hazard_sources": "hazard_id", "mem_rescue_teams": "team_id"}[source]
    out, seen = set(), set()
    for r in rows:
        if r[ids] in seen:
            out.add((source, r["record_id"], ids, "duplicate_record"))
            continue
        seen.add(r[ids])
        x, y = geo.to_wgs84([float(r["lon"])], [float(r["lat"])], "GCJ02")
        town = town_of(float(x[0]), float(y[0]), boundaries)
        if town is None:
            out.add((source, r["record_id"], "lon", "point_outside_district"))
        if r["town"] not in DISTRICT.towns:
            out.add((source, r["record_id"], "town", "unknown_town"))
        elif town is not None and town != r["town"]:
            out.add((source, r["record_id"], "town", "town_mismatch"))
        if source == "mem_shelters" and r["status"] == "在用" and not r["capacity"]:
            out.add((source, r["record_id"], "capacity", "capacity_missing"))
    return out


def test_generator_truth_is_the_defects_of_its_files(sample):
    boundaries = basemap.district_boundaries()
    truth = set(sample["truth"])
    got = set()
    for entry in sample["files"]:
        got |= expected_defects(entry["source"], read_entry(sample["out"], entry), boundaries)
    assert got == truth
    kinds = Counter((t[0], t[3]) for t in truth)
    for s in SOURCES:
        assert {d for (src, d) in kinds if src == s} >= {"point_outside_district", "unknown_town", "town_mismatch",
                                                          "duplicate_record"}, s
    assert ("mem_shelters", "capacity_missing") in kinds


# --------------------------------------------------------------------------- rules and reach (Spark)

def test_rules_and_placement_on_hand_written_rows(spark, contracts):
    from jobs.base import emergency
    from lake import geo

    sc, tc = contracts.source("mem_shelters"), contracts.table(emergency.SHELTER)
    b = {x["name"]: x for x in basemap.district_boundaries()}
    inside = b["黄村镇"]["geometry"].representative_point()
    jg = b["旧宫镇"]["geometry"].representative_point()
    (gx,), (gy,) = geo.from_wgs84([inside.x], [inside.y], "GCJ02")
    (jx,), (jy,) = geo.from_wgs84([jg.x], [jg.y], "GCJ02")

    def row(rid, sid, town="黄村镇", lon=gx, lat=gy, capacity=100, status="在用", r=None):
        return (rid, sid, "x", "Ⅰ类", town, None, float(lon), float(lat), capacity, 10.0, status, "mem_shelters",
                "f" * 64, r or int(rid[1:]) + 1, "b1", TS)

    schema = ", ".join(f"`{c.name}` {c.type}" for c in sc.columns) + (
        ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp")
    raw = spark.createDataFrame([
        row("R1", "S1"), row("R2", "S2", lon=117.5, lat=40.5), row("R3", "S3", town="大兴区"),
        row("R4", "S4", town="旧宫镇"), row("R5", "S5", capacity=None), row("R6", "S6", capacity=None, status="停用"),
        row("R7", "S7", town="旧宫镇", lon=jx, lat=jy), row("R8", "S1", r=30),
    ], schema)
    cand, found = emergency.build_table(raw, sc, tc, basemap.district_boundaries())
    assert {(r["record_key"], r["field"], r["defect_type"]) for r in found.collect()} == {
        ("R2", "lon", "point_outside_district"), ("R3", "town", "unknown_town"), ("R4", "town", "town_mismatch"),
        ("R5", "capacity", "capacity_missing"), ("R8", "shelter_id", "duplicate_record")}
    rows = {r["shelter_id"]: r for r in cand.collect()}
    assert rows["S1"]["town"] == "黄村镇" and rows["S1"]["town_code"] == b["黄村镇"]["code"]
    assert abs(rows["S1"]["lon"] - inside.x) < 1e-5 and abs(rows["S1"]["lat"] - inside.y) < 1e-5
    assert rows["S2"]["town"] is None and rows["S3"]["town"] == "黄村镇" and rows["S4"]["town"] == "黄村镇"
    assert rows["S7"]["town"] == "旧宫镇" and rows["S1"]["_lineage"]["capacity"]["row"] == 2


def test_reach_pairs_equal_a_brute_force_oracle(spark):
    import random

    from jobs.topic import emergency as topic

    rng = random.Random(5)
    addrs = [(f"A{i}", "黄村镇", rng.uniform(116.30, 116.36), rng.uniform(39.70, 39.75), rng.randint(1, 9))
             for i in range(400)]
    shelters = [(f"S{i}", rng.uniform(116.30, 116.36), rng.uniform(39.70, 39.75)) for i in range(12)]
    df = spark.createDataFrame(addrs, "address_code string, town string, lon double, lat double, residents long")
    got = {(r["address_code"], r["shelter_id"]) for r in topic.pairs_within(df, shelters, 1000.0).collect()}
    want = {(a[0], s[0]) for a in addrs for s in shelters if haversine(a[2], a[3], s[1], s[2]) < 1000.0}
    assert got == want and want


# --------------------------------------------------------------------------- the tiny lake

def lake_rows(root, rel):
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def entries(tiny_lake):
    return [e for e in tiny_lake["manifest"]["topic_files"] if e["source"] in SOURCES]


def test_findings_are_the_truth(tiny_lake):
    root = tiny_lake["settings"].root
    shas = {e["sha256"] for e in entries(tiny_lake)}
    found = {(r["source"], r["record_key"], r["field"], r["defect_type"]) for r in lake_rows(root, "quality/findings")
             if r["_file_sha256"] in shas and r["record_key"] is not None}
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        expected = {tuple(r.values()) for r in csv.DictReader(f) if r["source"] in SOURCES}
    assert expected and found == expected


def test_registers_are_placed_by_their_points(tiny_lake):
    from lake import geo

    root = tiny_lake["settings"].root
    boundaries = basemap.district_boundaries()
    tables = {"mem_shelters": ("base/emergency_shelter", "shelter_id"), "mem_hazard_sources": ("base/hazard_source", "hazard_id"),
              "mem_rescue_teams": ("base/rescue_team", "team_id")}
    for entry in entries(tiny_lake):
        rel, key = tables[entry["source"]]
        got = {r[key]: r for r in lake_rows(root, rel)}
        rows = {}
        for r in read_entry(tiny_lake["inbox"], entry):
            rows.setdefault(r[key], r)
        assert set(got) == set(rows), entry["source"]
        for k, r in rows.items():
            x, y = geo.to_wgs84([float(r["lon"])], [float(r["lat"])], "GCJ02")
            assert got[k]["town"] == town_of(float(x[0]), float(y[0]), boundaries), k
            assert abs(got[k]["lon"] - float(x[0])) < 1e-6


def test_topics_equal_a_plain_recomputation(tiny_lake):
    root = tiny_lake["settings"].root
    people = {r["id_number"] for r in lake_rows(root, "base/population") if (r["register_status"] or "正常") == "正常"}
    links = [r for r in lake_rows(root, "quality/address_links") if r["source"] == "base.population"
             and r["address_code"] and r["record_key"] in people]
    # the library's current run is the one base.standard_address was published from
    meta = json.loads(DeltaTable(f"{root}/base/standard_address").history(1)[0].get("userMetadata") or "{}")
    runs = {r["run_id"] for r in links}
    if meta.get("inputs") in runs:
        links = [r for r in links if r["run_id"] == meta["inputs"]]
    assert len({r["run_id"] for r in links}) == 1, runs
    lib = {r["address_code"]: r for r in lake_rows(root, "base/standard_address") if r["lon"] is not None}
    per_addr = Counter(r["address_code"] for r in links if r["address_code"] in lib)
    shelters = [r for r in lake_rows(root, "base/emergency_shelter") if r["status"] == "在用" and r["town"]]
    reach_of = defaultdict(set)
    for code, n in per_addr.items():
        a = lib[code]
        for s in shelters:
            if haversine(a["lon"], a["lat"], s["lon"], s["lat"]) < EMERGENCY.shelter_reach_metres:
                reach_of[s["shelter_id"]].add(code)
    got = {r["shelter_id"]: r for r in lake_rows(root, "topic/shelter_reach")}
    assert set(got) == {s["shelter_id"] for s in shelters}
    for s in shelters:
        n = sum(per_addr[c] for c in reach_of[s["shelter_id"]])
        g = got[s["shelter_id"]]
        assert g["residents_within_reach"] == n and g["capacity"] == s["capacity"], s["shelter_id"]
        assert (g["capacity_per_resident"] is None) == (n == 0 or s["capacity"] is None)
    in_reach = set().union(*reach_of.values()) if reach_of else set()
    towns = {r["town"]: r for r in lake_rows(root, "topic/emergency_by_town")}
    assert set(towns) == set(DISTRICT.towns)
    hazards = Counter(r["town"] for r in lake_rows(root, "base/hazard_source") if r["town"])
    teams = defaultdict(lambda: [0, 0])
    for r in lake_rows(root, "base/rescue_team"):
        if r["town"]:
            teams[r["town"]][0] += 1
            teams[r["town"]][1] += r["members"]
    floods = [r for r in lake_rows(root, "topic/flood_points") if r["town"]]
    for t, g in towns.items():
        res = sum(n for c, n in per_addr.items() if lib[c]["town"] == t)
        inr = sum(n for c, n in per_addr.items() if lib[c]["town"] == t and c in in_reach)
        mine = [s for s in shelters if s["town"] == t]
        assert (g["residents"], g["residents_in_reach"], g["shelters"]) == (res, inr, len(mine)), t
        assert g["capacity"] == sum(s["capacity"] or 0 for s in mine)
        assert (g["hazard_sources"], g["rescue_teams"], g["team_members"]) == (hazards[t], *teams[t])
        assert g["flood_points"] == len({f["point_code"] for f in floods if f["town"] == t})
        assert g["flood_point_days"] == sum(1 for f in floods if f["town"] == t)
        if res:
            assert math.isclose(g["reach_share"], inr / res, abs_tol=5e-5)
    assert sum(g["residents"] for g in towns.values()) > 0


def test_shelters_open_and_reports(tiny_lake):
    root = Path(tiny_lake["settings"].root)
    folder = root / "open" / "daxing-emergency-shelters"
    assert (folder / "data.geojson").exists()
    data = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    assert data and all("capacity" in r for r in data)
    rows = lake_rows(str(root), "quality/department_quality")
    run = max(r["run_id"] for r in rows)
    mine = {(r["source"], r["defect_type"]) for r in rows if r["run_id"] == run}
    assert ("mem_shelters", "capacity_missing") in mine and ("mem_rescue_teams", "town_mismatch") in mine
    catalogue = {r["resource_id"] for r in lake_rows(str(root), "catalog/resources")}
    assert {"raw.mem_shelters", "base.emergency_shelter", "topic.shelter_reach", "topic.emergency_by_town"} <= catalogue
