"""Tests for the synthetic IoT sources (sample.generate_iot): the device ledger, the readings and the
truth files. Every truth row is checked against the file row it names, and independent detectors
written here from the design (docs/spatial_iot.md) must find exactly the recorded rows."""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from lake import contracts, geo
from sample import basemap
from lake.sensing import CONTINUOUS_METRICS, FLATLINE_MINUTES, STEADY_METRICS
from sample.generate_iot import (
    BASE_DEVICES,
    CSV_TYPES,
    DEPARTMENTS,
    DEVICE_COLUMNS,
    DEVICE_TYPES,
    ENCODINGS,
    FLATLINE_TYPES,
    JSON_TYPES,
    METRICS,
    PHYSICAL_RANGES,
    READING_COLUMNS,
    UNIT_CONVERSIONS,
    city_code,
    generate_iot,
)

REPO = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("LAKE_TEST_IOT_SCALE", "0.005"))  # ~650 devices, ~90 K readings a day
SEED = 11
EXTRACT = datetime.date(2026, 11, 1)
DAYS = (datetime.date(2026, 11, 1), datetime.date(2026, 11, 2))
DEVICES, RJSON, RCSV = "iot_devices", "iot_readings_json", "iot_readings_csv"
READING_DEFECTS = ("reading_duplicate", "reading_late", "reading_out_of_order", "reading_future_timestamp",
                   "reading_unknown_device", "reading_unit_mismatch", "reading_impossible_value",
                   "reading_malformed")
LEDGER_DEFECTS = ("duplicate_city_code", "device_registered_twice", "city_code_checksum", "city_code_format",
                  "point_outside_district")
TZ = datetime.timezone(datetime.timedelta(hours=8))
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def mod11_2(first17: str) -> str:
    """ISO 7064 MOD 11-2 in its recursive form, written independently as the oracle."""
    p = 0
    for ch in first17:
        p = ((p + int(ch)) * 2) % 11
    c = (12 - p) % 11
    return "X" if c == 10 else str(c)


def valid_city_code(code: str) -> bool:
    return (len(code) == 18 and code[:17].isdigit() and code.startswith("110115")
            and code[6:8] in DEVICE_TYPES and code[-1] == mod11_2(code[:17]))


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("iot")
    manifest = generate_iot(SCALE, SEED, out, days=list(DAYS), extract_date=EXTRACT)
    return out, manifest


