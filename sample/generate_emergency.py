"""Synthetic emergency-management registers (应急管理): shelters (``mem_shelters``), major hazard sources
(``mem_hazard_sources``) and rescue teams (``mem_rescue_teams``) of the emergency-management bureau.

Every record sits at a door plate of the district's address book (``sample.generate_spatial``: its
true WGS-84 point lies at least ~50 m inside its town), written in GCJ-02 as the bureau's map service
gives it, and declares that town. A hazard source's operator is an entity of the legal-entity register
when the sample has one. Sizes at scale 1.0 (``SIZES``; at least ``MIN_ROWS``).

Defects (``RATES``, at most one per row, each a row of ``truth/defects.csv``):
``point_outside_district`` (a point 0.4-12 km outside the district; field ``lon``), ``unknown_town``
(a declared town that is none of the 22: field ``town``), ``town_mismatch`` (another town of the
district declared), ``capacity_missing`` (a shelter in use without a capacity) and
``duplicate_record`` (the row again later in the file; field the id). A pure function of
``(scale, seed, book)``.
"""
from __future__ import annotations

import datetime
import random
from pathlib import Path

from lake import geo
from lake.reference import EMERGENCY
from sample.governance import Plan, SourceFile

SIZES = {"mem_shelters": 240, "mem_hazard_sources": 150, "mem_rescue_teams": 60}
MIN_ROWS = {"mem_shelters": 20, "mem_hazard_sources": 18, "mem_rescue_teams": 18}   # Plan forces every type
PREFIX = {"mem_shelters": "BN", "mem_hazard_sources": "WX", "mem_rescue_teams": "JY"}
ID_COLUMN = {"mem_shelters": "shelter_id", "mem_hazard_sources": "hazard_id", "mem_rescue_teams": "team_id"}
_COMMON = {"point_outside_district": 0.02, "unknown_town": 0.02, "town_mismatch": 0.03, "duplicate_record": 0.02}
RATES = {"mem_shelters": {"capacity_missing": 0.03, **_COMMON}, "mem_hazard_sources": dict(_COMMON),
         "mem_rescue_teams": dict(_COMMON)}
UNKNOWN_TOWNS = ("北京经济技术开发区", "大兴区", "亦庄开发区", "大兴新城")
SUBSTANCES = ("液化石油气", "天然气", "液氨", "氯气", "汽油", "柴油", "甲醇", "过氧化氢")
SHELTER_KINDS = ("公园", "广场", "体育场", "学校操场", "绿地")


def _outside(rng: random.Random):
    from sample.generate_spatial import _outside_sampler

    return _outside_sampler(rng)


def generate(scale: float, seed: int, book, entity_codes: list[str] | None = None) -> list[SourceFile]:
    rng = random.Random(f"{seed}-emergency")
    outside = _outside(rng)
    files = []
    for source in ("mem_shelters", "mem_hazard_sources", "mem_rescue_teams"):
        f = SourceFile(source, "emergency", rng, PREFIX[source])
        plan = Plan(rng, RATES[source])
        n = max(MIN_ROWS[source], round(SIZES[source] * scale))
        for k in range(n):
            e = book.entry(book.random_index(rng))
            row = {ID_COLUMN[source]: f"{PREFIX[source]}{110115}{k:05d}", "town": e.town}
            if source == "mem_shelters":
                row.update(name=f"{e.road}{rng.choice(SHELTER_KINDS)}应急避难场所", shelter_type=rng.choice(EMERGENCY.shelter_types),
                           address=book.render(book.index(e.key)), capacity=str(rng.randint(5, 400) * 50),
                           area_m2=f"{rng.randint(10, 500) * 100:.1f}", status="在用" if rng.random() < 0.9 else "停用")
            elif source == "mem_hazard_sources":
                row.update(name=f"{e.road}{rng.choice(SUBSTANCES)}储存设施", hazard_level=rng.choice(EMERGENCY.hazard_levels),
                           substance=rng.choice(SUBSTANCES),
                           credit_code=rng.choice(entity_codes) if entity_codes else "")
            else:
                kind = rng.choice(EMERGENCY.team_types)
                row.update(name=f"大兴区{e.town}{kind}队", team_type=kind, members=str(rng.randint(8, 120)))
            lon, lat = e.lon, e.lat
            eligible = set(RATES[source]) - ({"capacity_missing"} if row.get("status") != "在用" else set())
            defect = plan.pick(eligible)
            field = None
            if defect == "point_outside_district":
                lon, lat = outside()
                field = "lon"
            elif defect == "unknown_town":
                row["town"], field = rng.choice(UNKNOWN_TOWNS), "town"
            elif defect == "town_mismatch":
                row["town"], field = rng.choice([t for t in book.towns if t != e.town]), "town"
            elif defect == "capacity_missing":
                row["capacity"], field = "", "capacity"
            x, y = geo.from_wgs84([lon], [lat], "GCJ02")
            row["lon"], row["lat"] = f"{float(x[0]):.7f}", f"{float(y[0]):.7f}"
            added = f.add(row, None if defect == "duplicate_record" else defect, field)
            if defect == "duplicate_record":
                f.duplicate(added)
        files.append(f)
    return files


def generate_emergency(scale: float, seed: int, out: Path, book, extract_date: datetime.date,
                       entity_codes: list[str] | None = None) -> dict:
    """Write the three registers into ``out`` (file stamp: the extract date); return ``{"files", "truth"}``."""
    files = generate(scale, seed, book, entity_codes)
    for f in files:
        f.stamp = extract_date.strftime("%Y%m%d")
    return {"files": [f.write(Path(out)) for f in files], "truth": [t for f in files for t in f.truth]}
