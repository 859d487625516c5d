"""12345 接诉即办 (jobs/base/hotline.py, jobs/topic/hotline.py): the cross rules, address placement and
topics on hand-written rows; then on the tiny lake the findings against the generator's truth, the
de-identified orders and the topics against a plain-Python recomputation from the files; and two
delivery days built incrementally against a full build (a small lake of its own that borrows the tiny
lake's base.standard_address)."""
from __future__ import annotations

import csv
import datetime
import json
import math
import random
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.base import hotline
from jobs.topic import hotline as topic
from lake import contracts as contracts_mod
from lake.reference import HOTLINE
from opendata.deid import grid_cell as deid_grid_cell

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)
DT = datetime.datetime
FMT = "%Y-%m-%d %H:%M:%S"
SOURCE = hotline.SOURCE
BEIJING = __import__("zoneinfo").ZoneInfo("Asia/Shanghai")


def beijing(value):
    """A timestamp read back (PySpark: naive in the process's zone; deltalake: UTC) as Beijing wall time."""
    if value is None:
        return None
    aware = value if value.tzinfo is not None else value.astimezone()
    return aware.astimezone(BEIJING).replace(tzinfo=None)


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def raw(spark, contracts, rows: list[dict]):
    """Raw rows of the hotline source with ingest metadata (``_batch_id``, ``_as_of`` per row)."""
    sc = contracts.source(SOURCE)
    schema = ", ".join(f"`{c.name}` string" for c in sc.columns)
    schema += (", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp, "
               "_as_of date, _op string")
    data = [tuple(r.get(c.name) for c in sc.columns)
            + (SOURCE, "f" * 64, r.get("_row", i + 2), r.get("_batch_id", "b1"), TS,
               r.get("_as_of", datetime.date(2026, 11, 1)), None) for i, r in enumerate(rows)]
    return spark.createDataFrame(data, schema)


LIB = [("黄村镇|兴华大街|12|", "110115001AAAA0001", "黄村镇", 116.3301, 39.7302),
       ("旧宫镇|旧宫东路|8|3", "110115002BBBB0002", "旧宫镇", 116.4501, 39.8101)]


@pytest.fixture(scope="module")
def library(spark):
    return spark.createDataFrame(LIB, "door_key string, address_code string, town string, lon double, lat double")


def order(rid, oid, address="北京市大兴区黄村镇兴华大街12号", category="市容环境", acc="2026-10-01 08:00:00",
          dis="2026-10-01 09:00:00", res="2026-10-01 12:00:00", clo="2026-10-02 12:00:00", **kw):
    return {"record_id": rid, "order_id": oid, "channel": "电话", "caller_name": "张三", "caller_phone": "13812345678",
            "address": address, "category": category, "content": "x", "accepted_at": acc, "dispatched_at": dis,
            "handling_department": "黄村镇人民政府" if dis else None, "responded_at": res, "closed_at": clo,
            "status": "已办结", "satisfaction": "满意", **kw}


@pytest.fixture(scope="module")
def built(spark, contracts, library):
    tc, sc = contracts.table(hotline.TABLE), contracts.source(SOURCE)
    rows = raw(spark, contracts, [
        order("R1", "O1"),                                                          # clean
        order("R2", "O2", address="大兴县黄村地区兴华大街１２号"),                       # a variant: placed
        order("R3", "O3", address="北京市大兴区旧宫镇旧宫东路8号3号楼2单元501室", dis=None, res=None, clo=None,
              status="已受理", satisfaction=None),                                     # accepted only: clean
        order("R4", "O4", address="北京市大兴区黄村镇兴华大街99号"),                    # not in the library
        order("R5", "O5", address=None),                                             # empty
        order("R6", "O6", dis="2026-10-01 07:00:00"),                                # dispatched before accepted
        order("R7", "O7", res="2026-10-01 08:30:00"),                                # responded before dispatch
        order("R8", "O8", clo="2026-10-01 11:00:00"),                                # closed before response
        order("R9", "O9", res=None),                                                 # closed, never responded
        order("R10", "O10", category="咨询"),                                        # unknown category
        order("R11", "O11", res="2026/10/01 12:00:00"),                              # unreadable, not missing
        order("R12", "O1", _row=40),                                                 # O1 again, same file
        order("R13", "O13", clo="2026-10-01 11:00:00", _batch_id="b0", _as_of=datetime.date(2026, 10, 31)),
        order("R14", "O13", _batch_id="b2", _as_of=datetime.date(2026, 11, 2)),      # corrected a day later
    ])
    cand, found = hotline.build_orders(rows, library, tc, sc)
    return {"cand": {r["order_id"]: r for r in cand.collect()}, "found": found.collect()}


