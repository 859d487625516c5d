"""Synthetic health and transport sources (issue 18 item 6): the health commission's register of medical
institutions (``nhc_health_facilities``, 卫健委) and the transport bureau's bus network (``jtj_bus_lines``,
交通局), each one snapshot on the extract date.

Every institution sits at a door plate of the district's address book (``sample.generate_spatial``: its
true WGS-84 point lies at least ~50 m inside its town), written in GCJ-02, and declares that town; clean
licences are valid for five years from 2 months to 4 years before the extract date (so still valid a
year after it). A bus line runs from a door plate (its depot) through 1-5 stops of the stop register to
another door plate, the upstream row (上行) and the same stops and route reversed (下行): the stops are
the stop POIs of ``ghzrzy_poi`` that reach ``base.poi`` (contracts/reference.yaml ``bus_lines.stop_service``;
a POI written outside the district is not one), the route lies inside the district and is 1.5-80 km
long. Sizes at scale 1.0 (``SIZES``; at least ``MIN_ROWS``).

Defects (``RATES``, at most one per row, each a row of ``truth/defects.csv``): institutions
``point_outside_district`` (field ``lon``), ``unknown_town`` / ``town_mismatch`` (``town``),
``hospital_without_beds`` (a hospital with beds empty or 0: ``beds``), ``licence_expired_active`` (执业
with a licence that ended 1-13 months before the extract date: ``status``), ``credit_code_checksum`` (at
ingest: ``credit_code``) and ``duplicate_record`` (``licence_no``); lines ``invalid_geometry`` (a one-point
or truncated WKT), ``line_outside_district`` (a vertex 0.4-12 km outside the district),
``implausible_length`` (the route driven back and forth to more than ``bus_lines.max_km``), all on field
``route_wkt``, ``stop_unknown`` (a depot name that is no stop of the register: ``stops``) and
``duplicate_record`` (``line_id``). A pure function of ``(scale, seed, book, stop POIs)``.
"""
from __future__ import annotations

import datetime
import json
import random
import re
from pathlib import Path

import numpy as np
import shapely

from lake import geo
from lake.reference import BUS_LINES, HEALTH_FACILITIES, SERVICES
from sample import basemap
from sample.governance import Plan, SourceFile
from sample.identifiers import make_uscc

HEALTH, BUS = "nhc_health_facilities", "jtj_bus_lines"
SIZES = {HEALTH: 900, BUS: 600}           # rows: institutions; lines x 2 directions
MIN_ROWS = {HEALTH: 30, BUS: 24}          # Plan forces every defect type
RATES = {
    HEALTH: {"point_outside_district": 0.02, "unknown_town": 0.02, "town_mismatch": 0.02, "hospital_without_beds": 0.02,
             "licence_expired_active": 0.02, "credit_code_checksum": 0.02, "duplicate_record": 0.02},
    BUS: {"invalid_geometry": 0.02, "line_outside_district": 0.02, "implausible_length": 0.02, "stop_unknown": 0.03,
          "duplicate_record": 0.02},
}
UNKNOWN_TOWNS = ("北京经济技术开发区", "大兴区", "亦庄开发区", "大兴新城")
# category -> (weight, name template, levels, beds range or None)
CATEGORIES = {
    "综合医院": (3, "北京{trade}医院", ("二级", "三级", "一级"), (80, 1200)),
    "中医医院": (1, "北京市大兴区{town}中医医院", ("二级", "一级"), (40, 400)),
    "专科医院": (2, "北京{trade}专科医院", ("一级", "二级", "未定级"), (20, 300)),
    "社区卫生服务中心": (2, "北京市大兴区{town}社区卫生服务中心", ("一级",), (0, 60)),
    "社区卫生服务站": (8, "{road}社区卫生服务站", ("未定级",), None),
    "卫生院": (1, "北京市大兴区{town}卫生院", ("一级",), (10, 80)),
    "村卫生室": (15, "{road}卫生室", ("未定级",), None),
    "门诊部": (6, "北京{trade}门诊部", ("未定级",), None),
    "诊所": (20, "{trade}诊所", ("未定级",), None),
}
STATUS_WEIGHTS = {"执业": 0.92, "停业": 0.05, "注销": 0.03}
CREDIT_KINDS = {"综合医院": "12", "中医医院": "12", "社区卫生服务中心": "12", "卫生院": "12"}   # public: 事业单位
TRADE_CHARS = "康健仁和安泰华德祥瑞民济博爱同善佑仁益寿宁长春"
OPERATORS = ("北京公交集团第三客运分公司", "北京公交集团第八客运分公司", "北京市大兴区公共交通有限公司")
DEPOT_SUFFIXES = ("公交场站", "公交总站", "公交枢纽")
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _credit_code(k: int, kind: str) -> str:
    body = f"{(k * 7919 + 1234567) % 10 ** 8:08d}"
    check = 11 - sum(int(c) * w for c, w in zip(body, _ORG_WEIGHTS)) % 11
    return make_uscc(kind[0], kind[1], "110115", body + {10: "X", 11: "0"}.get(check, str(check)))


