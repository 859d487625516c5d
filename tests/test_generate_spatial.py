"""Tests for the spatial sample data (sample.generate_spatial) and its wiring into sample.generate."""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import shapely
import yaml

from lake import geo
from sample import basemap
from sample.generate import COLUMNS, DAXING_TOWNS, ENCODINGS, FORMATS, SOURCES, generate
from sample.generate_spatial import (
    BASE_ADDRESSES,
    BASE_GEOCODED,
    BASE_POIS,
    MIN_ADDRESSES,
    POI_CATEGORIES,
    SPATIAL_COLUMNS,
    SPATIAL_DEFECT_FIELDS,
    SPATIAL_ENCODINGS,
    SPATIAL_FORMATS,
    SPATIAL_SOURCES,
    TOWN_ALIASES,
    VARIANT_STYLES,
    AddressBook,
    address_key,
    generate_spatial,
    render_address,
)
from sample.identifiers import is_valid_uscc, is_valid_uscc_authority

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts" / "sources"
SCALE = float(os.environ.get("LAKE_TEST_SPATIAL_SCALE", "0.01"))
SEED = 20261101
STAMP = "20261101"
POINT_SOURCES = ("psb_doorplates", "zjw_buildings", "samr_geocoded", "ghzrzy_poi")
CRS = {"psb_doorplates": "CGCS2000", "zjw_buildings": "BD09", "samr_geocoded": "GCJ02"}
KEYS = {"psb_doorplates": "plate_id", "zjw_buildings": "building_id", "samr_geocoded": "geocode_id",
        "ghzrzy_poi": "poi_id"}
TOWN_CODES = {t: f"110115{i + 1:03d}" for i, t in enumerate(DAXING_TOWNS)}
ODD = re.compile("[\u3000\uff01-\uff5e]")
PEOPLE_WITH_ADDRESS = ("psb_household", "mca_residents", "hrss_insured")
ENTITIES_WITH_ADDRESS = ("samr_enterprises", "mca_social_orgs", "seo_institutions")


# --------------------------------------------------------------------------- helpers

def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_rows(path: Path, fmt: str, encoding: str, columns) -> list[dict]:
    """Rows as dicts (JSON values as parsed: numbers stay numbers, null is None)."""
    if fmt == "csv":
        with path.open(encoding=encoding, newline="") as fh:
            reader = csv.reader(fh)
            assert next(reader) == list(columns)
            return [dict(zip(columns, r)) for r in reader]
    out = []
    for line in path.read_text(encoding=encoding).splitlines():
        obj = json.loads(line)
        assert list(obj) == list(columns), line
        out.append(obj)
    return out


def source_path(out: Path, source: str) -> Path:
    return out / source / f"{source}_{STAMP}.{SPATIAL_FORMATS[source]}"


def wgs84(rows: list[dict], source: str) -> tuple[np.ndarray, np.ndarray]:
    lon = np.array([float(r["lon"]) for r in rows])
    lat = np.array([float(r["lat"]) for r in rows])
    crs = [r["coord_sys"] for r in rows] if source == "ghzrzy_poi" else CRS[source]
    return geo.to_wgs84(lon, lat, crs)