def test_rules_on_hand_written_orders(built):
    got = {(r["record_key"], r["field"], r["defect_type"]) for r in built["found"]}
    assert got == {
        ("R4", "address", "address_unresolved"), ("R5", "address", "address_unresolved"),
        ("R6", "dispatched_at", "timestamps_out_of_order"), ("R7", "responded_at", "timestamps_out_of_order"),
        ("R8", "closed_at", "timestamps_out_of_order"), ("R9", "closed_at", "closed_without_response"),
        ("R10", "category", "unknown_category"), ("R11", "responded_at", "invalid_timestamp"),
        ("R12", "order_id", "duplicate_record"),
    }
    by = {r["record_key"]: r for r in built["found"]}
    assert all(r["source"] == SOURCE and r["department"] == "北京市大兴区政务服务和数据管理局" for r in built["found"])
    assert {r["record_key"]: r["entity_key"] for r in built["found"]}["R12"] == "O1"
    assert "not_in_library" not in by["R4"]["message"] and "no standard address" in by["R4"]["message"]
    assert "empty" in by["R5"]["message"]


def test_orders_are_placed_and_de_identified(built, contracts):
    c = built["cand"]
    assert set(c) == {f"O{i}" for i in range(1, 12)} | {"O13"}
    assert (c["O1"]["address_code"], c["O1"]["town"], c["O1"]["lon"]) == ("110115001AAAA0001", "黄村镇", 116.3301)
    assert c["O2"]["address_code"] == "110115001AAAA0001"                       # the parser undid the variant
    assert c["O3"]["address_code"] == "110115002BBBB0002" and c["O3"]["closed_at"] is None
    assert c["O4"]["address_code"] is None and c["O4"]["town"] is None and c["O4"]["grid_id"] is None
    assert c["O10"]["category"] is None and c["O11"]["responded_at"] is None
    assert beijing(c["O1"]["accepted_at"]) == DT(2026, 10, 1, 8) and c["O1"]["grid_id"] == deid_grid_cell(116.3301, 39.7302, "grid_1km")
    assert beijing(c["O13"]["closed_at"]) == DT(2026, 10, 2, 12) and c["O13"]["as_of"] == datetime.date(2026, 11, 2)
    assert c["O1"]["_lineage"]["category"]["row"] == 2 and c["O1"]["_lineage"]["town"]["source"] == "derived:standard_address_link"
    cols = set(next(iter(c.values())).asDict())
    assert not cols & {"caller_name", "caller_phone", "content", "address"}
    assert not any(col.pii for col in contracts.table(hotline.TABLE).columns)


def test_grid_cells_equal_the_open_zone_oracle(spark):
    rng = random.Random(3)
    pts = [(rng.uniform(116.13, 116.72), rng.uniform(39.44, 39.85)) for _ in range(3000)]
    from pyspark.sql import functions as F

    df = spark.createDataFrame(pts, "lon double, lat double")
    got = [r[0] for r in df.select(hotline.grid_cell(F.col("lon"), F.col("lat"))).collect()]
    assert got == [deid_grid_cell(lo, la, "grid_1km") for lo, la in pts]


def base_row(oid, code, town, cat, acc, lon=116.33, lat=39.73, dept="黄村镇人民政府", res=True, clo=True, sat="满意"):
    grid = deid_grid_cell(lon, lat, "grid_1km") if code else None
    return (oid, code, town, cat, lon if code else None, lat if code else None, grid, dept if dept else None, acc,
            acc if dept else None, acc if res else None, acc if clo else None, sat)