def read_truth(out: Path, name: str) -> list[dict]:
    with (out / "truth" / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def ledger(lake_dir):
    """Ledger rows: {file name: [(line number, row dict)]}."""
    out, _ = lake_dir
    files = {}
    for path in sorted((out / DEVICES).glob("*.csv")):
        with path.open(encoding="gbk", newline="") as fh:
            reader = csv.reader(fh)
            assert next(reader) == list(DEVICE_COLUMNS)
            files[path.name] = [(i + 2, dict(zip(DEVICE_COLUMNS, r))) for i, r in enumerate(reader)]
    return files


def parse_line(source: str, line: str):
    """A well-formed reading as a dict, or None for a malformed line."""
    if source == RCSV:
        parts = line.split(",")
        return dict(zip(READING_COLUMNS, parts)) if len(parts) == 5 else None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or list(obj) != list(READING_COLUMNS) or not all(isinstance(v, str) for v in obj.values()):
        return None
    return obj


@pytest.fixture(scope="module")
def readings(lake_dir):
    """{(source, day): [(line number, raw line, parsed or None)]}"""
    out, _ = lake_dir
    result = {}
    for day in DAYS:
        stamp = day.strftime("%Y%m%d")
        for source, ext in ((RJSON, "jsonl"), (RCSV, "csv")):
            text = (out / source / f"{source}_{stamp}.{ext}").read_bytes().decode("utf-8")
            lines = text.split("\n")
            assert lines[-1] == ""
            lines = lines[:-1]
            first = 1
            if ext == "csv":
                assert lines[0] == ",".join(READING_COLUMNS)
                lines, first = lines[1:], 2
            result[(source, day)] = [(first + i, ln, parse_line(source, ln)) for i, ln in enumerate(lines)]
    return result


def ts_of(row: dict) -> datetime.datetime:
    return datetime.datetime.fromisoformat(row["ts"])


def number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------- identifiers, contracts

def test_city_code_check_character_matches_independent_oracle():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        t = f"{int(rng.integers(1, 10)):02d}"
        code = city_code(t, "15", int(rng.integers(0, 10 ** 7)))
        assert len(code) == 18 and code[:6] == "110115" and code[6:8] == t and code[8:10] == "15"
        assert code[-1] == mod11_2(code[:17])
        # the weighted-sum form of GB 11643 gives the same character
        assert code[-1] == "10X98765432"[sum(int(c) * w for c, w in zip(code[:17], WEIGHTS)) % 11]


def test_contracts_load_and_match_the_generator():
    c = contracts.load(str(REPO / "contracts"))
    dev = c.source(DEVICES)
    assert tuple(dev.column_names) == DEVICE_COLUMNS
    assert dev.record_key == dev.entity_key == "city_code"
    assert dev.column("city_code").checks == ("city_code",)
    assert dev.encoding == ENCODINGS[DEVICES] and dev.format == "csv"
    assert set(dev.column("owner_department").allowed) == {name for name, _ in DEPARTMENTS.values()}
    assert set(dev.column("device_type").allowed) == set(DEVICE_TYPES)
    for source, fmt in ((RJSON, "jsonl"), (RCSV, "csv")):
        sc = c.source(source)
        assert tuple(sc.column_names) == READING_COLUMNS
        assert all(col.type == "string" for col in sc.columns)
        assert sc.format == fmt and sc.encoding == ENCODINGS[source] and sc.update_cycle == "daily"
    import yaml
    raw = yaml.safe_load((REPO / "contracts" / "sources" / "iot_devices.yaml").read_text(encoding="utf-8"))
    assert raw["geometry"] == {"lon": "lon", "lat": "lat", "crs": "GCJ02"}
    from lake.reference import SENSING

    assert {k: v.department for k, v in SENSING.departments.items()} == {k: v[0] for k, v in DEPARTMENTS.items()}
    # every device type reports through exactly one of the two platforms
    assert not set(JSON_TYPES) & set(CSV_TYPES) and set(JSON_TYPES) | set(CSV_TYPES) == set(SENSING.device_types)


def test_flatline_is_injected_only_where_the_job_checks_it(lake_dir):
    """The reference data splits the metrics into continuous (checked for flat lines) and steady (a
    dry flood gauge, a closed manhole cover, a lamp post, a gas detector in clean air, a traffic counter
    on a quiet road at night: never checked);
    the generator injects stuck sensors only into the device types all of whose metrics are
    continuous, so that every injected flat line is one the job can and must find."""
    out, _ = lake_dir
    assert not set(CONTINUOUS_METRICS) & set(STEADY_METRICS)
    assert set(STEADY_METRICS) == {"water_level", "tilt", "power", "ch4", "vehicle_count"}
    assert set(CONTINUOUS_METRICS) | set(STEADY_METRICS) == set(METRICS)
    assert set(FLATLINE_TYPES) == {"01", "02", "03", "07", "09"}
    stuck = [t for t in read_truth(out, "device_health.csv") if t["condition"] == "flatline"]
    assert stuck, "the sample has no stuck sensor to find"
    assert {t["city_code"][6:8] for t in stuck} <= set(FLATLINE_TYPES)


# --------------------------------------------------------------------------- determinism, manifest

def test_same_arguments_give_identical_files_and_other_seed_differs(lake_dir, tmp_path):
    out, manifest = lake_dir
    again = generate_iot(SCALE, SEED, tmp_path / "a", days=list(DAYS), extract_date=EXTRACT)
    assert again == manifest
    for name in ("iot_defects.csv", "iot_locations.csv", "device_health.csv", "readings.csv"):
        assert (tmp_path / "a" / "truth" / name).read_bytes() == (out / "truth" / name).read_bytes(), name
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    other = generate_iot(SCALE, SEED + 1, tmp_path / "b", days=[DAYS[0]], extract_date=EXTRACT)
    mine = {e["path"]: e["sha256"] for e in manifest["files"]}
    assert all(mine[e["path"]] != e["sha256"] for e in other["files"])


def test_manifest_lists_every_file_with_its_line_count(lake_dir):
    out, manifest = lake_dir
    paths = [e["path"] for e in manifest["files"]]
    assert paths[:len(DEPARTMENTS)] == [f"{DEVICES}/{DEVICES}_{d}_{EXTRACT:%Y%m%d}.csv" for d in sorted(DEPARTMENTS)]
    for day in DAYS:
        assert f"{RJSON}/{RJSON}_{day:%Y%m%d}.jsonl" in paths and f"{RCSV}/{RCSV}_{day:%Y%m%d}.csv" in paths
    for e in manifest["files"]:
        data = (out / e["path"]).read_bytes()
        header = 1 if e["format"] == "csv" else 0
        assert data.count(b"\n") - header == e["rows"], e["path"]
    assert json.loads((out / "iot_manifest.json").read_text(encoding="utf-8")) == manifest


# --------------------------------------------------------------------------- the ledger

def test_ledger_encoding_is_gbk_with_crlf(lake_dir):
    out, _ = lake_dir
    for path in (out / DEVICES).glob("*.csv"):
        data = path.read_bytes()
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # Chinese text in GBK is not valid UTF-8
        data.decode("gbk")
        assert data.count(b"\r\n") == data.count(b"\n")


def test_ledger_size_types_owners_and_status(ledger):
    rows = [r for f in ledger.values() for _, r in f]
    n = max(round(BASE_DEVICES * SCALE), 200)
    assert n <= len(rows) <= n * 1.01 + 5
    types = Counter(r["device_type"] for r in rows)
    for t, d in DEVICE_TYPES.items():
        assert abs(types[t] - d.share * n) <= max(3, 0.02 * d.share * n) + 2, t
    for name, file_rows in ledger.items():
        dept = name.split("_")[2]
        assert all(r["owner_department"] == DEPARTMENTS[dept][0] for _, r in file_rows)
        assert all(len(r["city_code"]) < 9 or r["city_code"][8:10] == dept for _, r in file_rows)
        # owners: every type is registered by its owner; other departments only as second registrations
        assert all(DEVICE_TYPES[r["device_type"]].dept <= dept for _, r in file_rows)
    status = Counter(r["status"] for r in rows)
    assert set(status) <= {"在用", "停用", "维修"}
    assert 0.89 < status["在用"] / len(rows) < 0.97
    thresholds = [r["alarm_threshold"] for r in rows]
    assert all((t != "") == (r["device_type"] == "04") for t, r in zip(thresholds, rows))
    assert all(float(t) > 0 for t in thresholds if t)
    assert all(datetime.date.fromisoformat(r["install_date"]) < EXTRACT for r in rows)


def test_city_codes_are_valid_except_the_recorded_ones(lake_dir, ledger):
    out, _ = lake_dir
    truth = {(t["file"], int(t["row"])): t for t in read_truth(out, "iot_defects.csv")}
    for name, file_rows in ledger.items():
        for line, r in file_rows:
            code = r["city_code"]
            t = truth.get((name, line))
            if valid_city_code(code):
                assert t is None or t["defect_type"] not in ("city_code_checksum", "city_code_format"), (name, line)
                assert code[6:8] == r["device_type"]
            elif len(code) == 18 and code[:17].isdigit():
                assert t is not None and t["defect_type"] == "city_code_checksum" and t["record_key"] == code
            else:
                assert t is not None and t["defect_type"] == "city_code_format" and t["record_key"] == code
                assert len(code) in (17, 19)


def test_ledger_truth_rows_show_their_defect_and_nothing_is_unrecorded(lake_dir, ledger):
    out, _ = lake_dir
    truth = read_truth(out, "iot_defects.csv")
    assert {t["defect_type"] for t in truth} == set(LEDGER_DEFECTS)
    at = {(name, line): r for name, rows in ledger.items() for line, r in rows}
    for t in truth:
        assert t["source"] == DEVICES
        r = at[(t["file"], int(t["row"]))]
        assert r["city_code"] == t["record_key"]
    # independent detectors: the later row of a code; the later department of a serial number;
    # outside every town after conversion to WGS-84
    found = defaultdict(set)
    first_row = {}
    for name in sorted(ledger):
        for line, r in ledger[name]:
            if r["city_code"] in first_row:
                found["duplicate_city_code"].add((name, line))
            else:
                first_row[r["city_code"]] = (name, line)
    by_serial = defaultdict(list)
    for name in sorted(ledger):
        for line, r in ledger[name]:
            if (name, line) not in found["duplicate_city_code"]:
                by_serial[r["serial_no"]].append((r["city_code"][8:10], name, line))
    for regs in by_serial.values():
        for dept, name, line in sorted(regs)[1:]:
            assert dept != sorted(regs)[0][0]
            found["device_registered_twice"].add((name, line))
    keys = [(name, line) for name in sorted(ledger) for line, _ in ledger[name]]
    lon = np.array([float(at[k]["lon"]) for k in keys])
    lat = np.array([float(at[k]["lat"]) for k in keys])
    wlon, wlat = geo.to_wgs84(lon, lat, "GCJ02")
    towns = geo.assign_units_pandas(wlon, wlat, basemap.district_boundaries())["town_code"].tolist()
    found["point_outside_district"] = {k for k, t in zip(keys, towns) if t is None}
    for defect in ("duplicate_city_code", "device_registered_twice", "point_outside_district"):
        expected = {(t["file"], int(t["row"])) for t in truth if t["defect_type"] == defect}
        assert found[defect] == expected, defect
    # a second registration is the same physical device: same place, a different department's code
    for t in truth:
        if t["defect_type"] == "device_registered_twice":
            r = at[(t["file"], int(t["row"]))]
            owner = [at[(n, ln)] for d, n, ln in by_serial[r["serial_no"]] if (n, ln) != (t["file"], int(t["row"]))]
            assert len(owner) == 1 and (owner[0]["lon"], owner[0]["lat"]) == (r["lon"], r["lat"])
            assert owner[0]["city_code"] != r["city_code"]
            assert owner[0]["city_code"][8:10] == DEVICE_TYPES[r["device_type"]].dept != r["city_code"][8:10]


def test_device_points_convert_back_into_their_truth_town(lake_dir, ledger):
    out, _ = lake_dir
    truth = {t["record_key"]: t["town_code"] for t in read_truth(out, "iot_locations.csv")}
    seen = {}
    for name in sorted(ledger):
        for _, r in ledger[name]:
            seen.setdefault(r["city_code"], r)
    assert set(truth) == set(seen)
    codes = sorted(seen)
    lon, lat = geo.to_wgs84([float(seen[c]["lon"]) for c in codes], [float(seen[c]["lat"]) for c in codes], "GCJ02")
    assert ((lon > 116.0) & (lon < 116.9) & (lat > 39.3) & (lat < 40.0)).all()
    got = geo.assign_units_pandas(lon, lat, basemap.district_boundaries())["town_code"].tolist()
    assert [g or "" for g in got] == [truth[c] for c in codes]
    by_town = Counter(truth.values())
    assert len([t for t in by_town if t]) == 22 or SCALE < 0.005  # devices in every town
    assert 0 < by_town[""] < 0.01 * len(codes) + 2


# --------------------------------------------------------------------------- readings

def ledger_index(ledger):
    """city code -> first ledger row (the device)."""
    first = {}
    for name in sorted(ledger):
        for _, r in ledger[name]:
            first.setdefault(r["city_code"], r)
    return first


def test_readings_encoding_format_and_rows_per_day(lake_dir, ledger, readings):
    out, _ = lake_dir
    devices = ledger_index(ledger)
    reporting = [r for c, r in devices.items() if r["status"] == "在用" and valid_city_code(c)]
    for day in DAYS:
        for source, types in ((RJSON, JSON_TYPES), (RCSV, CSV_TYPES)):
            expected = sum(86400 / DEVICE_TYPES[r["device_type"]].interval * len(DEVICE_TYPES[r["device_type"]].metrics)
                           for r in reporting if r["device_type"] in types)
            rows = readings[(source, day)]
            # silent devices (~1 %, half a day on average) and unknown devices (+0.3 %)
            assert 0.96 * expected < len(rows) < 1.03 * expected, (source, day, len(rows), expected)
            good = [p for _, _, p in rows if p is not None]
            assert {p["device"][6:8] for p in good} == set(types)
            assert all(p["ts"].endswith("+08:00") and len(p["ts"]) == 25 for p in good)
            assert all(p["metric"] in DEVICE_TYPES[p["device"][6:8]].metrics for p in good)
    # the micro sign of the design, in UTF-8
    data = (out / RJSON / f"{RJSON}_{DAYS[0]:%Y%m%d}.jsonl").read_bytes()
    assert "µg/m³".encode("utf-8") in data and b"\xef\xbb\xbf" not in data[:3]


def earlier_keys(readings, ledger, day: datetime.date) -> set:
    """(device, ts, metric) of the rows that the files of the days before ``day`` have stored: well
    formed, a known device, not after the end of their delivery day + 5 minutes, a possible value in
    the canonical or a known other unit (a quarantined row stores nothing, so a later row with its key
    is no duplicate)."""
    known = set(ledger_index(ledger))
    out = set()
    for (_, d), rows in readings.items():
        if d >= day:
            continue
        limit = datetime.datetime.combine(d + datetime.timedelta(days=1), datetime.time(), TZ) + datetime.timedelta(minutes=5)
        for _, _, p in rows:
            if p is None or p["device"] not in known or ts_of(p) > limit:
                continue
            v, m = number(p["value"]), METRICS[p["metric"]]
            if v is not None and p["unit"] != m.unit and (p["metric"], p["unit"]) in UNIT_CONVERSIONS:
                scale, offset = UNIT_CONVERSIONS[(p["metric"], p["unit"])]
                v = (v - offset) / scale
            elif p["unit"] != m.unit:
                v = None
            if v is not None and m.lo <= v <= m.hi:
                out.add((p["device"], p["ts"], p["metric"]))
    return out


def detect(readings, ledger, source: str, day: datetime.date) -> dict[str, set[int]]:
    """The design's reading defects, detected independently, as line numbers per defect type. A reading
    already delivered in an earlier day's file is a duplicate (re-sent), not a late reading."""
    known = set(ledger_index(ledger))
    start = datetime.datetime.combine(day, datetime.time(), TZ)
    end = start + datetime.timedelta(days=1)
    found = defaultdict(set)
    seen = set()
    before = earlier_keys(readings, ledger, day)
    last_ts = {}
    for line, _, p in readings[(source, day)]:
        if p is None:
            found["reading_malformed"].add(line)
            continue
        ts = ts_of(p)
        key = (p["device"], p["ts"], p["metric"])
        resent = key in before
        if key in seen or resent:
            found["reading_duplicate"].add(line)
        seen.add(key)
        if p["device"] in last_ts and ts < last_ts[p["device"]]:
            found["reading_out_of_order"].add(line)
        last_ts[p["device"]] = ts
        if ts >= end + datetime.timedelta(minutes=5):
            found["reading_future_timestamp"].add(line)
        if ts < start and not resent:
            found["reading_late"].add(line)
        if p["device"] not in known:
            found["reading_unknown_device"].add(line)
        m = METRICS[p["metric"]]
        if p["unit"] != m.unit:
            assert (p["metric"], p["unit"]) in UNIT_CONVERSIONS, p
            found["reading_unit_mismatch"].add(line)
        else:
            v = number(p["value"])
            if v is None or not PHYSICAL_RANGES[p["metric"]][0] <= v <= PHYSICAL_RANGES[p["metric"]][1]:
                found["reading_impossible_value"].add(line)
    return found


def test_every_reading_defect_is_recorded_once_and_found_where_recorded(lake_dir, ledger, readings):
    out, _ = lake_dir
    truth = read_truth(out, "readings.csv")
    by_file = defaultdict(lambda: defaultdict(set))
    keys = Counter((t["file"], t["row"]) for t in truth)
    assert max(keys.values()) == 1  # one defect per row
    for t in truth:
        by_file[t["file"]][t["defect_type"]].add(int(t["row"]))
    for day in DAYS:
        for source, ext in ((RJSON, "jsonl"), (RCSV, "csv")):
            fname = f"{source}_{day:%Y%m%d}.{ext}"
            assert {t["source"] for t in truth if t["file"] == fname} == {source}
            found = detect(readings, ledger, source, day)
            n = len(readings[(source, day)])
            for defect in READING_DEFECTS:
                assert found[defect] == by_file[fname][defect], (fname, defect,
                                                                 sorted(found[defect] ^ by_file[fname][defect])[:5])
                share = len(found[defect]) / n
                assert 0.0005 < share < 0.03, (fname, defect, share)  # ~0.2-1 % each (unknown: a few devices)


def test_defect_rows_show_their_defect(lake_dir, readings):
    out, _ = lake_dir
    rows = {(source, f"{source}_{day:%Y%m%d}.{'jsonl' if source == RJSON else 'csv'}"): readings[(source, day)]
            for day in DAYS for source in (RJSON, RCSV)}
    by_name = {name: (source, r) for (source, name), r in rows.items()}
    previous_file = {f"{source}_{day:%Y%m%d}.{ext}": f"{source}_{day - datetime.timedelta(days=1):%Y%m%d}.{ext}"
                     for day in DAYS for source, ext in ((RJSON, "jsonl"), (RCSV, "csv"))}
    first_line = {}  # (file, raw line) -> the first line number it appears on
    for name, (_, file_rows) in by_name.items():
        for line, raw, _ in file_rows:
            first_line.setdefault((name, raw), line)
    for t in read_truth(out, "readings.csv"):
        source, file_rows = by_name[t["file"]]
        first = file_rows[0][0]
        line, raw, p = file_rows[int(t["row"]) - first]
        assert line == int(t["row"])
        defect = t["defect_type"]
        if defect == "reading_malformed":
            assert p is None
            if source == RCSV:
                assert len(raw.split(",")) != 5
            continue
        assert p is not None
        if defect == "reading_duplicate":  # the identical earlier row exists, in this file or the day before's
            assert first_line.get((t["file"], raw), line) < line or (previous_file[t["file"]], raw) in first_line
        elif defect == "reading_unit_mismatch":
            m = METRICS[p["metric"]]
            scale, offset = UNIT_CONVERSIONS[(p["metric"], p["unit"])]
            v = (float(p["value"]) - offset) / scale
            assert p["unit"] != m.unit and m.lo <= v <= m.hi
        elif defect == "reading_impossible_value":
            assert p["value"] in ("9999", "NaN", "ERR") or float(p["value"]) < 0


def test_late_readings_are_delivered_exactly_once_and_resent_ones_twice(lake_dir, readings):
    """A late reading of the second day's files is not in the first day's files; a re-sent one (a
    duplicate in the truth with a timestamp of the day before) is, as the identical line."""
    out, _ = lake_dir
    truth = {(t["file"], int(t["row"])): t["defect_type"] for t in read_truth(out, "readings.csv")}
    second = [(f"{src}_{DAYS[1]:%Y%m%d}.{'jsonl' if src == RJSON else 'csv'}", src, line, raw, p)
              for src in (RJSON, RCSV) for line, raw, p in readings[(src, DAYS[1])]]
    previous = [(name, src, line, raw, p) for name, src, line, raw, p in second
                if p is not None and ts_of(p).date() == DAYS[0]]
    late = [x for x in previous if truth.get((x[0], x[2])) == "reading_late"]
    resent = [x for x in previous if truth.get((x[0], x[2])) == "reading_duplicate"]
    assert late and resent and len(late) + len(resent) == len(previous)
    first_day = {(p["device"], p["ts"], p["metric"]) for src in (RJSON, RCSV)
                 for _, _, p in readings[(src, DAYS[0])] if p is not None}
    first_lines = {(src, raw) for src in (RJSON, RCSV) for _, raw, _ in readings[(src, DAYS[0])]}
    assert not {(p["device"], p["ts"], p["metric"]) for *_, p in late} & first_day
    assert all((src, raw) in first_lines for _, src, _, raw, _ in resent)
    # late readings come from the evening before, re-sent ones from its last two hours
    assert all(ts_of(p).hour >= 20 for *_, p in late) and all(ts_of(p).hour >= 22 for *_, p in resent)


# --------------------------------------------------------------------------- device health

def by_reading_day(readings, ledger):
    """Readings a pipeline keeps (well-formed, known device, canonical unit, a possible value, not in the
    future of its delivery day), grouped by reading day and device: {(day, device): [(ts, metric, value)]}."""
    known = set(ledger_index(ledger))
    out = defaultdict(list)
    for (source, delivery), rows in readings.items():
        limit = datetime.datetime.combine(delivery + datetime.timedelta(days=1), datetime.time(), TZ) \
            + datetime.timedelta(minutes=5)
        for _, _, p in rows:
            if p is None or p["device"] not in known or p["unit"] != METRICS[p["metric"]].unit:
                continue
            v = number(p["value"])
            if v is None or not PHYSICAL_RANGES[p["metric"]][0] <= v <= PHYSICAL_RANGES[p["metric"]][1]:
                continue
            ts = ts_of(p)
            if ts < limit:
                out[(ts.date(), p["device"])].append((ts, p["metric"], p["value"]))
    return out


def test_silent_and_flatline_devices_match_the_truth(lake_dir, ledger, readings):
    out, _ = lake_dir
    truth = read_truth(out, "device_health.csv")
    health = {(datetime.date.fromisoformat(t["day"]), t["city_code"]): t for t in truth}
    assert len(health) == len(truth)
    data = by_reading_day(readings, ledger)
    devices = ledger_index(ledger)
    expected = [c for c, r in devices.items() if r["status"] == "在用" and valid_city_code(c)]
    for day in DAYS:
        start = datetime.datetime.combine(day, datetime.time(), TZ)
        silent, flat = set(), set()
        steady = defaultdict(set)  # metric -> devices with one value for 3 hours (legitimate)
        for code in expected:
            rows = sorted(data.get((day, code), []))
            if not rows or rows[-1][0] < start + datetime.timedelta(hours=18):
                silent.add(code)
                continue
            by_metric = defaultdict(list)
            for ts, metric, value in rows:
                by_metric[metric].append((ts, value))
            for metric, series in by_metric.items():
                run_start = 0
                for i in range(1, len(series) + 1):
                    if i == len(series) or series[i][1] != series[run_start][1]:
                        if series[i - 1][0] - series[run_start][0] >= datetime.timedelta(minutes=FLATLINE_MINUTES):
                            if metric in CONTINUOUS_METRICS:
                                flat.add(code)
                            else:
                                steady[metric].add(code)
                        run_start = i
        # every steady metric has devices that read one value for hours on every day, and they are no
        # flat-lining devices of the truth
        assert all(len(steady[m]) >= 3 for m in STEADY_METRICS), (day, {m: len(v) for m, v in steady.items()})
        t_silent = {c for (d, c), t in health.items() if d == day and t["condition"] == "silent"}
        t_flat = {c for (d, c), t in health.items() if d == day and t["condition"] == "flatline"}
        assert silent == t_silent and flat == t_flat, (day, silent ^ t_silent, flat ^ t_flat)
        n = len(expected)
        assert 0.004 * n < len(t_silent) < 0.02 * n + 3
        assert 0 < len(t_flat) < 0.012 * n + 3
        assert all(c[6:8] in FLATLINE_TYPES for c in t_flat)
        assert not set().union(*steady.values()) & t_flat
        for c in t_silent:  # nothing at or after the cut-off; readings before it
            cut = datetime.datetime.fromisoformat(health[(day, c)]["start"])
            assert all(ts < cut for ts, _, _ in data.get((day, c), []))
            assert health[(day, c)]["end"] == f"{day + datetime.timedelta(days=1)}T00:00:00+08:00"
            if cut > start + datetime.timedelta(hours=1):
                assert data.get((day, c)), c
        for c in t_flat:  # every metric constant from start to end, at least 3 hours
            t0 = datetime.datetime.fromisoformat(health[(day, c)]["start"])
            t1 = datetime.datetime.fromisoformat(health[(day, c)]["end"])
            assert t1 - t0 >= datetime.timedelta(hours=3)
            window = [(m, v) for ts, m, v in data[(day, c)] if t0 <= ts <= t1]
            assert len({v for m, v in window if m == window[0][0]}) == 1
            assert len(window) >= 3 * 3600 // DEVICE_TYPES[c[6:8]].interval


def test_second_registrations_in_service_are_silent_all_day(lake_dir, ledger):
    out, _ = lake_dir
    truth = read_truth(out, "iot_defects.csv")
    health = {(t["day"], t["city_code"]): t for t in read_truth(out, "device_health.csv")}
    at = {(name, line): r for name, rows in ledger.items() for line, r in rows}
    for t in truth:
        if t["defect_type"] == "device_registered_twice" and at[(t["file"], int(t["row"]))]["status"] == "在用":
            for day in DAYS:
                h = health[(day.isoformat(), t["record_key"])]
                assert h["condition"] == "silent" and h["start"] == f"{day}T00:00:00+08:00"


# --------------------------------------------------------------------------- plausible values

def test_air_quality_episodes_exceed_the_grade_ii_limit_in_a_few_towns(lake_dir, ledger, readings):
    out, _ = lake_dir
    town = {t["record_key"]: t["town_code"] for t in read_truth(out, "iot_locations.csv")}
    data = by_reading_day(readings, ledger)
    for day in DAYS:
        per_town = defaultdict(list)
        for (d, code), rows in data.items():
            if d == day and code[6:8] == "01" and town.get(code):
                per_town[town[code]].extend(float(v) for _, m, v in rows if m == "pm25")
        means = {t: sum(v) / len(v) for t, v in per_town.items() if v}
        over = [t for t, m in means.items() if m > 75]
        assert 1 <= len(over) <= 5 and len(over) < len(means), (day, means)
        assert all(10 < m < 200 for m in means.values())


def test_flood_points_exceed_their_threshold_in_a_rain_event(lake_dir, ledger, readings):
    devices = ledger_index(ledger)
    data = by_reading_day(readings, ledger)
    for day in DAYS:
        over, dry = 0, 0
        for (d, code), rows in data.items():
            if d != day or code[6:8] != "04":
                continue
            levels = [float(v) for _, _, v in rows]
            if max(levels) > float(devices[code]["alarm_threshold"]):
                over += 1
            else:
                dry += 1
            assert min(levels) >= 0
        assert over >= 1 and dry >= 1, (day, over, dry)


def test_values_are_plausible_per_metric(ledger, readings):
    values = defaultdict(list)
    for (source, day), rows in readings.items():
        for _, _, p in rows:
            if p is not None and p["unit"] == METRICS[p["metric"]].unit and number(p["value"]) is not None:
                values[p["metric"]].append(float(p["value"]))
    median = {m: float(np.median(v)) for m, v in values.items()}
    assert set(median) == set(METRICS)
    bounds = {"pm25": (15, 90), "pm10": (25, 160), "no2": (15, 70), "so2": (2, 15), "o3": (5, 80), "co": (0.3, 1.5),
              "noise": (40, 70), "ph": (6.5, 8.5), "do": (5, 11), "turbidity": (3, 60), "water_level": (0, 15),
              "tilt": (0, 5), "power": (10, 300), "pressure": (0.2, 0.5), "ch4": (0, 3), "supply_temp": (35, 60)}
    for m, (lo, hi) in bounds.items():
        assert lo <= median[m] <= hi, (m, median[m])