def grouped(rows: list[dict[str, str]], value: str) -> dict[str, dict[str, str]]:
    """source -> record_key -> value, asserting one row per (source, record_key)."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        assert r["record_key"] not in out[r["source"]], r
        out[r["source"]][r["record_key"]] = r[value]
    return out


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def book() -> AddressBook:
    return AddressBook(SEED, SCALE)


@pytest.fixture(scope="module")
def spatial(tmp_path_factory, book) -> dict:
    out = tmp_path_factory.mktemp("spatial")
    result = generate_spatial(SCALE, SEED, out, book=book)
    rows = {s: read_rows(source_path(out, s), SPATIAL_FORMATS[s], SPATIAL_ENCODINGS[s], SPATIAL_COLUMNS[s])
            for s in POINT_SOURCES}
    truth = out / "truth"
    return {"out": out, "result": result, "rows": rows,
            "defects": read_csv(truth / "defects.csv"),
            "locations": read_csv(truth / "locations.csv"),
            "links": read_csv(truth / "address_links.csv")}


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> dict:
    """The whole generator (population, legal entities and spatial) at a small scale."""
    out = tmp_path_factory.mktemp("full")
    manifest = generate(0.003, 11, out)
    rows = {}
    for e in manifest["files"]:
        path, source = out / e["path"], e["source"]
        if FORMATS[source] == "csv":
            with path.open(encoding=ENCODINGS[source], newline="") as fh:
                reader = csv.reader(fh)
                next(reader)
                rows[source] = [dict(zip(COLUMNS[source], r)) for r in reader if len(r) == len(COLUMNS[source])]
        else:
            rows[source] = []
            for line in path.read_text(encoding=ENCODINGS[source]).splitlines():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if list(obj) == list(COLUMNS[source]):
                    rows[source].append({c: obj[c] or "" for c in COLUMNS[source]})
    for s in POINT_SOURCES:
        rows[s] = read_rows(source_path(out, s), SPATIAL_FORMATS[s], SPATIAL_ENCODINGS[s], SPATIAL_COLUMNS[s])
    return {"out": out, "manifest": manifest, "rows": rows, "book": AddressBook(11, 0.003),
            "defects": read_csv(out / "truth" / "defects.csv"),
            "links": read_csv(out / "truth" / "address_links.csv"),
            "locations": read_csv(out / "truth" / "locations.csv")}


# --------------------------------------------------------------------------- address book and text forms

def test_book_is_deterministic_and_scales() -> None:
    a, b = AddressBook(5, 0.004), AddressBook(5, 0.004)
    assert a.keys == b.keys and list(a) == list(b)
    assert AddressBook(6, 0.004).keys != a.keys
    assert len(AddressBook(1, 0.0001)) >= MIN_ADDRESSES
    with pytest.raises(ValueError, match="scale must be > 0"):
        AddressBook(1, 0)


def test_book_entries(book) -> None:
    n = len(book)
    assert abs(n - BASE_ADDRESSES * SCALE) < 0.03 * BASE_ADDRESSES * SCALE + 30
    assert len(set(book.keys)) == n
    assert 0.30 < book.building_count / n < 0.52
    entries = list(book)
    assert {e.town for e in entries} == set(DAXING_TOWNS)
    # towns have their own roads and villages; villages only in 镇, never with buildings
    owner: dict[str, str] = {}
    for e in entries:
        assert owner.setdefault(e.road, e.town) == e.town, e
        assert e.key == address_key(e.town, e.road, e.number, e.building)
        assert not re.search(r"\d", e.road)
        if e.village:
            assert e.town.endswith("镇") and e.road.endswith("村") and e.building is None
    # every true point lies inside its town, at least ~50 m from the border
    codes = geo.assign_units_pandas([e.lon for e in entries], [e.lat for e in entries], basemap.district_boundaries())["town_code"]
    assert list(codes) == [TOWN_CODES[e.town] for e in entries]
    polygons = {b["name"]: b["geometry"] for b in basemap.district_boundaries()}
    for e in entries[:: max(1, n // 300)]:
        border = polygons[e.town].exterior
        assert border.distance(shapely.Point(e.lon, e.lat)) > 0.00045, e


def test_render_and_resolve_every_style(book) -> None:
    """Every style and every pair of styles denotes the key it was rendered from."""
    rng = random.Random(1)
    pairs = [()] + [(s,) for s in VARIANT_STYLES] + list(itertools.combinations(VARIANT_STYLES, 2))
    seen_texts = set()
    for i in range(0, len(book), max(1, len(book) // 150)):
        e = book.entry(i)
        unit, room = (rng.randint(1, 6), rng.randint(1, 28) * 100 + rng.randint(1, 4)) if e.building else (None, None)
        for styles in pairs:
            text = render_address(e.town, e.road, e.number, e.building, unit, room, styles)
            seen_texts.add(text)
            assert book.key_of(text) == e.key, (text, styles)
            assert book.parse(text)[:4] == (e.town, e.road, e.number, e.building)
            assert book.index_of(text) == i
    assert len(seen_texts) > 10 * 150
    e = next(x for x in book if x.building and x.town in TOWN_ALIASES)
    assert render_address(e.town, e.road, 12, 3, 2, 501) == f"北京市大兴区{e.town}{e.road}12号3号楼2单元501室"
    assert render_address(e.town, e.road, 12, 3, 2, 501, ("dash",)).endswith("12号3-2-501")
    assert render_address(e.town, e.road, 12, 3, styles=("hash",)).endswith("12号3#")
    assert render_address(e.town, e.road, 12, styles=("cn_numeral",)).endswith("十二号")
    assert render_address(e.town, e.road, 12, styles=("town_alias",)).startswith(f"北京市大兴区{TOWN_ALIASES[e.town]}")
    assert render_address(e.town, e.road, 12, styles=("county", "no_city")).startswith("大兴县")
    assert render_address(e.town, e.road, 12, styles=("fullwidth",)).endswith("１２号")
    with pytest.raises(ValueError):
        render_address(e.town, e.road, 12, styles=("upside_down",))
    # a number the road does not have is read, but denotes no standard address
    missing = max(x.number for x in book if x.road == e.road) + 5
    text = render_address(e.town, e.road, missing, styles=("cn_numeral",))
    assert book.parse(text)[:3] == (e.town, e.road, missing) and book.key_of(text) is None
    assert book.key_of("北京市朝阳区建国路1号") is None and book.key_of("") is None


def test_residences_are_standard_and_safe(book) -> None:
    rng = random.Random(3)
    texts = [book.residence(rng, town, entity=k % 5 == 0)
             for k, town in zip(range(4000), itertools.cycle(DAXING_TOWNS))]
    variants = 0
    for text, town in zip(texts, itertools.cycle(DAXING_TOWNS)):
        assert text.startswith("北京市大兴区" + town) and not ODD.search(text), text
        key = book.key_of(text)
        assert key is not None and key.startswith(town + "|")
        assert book.index_of(text) == book.index(key)
        variants += text != render_address(*book.parse(text))
    assert 0.05 < variants / len(texts) < 0.16


# --------------------------------------------------------------------------- files

def test_deterministic(tmp_path: Path) -> None:
    first = generate_spatial(0.002, 42, tmp_path / "a")
    second = generate_spatial(0.002, 42, tmp_path / "b")
    assert first == second
    names = [e["path"] for e in first["files"]] + [f"truth/{n}.csv" for n in ("defects", "locations", "address_links")]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = generate_spatial(0.002, 43, tmp_path / "c")
    assert [e["sha256"] for e in other["files"][1:]] != [e["sha256"] for e in first["files"][1:]]
    assert all(e["rows"] > 0 for e in first["files"])


def test_manifest_entries(spatial) -> None:
    out, files = spatial["out"], spatial["result"]["files"]
    assert [e["source"] for e in files] == list(SPATIAL_SOURCES)
    for e in files:
        source = e["source"]
        assert e["path"] == f"{source}/{source}_{STAMP}.{SPATIAL_FORMATS[source]}"
        assert e["sha256"] == sha256(out / e["path"])
        assert e["encoding"] == SPATIAL_ENCODINGS[source] and e["format"] == SPATIAL_FORMATS[source]
        if source in POINT_SOURCES:
            assert e["rows"] == len(spatial["rows"][source])
    collection = json.loads(source_path(out, "ghzrzy_boundaries").read_text(encoding="utf-8"))
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == 22 == files[0]["rows"]
    assert [f["properties"]["code"] for f in collection["features"]] == list(TOWN_CODES.values())
    assert [f["properties"]["name"] for f in collection["features"]] == DAXING_TOWNS


def test_counts_scale(spatial, book) -> None:
    n = {s: len(r) for s, r in spatial["rows"].items()}
    assert len(book) <= n["psb_doorplates"] <= len(book) * 1.012 + 3  # + duplicates
    assert 0.93 < n["zjw_buildings"] / book.building_count < 1.03
    assert 0.9 < n["samr_geocoded"] / (BASE_GEOCODED * SCALE) < 1.02
    assert round(BASE_POIS * SCALE) <= n["ghzrzy_poi"] <= round(BASE_POIS * SCALE) * 1.012 + 3
    three = n["psb_doorplates"] + n["zjw_buildings"] + n["samr_geocoded"]
    assert 0.9 < three / (180_000 * SCALE) < 1.1  # the district's ~180 K address records


def test_encodings_and_contracts(spatial) -> None:
    out = spatial["out"]
    contracts = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8")) for p in CONTRACTS.glob("*.yaml")}
    for source in POINT_SOURCES:
        c = contracts[source]
        assert c["encoding"] == SPATIAL_ENCODINGS[source] and c["format"] == SPATIAL_FORMATS[source]
        assert tuple(col["name"] for col in c["columns"]) == SPATIAL_COLUMNS[source]
        assert c["record_key"] == KEYS[source] and c["domain"] == "spatial"
        assert c["entity_key"] == SPATIAL_DEFECT_FIELDS[source]["duplicate_record"]
        if source == "ghzrzy_poi":
            assert c["geometry"] == {"lon": "lon", "lat": "lat", "crs_column": "coord_sys"}
            allowed = {col["name"]: col.get("allowed") for col in c["columns"]}
            assert allowed["category"] == list(POI_CATEGORIES) and allowed["coord_sys"] == ["WGS84", "GCJ02", "BD09"]
        else:
            assert c["geometry"] == {"lon": "lon", "lat": "lat", "crs": CRS[source]}
        raw = source_path(out, source).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (SPATIAL_ENCODINGS[source] == "utf-8-sig")
        header = 1 if SPATIAL_FORMATS[source] == "csv" else 0
        rows = len(spatial["rows"][source])
        if source == "psb_doorplates":
            text = raw.decode("gbk")
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
            assert raw.count(b"\r\n") == raw.count(b"\n") == rows + header
            assert text.startswith("plate_id,address,")
        else:
            raw.decode("utf-8")
            assert b"\r" not in raw and raw.count(b"\n") == rows + header
    # a department has one code in every contract, and no other department has it
    for source in POINT_SOURCES:
        mine = contracts[source]
        for other in contracts.values():
            same_department = other["department"] == mine["department"]
            assert same_department == (str(other["department_code"]) == str(mine["department_code"])), \
                (source, other["source"])


def test_files_parse(spatial, tmp_path) -> None:
    from lake.files import parse_file

    for source in POINT_SOURCES:
        c = yaml.safe_load((CONTRACTS / f"{source}.yaml").read_text(encoding="utf-8"))
        result = parse_file(source_path(spatial["out"], source), c["format"], [col["name"] for col in c["columns"]],
                            c["encoding"], str(tmp_path / f"{source}.parquet"), c["record_key"])
        assert result.rows == len(spatial["rows"][source]) and result.malformed == 0, source
        assert result.detected_encoding == {"gbk": "gb18030"}.get(c["encoding"], c["encoding"])


# --------------------------------------------------------------------------- truth

def test_truth_refers_to_real_rows(spatial) -> None:
    rows = spatial["rows"]
    keys = {s: {r[KEYS[s]] for r in rows[s]} for s in POINT_SOURCES}
    for name in ("defects", "locations", "links"):
        truth = spatial[name]
        order = [(t["source"], t["record_key"]) for t in truth]
        assert order == sorted(order), name
    for t in spatial["defects"]:
        assert t["record_key"] in keys[t["source"]], t
        assert t["field"] == SPATIAL_DEFECT_FIELDS[t["source"]][t["defect_type"]], t
    assert len({(t["source"], t["record_key"]) for t in spatial["defects"]}) == len(spatial["defects"])
    locations, links = grouped(spatial["locations"], "town_code"), grouped(spatial["links"], "address_key")
    for s in POINT_SOURCES:  # one truth row per record key, for every record key
        assert set(locations[s]) == keys[s] == set(links[s]), s
    assert set(locations) == set(links) == set(POINT_SOURCES)


def test_points_convert_back_into_their_true_town(spatial, book) -> None:
    """Every point, converted from the declared system to WGS-84, lies in the town the truth says
    (no town: outside the district, exactly for point_outside_district)."""
    locations = grouped(spatial["locations"], "town_code")
    outside = {(t["source"], t["record_key"]) for t in spatial["defects"]
               if t["defect_type"] == "point_outside_district"}
    for source in POINT_SOURCES:
        rows = spatial["rows"][source]
        lon, lat = wgs84(rows, source)
        found = geo.assign_units_pandas(lon, lat, basemap.district_boundaries())["town_code"].tolist()
        for r, code in zip(rows, found):
            key = r[KEYS[source]]
            assert (code or "") == locations[source][key], (source, r, code)
            assert (code is None) == ((source, key) in outside)
    # door plates: within the jitter (8 m) of the plate's true point
    links = grouped(spatial["links"], "address_key")
    for r in spatial["rows"]["psb_doorplates"][:500]:
        if ("psb_doorplates", r["plate_id"]) in outside:
            continue
        e = book.entry(book.index(links["psb_doorplates"][r["plate_id"]]))
        assert geo.distance_m(e.lon, e.lat, float(r["lon"]), float(r["lat"])) < 9


def test_addresses_resolve_to_their_truth(spatial, book) -> None:
    links = grouped(spatial["links"], "address_key")
    variants = Counter()
    for source in POINT_SOURCES:
        for r in spatial["rows"][source]:
            text, truth = r["address"] or "", links[source][r[KEYS[source]]]
            assert (book.key_of(text) or "") == truth, (source, r, truth)
            if text:
                parsed = book.parse(text)
                assert parsed is not None, text  # every text is read, matched or not
                variants[source] += text != render_address(*parsed)
            if source == "psb_doorplates":
                assert truth == address_key(r["town"], r["road"], r["number"], r["building"])
    for source in POINT_SOURCES:
        assert variants[source] > 0.05 * len(spatial["rows"][source]), source
    texts = "".join(r["address"] or "" for s in POINT_SOURCES for r in spatial["rows"][s])
    for mark in ("北京市大兴县", "\u3000", "＃", "号楼", "单元", "十", "#"):
        assert mark in texts, mark


def test_generated_texts_agree_with_lake_address(spatial, book) -> None:
    """The address parser of the pipeline reads every generated text as the generator meant it."""
    address = pytest.importorskip("lake.address")
    links = grouped(spatial["links"], "address_key")
    for source in POINT_SOURCES:
        for r in spatial["rows"][source]:
            if not r["address"]:
                continue
            key = address.door_key(address.parse(r["address"]))
            truth = links[source][r[KEYS[source]]]
            if truth:
                assert key == truth, (source, r["address"], truth)
            else:
                assert key is not None and key not in book, (source, r["address"])


def test_defects(spatial, book) -> None:
    rows, defects = spatial["rows"], spatial["defects"]
    counts = Counter((t["source"], t["defect_type"]) for t in defects)
    links = grouped(spatial["links"], "address_key")
    outline = basemap.district_outline()
    for source in POINT_SOURCES:
        n = len(rows[source])
        assert counts[(source, "point_outside_district")] < 0.003 * n * 3 + 6
        assert counts[(source, "duplicate_record")] < 0.003 * n * 3 + 6
        unmatched = {t["record_key"] for t in defects if t["source"] == source
                     and t["defect_type"] == "address_unmatched"}
        assert unmatched == {r[KEYS[source]] for r in rows[source]
                             if r["address"] and links[source][r[KEYS[source]]] == ""}
        if source == "psb_doorplates":
            assert not unmatched  # the police plates are the library
        assert len(unmatched) < 0.01 * n * 3 + 6, source
    total = sum(len(r) for r in rows.values())
    assert sum(v for (s, d), v in counts.items() if d == "address_unmatched") > 0.003 * total
    assert sum(v for (s, d), v in counts.items() if d == "point_outside_district") > 0.001 * total
    assert sum(v for (s, d), v in counts.items() if d == "duplicate_record") > 0.001 * total
    by_key = {s: defaultdict(list) for s in POINT_SOURCES}
    for s in POINT_SOURCES:
        for pos, r in enumerate(rows[s]):
            by_key[s][r[KEYS[s]]].append((pos, r))
    for t in defects:
        s, key, kind = t["source"], t["record_key"], t["defect_type"]
        (pos, r), *rest = by_key[s][key] if kind != "duplicate_record" or s == "samr_geocoded" else by_key[s][key][1:]
        if kind == "point_outside_district":
            lon, lat = wgs84([r], s)
            point = shapely.Point(lon[0], lat[0])
            assert not outline.contains(point) and outline.distance(point) > 0.003
        elif kind == "address_unmatched":
            assert r["address"] and book.key_of(r["address"]) is None and links[s][key] == ""
            assert book.parse(r["address"]) is not None  # a real road or village, a number it lacks
        elif kind == "duplicate_record":
            if s == "samr_geocoded":  # a second record of the same entity, identical but for its id
                earlier = [o for o in rows[s] if o["credit_code"] == r["credit_code"] and o["geocode_id"] != key]
                assert len(earlier) == 1
                assert {**earlier[0], "geocode_id": key} == r
            else:  # the same record twice
                first_pos, first = by_key[s][key][0]
                assert len(by_key[s][key]) == 2 and first_pos < pos and first == r
            assert links[s][key] != ""
    # apart from the duplicates, record keys are unique
    for s in POINT_SOURCES:
        dup = {t["record_key"] for t in defects if t["source"] == s and t["defect_type"] == "duplicate_record"}
        assert all(len(v) == 1 or k in dup for k, v in by_key[s].items())


def test_poi_classes_and_systems(spatial) -> None:
    pois = spatial["rows"]["ghzrzy_poi"]
    assert set(r["category"] for r in pois) == set(POI_CATEGORIES)
    systems = Counter(r["coord_sys"] for r in pois)
    assert set(systems) == {"WGS84", "GCJ02", "BD09"} and systems["GCJ02"] > systems["WGS84"]
    assert all(r["name"] for r in pois)
    assert all(isinstance(r["lon"], float) and isinstance(r["lat"], float) for r in pois)
    # the same point in different systems really differs (GCJ-02 is offset by hundreds of metres)
    lon, lat = np.array([r["lon"] for r in pois]), np.array([r["lat"] for r in pois])
    as_wgs = geo.to_wgs84(lon, lat, "WGS84")
    declared = geo.to_wgs84(lon, lat, [r["coord_sys"] for r in pois])
    moved = geo.distance_m(as_wgs[0], as_wgs[1], declared[0], declared[1])
    shifted = np.array([r["coord_sys"] != "WGS84" for r in pois])
    assert (moved[shifted] > 100).all() and (moved[~shifted] < 1e-6).all()


# --------------------------------------------------------------------------- the whole generator

def test_generate_writes_spatial_sources(full) -> None:
    out, manifest = full["out"], full["manifest"]
    assert [e["source"] for e in manifest["files"]] == list(SOURCES)
    assert [e["source"] for e in manifest["spatial_files"]] == list(SPATIAL_SOURCES)
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for e in manifest["spatial_files"]:
        assert e["sha256"] == sha256(out / e["path"]) and e["rows"] > 0
    kinds = Counter(t["defect_type"] for t in full["defects"] if t["source"] in POINT_SOURCES)
    assert kinds["point_outside_district"] + kinds["duplicate_record"] > 0
    assert any(t["source"] == "psb_household" for t in full["defects"])
    order = [(t["source"], t["record_key"]) for t in full["defects"]]
    assert order == sorted(order)


def test_people_keep_one_address_across_departments(full) -> None:
    """A person's address text is the same in every population source (unless the copy is a
    recorded address_mismatch) and is a standard address of the book."""
    rows, book = full["rows"], full["book"]
    defective = {(t["source"], t["record_key"]): t["defect_type"] for t in full["defects"]}
    addresses: dict[str, set[str]] = defaultdict(set)
    variants = 0
    for source in PEOPLE_WITH_ADDRESS:
        for r in rows[source]:
            d = defective.get((source, r["record_id"]))
            if d in ("address_mismatch", "id_name_conflict") or not r["id_number"]:
                continue
            if d in ("whitespace", "fullwidth", "id_checksum", "id_format", "id_region_unknown"):
                continue  # the ID itself is altered: the row is another person's key
            addresses[r["id_number"]].add(r["address"])
            assert book.key_of(r["address"]) is not None, r["address"]
            variants += r["address"] != render_address(*book.parse(r["address"]))
    shared = [a for a in addresses.values()]
    assert shared and all(len(a) == 1 for a in shared)
    psb_ids = {r["id_number"] for r in rows["psb_household"]}
    copies = sum(1 for r in rows["mca_residents"] + rows["hrss_insured"] if r["id_number"] in psb_ids)
    assert copies > 0.5 * (len(rows["mca_residents"]) + len(rows["hrss_insured"]))
    assert variants > 0


def test_address_links_cover_population_and_entities(full) -> None:
    rows, book = full["rows"], full["book"]
    links = grouped(full["links"], "address_key")
    order = [(t["source"], t["record_key"]) for t in full["links"]]
    assert order == sorted(order)
    for source in PEOPLE_WITH_ADDRESS + ENTITIES_WITH_ADDRESS:
        with_address = {r["record_id"]: r["address"] for r in rows[source] if r["address"]}
        assert with_address and set(links[source]) == set(with_address), source
        for key, text in with_address.items():
            assert links[source][key] == book.key_of(text) != "", (source, text)
    assert "nhc_vital_events" not in links and "tax_taxpayers" not in links
    locations = grouped(full["locations"], "town_code")
    assert set(locations) == set(POINT_SOURCES)


def test_geocoded_entities_are_registered(full) -> None:
    rows, book = full["rows"], full["book"]
    register = {r["credit_code"]: r for r in rows["samr_enterprises"]}
    links = grouped(full["links"], "address_key")
    geocoded = rows["samr_geocoded"]
    assert geocoded
    known = 0
    for r in geocoded:
        assert is_valid_uscc(r["credit_code"]) and is_valid_uscc_authority(r["credit_code"])
        reg = register.get(r["credit_code"])
        if reg is None:  # the register row's own code carries an injected defect
            continue
        known += 1
        truth = links["samr_geocoded"][r["geocode_id"]]
        assert truth in ("", links["samr_enterprises"][reg["record_id"]])
        assert book.parse(r["address"])[:3] == book.parse(reg["address"])[:3] or truth == ""
    assert known > 0.95 * len(geocoded)


# --------------------------------------------------------------------------- ingest

def test_ingest_reconciles(spatial, settings, spark, tmp_path) -> None:
    """Each point source ingests through jobs.landing.ingest: rows read = raw + quarantine, and no
    generated row is quarantined (the spatial defects are found later, not at ingest)."""
    from jobs.landing import ingest

    s = settings.with_root(str(tmp_path / "lake"))  # its own lake: the session's is the end-to-end one
    for source in POINT_SOURCES:
        result = ingest.ingest_file(s, source, source_path(spatial["out"], source), spark=spark)
        assert result.rows_read == len(spatial["rows"][source]), source
        assert result.rows_read == result.rows_raw + result.rows_quarantined
        assert result.rows_quarantined == 0, source
        assert result.detected_encoding.replace("-sig", "") in ("gb18030", "utf-8")
