"""Health, transport and economic-operation topics (jobs/topic/services.py, jobs/topic/economy.py): on
hand-written rows, then on the tiny lake against a plain-Python recomputation from the published base
tables."""
from __future__ import annotations

import datetime
import math
from collections import Counter, defaultdict

from deltalake import DeltaTable

from lake.reference import DISTRICT, LEGAL_ENTITY, SENSING, SERVICES

D = datetime.date


def haversine(lon1, lat1, lon2, lat2) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def test_facilities_and_coverage_on_hand_written_rows(spark):
    from jobs.topic import emergency, services

    poi = spark.createDataFrame([
        ("P1", "某某诊所", "医疗保健服务", "黄村镇", 116.330, 39.730),          # a POI: not a health facility
        ("P2", "兴华大街公交站", "交通设施服务", "黄村镇", 116.331, 39.731),
        ("P3", "某某停车场", "交通设施服务", "黄村镇", 116.340, 39.740),      # not a stop
    ], "poi_id string, name string, category string, town string, lon double, lat double")
    hf = spark.createDataFrame([
        ("L1", "黄村镇", 116.330, 39.730, "执业"), ("L2", "黄村镇", 116.3301, 39.7301, "注销"),   # not in service
        ("L3", "旧宫镇", None, None, "执业"),                                                   # no point
    ], "licence_no string, town string, lon double, lat double, status string")
    tables = {"base.poi": poi, "base.health_facility": hf}
    assert services.source_table("health") == "base.health_facility" and services.id_column("health") == "licence_no"
    assert {r["poi_id"] for r in services.facilities(poi, "transport").collect()} == {"P2"}
    assert {r["licence_no"] for r in services.facilities(hf, "health").collect()} == {"L1"}
    addresses = spark.createDataFrame([
        ("A1", "黄村镇", 116.3305, 39.7305, 3),      # ~70 m from P1 and P2
        ("A2", "黄村镇", 116.3375, 39.7300, 2),      # ~640 m from P1, ~560 m from P2: health only
        ("A3", "旧宫镇", 116.4500, 39.8100, 4),      # far
    ], "address_code string, town string, lon double, lat double, residents long")
    per = {}
    for s in ("health", "transport"):
        fac = services.facilities(tables[services.source_table(s)], s)
        pts = [(r[services.id_column(s)], r["lon"], r["lat"]) for r in fac.collect()]
        per[s] = (fac, emergency.pairs_within(addresses, pts, SERVICES[s].reach_metres))
    got = {(r["service"], r["town"]): r for r in services.coverage(["黄村镇", "旧宫镇", "礼贤镇"], addresses, per).collect()}
    assert (got[("health", "黄村镇")]["residents_in_reach"], got[("health", "黄村镇")]["facilities"]) == (5, 1)
    assert (got[("transport", "黄村镇")]["residents_in_reach"], got[("transport", "黄村镇")]["reach_share"]) == (3, 0.6)
    assert (got[("health", "旧宫镇")]["residents"], got[("health", "旧宫镇")]["residents_in_reach"]) == (4, 0)
    assert got[("health", "礼贤镇")]["reach_share"] is None and got[("health", "礼贤镇")]["facilities"] == 0


def test_births_and_trend_on_hand_written_rows(spark):
    from jobs.topic import economy

    le = spark.createDataFrame([
        (D(2026, 3, 5), "黄村镇", "F", "存续"), (D(2026, 3, 20), "黄村镇", "F", "注销"),
        (D(2026, 4, 1), "旧宫镇", None, "存续"), (None, "黄村镇", "F", "存续"),
    ], "established_date date, town string, industry string, status string")
    got = {(r["month"], r["town"], r["industry"]): (r["births"], r["active"]) for r in economy.births(le).collect()}
    assert got == {("2026-03", "黄村镇", "F"): (2, 1), ("2026-04", "旧宫镇", "未知"): (1, 1)}
    macro = spark.createDataFrame([
        ("X", "x", "2026-09", "全区", "合计", 100.0, "万元"), ("X", "x", "2026-10", "全区", "合计", 110.0, "万元"),
        ("X", "x", "2026-10", "黄村镇", "合计", 5.0, "万元"), ("Y", "y", "2026Q2", "全区", "合计", 0.0, "个"),
        ("Y", "y", "2026Q3", "全区", "合计", 3.0, "个"),
    ], "indicator string, indicator_name string, period string, town string, industry string, value double, unit string")
    t = {(r["indicator"], r["period"], r["town"]): r for r in economy.trend(macro).collect()}
    assert (t[("X", "2026-10", "全区")]["previous_value"], t[("X", "2026-10", "全区")]["change_rate"]) == (100.0, 0.1)
    assert t[("X", "2026-10", "黄村镇")]["previous_period"] is None
    assert t[("Y", "2026Q3", "全区")]["previous_period"] == "2026Q2" and t[("Y", "2026Q3", "全区")]["change_rate"] is None


