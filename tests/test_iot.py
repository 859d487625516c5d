"""IoT sensing (jobs.base.iot_device, jobs.base.iot_reading, jobs.topic.sensing; docs/spatial_iot.md): the city code check against a Python reference,
the reading parser and classifier on hand-written lines, the partition gate, and two generated days
(sample.generate_iot) run end to end: ledger findings, every reading defect handled and counted, per-file
counts that reconcile, late readings in their own day, re-running a day changes no table, device health
against the generator's silent and flat-lining devices, the topic gates, and precision / recall.

The lake of this module is its own (``iot_settings``: another root and inbox), never ``tiny_lake``.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import random
import re
from collections import defaultdict
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import pipeline
from jobs.base import iot_device, iot_reading
from jobs.topic import air_quality, sensing
from lake import rules
from lake.reference import SENSING
from sample import basemap, evaluate_iot

D1 = dt.date(2026, 10, 31)
D2 = dt.date(2026, 11, 1)
SCALE = 0.004  # ~520 devices, ~75 K readings a day
SEED = 11
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


# ----------------------------------------------------------------------------- city code

def reference_rule(code: str | None) -> str | None:
    """Independent Python reference of lake.rules.city_code_issues: the first failing rule or None."""
    if code is None:
        return None
    s = code.upper()
    if not (re.fullmatch(r"110115[0-9]{4}[0-9]{7}[0-9X]", s) and s[6:8] in SENSING.device_types):
        return "city_code.format"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(s[:17], WEIGHTS)) % 11]
    return None if s[17] == check else "city_code.checksum"


def _valid_code(rng: random.Random) -> str:
    first = f"110115{rng.choice(sorted(SENSING.device_types))}{rng.randint(0, 99):02d}{rng.randint(0, 9_999_999):07d}"
    return first + "10X98765432"[sum(int(c) * w for c, w in zip(first, WEIGHTS)) % 11]


def _codes(n: int, seed: int = 20261101) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        c = _valid_code(rng)
        kind = i % 12
        if kind == 1:  # wrong check character
            c = c[:17] + rng.choice([x for x in "0123456789X" if x != c[17]])
        elif kind == 2:  # a serial digit dropped or doubled
            p = rng.randint(10, 16)
            c = c[:p] + c[p + 1:] if rng.random() < 0.5 else c[:p] + c[p] + c[p:]
        elif kind == 3:  # a device type that sensing.device_types does not know
            c = c[:6] + rng.choice([t for t in ("00", "10", "11", "19", "99") if t not in SENSING.device_types]) + c[8:]
        elif kind == 4:  # another district
            c = rng.choice(["110105", "110116", "120115"]) + c[6:]
        elif kind == 5:  # a letter inside
            p = rng.randint(0, 16)
            c = c[:p] + rng.choice("ABIOZx") + c[p + 1:]
        elif kind == 6:  # lower-case x check character (upper-cased by the rule)
            c = c.lower()
        elif kind == 7:  # stray characters around it
            c = rng.choice([" ", "\n", "-"]) + c if rng.random() < 0.5 else c + rng.choice([" ", "\n", "."])
        out.append(c)
    out += [None, "", "X" * 18, "110115011300000000"]
    return out


def test_city_code_rule_matches_python_reference_on_12k_codes(spark):
    codes = _codes(12_000)
    df = spark.createDataFrame([(c,) for c in codes], "code string")
    got = df.select("code", F.filter(F.array(*rules.city_code_issues("code")), lambda x: x.isNotNull()).alias("i")).collect()
    assert len(got) == len(codes)
    mismatches = []
    outcomes = {}
    for r in got:
        spark_rule = r["i"][0]["rule"] if r["i"] else None
        assert len(r["i"]) <= 1, f"{r['code']!r}: more than one issue {r['i']}"
        want = reference_rule(r["code"])
        outcomes[want] = outcomes.get(want, 0) + 1
        if spark_rule != want:
            mismatches.append((r["code"], spark_rule, want))
        if r["i"]:
            assert r["i"][0]["defect_type"] == spark_rule.replace(".", "_")
            assert r["i"][0]["severity"] == rules.ERROR
    assert not mismatches, mismatches[:10]
    # every outcome is exercised, not only valid codes
    assert outcomes[None] > 5_000 and outcomes["city_code.format"] > 3_000 and outcomes["city_code.checksum"] > 900


def test_city_code_is_a_contract_check_wired_into_ingest(spark):
    from jobs.landing import ingest
    from lake import contracts
    from lake.contracts import SourceColumn, SourceContract

    assert "city_code" in contracts.CHECKS
    sc = SourceContract(source="t", title="", department="d", department_code="", domain="iot", format="csv",
                        encoding="utf-8", update_cycle="weekly", record_key="city_code", entity_key="city_code",
                        columns=(SourceColumn("city_code", "string", required=True, checks=("city_code",)),))
    good = _valid_code(random.Random(1))
    bad = good[:17] + ("0" if good[17] != "0" else "1")
    rows = [(good, 2, 1, None), (bad, 3, 1, None), (good + " ", 4, 1, None)]
    df = spark.createDataFrame(rows, "city_code string, _row long, _field_count int, _raw_line string")
    checked = ingest.check_rows(df, sc).select("_row", "_issues").collect()
    by_row = {r["_row"]: sorted(i["rule"] for i in r["_issues"]) for r in checked}
    assert by_row[2] == []
    assert by_row[3] == ["city_code.checksum"]
    assert by_row[4] == ["normalize.whitespace"]  # trailing space removed (a warning), then valid


# ----------------------------------------------------------------------------- parse and classify

def _lines(spark, lines: list[str]):
    return spark.createDataFrame([(i + 1, l) for i, l in enumerate(lines)], "_row long, line string")


def _devices(spark, codes_types: list[tuple[str, str]]):
    return spark.createDataFrame(codes_types, "city_code string, device_type string")


def test_classify_hand_written_lines(spark):
    from sample.generate_iot import city_code

    air, flood, heat = city_code("01", "13", 1), city_code("04", "14", 2), city_code("09", "17", 3)
    unknown = city_code("01", "13", 99)
    devices = _devices(spark, [(air, "01"), (flood, "04"), (heat, "09")])

    def j(dev, ts, metric, value, unit):
        return json.dumps({"device": dev, "ts": ts, "metric": metric, "value": value, "unit": unit}, ensure_ascii=False)

    t = lambda hms, d="2026-11-01": f"{d}T{hms}+08:00"  # noqa: E731
    lines = [
        j(air, t("10:00:00"), "pm25", "35.2", "µg/m³"),            # 1 kept
        j(air, t("10:00:00"), "pm10", "0.0611", "mg/m³"),           # 2 converted -> 61.1
        j(air, t("10:05:00"), "pm25", "36.0", "µg/m³"),             # 3 kept
        j(air, t("10:05:00"), "pm10", "60.0", "µg/m³"),             # 4 kept
        j(air, t("10:00:00"), "pm25", "35.2", "µg/m³"),             # 5 duplicate of 1
        j(air, t("10:00:00"), "no2", "20.0", "µg/m³"),              # 6 out of order (10:05 sent before)
        j(air, t("10:00:00"), "o3", "20.0", "µg/m³"),               # 7 out of order too (running maximum)
        j(air, t("23:50:00", "2026-10-31"), "pm25", "30.0", "µg/m³"),  # 8 late
        j(air, t("00:05:00", "2026-11-02"), "pm25", "30.0", "µg/m³"),  # 9 kept: exactly the end + 5 min
        j(air, t("00:05:01", "2026-11-02"), "pm25", "30.0", "µg/m³"),  # 10 future
        j(unknown, t("10:00:00"), "pm25", "30.0", "µg/m³"),         # 11 unknown device
        j(air, t("10:10:00"), "water_level", "3.0", "cm"),          # 12 metric not of the type
        j(air, t("10:10:00"), "pm25", "30", "ppm"),                 # 13 unknown unit
        j(air, t("10:10:00"), "pm10", "9999", "µg/m³"),             # 14 impossible (range)
        j(air, t("10:10:00"), "pm10", "NaN", "µg/m³"),              # 15 impossible (NaN)
        j(air, t("10:10:00"), "pm10", "ERR", "µg/m³"),              # 16 impossible (text)
        "{'device': '%s', 'ts': '%s', 'metric': 'pm25', 'value': '1', 'unit': 'µg/m³'}" % (air, t("10:15:00")),  # 17
        j(air, t("10:15:00"), "pm25", "30.0", "µg/m³")[:-1],        # 18 no closing brace
        j(air, t("10:15:00"), "pm25", "30.0", "µg/m³")[:40],        # 19 truncated
        j(air, "yesterday", "pm25", "30.0", "µg/m³"),               # 20 not a timestamp
        j(flood, t("10:00:00"), "water_level", "0.35", "m"),        # 21 converted -> 35 cm
    ]
    csv_lines = [
        f"{heat},{t('10:00:00')},supply_temp,113.00,°F",            # 1 converted -> 45 °C
        f"{heat},{t('10:15:00')},supply_temp,45.5",                 # 2 field count (unit missing)
        f"{heat},{t('10:15:00')},supply_temp,45,5,°C",              # 3 field count (decimal comma)
        f"{heat},{t('10:30:00')},supply_temp,-999.9,°C",            # 4 impossible
        f'"{heat}","{t("10:45:00")}","supply_temp","46.1","°C"',    # 5 quoted fields: kept
    ]
    header = ("device", "ts", "metric", "value", "unit")
    p = iot_reading.parse_lines(_lines(spark, lines), "jsonl").withColumn("_fi", F.lit(0)).unionByName(
        iot_reading.parse_lines(_lines(spark, csv_lines), "csv", header).withColumn("_fi", F.lit(1)))
    got = {(r["_fi"], r["_row"]): r for r in iot_reading.classify(p, devices, D2, 2, files=2).collect()}
    assert len(got) == len(lines) + len(csv_lines)

    def outcome(fi, row):
        r = got[(fi, row)]
        if r["_q"]:
            return iot_reading.READING_RULES[r["_rule"]][0]
        if r["_dup"]:
            return "reading_duplicate"
        flags = [n for n, v in (("late", r["late"]), ("out_of_order", r["out_of_order"]),
                                ("converted", r["converted_from"] is not None)) if v]
        return "kept" + ("+" + "+".join(flags) if flags else "")

    expected_json = {1: "kept", 2: "kept+converted", 3: "kept", 4: "kept", 5: "reading_duplicate",
                     6: "kept+out_of_order", 7: "kept+out_of_order", 8: "kept+late", 9: "kept",
                     10: "reading_future_timestamp", 11: "reading_unknown_device", 12: "reading_unknown_metric",
                     13: "reading_unknown_unit", 14: "reading_impossible_value", 15: "reading_impossible_value",
                     16: "reading_impossible_value", 17: "reading_malformed", 18: "reading_malformed",
                     19: "reading_malformed", 20: "reading_malformed", 21: "kept+converted"}
    assert {r: outcome(0, r) for r in expected_json} == expected_json
    expected_csv = {1: "kept+converted", 2: "reading_malformed", 3: "reading_malformed",
                    4: "reading_impossible_value", 5: "kept"}
    assert {r: outcome(1, r) for r in expected_csv} == expected_csv
    assert got[(0, 2)]["value"] == pytest.approx(61.1) and got[(0, 2)]["unit"] == "µg/m³"
    assert got[(0, 2)]["converted_from"] == "mg/m³"
    assert got[(0, 21)]["value"] == pytest.approx(35.0) and got[(0, 21)]["unit"] == "cm"
    assert got[(1, 1)]["value"] == pytest.approx(45.0) and got[(1, 1)]["unit"] == "°C"
    assert got[(0, 8)]["day"] == D1
    # a quarantined row keeps what was delivered, the rule and a reason naming the field
    q = got[(0, 14)]
    assert q["_in_value"] == "9999" and q["_raw_line"] == lines[13] and q["_reason"].startswith("value: ")
    assert got[(1, 2)]["_reason"] == "_row: expected 5 fields, found 4"
    assert got[(0, 11)]["_reason"] == f"device: not in base.iot_device: {unknown}"


def test_stage_lines_numbers_lines_and_keeps_bad_bytes(tmp_path):
    from lake.files import InputError

    f = tmp_path / "iot_readings_csv_20261101.csv"
    f.write_bytes(b"device,ts,metric,value,unit\r\na,b,c,d,e\r\n\r\nbad \xff\xfe line\nlast,without,newline")
    d = iot_reading.stage_lines(iot_reading.Delivered("iot_readings_csv", f), str(tmp_path / "s.parquet"), csv_header=True)
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "s.parquet")
    assert t.column("_row").to_pylist() == [2, 4, 5]  # header = line 1, the blank line 3 is not a row
    assert t.column("line").cast("binary").to_pylist() == [b"a,b,c,d,e", b"bad \xff\xfe line", b"last,without,newline"]
    assert d.rows == 3 and d.header == ("device", "ts", "metric", "value", "unit")
    g = tmp_path / "iot_readings_csv_20261102.csv"
    g.write_text("device,ts,metric,value\nx,y,z,w\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"iot_readings_csv_20261102.csv: line 1 \(header\) is missing column\(s\) \['unit'\]"):
        iot_reading.stage_lines(iot_reading.Delivered("iot_readings_csv", g), str(tmp_path / "t.parquet"), csv_header=True)


# ----------------------------------------------------------------------------- the partition gate

def test_publish_partition_replaces_only_its_partitions(spark, settings, tmp_path):
    from lake import io
    from lake.contracts import TableColumn, TableContract
    from quality import gates

    s = dataclasses.replace(settings, root=str(tmp_path / "gate_lake"), inbox=str(tmp_path / "gate_inbox"))
    tc = TableContract(
        table="topic.partition_gate_test", title="t", description="", grain="day x k", key=("day", "k"), owner="o",
        domain="iot", grade=1, share_type="none", share_grants=(), share_condition="", open_type="none",
        update_cycle="daily", columns=(TableColumn("day", "date"), TableColumn("k", "string"), TableColumn("n", "long")),
        expectations=({"type": "between", "column": "n", "min": 0},))

    def frame(rows):
        return spark.createDataFrame(rows, "day date, k string, n long")

    r1 = gates.publish_partition(spark, s, tc, frame([(D1, "a", 1), (D1, "b", 2)]), "day", [D1.isoformat()], {})
    r2 = gates.publish_partition(spark, s, tc, frame([(D2, "a", 5)]), "day", [D2.isoformat()], {})
    path = io.table_path(s, "topic", "partition_gate_test")
    assert (r1.status, r2.status) == ("published", "published")
    v = io.version(spark, path)
    # the same rows again: no new version
    assert gates.publish_partition(spark, s, tc, frame([(D2, "a", 5)]), "day", [D2], {}).status == "unchanged"
    assert io.version(spark, path) == v
    # D2 replaced, D1 untouched
    gates.publish_partition(spark, s, tc, frame([(D2, "c", 7)]), "day", [D2], {})
    rows = sorted((r["day"], r["k"], r["n"]) for r in io.read(spark, path).collect())
    assert rows == [(D1, "a", 1), (D1, "b", 2), (D2, "c", 7)]
    # a failing candidate: GateFailed naming the expectation, the table unchanged
    v = io.version(spark, path)
    with pytest.raises(gates.GateFailed, match=r"expect_column_values_to_be_between\(n\): 1 of 1 rows unexpected, e\.g\. -1$"):
        gates.publish_partition(spark, s, tc, frame([(D1, "a", -1)]), "day", [D1], {})
    assert io.version(spark, path) == v
    # rows outside the named partitions are an error, not silently dropped
    with pytest.raises(ValueError, match="outside the partitions"):
        gates.publish_partition(spark, s, tc, frame([(D1, "a", 1), (D2, "z", 1)]), "day", [D1], {})
    with pytest.raises(ValueError, match="must be part of the key"):
        gates.publish_partition(spark, s, tc, frame([(D1, "a", 1)]), "n", ["1"], {})


# ----------------------------------------------------------------------------- two generated days

TABLES = [("base", "iot_device"), ("base", "iot_reading"), ("quarantine", "iot_readings_json"),
          ("quarantine", "iot_readings_csv"), ("quality", "iot_reading_counts"), ("quality", "iot_reading_duplicates"),
          ("quality", "findings"), ("landing", "_manifest"), ("topic", "device_health"), ("topic", "device_online_rate"),
          ("topic", "air_quality_hourly"), ("topic", "air_quality_exceedance"), ("topic", "flood_points"),
          ("topic", "sensor_coverage_by_town"), ("topic", "traffic_flow")]


def write_admin_boundary(spark, s) -> None:
    """base.admin_boundary as jobs/spatial.py publishes it (code, name, kind, area_km2, GeoJSON text)."""
    import shapely.geometry

    from lake import geo, io

    rows = [(b["code"], b["name"], b["kind"], geo.area_km2(b["geometry"]),
             json.dumps(shapely.geometry.mapping(b["geometry"]), separators=(",", ":")))
            for b in basemap.district_boundaries()]
    io.overwrite(spark.createDataFrame(rows, "code string, name string, kind string, area_km2 double, geometry string"),
                 io.table_path(s, "base", "admin_boundary"), {"kind": "test"})


@pytest.fixture(scope="module")
def iot_settings(settings, tmp_path_factory):
    base = tmp_path_factory.mktemp("iot")
    return dataclasses.replace(settings, root=str(base / "lake"), inbox=str(base / "inbox"))


@pytest.fixture(scope="module")
def iot_lake(spark, iot_settings):
    from jobs.landing import ingest
    from lake import io
    from sample.generate_iot import generate_iot

    s = iot_settings
    manifest = generate_iot(SCALE, SEED, Path(s.inbox), days=[D1, D2], extract_date=D1)
    write_admin_boundary(spark, s)
    ingest.run(s, "iot_devices")
    runs = {D1: pipeline.sensing_day(s, D1), D2: pipeline.sensing_day(s, D2)}
    versions = {t: io.version(spark, io.table_path(s, *t)) for t in TABLES}
    return {"settings": s, "manifest": manifest, "runs": runs, "versions": versions, "inbox": Path(s.inbox)}


def _truth(inbox: Path, name: str) -> list[dict]:
    with open(inbox / "truth" / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_ledger_findings_are_the_generators_defects(spark, iot_lake):
    from lake import io
    from quality import findings

    s, inbox = iot_lake["settings"], iot_lake["inbox"]
    names = {f["sha256"]: Path(f["path"]).name for f in iot_lake["manifest"]["files"] if f["source"] == "iot_devices"}
    found = {(names[r["_file_sha256"]], r["_row"], r["field"], r["defect_type"])
             for r in io.read(spark, io.table_path(s, *findings.FINDINGS)).where(F.col("source") == "iot_devices").collect()}
    truth = {(r["file"], int(r["row"]), r["field"], r["defect_type"]) for r in _truth(inbox, "iot_defects.csv")}
    assert {t[3] for t in truth} == {"duplicate_city_code", "device_registered_twice", "city_code_checksum",
                                     "city_code_format", "point_outside_district"}
    assert found == truth
    devices = io.read(spark, io.table_path(s, "base", "iot_device"))
    assert devices.count() == devices.select("city_code").distinct().count()
    # towns: every device in the right unit, the ones outside the district without one
    placed = {r["city_code"]: r["town_code"] for r in devices.select("city_code", "town_code").collect()}
    locations = _truth(inbox, "iot_locations.csv")
    checked = [(placed[r["record_key"]] or "", r["town_code"]) for r in locations if r["record_key"] in placed]
    assert len(checked) == len(placed) and all(a == b for a, b in checked)
    outside = {r["record_key"] for r in _truth(inbox, "iot_defects.csv") if r["defect_type"] == "point_outside_district"}
    assert outside and all(placed[c] is None for c in outside)
    # WGS-84 inside the district's extent (converted from GCJ-02: the raw points are ~500 m away)
    ext = devices.agg(F.min("lon"), F.max("lon"), F.min("lat"), F.max("lat")).collect()[0]
    assert 116.0 < ext[0] < ext[1] < 116.9 and 39.3 < ext[2] < ext[3] < 40.0


def test_every_reading_row_is_counted_once_and_counts_reconcile(spark, iot_lake):
    from lake import io

    s, inbox = iot_lake["settings"], iot_lake["inbox"]
    counts = io.read(spark, io.table_path(s, *iot_reading.COUNTS)).collect()
    assert {(r["delivery_day"], r["source"]) for r in counts} == {(d, src) for d in (D1, D2) for src in iot_reading.READING_SOURCES}
    truth = _truth(inbox, "readings.csv")
    for r in counts:
        path = inbox / r["source"] / r["file"]
        lines = [l for l in path.read_bytes().split(b"\n") if l.strip()]
        header = 1 if r["source"] == "iot_readings_csv" else 0
        assert r["rows_read"] == len(lines) - header, r["file"]
        assert r["rows_read"] == r["kept"] + r["duplicates"] + r["quarantined"], r["file"]
        assert r["quarantined"] == sum(r[f"quarantined_{t.removeprefix('reading_')}"] for t in iot_reading.QUARANTINE_TYPES)
        # the stored rows are the counted rows
        kept = io.read(spark, io.table_path(s, *iot_reading.READINGS)).where(F.col("_file_sha256") == r["_file_sha256"]).count()
        q = io.read(spark, io.table_path(s, "quarantine", r["source"])).where(F.col("_file_sha256") == r["_file_sha256"])
        dups = io.read(spark, io.table_path(s, *iot_reading.DUPLICATES)).where(F.col("_file_sha256") == r["_file_sha256"]).count()
        assert (kept, q.count(), dups) == (r["kept"], r["quarantined"], r["duplicates"])
        assert q.where(F.col("_rule").isNull() | F.col("_reason").isNull() | F.col("_raw_line").isNull()).count() == 0
        # the counts per defect type are the generator's, file by file
        mine = [t for t in truth if t["file"] == r["file"]]
        n = lambda d: sum(1 for t in mine if t["defect_type"] == d)  # noqa: E731
        assert r["duplicates"] == n("reading_duplicate")
        assert r["late"] == n("reading_late")
        assert r["out_of_order"] == n("reading_out_of_order")
        assert r["converted"] == n("reading_unit_mismatch")
        assert r["quarantined_malformed"] == n("reading_malformed")
        assert r["quarantined_future_timestamp"] == n("reading_future_timestamp")
        assert r["quarantined_unknown_device"] == n("reading_unknown_device")
        assert r["quarantined_impossible_value"] == n("reading_impossible_value")
    # every defect type of the design occurred in these files
    assert {t["defect_type"] for t in truth} == {
        "reading_duplicate", "reading_late", "reading_out_of_order", "reading_future_timestamp",
        "reading_unknown_device", "reading_unit_mismatch", "reading_impossible_value", "reading_malformed"}
    # the landing zone holds each file under its sha256, listed once in the manifest
    man = io.read(spark, io.table_path(s, "landing", "_manifest")).where(F.col("source").isin(*iot_reading.READING_SOURCES))
    assert man.count() == 4 and man.select("sha256").distinct().count() == 4
    for m in man.collect():
        assert Path(m["landing_path"]).is_file() and m["rows_read"] == m["rows_raw"] + m["rows_quarantined"] + \
            next(c["duplicates"] for c in counts if c["_file_sha256"] == m["sha256"])


def test_late_readings_land_in_their_own_day_and_rebuild_it(spark, iot_lake):
    from lake import io

    s = iot_lake["settings"]
    r = io.read(spark, io.table_path(s, *iot_reading.READINGS))
    late = r.where(F.col("late"))
    assert late.where(F.col("day") >= F.col("delivery_day")).count() == 0
    late_d2 = late.where(F.col("delivery_day") == D2)
    assert late_d2.count() > 0 and {x["day"] for x in late_d2.select("day").distinct().collect()} == {D1}
    # every other kept row is of its delivery day (or the 5 minutes of tolerance after it)
    end = F.to_timestamp(F.date_add("delivery_day", 1)) + F.expr("INTERVAL 5 MINUTES")
    assert r.where(~F.col("late") & ((F.col("day") < F.col("delivery_day")) | (F.col("ts") > end))).count() == 0
    assert iot_lake["runs"][D2]["reading_days"] == [D1.isoformat(), D2.isoformat()]
    # D1's health counts the readings delivered late on D2
    health = io.read(spark, io.table_path(s, "topic", "device_health")).where(F.col("day") == D1)
    per_device = {x["city_code"]: x["count"] for x in r.where(F.col("day") == D1).groupBy("city_code").count().collect()}
    got = {x["city_code"]: x["readings"] for x in health.where(F.col("readings") > 0).collect()}
    assert got == per_device


def test_rerunning_a_day_changes_no_table(spark, iot_lake):
    from lake import io

    s = iot_lake["settings"]
    for day in (D2, D1):
        again = pipeline.sensing_day(s, day)
        assert again["readings"]["skipped"] and again["ledger"]["status"] == "unchanged"
        assert all(t["status"] == "unchanged" for t in again["topics"])
    now = {t: io.version(spark, io.table_path(s, *t)) for t in TABLES}
    assert now == iot_lake["versions"]


def _file_keys(inbox: Path, manifest: dict) -> dict:
    """{(file name, row): (device, ts, metric)} of every well-formed line of the reading files, parsed
    here with json / split."""
    out = {}
    for f in manifest["files"]:
        if not f["source"].startswith("iot_readings"):
            continue
        path = inbox / f["path"]
        lines = path.read_text(encoding="utf-8").split("\n")
        csv_file = f["format"] == "csv"
        for i, line in enumerate(lines[1:] if csv_file else lines):
            row = i + (2 if csv_file else 1)
            if csv_file:
                parts = line.split(",")
                if len(parts) == 5:
                    out[(path.name, row)] = (parts[0], parts[1], parts[2])
            else:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if isinstance(j, dict):
                    out[(path.name, row)] = (j.get("device"), j.get("ts"), j.get("metric"))
    return out


def test_resent_readings_are_counted_duplicates_and_stored_once(spark, iot_lake):
    """Readings of the second day's files that the first day's files had already delivered and the lake
    stored (the generator re-sends some of the previous evening's): found here from the files, each is
    a counted duplicate marked ``earlier_delivery``, never stored, and a duplicate in the generator's
    truth (so the precision / recall of reading_duplicate covers them); no reading is stored twice."""
    from lake import io

    s, inbox, manifest = iot_lake["settings"], iot_lake["inbox"], iot_lake["manifest"]
    keys = _file_keys(inbox, manifest)
    name = {f["sha256"]: Path(f["path"]).name for f in manifest["files"]}
    readings = io.read(spark, io.table_path(s, *iot_reading.READINGS))
    stored = {(name[r["_file_sha256"]], r["_row"]) for r in readings.select("_file_sha256", "_row").collect()}
    first = {keys[k] for k in stored if k[0].endswith(f"{D1:%Y%m%d}.jsonl") or k[0].endswith(f"{D1:%Y%m%d}.csv")}
    second = {k for k in keys if f"_{D2:%Y%m%d}." in k[0]}
    resent = {k for k in second if keys[k] in first}
    assert resent and not resent & stored
    dups = io.read(spark, io.table_path(s, *iot_reading.DUPLICATES))
    marked = {(name[r["_file_sha256"]], r["_row"]) for r in dups.where(F.col("earlier_delivery")).collect()}
    assert marked == resent
    counts = io.read(spark, io.table_path(s, *iot_reading.COUNTS)).collect()
    assert {r["delivery_day"]: 0 for r in counts} | {D2: len(resent)} == {
        d: sum(r["duplicates_earlier"] for r in counts if r["delivery_day"] == d) for d in (D1, D2)}
    truth = {(t["file"], int(t["row"])) for t in _truth(inbox, "readings.csv") if t["defect_type"] == "reading_duplicate"}
    assert resent <= truth
    assert readings.groupBy("city_code", "ts", "metric").count().where(F.col("count") > 1).count() == 0


def _copy_table(src, dst, *table) -> None:
    import shutil

    shutil.copytree(Path(src.root, *table), Path(dst.root, *table))


def test_out_of_order_delivery_keeps_the_earlier_copy_and_reconciles(spark, iot_lake, tmp_path):
    """The second day is ingested before the first (out-of-order delivery) into a lake of its own with
    the same ledger. Then the re-sent readings are first kept as late readings of day 2; when day 1
    arrives, day 2 is re-processed after it (in delivery-day order, from its landed files), and the lake
    ends up exactly as the in-order one: the earliest delivery's copy kept, day 2's counted as a
    duplicate, every file's counts reconciling with the stored rows and the landing manifest. Re-running
    either day then changes nothing."""
    from lake import io

    s = iot_lake["settings"]
    s2 = dataclasses.replace(s, root=str(tmp_path / "lake"))
    for table in (("base", "admin_boundary"), ("base", "iot_device")):
        _copy_table(s, s2, *table)
    r2 = iot_reading.ingest_readings(s2, D2, spark)
    assert r2["redone"] == [] and sum(f["duplicates_earlier"] for f in r2["files"]) == 0
    r1 = iot_reading.ingest_readings(s2, D1, spark)
    assert r1["redone"] == [D2.isoformat()]
    resent_d2 = io.read(spark, io.table_path(s2, *iot_reading.DUPLICATES)).where(F.col("earlier_delivery")).collect()
    assert resent_d2 and {r["delivery_day"] for r in resent_d2} == {D2}
    assert set(r1["reading_days"]) >= {D1.isoformat(), D2.isoformat()}

    def rows(settings, *table, drop=()):
        df = io.read(spark, io.table_path(settings, *table))
        return sorted(tuple(r) for r in df.select(*sorted(c for c in df.columns if c not in drop)).collect())

    for table, drop in ((iot_reading.READINGS, ()), (iot_reading.DUPLICATES, ()), (iot_reading.COUNTS, ()),
                        (("quarantine", "iot_readings_json"), ("_ingested_at",)),
                        (("quarantine", "iot_readings_csv"), ("_ingested_at",))):
        assert rows(s2, *table, drop=drop) == rows(s, *table, drop=drop), table
    manifest = io.read(spark, io.table_path(s2, *iot_device.MANIFEST)).collect()
    counts = {r["_file_sha256"]: r for r in io.read(spark, io.table_path(s2, *iot_reading.COUNTS)).collect()}
    assert len(manifest) == len(counts) == 4
    for m in manifest:
        c = counts[m["sha256"]]
        assert (m["rows_read"], m["rows_raw"], m["rows_quarantined"]) == (c["rows_read"], c["kept"], c["quarantined"])
        assert c["rows_read"] == c["kept"] + c["duplicates"] + c["quarantined"]
    versions = {t: io.version(spark, io.table_path(s2, *t)) for t in (iot_reading.READINGS, iot_reading.DUPLICATES, iot_reading.COUNTS, iot_device.MANIFEST)}
    assert iot_reading.ingest_readings(s2, D2, spark)["skipped"] and iot_reading.ingest_readings(s2, D1, spark)["skipped"]
    assert {t: io.version(spark, io.table_path(s2, *t)) for t in versions} == versions

    # a corrected day-1 file without one of the readings day 2 re-sent: day 2's copy now repeats nothing
    # stored, so day 2 is re-processed and keeps it (as a late reading): nothing is lost
    dup = (io.read(spark, io.table_path(s2, *iot_reading.DUPLICATES))
           .where(F.col("earlier_delivery") & (F.col("_source") == "iot_readings_json")).orderBy("_row").first())
    original = (io.read(spark, io.table_path(s2, *iot_reading.READINGS))
                .where((F.col("delivery_day") == D1) & (F.col("city_code") == dup["city_code"])
                       & (F.col("ts") == dup["ts"]) & (F.col("metric") == dup["metric"])).first())
    inbox = tmp_path / "corrected"
    for source in iot_reading.READING_SOURCES:
        src = next(Path(s.inbox, source).glob(f"*_{D1:%Y%m%d}.*"))
        (inbox / source).mkdir(parents=True)
        lines = src.read_bytes().split(b"\n")
        if source == "iot_readings_json":
            del lines[original["_row"] - 1]  # JSON lines: the first line is row 1
        (inbox / source / src.name).write_bytes(b"\n".join(lines))
    s3 = dataclasses.replace(s2, inbox=str(inbox))
    r = iot_reading.ingest_readings(s3, D1, spark)
    assert r["redone"] == [D2.isoformat()]
    kept = io.read(spark, io.table_path(s2, *iot_reading.READINGS)).where(
        (F.col("_file_sha256") == dup["_file_sha256"]) & (F.col("_row") == dup["_row"])).collect()
    assert len(kept) == 1 and kept[0]["late"] and kept[0]["delivery_day"] == D2
    counts = io.read(spark, io.table_path(s2, *iot_reading.COUNTS)).collect()
    assert sum(c["duplicates_earlier"] for c in counts) == len(resent_d2) - 1
    for c in counts:
        stored_rows = io.read(spark, io.table_path(s2, *iot_reading.READINGS)).where(F.col("_file_sha256") == c["_file_sha256"]).count()
        assert stored_rows == c["kept"] and c["rows_read"] == c["kept"] + c["duplicates"] + c["quarantined"], c["file"]
    readings = io.read(spark, io.table_path(s2, *iot_reading.READINGS))
    assert readings.groupBy("city_code", "ts", "metric").count().where(F.col("count") > 1).count() == 0


@pytest.fixture(scope="module")
def iot_eval(spark, iot_lake):

    return evaluate_iot.evaluate(spark, iot_lake["settings"], iot_lake["inbox"])


def test_health_flags_the_generators_silent_and_flat_devices(iot_eval):
    result = iot_eval
    for condition in ("silent", "flatline"):
        v = result["health"][condition]
        assert v["truth"] > 0, condition
        assert v["precision"] == 1.0 and v["recall"] == 1.0, (condition, v)


def test_steady_metrics_are_not_flat_lines_but_stuck_continuous_sensors_are(spark, iot_lake):
    """A dry flood point at 0 cm, a closed manhole cover, a lamp post at rated power and a gas detector
    in clean air read one value for hours, legitimately. Found here from the stored readings (plain
    pandas: runs of one value lasting 3 hours), such devices exist on both days and none of them is
    flagged; every flagged device measures only continuous metrics (and is the generator's stuck
    sensor: test_health_flags_the_generators_silent_and_flat_devices)."""
    from lake import io
    from sample.generate_iot import FLATLINE_TYPES
    from lake.sensing import FLATLINE_MINUTES, STEADY_METRICS

    s = iot_lake["settings"]
    keys = ["day", "city_code", "metric"]
    pdf = (io.read(spark, io.table_path(s, *iot_reading.READINGS))
           .where(F.col("day").isin(D1, D2) & F.col("metric").isin(*STEADY_METRICS))
           .select(*keys, "ts", "value").toPandas().sort_values([*keys, "ts"], kind="stable"))
    changed = pdf["value"].ne(pdf.groupby(keys)["value"].shift())
    pdf["run"] = changed.groupby([pdf[k] for k in keys]).cumsum()
    spans = pdf.groupby([*keys, "run"])["ts"].agg(lambda t: (t.max() - t.min()).total_seconds() / 60)
    steady = {(d, c, m) for (d, c, m, _), minutes in spans.items() if minutes >= FLATLINE_MINUTES}
    by_metric = {m: {(d, c) for d, c, mm in steady if mm == m} for m in STEADY_METRICS}
    assert all(len(v) >= 5 for v in by_metric.values()), {m: len(v) for m, v in by_metric.items()}
    health = io.read(spark, io.table_path(s, "topic", "device_health")).where(F.col("day").isin(D1, D2))
    flagged = {(r["day"], r["city_code"]) for r in health.where(F.col("flatline")).collect()}
    assert flagged and not flagged & {(d, c) for d, c, _ in steady}
    assert all(c[6:8] in FLATLINE_TYPES for _, c in flagged)


def test_precision_and_recall_per_defect_type(iot_eval):
    result = iot_eval
    rows = {**{f"readings/{k}": v for k, v in result["readings"].items()},
            **{f"ledger/{k}": v for k, v in result["ledger"].items()}}
    assert len(result["readings"]) == 8 and len(result["ledger"]) == 5
    low = {k: (v["precision"], v["recall"]) for k, v in rows.items() if v["precision"] < 0.99 or v["recall"] < 0.99}
    assert not low
    assert all(v["truth"] > 0 for v in result["readings"].values())
    assert result["locations"]["accuracy"] == 1.0 and result["passed"]


def test_topic_gates_pass_and_a_broken_candidate_fails(spark, iot_lake):
    from lake import contracts, io
    from quality import gates

    s = iot_lake["settings"]
    val = io.read(spark, io.table_path(s, *gates.VALIDATIONS))
    for table in sensing.TABLES:
        t = io.read(spark, io.table_path(s, *table.split(".")))
        days = {r["day"] for r in t.select("day").distinct().collect()}
        assert {D1, D2} <= days or table == "topic.flood_points", (table, days)
        assert val.where((F.col("table") == table)).count() > 0
        assert val.where((F.col("table") == table) & ~F.col("success")).count() == 0, table
    hourly = io.read(spark, io.table_path(s, "topic", "air_quality_hourly")).where(F.col("day") == D2)
    assert hourly.where(F.col("pm25").isNull() | (F.col("devices") < 1)).count() == 0
    ex = io.read(spark, io.table_path(s, "topic", "air_quality_exceedance")).where(F.col("day") == D2)
    assert ex.where((F.col("pollutant") == "pm25") & F.col("exceeded")).count() > 0  # the generator's episodes
    # a broken candidate: an online rate above 1
    tc = contracts.load(s.contracts_dir).table("topic.device_online_rate")
    path = io.table_path(s, "topic", "device_online_rate")
    v = io.version(spark, path)
    broken = io.read(spark, path).where(F.col("day") == D2).withColumn("rate", F.lit(1.5))
    with pytest.raises(gates.GateFailed, match=r"expect_column_values_to_be_between\(rate\)"):
        gates.publish_partition(spark, s, tc, broken, "day", [D2], {"as_of": D2.isoformat()})
    assert io.version(spark, path) == v
    staged = io.read(spark, s.path("_staging", "topic", "device_online_rate"))  # kept for inspection
    assert staged.where(F.col("rate") == 1.5).count() > 0


# ----------------------------------------------------------------------------- topics, recomputed independently

# GB 3095-2012 grade II (table 1), written down here from the standard rather than taken from contracts/reference.yaml:
# pollutant -> [(averaging period, limit)]; CO in mg/m³, the others in µg/m³
GB3095_GRADE_II = {"pm25": [("24h", 75)], "pm10": [("24h", 150)], "so2": [("1h", 500), ("24h", 150)],
                   "no2": [("1h", 200), ("24h", 80)], "co": [("1h", 10), ("24h", 4)], "o3": [("1h", 200), ("8h", 160)]}


def reference_exceedances(hourly: dict) -> dict:
    """Plain-Python GB 3095-2012 evaluation. ``hourly``: {(day, town_code, town, pollutant): {hour of day:
    mean}} -> {(day, town_code, pollutant, period): (value, limit, hours_over, hours, valid, exceeded)}.
    Data validity (table 4): a 24-hour mean needs 20 hourly values, an 8-hour mean 6 of its 8 hours;
    the daily maximum 8-hour mean is taken over the windows 00-08 ... 16-24 of the day."""
    out = {}
    for (day, town_code, _, p), by_hour in hourly.items():
        values = list(by_hour.values())
        for period, limit in GB3095_GRADE_II[p]:
            over = None
            if period == "1h":
                value, valid, over = max(values), True, sum(v > limit for v in values)
            elif period == "24h":
                valid = len(values) >= 20
                value = sum(values) / len(values) if valid else None
            else:
                windows = [[by_hour[h] for h in range(start, start + 8) if h in by_hour] for start in range(17)]
                means = [sum(w) / len(w) for w in windows if len(w) >= 6]
                valid = bool(means)
                value = max(means) if valid else None
            value = None if value is None else round(value, 3)
            out[(day, town_code, p, period)] = (value, float(limit), over, len(values), valid,
                                                None if value is None else value > limit)
    return out


def _assert_rows_equal(got: dict, want: dict, tol: float = 1.01e-3) -> None:
    assert set(got) == set(want), (sorted(set(got) ^ set(want), key=str)[:5])
    bad = []
    for k, w in want.items():
        g = got[k]
        same = all((a is None and b is None) or (a is not None and b is not None and (
            abs(a - b) <= tol if isinstance(a, float) and not isinstance(a, bool) else a == b)) for a, b in zip(g, w))
        if not same:
            bad.append((k, g, w))
    assert not bad, bad[:5]


def test_exceedance_rules_on_hand_written_hours(spark):
    """The averaging periods and GB 3095-2012's data-validity rules on hourly means written by hand."""

    day = D2
    rows = []

    def hours(town, values: dict) -> None:
        for h, v in values.items():
            rows.append((day, h, town, f"town {town}", *v, 1))

    p = air_quality.POLLUTANTS  # pm25, pm10, no2, so2, o3, co
    assert p == ("pm25", "pm10", "no2", "so2", "o3", "co")
    # A: 24 hours; PM2.5 80 (over 75); O3 150, and 200 from 10:00 to 17:00 (8 h mean 200 > 160, 1 h 200 not > 200)
    hours("110115001", {h: (80.0, 100.0, 30.0, 5.0, 200.0 if 10 <= h <= 17 else 150.0, 1.0) for h in range(24)})
    # B: 19 hours (24 h means not valid); O3 every other hour (no 8-hour window with 6 hours)
    hours("110115002", {h: (100.0, 100.0, 30.0, 5.0, 170.0 if h % 2 == 0 else None, 1.0) for h in range(19)})
    # C: exactly 20 hours (valid); O3 in 6 hours 00-05 only (one valid window, 00-08)
    hours("110115003", {h: (70.0, 100.0, 30.0, 5.0, 161.0 if h < 6 else None, 5.0) for h in range(20)})
    # D: O3 only at 18:00-23:00: six hours, all inside the last window (16-24)
    hours("110115004", {h: (None, None, None, None, 300.0, None) for h in range(18, 24)})
    aq = spark.createDataFrame(rows, "day date, h int, town_code string, town string, pm25 double, "
                                     "pm10 double, no2 double, so2 double, o3 double, co double, devices long")
    # the hour as a wall-clock time of the session's time zone (Asia/Shanghai), as hourly_stats makes it
    aq = aq.withColumn("hour", F.make_timestamp_ntz(F.year("day"), F.month("day"), F.dayofmonth("day"), "h",
                                                    F.lit(0), F.lit(0)).cast("timestamp")).drop("h")
    got = {(r["town_code"], r["pollutant"], r["period"]): r for r in sensing.exceedance_rows(aq).collect()}
    a = lambda t, pol, per: got[(f"11011500{t}", pol, per)]  # noqa: E731
    assert (a(1, "pm25", "24h")["value"], a(1, "pm25", "24h")["valid"], a(1, "pm25", "24h")["exceeded"]) == (80.0, True, True)
    assert (a(1, "o3", "8h")["value"], a(1, "o3", "8h")["exceeded"], a(1, "o3", "8h")["limit_value"]) == (200.0, True, 160.0)
    assert (a(1, "o3", "1h")["value"], a(1, "o3", "1h")["exceeded"], a(1, "o3", "1h")["hours_over"]) == (200.0, False, 0)
    b = a(2, "pm25", "24h")
    assert (b["hours"], b["valid"], b["value"], b["exceeded"]) == (19, False, None, None)
    assert a(2, "pm25", "24h")["limit_value"] == 75.0 and a(2, "so2", "1h")["valid"] is True
    o3b = a(2, "o3", "8h")
    assert (o3b["hours"], o3b["valid"], o3b["value"], o3b["exceeded"]) == (10, False, None, None)
    assert a(2, "o3", "1h")["exceeded"] is False and a(2, "o3", "1h")["value"] == 170.0  # judged: 1 h values
    c = a(3, "pm25", "24h")
    assert (c["hours"], c["valid"], c["value"], c["exceeded"]) == (20, True, 70.0, False)
    assert (a(3, "co", "24h")["exceeded"], a(3, "co", "1h")["exceeded"]) == (True, False)  # 5 mg/m³: over 4, not 10
    assert (a(3, "o3", "8h")["valid"], a(3, "o3", "8h")["value"], a(3, "o3", "8h")["exceeded"]) == (True, 161.0, True)
    assert (a(4, "o3", "8h")["valid"], a(4, "o3", "8h")["value"]) == (True, 300.0)
    assert ("110115004", "pm25", "24h") not in got  # no PM2.5 hour at all: no row
    # the reference agrees with the job on these hours too
    by_hour = defaultdict(dict)
    for d, hr, town_code, town, *values, _ in rows:
        for name, v in zip(p, values):
            if v is not None:
                by_hour[(d, town_code, town, name)][hr] = v
    mine = {(r["day"], r["town_code"], r["pollutant"], r["period"]): (r["value"], r["limit_value"], r["hours_over"], r["hours"],
                                                                    r["valid"], r["exceeded"]) for r in got.values()}
    _assert_rows_equal(mine, reference_exceedances(by_hour))


def _pandas(spark, s, *table, where=None):
    from lake import io

    df = io.read(spark, io.table_path(s, *table))
    return (df.where(where) if where is not None else df).toPandas()


def test_air_quality_topics_equal_an_independent_computation(spark, iot_lake):
    """topic.air_quality_hourly recomputed from the stored readings (town of the station, mean of all
    readings of the hour) and topic.air_quality_exceedance from those hourly means, in plain Python,
    row by row on every reading day of the lake (the days before the first delivery carry only late
    readings: too few hours, rows that are not valid)."""

    s = iot_lake["settings"]
    devices = _pandas(spark, s, "base", "iot_device")
    town_of = {r.city_code: (r.town_code, r.town) for r in devices.itertuples() if r.town_code is not None}
    readings = _pandas(spark, s, *iot_reading.READINGS, where=F.col("metric").isin(*GB3095_GRADE_II))
    sums = defaultdict(lambda: [0.0, 0, set()])
    for r in readings.itertuples():
        if r.city_code in town_of:
            hour = r.ts.to_pydatetime().replace(minute=0, second=0, microsecond=0)
            cell = sums[(r.day, hour, *town_of[r.city_code], r.metric)]
            cell[0] += r.value
            cell[1] += 1
            cell[2].add(r.city_code)
    hourly = defaultdict(dict)  # (day, hour, town_code, town) -> {pollutant: mean}
    stations = defaultdict(set)
    for (day, hour, town_code, town, metric), (total, n, codes) in sums.items():
        hourly[(day, hour, town_code, town)][metric] = round(total / n, 3)
        stations[(day, hour, town_code, town)] |= codes
    stored = _pandas(spark, s, "topic", "air_quality_hourly")
    got = {(r.day, r.hour.to_pydatetime(), r.town_code, r.town): ({p: getattr(r, p) for p in GB3095_GRADE_II
                                                                     if getattr(r, p) == getattr(r, p)}, r.devices)
           for r in stored.itertuples()}
    assert set(got) == set(hourly)
    for k, means in hourly.items():
        assert got[k][1] == len(stations[k]) and set(got[k][0]) == set(means), k
        assert all(abs(got[k][0][p] - v) <= 1.01e-3 for p, v in means.items()), (k, got[k][0], means)

    by_hour = defaultdict(dict)
    for (day, hour, town_code, town), means in hourly.items():
        for p, v in means.items():
            by_hour[(day, town_code, town, p)][hour.hour] = v
    want = reference_exceedances(by_hour)
    ex = _pandas(spark, s, "topic", "air_quality_exceedance").astype(object)
    ex = ex.where(ex.notna(), None)
    mine = {(r.day, r.town_code, r.pollutant, r.period): (r.value, r.limit_value, r.hours_over, r.hours, r.valid,
                                                          r.exceeded) for r in ex.itertuples()}
    _assert_rows_equal(mine, want)
    # both outcomes occur: exceedances on the generator's episode days and rows that are not valid
    assert any(v[5] for v in want.values()) and any(not v[4] for v in want.values())
    assert any(k[3] == "8h" and v[4] for k, v in want.items())


def test_flood_points_and_coverage_equal_an_independent_computation(spark, iot_lake):
    """topic.flood_points and topic.sensor_coverage_by_town recomputed in plain Python from the stored
    readings, the ledger and the boundaries, row by row."""

    s = iot_lake["settings"]
    devices = {r.city_code: r for r in _pandas(spark, s, "base", "iot_device").itertuples()}
    readings = _pandas(spark, s, *iot_reading.READINGS).sort_values(["ts", "_file_sha256", "_row"], kind="stable")
    # flood points: a day over the ledger's alarm threshold
    over = defaultdict(lambda: {"max": None, "first": None, "n": 0})
    for r in readings[readings.metric == "water_level"].itertuples():
        d = devices[r.city_code]
        cell = over[(r.day, r.city_code)]
        cell["max"] = r.value if cell["max"] is None else max(cell["max"], r.value)
        if r.value > d.alarm_threshold:
            cell["n"] += 1
            cell["first"] = cell["first"] or r.ts.to_pydatetime()
    want = {}
    for (day, code), c in over.items():
        if c["n"]:
            d = devices[code]
            hyphens = "-".join((code[:6], code[6:8], code[8:10], code[10:17], code[17]))
            want[(day, hyphens)] = (d.device_name, d.town_code, d.town, d.lon, d.lat, d.alarm_threshold, c["max"], c["first"],
                                    c["n"] * 5)
    fp = _pandas(spark, s, "topic", "flood_points").astype(object)
    fp = fp.where(fp.notna(), None)
    got = {(r.day, r.point_code): (r.device_name, r.town_code, r.town, r.lon, r.lat, r.alarm_threshold, r.max_level,
                                   r.first_over.to_pydatetime(), r.minutes_over) for r in fp.itertuples()}
    assert want and got == want

    # coverage: devices in service that day (在用, installed by then) in a town; online = a reading in
    # the last 6 hours of the day; per km² of the town's area
    last = readings.groupby(["day", "city_code"])["ts"].max()
    days = sorted(set(readings["day"]))
    area = {r.code: (r.name, r.area_km2) for r in _pandas(spark, s, "base", "admin_boundary").itertuples()}
    cells = defaultdict(lambda: [0, 0])
    for day in days:
        evening = dt.datetime.combine(day, dt.time(18))
        for code, d in devices.items():
            installed = d.install_date is None or d.install_date <= day
            if d.status != "在用" or not installed or d.town_code is None:
                continue
            cell = cells[(day, d.town_code, d.device_type)]
            cell[0] += 1
            seen = last.get((day, code))
            cell[1] += int(seen is not None and seen.to_pydatetime() >= evening)
    want = {(day, t, typ): (area[t][0], n, on, round(n / area[t][1], 4), round(on / area[t][1], 4))
            for (day, t, typ), (n, on) in cells.items()}
    cov = _pandas(spark, s, "topic", "sensor_coverage_by_town")
    got = {(r.day, r.town_code, r.device_type): (r.town, r.devices, r.online, r.devices_per_km2, r.online_per_km2)
           for r in cov.itertuples()}
    assert set(got) == set(want)
    bad = [(k, got[k], w) for k, w in want.items()
           if got[k][:3] != w[:3] or abs(got[k][3] - w[3]) > 1.01e-4 or abs(got[k][4] - w[4]) > 1.01e-4]
    assert not bad, bad[:5]
    assert any(w[2] < w[1] for w in want.values())  # silent devices lower the online count somewhere


def test_traffic_flow_on_hand_written_readings(spark):
    """topic.traffic_flow: per day, town and hour the vehicles the town's detectors counted, the detectors
    and readings, the busiest hour(s); other metrics and detectors outside every town are not counted."""
    from jobs.topic import traffic
    from sample.generate_iot import city_code

    a, b, out, lamp = (city_code("10", "18", 1), city_code("10", "18", 2), city_code("10", "18", 3),
                       city_code("06", "15", 4))
    devices = spark.createDataFrame([(a, "10", "110115001"), (b, "10", "110115001"), (out, "10", None),
                                     (lamp, "06", "110115001")], "city_code string, device_type string, town_code string")
    boundary = spark.createDataFrame([("110115001", "兴丰街道")], "code string, name string")
    day = dt.date(2026, 11, 1)

    def at(h, m):
        return dt.datetime(2026, 11, 1, h, m)
    readings = spark.createDataFrame([
        (a, at(7, 0), "vehicle_count", 10.0), (a, at(7, 5), "vehicle_count", 12.0), (b, at(7, 3), "vehicle_count", 30.0),
        (a, at(8, 0), "vehicle_count", 40.0), (b, at(8, 1), "vehicle_count", 12.0),   # 52 at 08: the peak
        (a, at(9, 0), "vehicle_count", 0.0),
        (out, at(8, 0), "vehicle_count", 500.0),                                    # outside every town
        (lamp, at(8, 0), "power", 120.0),                                           # not a traffic metric
    ], "city_code string, ts timestamp, metric string, value double").withColumn("day", F.lit(day))
    hourly = sensing.hourly_stats(readings, devices.withColumn("alarm_threshold", F.lit(None).cast("double")))
    got = {r["hour"].hour: (r["town"], r["vehicles"], r["devices"], r["readings"], r["peak_hour"])
           for r in traffic.traffic_flow_rows(hourly, devices, boundary).collect()}
    assert got == {7: ("兴丰街道", 52, 2, 3, True), 8: ("兴丰街道", 52, 2, 2, True), 9: ("兴丰街道", 0, 1, 1, False)}


def test_traffic_flow_equals_an_independent_computation(spark, iot_lake):
    """topic.traffic_flow recomputed in plain Python from the stored readings and the ledger on every
    reading day of the lake."""
    s = iot_lake["settings"]
    devices = {r.city_code: r for r in _pandas(spark, s, "base", "iot_device").itertuples()}
    readings = _pandas(spark, s, *iot_reading.READINGS, where=F.col("metric") == "vehicle_count")
    want = reference_traffic_flow(
        [(r.day, r.ts.to_pydatetime(), r.city_code, r.value) for r in readings.itertuples()],
        {c: (d.town_code, d.town) for c, d in devices.items()})
    got = {(r.day, r.hour.to_pydatetime(), r.town_code): (r.town, r.vehicles, r.devices, r.readings, r.peak_hour)
           for r in _pandas(spark, s, "topic", "traffic_flow").itertuples()}
    assert want and got == want
    assert any(not v[4] for v in want.values())


def reference_traffic_flow(readings, towns) -> dict:
    """Plain Python: ``readings`` [(day, ts, city_code, vehicles)] of the vehicle_count metric, ``towns``
    {city_code: (town_code, town)} -> {(day, hour, town_code): (town, vehicles, devices, readings,
    peak_hour)}."""
    cells = defaultdict(lambda: [0.0, set(), 0])
    names = {}
    for day, ts, code, value in readings:
        town_code, town = towns[code]
        if town_code is None:
            continue
        names[town_code] = town
        c = cells[(day, ts.replace(minute=0, second=0, microsecond=0), town_code)]
        c[0] += value
        c[1].add(code)
        c[2] += 1
    peak = defaultdict(float)
    for (day, _, town_code), c in cells.items():
        peak[(day, town_code)] = max(peak[(day, town_code)], round(c[0]))
    return {(day, hour, t): (names[t], round(c[0]), len(c[1]), c[2], round(c[0]) == peak[(day, t)])
            for (day, hour, t), c in cells.items()}


def test_missing_files_and_bad_days_are_clear_errors(spark, iot_settings):
    from lake.files import InputError

    with pytest.raises(InputError, match=r"no reading files for delivery day 2026-01-01 in .*iot_readings_json"):
        iot_reading.ingest_readings(iot_settings, "2026-01-01")
    with pytest.raises(InputError, match="day '2026-13-01' is not a date"):
        iot_reading.ingest_readings(iot_settings, "2026-13-01")