@pytest.fixture(scope="module")
def base_orders(spark):
    d = datetime.datetime
    rows = [
        base_row("A", "C1", "黄村镇", "市容环境", d(2026, 10, 1, 8)),
        base_row("B", "C1", "黄村镇", "市容环境", d(2026, 10, 31, 8)),                   # exactly 30 days: a repeat of A
        base_row("C", "C1", "黄村镇", "市容环境", d(2026, 11, 30, 8, 0, 1)),             # 30 days + 1 s after B: not
        base_row("D", "C1", "黄村镇", "噪声扰民", d(2026, 10, 2, 8), sat=None),          # other category
        base_row("E", None, None, "市容环境", d(2026, 10, 3, 8), dept=None, res=False, clo=False, sat=None),
        base_row("F", "C2", "旧宫镇", None, d(2026, 10, 4, 8), lon=116.45, lat=39.81, sat="不满意"),
        base_row("G", "C2", "旧宫镇", None, d(2026, 10, 5, 8), lon=116.45, lat=39.81, res=False, clo=False, sat=None),
    ]
    return spark.createDataFrame(rows, "order_id string, address_code string, town string, category string, lon double, "
                                       "lat double, grid_id string, handling_department string, accepted_at timestamp, "
                                       "dispatched_at timestamp, responded_at timestamp, closed_at timestamp, "
                                       "satisfaction string")


def test_repeat_complaints_within_the_window(base_orders):
    got = {(r["order_id"], r["previous_order_id"], r["days_since_previous"]) for r in topic.repeats(base_orders).collect()}
    assert got == {("B", "A", 30.0)}       # C is 30 days and a second after B; F/G have no category; E no address


def test_rates_counts_and_hotspots(base_orders):
    rates = {(r["month"], r["town"], r["handling_department"]): r for r in topic.rates(base_orders).collect()}
    hc = rates[("2026-10", "黄村镇", "黄村镇人民政府")]
    assert (hc["orders"], hc["responded"], hc["closed"], hc["rated"], hc["satisfied"]) == (3, 3, 3, 2, 2)
    assert (hc["response_rate"], hc["satisfaction_rate"]) == (1.0, 1.0)
    un = rates[("2026-10", "未定位", "未派单")]
    assert (un["orders"], un["dispatched"], un["response_rate"], un["satisfaction_rate"]) == (1, 0, 0.0, None)
    jg = rates[("2026-10", "旧宫镇", "黄村镇人民政府")]
    assert (jg["orders"], jg["resolution_rate"], jg["satisfaction_rate"]) == (2, 0.5, 0.0)
    counts = {(r["month"], r["town"], r["category"]): r["orders"] for r in topic.town_counts(base_orders).collect()}
    assert counts[("2026-10", "旧宫镇", "未分类")] == 2 and counts[("2026-11", "黄村镇", "市容环境")] == 1
    rep = topic.repeats(base_orders)
    spots = {(r["grid_id"], r["category"]): r for r in topic.hotspots(base_orders, rep).collect()}
    cell = deid_grid_cell(116.33, 39.73, "grid_1km")
    assert (spots[(cell, "市容环境")]["orders"], spots[(cell, "市容环境")]["repeats"]) == (3, 1)
    assert sum(r["orders"] for r in spots.values()) == 6                       # E has no point
    x, y = (float(v) for v in cell.split(":")[1].split(","))
    s = spots[(cell, "市容环境")]
    assert x < s["lon"] < x + 0.0118 and y < s["lat"] < y + 0.009          # the centre is inside the cell
    assert deid_grid_cell(s["lon"], s["lat"], "grid_1km") == cell


# --------------------------------------------------------------------------- the tiny lake

def lake_rows(root, rel):
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def files_of(tiny_lake) -> list[dict]:
    return [e for e in tiny_lake["manifest"]["topic_files"] if e["source"] == SOURCE]