def test_deaths_on_hand_written_rows(spark):
    from jobs.topic import economy

    le = spark.createDataFrame([
        (D(2015, 1, 1), D(2026, 3, 5), "黄村镇", "F", "注销"), (D(2015, 1, 1), D(2026, 3, 20), "黄村镇", "F", "吊销"),
        (D(2015, 1, 1), D(2026, 4, 1), None, None, "吊销"),
        (D(2015, 1, 1), None, "黄村镇", "F", "注销"),                 # no date: not counted
        (D(2015, 1, 1), D(2026, 3, 5), "黄村镇", "F", "存续"),        # active with a date: not a death
        (D(2015, 1, 1), D(2014, 3, 5), "黄村镇", "F", "注销"),        # before establishment
        (D(2015, 1, 1), D(2026, 11, 2), "黄村镇", "F", "注销"),       # after the business date
        (None, D(2026, 3, 6), "黄村镇", "F", "撤销"),                 # establishment unknown: counted
    ], "established_date date, deregistered_date date, town string, industry string, status string")
    got = {(r["month"], r["town"], r["industry"]): (r["deaths"], r["revoked"])
           for r in economy.deaths(le, "2026-11-01").collect()}
    assert got == {("2026-03", "黄村镇", "F"): (3, 1), ("2026-04", "未知", "未知"): (1, 1)}
    assert {r["month"] for r in economy.deaths(le).collect()} == {"2026-03", "2026-04", "2026-11"}


# --------------------------------------------------------------------------- the tiny lake

def rows(root, rel):
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def test_topics_on_the_tiny_lake_equal_a_plain_recomputation(tiny_lake):
    import json
    import re

    root = tiny_lake["settings"].root
    people = {r["id_number"] for r in rows(root, "base/population") if (r["register_status"] or "正常") == "正常"}
    meta = json.loads(DeltaTable(f"{root}/base/standard_address").history(1)[0].get("userMetadata") or "{}")
    links = [r for r in rows(root, "quality/address_links") if r["source"] == "base.population" and r["address_code"]
             and r["record_key"] in people and r["run_id"] == meta.get("inputs")]
    lib = {r["address_code"]: r for r in rows(root, "base/standard_address") if r["lon"] is not None}
    per_addr = Counter(r["address_code"] for r in links if r["address_code"] in lib)
    poi = rows(root, "base/poi")
    health = rows(root, "base/health_facility")
    got = {(r["service"], r["town"]): r for r in rows(root, "topic/service_coverage_by_town")}
    assert set(got) == {(s, t) for s in SERVICES for t in DISTRICT.towns}
    for s, sv in SERVICES.items():
        if sv.table:   # health: the medical institutions in practice
            assert sv.table == "base.health_facility"
            fac = [h for h in health if h["lon"] is not None and h[sv.status_column] in sv.statuses]
        else:          # transport: stop POIs
            fac = [p for p in poi if p["category"] == sv.poi_category and p["lon"] is not None
                   and (not sv.name_pattern or re.search(sv.name_pattern, p["name"]))]
        assert fac, s
        near = {c for c in per_addr for p in fac
                if haversine(lib[c]["lon"], lib[c]["lat"], p["lon"], p["lat"]) < sv.reach_metres}
        for t in DISTRICT.towns:
            g = got[(s, t)]
            res = sum(n for c, n in per_addr.items() if lib[c]["town"] == t)
            inr = sum(n for c, n in per_addr.items() if lib[c]["town"] == t and c in near)
            assert (g["facilities"], g["residents"], g["residents_in_reach"]) == (
                sum(1 for p in fac if p["town"] == t), res, inr), (s, t)
    births = defaultdict(lambda: [0, 0])
    for e in rows(root, "base/legal_entity"):
        if e["established_date"]:
            b = births[(e["established_date"].strftime("%Y-%m"), e["town"] or "未知", e["industry"] or "未知")]
            b[0] += 1
            b[1] += e["status"] in LEGAL_ENTITY.active_statuses
    assert {(r["month"], r["town"], r["industry"]): [r["births"], r["active"]]
            for r in rows(root, "topic/economic_births")} == dict(births)
    macro = rows(root, "base/macro_indicator")
    trend = {(r["indicator"], r["period"], r["town"], r["industry"]): r for r in rows(root, "topic/macro_trend")}
    assert len(trend) == len(macro)
    cells = defaultdict(list)
    for m in macro:
        cells[(m["indicator"], m["town"], m["industry"])].append(m)
    for (ind, town, ind2), ms in cells.items():
        ms.sort(key=lambda m: m["period"])
        for prev, cur in zip([None, *ms], ms):
            g = trend[(ind, cur["period"], town, ind2)]
            assert g["previous_period"] == (prev["period"] if prev else None)
            if prev and prev["value"]:
                assert math.isclose(g["change_rate"], (cur["value"] - prev["value"]) / abs(prev["value"]), abs_tol=1e-6)