def _gcj(lon: float, lat: float) -> tuple[str, str]:
    x, y = geo.from_wgs84([lon], [lat], "GCJ02")
    return f"{float(x[0]):.7f}", f"{float(y[0]):.7f}"


def _short(town: str) -> str:
    return town[:-2] if town.endswith("街道") else town[:-1]


def health_file(scale: float, seed: int, book, extract_date: datetime.date) -> SourceFile:
    from sample.generate_spatial import _outside_sampler

    rng = random.Random(f"{seed}-health-facilities")
    outside = _outside_sampler(rng)
    f = SourceFile(HEALTH, "health", rng, "YL")
    plan = Plan(rng, RATES[HEALTH])
    cats, weights = list(CATEGORIES), [CATEGORIES[c][0] for c in CATEGORIES]
    hospitals = set(HEALTH_FACILITIES.hospital_categories)
    for k in range(max(MIN_ROWS[HEALTH], round(SIZES[HEALTH] * scale))):
        e = book.entry(book.random_index(rng))
        cat = cats[k] if k < len(cats) else rng.choices(cats, weights)[0]
        _, template, levels, beds = CATEGORIES[cat]
        status = rng.choices(list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values()))[0]
        start = extract_date - datetime.timedelta(days=rng.randint(60, 4 * 365))
        row = {"licence_no": f"PDY{k + 1:05d}X110115{rng.randint(10, 99)}{'A' if cat in CREDIT_KINDS else 'D'}1002",
               "credit_code": _credit_code(seed * 100_000 + k, CREDIT_KINDS.get(cat, rng.choice(("52", "91")))),
               "name": template.format(trade="".join(rng.sample(TRADE_CHARS, 2)), town=_short(e.town), road=e.road),
               "category": cat, "level": rng.choice(levels),
               "beds": str(max(1, rng.randint(*beds))) if beds else "", "town": e.town,
               "address": book.render(book.index(e.key)), "valid_from": start.isoformat(),
               "valid_to": datetime.date(start.year + 5, start.month, min(start.day, 28)).isoformat(), "status": status}
        eligible = set(RATES[HEALTH])
        if cat not in hospitals:
            eligible.discard("hospital_without_beds")
        if status != HEALTH_FACILITIES.active_status:
            eligible.discard("licence_expired_active")
        defect = plan.pick(eligible)
        lon, lat, field = e.lon, e.lat, None
        if defect == "point_outside_district":
            (lon, lat), field = outside(), "lon"
        elif defect == "unknown_town":
            row["town"], field = rng.choice(UNKNOWN_TOWNS), "town"
        elif defect == "town_mismatch":
            row["town"], field = rng.choice([t for t in book.towns if t != e.town]), "town"
        elif defect == "hospital_without_beds":
            row["beds"], field = rng.choice(("", "0")), "beds"
        elif defect == "licence_expired_active":
            end = extract_date - datetime.timedelta(days=rng.randint(30, 400))
            row["valid_to"], row["valid_from"], field = end.isoformat(), (end - datetime.timedelta(days=5 * 365)).isoformat(), "status"
        row["lon"], row["lat"] = _gcj(lon, lat)
        if defect == "credit_code_checksum":
            added = f.add(row)
            f.corrupt(added, defect, "credit_code")
            continue
        added = f.add(row, None if defect == "duplicate_record" else defect, field)
        if defect == "duplicate_record":
            f.duplicate(added)
    return f


# ------------------------------------------------------------------ bus lines

def stop_pool(out: Path, spatial_files: list[dict], truth: list[tuple]) -> list[tuple[str, float, float]]:
    """(name, WGS-84 lon, lat) of the POIs that are stops of the register in ``base.poi``: the POIs of
    ``bus_lines.stop_service`` in the POI file, less those written outside the district (first row of a
    POI id; the POI's coordinates converted from its own system)."""
    sv = SERVICES[BUS_LINES.stop_service]
    outside = {t[1] for t in truth if t[0] == "ghzrzy_poi" and t[3] == "point_outside_district"}
    entry = next(e for e in spatial_files if e["source"] == "ghzrzy_poi")
    seen, pool = set(), []
    for line in (Path(out) / entry["path"]).read_text(encoding=entry["encoding"]).splitlines():
        r = json.loads(line)
        if r["poi_id"] in seen or r["poi_id"] in outside or r["category"] != sv.poi_category:
            continue
        seen.add(r["poi_id"])
        if sv.name_pattern and not re.search(sv.name_pattern, r["name"]):
            continue
        x, y = geo.to_wgs84([float(r["lon"])], [float(r["lat"])], r["coord_sys"])
        pool.append((r["name"], float(x[0]), float(y[0])))
    return pool