def read_rows(inbox: Path, entry: dict) -> list[dict]:
    with open(inbox / entry["path"], encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_findings_are_the_truth(tiny_lake, spark):
    root = tiny_lake["settings"].root
    shas = {e["sha256"] for e in files_of(tiny_lake)}
    found = {(r["source"], r["record_key"], r["field"], r["defect_type"]) for r in lake_rows(root, "quality/findings")
             if r["_file_sha256"] in shas and r["record_key"] is not None}
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        expected = {tuple(r.values()) for r in csv.DictReader(f) if r["source"] == SOURCE}
    assert expected and found == expected
    from sample.evaluate import evaluate

    ev = evaluate(spark, tiny_lake["settings"], tiny_lake["inbox"])
    for t in ("address_unresolved", "timestamps_out_of_order", "closed_without_response", "unknown_category",
              "invalid_timestamp"):
        assert ev["defects"][t]["truth"] > 0, t
        assert ev["defects"][t]["precision"] >= 0.99 and ev["defects"][t]["recall"] >= 0.99, t


def _ts(text):
    try:
        return datetime.datetime.strptime(text, FMT)
    except (TypeError, ValueError):
        return None


def oracle(tiny_lake):
    """The orders and topics recomputed in plain Python from the file, the address truth and the
    published address library."""
    root = tiny_lake["settings"].root
    lib = {r["door_key"]: r for r in lake_rows(root, "base/standard_address")}
    with open(tiny_lake["inbox"] / "truth" / "hotline_addresses.csv", encoding="utf-8") as f:
        door = {r["order_id"]: r["door_key"] for r in csv.DictReader(f)}
    orders = {}
    for entry in files_of(tiny_lake):
        for r in read_rows(tiny_lake["inbox"], entry):
            orders.setdefault(r["order_id"], r)       # the first row of an order in the file
    out = {}
    for oid, r in orders.items():
        a = lib.get(door[oid]) if door[oid] else None
        out[oid] = {
            "order_id": oid, "category": r["category"] if r["category"] in HOTLINE.categories else None,
            "address_code": a["address_code"] if a else None, "town": a["town"] if a else None,
            "lon": a["lon"] if a else None, "lat": a["lat"] if a else None,
            "grid_id": deid_grid_cell(a["lon"], a["lat"], "grid_1km") if a and a["lon"] is not None else None,
            "handling_department": r["handling_department"] or None, "status": r["status"],
            "satisfaction": r["satisfaction"] or None,
            **{s: _ts(r[s]) for s in ("accepted_at", "dispatched_at", "responded_at", "closed_at")},
        }
    return out


def test_orders_equal_the_files(tiny_lake):
    root = tiny_lake["settings"].root
    want = oracle(tiny_lake)
    got = {r["order_id"]: r for r in lake_rows(root, "base/hotline_order")}
    assert set(got) == set(want)
    for oid, w in want.items():
        g = got[oid]
        for k, v in w.items():
            if k.endswith("_at"):    # the file's times are Beijing time
                assert beijing(g[k]) == v, (oid, k)
            else:
                assert g[k] == v, (oid, k)
    assert not set(next(iter(got.values()))) & {"caller_name", "caller_phone", "content", "address"}


def test_topics_equal_a_plain_recomputation(tiny_lake):
    root = tiny_lake["settings"].root
    orders = oracle(tiny_lake)
    rates, counts, spots = defaultdict(lambda: [0] * 6), defaultdict(lambda: [0] * 4), defaultdict(lambda: [0, 0])
    groups = defaultdict(list)
    for o in orders.values():
        if o["address_code"] and o["category"]:
            groups[(o["address_code"], o["category"])].append(o)
    repeats = {}
    for g in groups.values():
        g.sort(key=lambda o: (o["accepted_at"], o["order_id"]))
        for a, b in zip(g, g[1:]):
            days = (b["accepted_at"] - a["accepted_at"]).total_seconds() / 86400
            if days <= HOTLINE.repeat_window_days:
                repeats[b["order_id"]] = (a["order_id"], round(days, 4))
    for o in orders.values():
        month = o["accepted_at"].strftime("%Y-%m")
        town = o["town"] or "未定位"
        sat = o["satisfaction"] in HOTLINE.satisfied
        r = rates[(month, town, o["handling_department"] or "未派单")]
        for i, v in enumerate((1, o["dispatched_at"], o["responded_at"], o["closed_at"], o["satisfaction"], sat)):
            r[i] += bool(v)
        c = counts[(month, town, o["category"] or "未分类")]
        for i, v in enumerate((1, o["responded_at"], o["closed_at"], sat)):
            c[i] += bool(v)
        if o["grid_id"]:
            s = spots[(o["grid_id"], o["category"] or "未分类")]
            s[0] += 1
            s[1] += o["order_id"] in repeats
    got_rates = {(r["month"], r["town"], r["handling_department"]): r for r in lake_rows(root, "topic/hotline_rates")}
    assert set(got_rates) == set(rates)
    for k, (n, dis, res, clo, rated, sat) in rates.items():
        g = got_rates[k]
        assert (g["orders"], g["dispatched"], g["responded"], g["closed"], g["rated"], g["satisfied"]) == (n, dis, res, clo, rated, sat)
        assert math.isclose(g["response_rate"], res / n, abs_tol=5e-5)
        assert math.isclose(g["resolution_rate"], clo / n, abs_tol=5e-5)
        assert (g["satisfaction_rate"] is None) == (rated == 0)
        assert rated == 0 or math.isclose(g["satisfaction_rate"], sat / rated, abs_tol=5e-5)
    got_counts = {(r["month"], r["town"], r["category"]): [r["orders"], r["responded"], r["closed"], r["satisfied"]]
                  for r in lake_rows(root, "topic/hotline_town_counts")}
    assert got_counts == dict(counts)
    got_spots = {(r["grid_id"], r["category"]): [r["orders"], r["repeats"]] for r in lake_rows(root, "topic/hotline_hotspots")}
    assert got_spots == dict(spots)
    got_rep = {r["order_id"]: (r["previous_order_id"], r["days_since_previous"])
               for r in lake_rows(root, "topic/hotline_repeat_complaints")}
    assert repeats and set(got_rep) == set(repeats)
    for oid, (prev, days) in repeats.items():
        assert got_rep[oid][0] == prev and math.isclose(got_rep[oid][1], days, abs_tol=2e-4), oid


def test_shared_by_grant_and_opened_as_aggregates(tiny_lake):
    from lake.rules import MOBILE_REGEX
    import re

    root = Path(tiny_lake["settings"].root)
    callers = {r["caller_name"] for e in files_of(tiny_lake) for r in read_rows(tiny_lake["inbox"], e)}
    for ds in ("daxing-hotline-hotspots", "daxing-hotline-orders-by-town"):
        folder = root / "open" / ds
        text = (folder / "data.csv").read_text(encoding="utf-8")
        assert not re.search(r"(?<![0-9])" + MOBILE_REGEX + r"(?![0-9])", text)
        assert not any(n in text for n in callers)
        assert (folder / "totals.csv").exists()
        meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        assert meta["suppression_detail"]["threshold"] >= 2
    assert (root / "open" / "daxing-hotline-hotspots" / "data.geojson").exists()
    grants = {(r["share_table"], r["department_code"]) for r in lake_rows(str(root), "share/_grants")}
    assert ("base__hotline_order", "11011500015") in grants and ("base__hotline_order", "*") not in grants
    assert ("topic__hotline_rates", "*") in grants
    share = lake_rows(str(root), "share/base__hotline_order")
    assert share and not set(share[0]) & {"caller_name", "caller_phone", "content", "address"}


def test_reports_and_catalogue_include_the_hotline(tiny_lake):
    root = tiny_lake["settings"].root
    rows = lake_rows(root, "quality/department_quality")
    run = max(r["run_id"] for r in rows)
    mine = {r["defect_type"] for r in rows if r["run_id"] == run and r["source"] == SOURCE}
    assert {"address_unresolved", "timestamps_out_of_order", "unknown_category"} <= mine
    scores = {r["department_code"] for r in lake_rows(root, "quality/department_scores") if r["run_id"] == run}
    assert "11011500024" in scores
    catalogue = {r["resource_id"] for r in lake_rows(root, "catalog/resources")}
    assert {"raw.csgl_hotline_orders", "base.hotline_order", "topic.hotline_rates", "topic.hotline_hotspots",
            "topic.hotline_repeat_complaints", "topic.hotline_town_counts"} <= catalogue


# --------------------------------------------------------------------------- day after day

def test_two_days_incremental_equal_a_full_build(tiny_lake, spark, tmp_path):
    """Day 1 (the backlog) and day 2 landed and built one after the other: the second build merges
    only the orders day 2 touched; the table and the findings equal a full rebuild's, and the
    orders equal the files (an order's newest day wins)."""
    from jobs.landing import ingest
    from lake import io
    from lake.settings import Settings
    from sample.generate_hotline import generate_hotline
    from sample.generate_spatial import AddressBook

    from conftest import SEED, TINY_SCALE

    s = Settings.from_env(root=str(tmp_path / "lake"), shuffle_partitions=2, driver_memory="2g")
    shutil.copytree(Path(tiny_lake["settings"].root) / "base" / "standard_address", Path(s.root) / "base" / "standard_address")
    days = [datetime.date(2026, 11, 2), datetime.date(2026, 11, 3)]
    gen = generate_hotline(TINY_SCALE, SEED + 1, tmp_path / "inbox", AddressBook(SEED, TINY_SCALE), days[-1], days=days)
    results = []
    for entry, day in zip(gen["files"], days):
        ingest.ingest_file(s, SOURCE, tmp_path / "inbox" / entry["path"], spark, as_of=day.isoformat())
        results.append(hotline.build(s, day.isoformat())[0])
    assert results[0]["mode"] == "full" and results[1]["mode"] == "incremental"
    n_day2 = len({r["order_id"] for r in read_rows(tmp_path / "inbox", gen["files"][1])})
    assert results[1]["touched"] == n_day2 < results[1]["rows"]
    path = io.path_of(s, hotline.TABLE)
    assert DeltaTable(path).history(1)[0]["operation"] == "MERGE"
    again = hotline.build(s, days[-1].isoformat())[0]
    assert again["status"] == "unchanged" and again["touched"] == 0

    def state():
        t = {r["order_id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
        f = {(r["record_key"], r["field"], r["defect_type"], r["entity_key"]) for r in lake_rows(s.root, "quality/findings")
             if r["run_id"] == "build-base.hotline_order"}
        return t, f

    inc_table, inc_found = state()
    full = hotline.build(s, days[-1].isoformat(), mode="full")[0]
    assert full["mode"] == "full" and full["status"] == "unchanged"      # same content: nothing to publish
    full_table, full_found = state()
    assert inc_table == full_table and inc_found == full_found
    truth = {(t[1], t[2], t[3]) for t in gen["truth"]}
    assert {(r, f, d) for r, f, d, _ in inc_found} == truth
    last = {}
    for entry in gen["files"]:
        for r in read_rows(tmp_path / "inbox", entry):
            last.setdefault(entry["path"], {}).setdefault(r["order_id"], r)
    newest = {**last[gen["files"][0]["path"]], **last[gen["files"][1]["path"]]}
    assert set(inc_table) == set(newest)
    for oid, r in newest.items():
        assert inc_table[oid]["status"] == r["status"] and inc_table[oid]["satisfaction"] == (r["satisfaction"] or None)


def test_open_counts_with_a_zero_margin_in_one_column(contracts):
    """Two count columns, one of them zero in a whole row of cells (a town with no satisfied orders):
    its margin is 0 in totals.csv, not a blank the audit then cannot find (fast tier)."""
    import pandas as pd

    from jobs.publish.open import aggregate_files
    from opendata import deid

    tc = contracts.table("topic.hotline_town_counts")
    rows = [("2026-10", t, c, n, n, n, 0 if t == "旧宫镇" else n) for t in ("黄村镇", "旧宫镇", "瀛海镇")
            for c, n in (("市容环境", 7), ("噪声扰民", 9), ("交通出行", 2))]
    pdf = pd.DataFrame(rows, columns=["month", "town", "category", "orders", "responded", "closed", "satisfied"])
    files, _ = aggregate_files(tc, pdf, "2026-11-01")
    _, totals = deid.read_csv(files["totals.csv"])
    margin = next(r for r in totals if r["town"] == "旧宫镇" and r["category"] == "合计" and r["month"] == "2026-10")
    assert margin["satisfied"] == "0" and margin["orders"] == "18"