def test_deaths_on_the_tiny_lake_equal_a_plain_recomputation(tiny_lake):
    """topic.economic_deaths against base.legal_entity: dead status, a date from the establishment to
    the run's business date; the tiny lake has deaths and revocations to count."""
    as_of = D.fromisoformat(tiny_lake["manifest"]["generator"]["extract_date"])  # the run's --as-of (conftest)
    root = tiny_lake["settings"].root
    deaths = defaultdict(lambda: [0, 0])
    entities = rows(root, "base/legal_entity")
    for e in entities:
        d = e["deregistered_date"]
        if (e["status"] in LEGAL_ENTITY.deregistered_statuses and d is not None and d <= as_of
                and (e["established_date"] is None or d >= e["established_date"])):
            c = deaths[(d.strftime("%Y-%m"), e["town"] or "未知", e["industry"] or "未知")]
            c[0] += 1
            c[1] += e["status"] == "吊销"
    got = {(r["month"], r["town"], r["industry"]): [r["deaths"], r["revoked"]] for r in rows(root, "topic/economic_deaths")}
    assert got == dict(deaths)
    assert sum(v[0] for v in got.values()) > 0 and sum(v[1] for v in got.values()) > 0


def test_traffic_flow_on_the_tiny_lake_equals_a_plain_recomputation(tiny_lake):
    """topic.traffic_flow against base.iot_reading (vehicle_count readings) and base.iot_device (the
    detector's town), recomputed in plain Python (``test_iot.reference_traffic_flow``)."""
    from test_iot import reference_traffic_flow

    root = tiny_lake["settings"].root
    towns = {d["city_code"]: (d["town_code"], d["town"]) for d in rows(root, "base/iot_device")}
    readings = [(r["day"], r["ts"], r["city_code"], r["value"])
                for r in rows(root, "base/iot_reading") if r["metric"] == "vehicle_count"]
    want = reference_traffic_flow(readings, towns)
    got = {(r["day"], r["hour"], r["town_code"]): (r["town"], r["vehicles"], r["devices"], r["readings"], r["peak_hour"])
           for r in rows(root, "topic/traffic_flow")}
    assert want and got == want
    # the detectors are the transport bureau's (reference data), in the ledger
    detectors = {c for c, t in SENSING.device_types.items() if "vehicle_count" in t.metrics}
    owners = {SENSING.departments[SENSING.device_types[c].owner].department for c in detectors}
    assert owners == {"北京市大兴区交通局"}
    assert {d["owner_department"] for d in rows(root, "base/iot_device") if d["device_type"] in detectors} == owners