def _wkt(coords) -> str:
    xs, ys = geo.from_wgs84(np.array([c[0] for c in coords]), np.array([c[1] for c in coords]), "GCJ02")
    return "LINESTRING (" + ", ".join(f"{x:.7f} {y:.7f}" for x, y in zip(xs, ys)) + ")"


def _route(rng: random.Random, book, pool, district) -> tuple[list[str], list[tuple[float, float]]]:
    """A clean route: depot, 1-5 stops of ``pool`` in order along the way, depot; inside the district."""
    for _ in range(2000):
        a, b = (book.entry(book.random_index(rng)) for _ in range(2))
        stops = rng.sample(pool, rng.randint(1, min(5, len(pool))))
        dx, dy = b.lon - a.lon, b.lat - a.lat
        stops.sort(key=lambda s: (s[1] - a.lon) * dx + (s[2] - a.lat) * dy)
        coords = [(a.lon, a.lat), *[(s[1], s[2]) for s in stops], (b.lon, b.lat)]
        if len(set(coords)) < len(coords):
            continue
        line = shapely.LineString(coords)
        if BUS_LINES.min_km + 0.5 <= geo.line_length_km(line) <= 0.8 * BUS_LINES.max_km and shapely.covers(district, line):
            return [s[0] for s in stops], coords
    raise RuntimeError("no route inside the district found")


def _outside_km(coords, district) -> float:
    return geo.line_length_km(shapely.difference(shapely.LineString(coords), district))


def bus_file(scale: float, seed: int, book, pool: list[tuple[str, float, float]]) -> SourceFile:
    from sample.generate_spatial import _outside_sampler

    rng = random.Random(f"{seed}-bus-lines")
    outside = _outside_sampler(rng)
    district = basemap.district_outline()
    shapely.prepare(district)
    f = SourceFile(BUS, "transport", rng, "GJ")
    plan = Plan(rng, RATES[BUS])
    if not pool:
        return f
    up, down = BUS_LINES.directions
    for k in range(max(MIN_ROWS[BUS], round(SIZES[BUS] * scale)) // 2):
        stops, coords = _route(rng, book, pool, district)
        line = {"line_id": f"DX{k + 1:04d}", "name": f"兴{k + 1}路", "operator": rng.choice(OPERATORS)}
        for direction in (up, down):
            s, c = (stops, coords) if direction == up else (stops[::-1], coords[::-1])
            defect = plan.pick()
            field = "route_wkt" if defect in ("invalid_geometry", "line_outside_district", "implausible_length") else None
            wkt = _wkt(c)
            if defect == "invalid_geometry":
                wkt = _wkt(c[:1]).replace("LINESTRING", "POINT") if rng.random() < 0.3 else \
                    ("LINESTRING (" + wkt[12:].split(",")[0] + ")" if rng.random() < 0.5 else wkt[:len(wkt) // 2])
            elif defect == "line_outside_district":
                while True:
                    i = rng.randint(1, len(c) - 1)
                    cc = [*c[:i], outside(), *c[i:]]
                    km = geo.line_length_km(shapely.LineString(cc))
                    if BUS_LINES.min_km < km < BUS_LINES.max_km and _outside_km(cc, district) > 2 * BUS_LINES.outside_tolerance_km:
                        break
                wkt = _wkt(cc)
            elif defect == "implausible_length":
                cc, back = list(c), c[::-1]
                while geo.line_length_km(shapely.LineString(cc)) <= 1.2 * BUS_LINES.max_km:
                    cc += back[1:]
                    back = back[::-1]
                wkt = _wkt(cc)
            elif defect == "stop_unknown":
                depot = book.entry(book.random_index(rng))
                s = [*s, f"{depot.road}{rng.choice(DEPOT_SUFFIXES)}"]
                field = "stops"
            row = {**line, "direction": direction, "stops": BUS_LINES.stop_delimiter.join(s), "route_wkt": wkt}
            added = f.add(row, None if defect == "duplicate_record" else defect, field)
            if defect == "duplicate_record":
                f.duplicate(added)
    return f


def generate_services(scale: float, seed: int, out: Path, book, extract_date: datetime.date,
                      spatial_files: list[dict], spatial_truth: list[tuple]) -> dict:
    """Write both snapshots into ``out`` (file stamp: the extract date); return ``{"files", "truth"}``.
    ``spatial_files`` / ``spatial_truth``: what ``sample.generate_spatial`` wrote (the stop POIs)."""
    files = [health_file(scale, seed, book, extract_date),
             bus_file(scale, seed, book, stop_pool(out, spatial_files, spatial_truth))]
    for f in files:
        f.stamp = extract_date.strftime("%Y%m%d")
    return {"files": [f.write(Path(out)) for f in files], "truth": [t for f in files for t in f.truth]}
