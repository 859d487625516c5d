"""Deterministic synthetic IoT sources for the Daxing data lake: the device ledger and the readings.

The design is ``docs/spatial_iot.md`` (sources, city code, device types, metrics, units, defects);
this module writes sample files that look like the real deliveries, plus the truth that the
pipeline's findings and topics are measured against.

Device ledger (``iot_devices``, CSV GBK, one file per owner department
``iot_devices/iot_devices_<dept>_<YYYYMMDD>.csv``, ``<dept>`` the two-digit department code of the
city code, ``<YYYYMMDD>`` the extract date): about 130,000 devices at scale 1.0 (at least 200) of
the ten types of ``DEVICE_TYPES``, each owned by its department, at true WGS-84 points inside the
22 towns (``sample.basemap.district_boundaries``; delivered in GCJ-02 via ``lake.geo.from_wgs84``).
Status 在用 (93 %), 停用 (4 %) or 维修 (3 %); only 在用 devices report. Rows are sorted by city code.

``city_code`` = ``110115`` + type (2) + department (2) + serial (7, per type and department) + the
ISO 7064 MOD 11-2 check character (``sample.identifiers.cn_id_check_char``).

Ledger defects (``LEDGER_DEFECT_RATES``; one per row; truth in ``truth/iot_defects.csv``, columns
``source, record_key, field, defect_type, file, row`` with ``record_key`` the city code as written
and ``file``/``row`` the file name and line number, header = line 1):

* ``duplicate_city_code`` (field ``city_code``): a second, different device (own serial number and
  place) registered under a code already used; the *later* row of the two in the file is the defect
  row (both rows carry the same record key: ``row`` tells them apart). It never reports (the code's
  readings are the first device's).
* ``device_registered_twice`` (field ``serial_no``): the same physical device (same ``serial_no``,
  same place) registered again by a department that does not own its type and comes after the owner
  in department code order, under that department's code; that row is the defect row. That code never reports: when its status
  is 在用 it is a silent device every day (listed in ``truth/device_health.csv``).
* ``city_code_checksum`` (wrong check character) and ``city_code_format`` (a digit of the serial
  missing or doubled: 17 or 19 characters), field ``city_code``: errors that make the ledger row
  unusable, so these devices never report (and are not expected to).
* ``point_outside_district`` (field ``lon``): the device stands outside the district (0.2-4 km
  beyond its outline); it reports normally.

Ledger locations: ``truth/iot_locations.csv`` (``source, record_key, town_code``), one row per
distinct city code as written (the first row of a duplicated code), ``town_code`` empty outside.

Readings (long format, one metric per row: ``device, ts, metric, value, unit``, all text; ``ts``
ISO 8601 with ``+08:00``) for every day of ``days``: ``iot_readings_json/iot_readings_json_<day>.jsonl``
(types 01-04: air quality, noise, water quality, flood points) and
``iot_readings_csv/iot_readings_csv_<day>.csv`` (types 05-10), both UTF-8. Every 在用 device
with a valid code reports every ``interval`` seconds of its type from its own phase, with ±10 s of
jitter; an air-quality station sends its six metrics with the same ``ts``. Values follow a diurnal
pattern per metric. Every day some towns have an air pollution episode (PM2.5 24-hour mean about
95-140 µg/m³, over the GB 3095-2012 grade II limit of 75) and a rain event that lifts flood points'
water level, about half of them over their alarm threshold. Within a file, rows are grouped in
blocks of devices of one type; within a block they are in report order (nearly time order).

Device health (``truth/device_health.csv``: ``day, city_code, condition, start, end``): about 1 % of
the reporting devices are ``silent`` each day (no reading from ``start`` — midnight, or a time no
later than 18:00 — to the end of the day, ``end`` = next midnight) and 0.5 % ``flatline`` (every
metric constant from the report at ``start`` to the report at ``end``, at least 3 hours apart; only
devices of ``FLATLINE_TYPES``, the types all of whose metrics are ``lake.sensing.CONTINUOUS_METRICS``).
No other reading of a continuous metric repeats one value for 3 hours. The other metrics legitimately
do, and about half of their devices are *steady* (``_STEADY_SHARE``) so that the job is seen not to
flag them: a dry flood point reads 0.0 cm until rain lifts the water over half a centimetre, a closed
manhole cover its resting tilt, a lamp post its rated (dimmed after 23:00) power all night and its
standby power all day, a gas detector in clean air 0.00 %LEL.

Reading defects (``READING_DEFECT_RATES``, exactly one per defect row; truth ``truth/readings.csv``:
``source, file, row, defect_type``, ``file`` the file name, ``row`` the line number: header = line 1
in CSV, first line = 1 in JSON lines). Only rows of normal devices (registered, not silent or
flat-lining that day) carry them:

* ``reading_duplicate``: an exact copy of an earlier row (same device, ts, metric, value, unit),
  after it and before that device's next row; the copy is the defect row. On every day after the
  first generated one, also readings *re-sent* from the day before (``_RESENT_RATE``): exact copies of
  clean rows of the previous day's file from its last two hours (a platform re-sending its buffer after
  a reconnect); they open each block together with the late readings, and the copy in the later file
  is the defect row.
* ``reading_late``: a reading of the day before the delivery day (taken out of the previous day's
  file when that day was generated too, so it is delivered exactly once); late rows open each block.
* ``reading_out_of_order``: a row moved after the device's next report (its ts is earlier than the
  device's previous row in the file); that next report's rows are clean.
* ``reading_future_timestamp``: ts on the day after the delivery day (from 00:10), i.e. after the end
  of the delivery day + 5 min; moved to the end of its block (so it breaks no device's order).
* ``reading_unknown_device``: every row of a few devices that are not in the ledger (valid codes).
* ``reading_unit_mismatch``: the value expressed in a known other unit (``UNIT_CONVERSIONS``:
  µg/m³ -> mg/m³ for pm25/pm10/no2/so2/o3, co in µg/m³, water level in m, pressure in kPa,
  supply temperature in °F).
* ``reading_impossible_value``: negative, 9999, NaN or ERR, outside ``PHYSICAL_RANGES`` (in the
  canonical unit; every clean value is inside).
* ``reading_malformed``: CSV with a wrong field count (unit missing, decimal comma, truncated
  after ts), or a broken JSON line (truncated, no closing brace, single quotes).

Output is a pure function of the arguments: numpy ``Generator``s seeded from ``seed`` and fixed tags
(ledger, day, block), no clock. Rows are built as numpy arrays per block of devices (at most about a
million rows), formatted with pyarrow compute (lookup tables for timestamps and values) and written
block by block, so memory stays bounded. ``truth`` files written here are separate from the population
generator's ``truth/defects.csv`` and ``truth/locations.csv``; the manifest is ``iot_manifest.json``.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from lake import geo
from sample import basemap
from lake.reference import DISTRICT as REF_DISTRICT, SENSING
from sample.common import DAXING_TOWNS, DEFAULT_EXTRACT_DATE
from sample.identifiers import cn_id_check_char
from lake.sensing import CONTINUOUS_METRICS, FLATLINE_MINUTES

__all__ = [
    "BASE_DEVICES",
    "CSV_TYPES",
    "DEPARTMENTS",
    "DEVICE_COLUMNS",
    "DEVICE_TYPES",
    "ENCODINGS",
    "FLATLINE_TYPES",
    "JSON_TYPES",
    "LEDGER_DEFECT_FIELDS",
    "LEDGER_DEFECT_RATES",
    "METRICS",
    "PHYSICAL_RANGES",
    "READING_COLUMNS",
    "READING_DEFECT_RATES",
    "SOURCES",
    "UNIT_CONVERSIONS",
    "city_code",
    "generate_iot",
]

BASE_DEVICES = 130_000  # devices in the ledger at scale 1.0
_MIN_DEVICES = 200
DISTRICT = REF_DISTRICT.code

DEVICES, READINGS_JSON, READINGS_CSV = "iot_devices", "iot_readings_json", "iot_readings_csv"
SOURCES = (DEVICES, READINGS_JSON, READINGS_CSV)
ENCODINGS = {DEVICES: "gbk", READINGS_JSON: "utf-8", READINGS_CSV: "utf-8"}
DEVICE_COLUMNS = ("city_code", "device_name", "device_type", "owner_department", "serial_no", "lon", "lat",
                  "install_date", "status", "alarm_threshold")
READING_COLUMNS = ("device", "ts", "metric", "value", "unit")

# two-digit department code of the city code -> (department, 11-digit department code of the contracts)
DEPARTMENTS = {code: (d.department, d.department_code) for code, d in SENSING.departments.items()}


@dataclass(frozen=True)
class DeviceType:
    code: str
    name: str  # as in device names
    dept: str  # owner department (two-digit code)
    metrics: tuple[str, ...]
    interval: int  # seconds between reports
    share: float  # of all devices
    vendor: str  # serial number prefix


# generator-only: the word in device names, the share of all devices, the vendor's serial prefix; the
# rest (owner department, metrics, report interval) is the reference data's
_TYPE_NAMES = {"01": ("空气质量微站", 0.030, "SL"), "02": ("噪声监测点", 0.025, "AW"), "03": ("水质监测站", 0.010, "HC"),
               "04": ("积水点水位计", 0.020, "YS"), "05": ("智能井盖", 0.300, "JG"), "06": ("智慧灯杆", 0.290, "ZH"),
               "07": ("消火栓", 0.200, "XF"), "08": ("燃气监测点", 0.085, "RQ"), "09": ("热泵机组", 0.020, "RB"),
               "10": ("交通流量检测器", 0.020, "JT")}
DEVICE_TYPES: dict[str, DeviceType] = {
    code: DeviceType(code, _TYPE_NAMES[code][0], t.owner, tuple(t.metrics), t.interval_min * 60, _TYPE_NAMES[code][1],
                     _TYPE_NAMES[code][2])
    for code, t in SENSING.device_types.items()}
JSON_TYPES = ("01", "02", "03", "04")
CSV_TYPES = ("05", "06", "07", "08", "09", "10")
_TYPE_SOURCE = {**{t: READINGS_JSON for t in JSON_TYPES}, **{t: READINGS_CSV for t in CSV_TYPES}}


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # canonical unit
    decimals: int
    lo: float  # physical range in the canonical unit, inclusive
    hi: float
    alt_unit: str = ""  # a known other unit it is sometimes delivered in
    alt_scale: float = 1.0  # value in alt unit = value * alt_scale + alt_offset
    alt_offset: float = 0.0
    alt_decimals: int = 0


_UG = "µg/m³"  # U+00B5 micro sign, as in the design
# generator-only: decimals written, and of the other unit; unit, range and conversion are the reference data's
_DECIMALS = {"pm25": (1, 4), "pm10": (1, 4), "no2": (1, 4), "so2": (1, 4), "o3": (1, 4), "co": (3, 0), "noise": (1, 0),
             "ph": (2, 0), "do": (2, 0), "turbidity": (1, 0), "water_level": (1, 3), "tilt": (2, 0), "power": (1, 0),
             "pressure": (3, 0), "ch4": (2, 0), "supply_temp": (1, 2), "vehicle_count": (0, 0)}


def _metric(name: str) -> Metric:
    m, conv = SENSING.metrics[name], SENSING.unit_conversions.get(name)
    scale, offset = conv.from_canonical if conv else (1.0, 0.0)
    return Metric(name, m.unit, _DECIMALS[name][0], m.min, m.max, conv.unit if conv else "", scale, offset,
                  _DECIMALS[name][1])


METRICS: dict[str, Metric] = {name: _metric(name) for name in SENSING.metrics}
_METRIC_NAMES = tuple(METRICS)
_METRIC_ID = {m: i for i, m in enumerate(_METRIC_NAMES)}
PHYSICAL_RANGES = {m.name: (m.lo, m.hi) for m in METRICS.values()}
# (metric, delivered unit) -> (scale, offset): canonical value = (delivered - offset) / scale
UNIT_CONVERSIONS = {(m.name, m.alt_unit): (m.alt_scale, m.alt_offset) for m in METRICS.values() if m.alt_unit}

LEDGER_DEFECT_RATES = (("duplicate_city_code", 0.001), ("device_registered_twice", 0.001),
                       ("city_code_checksum", 0.002), ("city_code_format", 0.0005),
                       ("point_outside_district", 0.002))
LEDGER_DEFECT_FIELDS = {"duplicate_city_code": "city_code", "device_registered_twice": "serial_no",
                        "city_code_checksum": "city_code", "city_code_format": "city_code",
                        "point_outside_district": "lon"}
_STATUS = (("在用", 0.93), ("停用", 0.04), ("维修", 0.03))
_FLOOD_THRESHOLDS = (15, 20, 25, 27, 30, 40)  # cm (27 cm: a car's exhaust pipe)

# Per-row rates among the rows of normal devices (unit mismatch: among rows of metrics with an other
# unit); reading_unknown_device is the share of extra devices that are not in the ledger.
READING_DEFECT_RATES = (("reading_duplicate", 0.004), ("reading_late", 0.003),
                        ("reading_out_of_order", 0.003), ("reading_future_timestamp", 0.002),
                        ("reading_unknown_device", 0.003), ("reading_unit_mismatch", 0.005),
                        ("reading_impossible_value", 0.003), ("reading_malformed", 0.002))
_R = dict(READING_DEFECT_RATES)
_NONE, _DUP, _LATE, _OOO, _FUTURE, _UNKNOWN, _UNIT, _IMPOSSIBLE, _MALFORMED = range(9)
_DEFECT_NAMES = ("", "reading_duplicate", "reading_late", "reading_out_of_order", "reading_future_timestamp",
                 "reading_unknown_device", "reading_unit_mismatch", "reading_impossible_value",
                 "reading_malformed")
_SILENT_SHARE, _FLATLINE_SHARE, _WHOLE_DAY_SILENT = 0.01, 0.005, 0.4
# Stuck sensors are injected only where a constant value is unambiguous: the types all of whose metrics
# vary continuously (lake.sensing, the same definition jobs.topic.sensing checks); a dry flood point, a closed
# manhole cover, a lamp post at rated power or a gas sensor at zero legitimately read one value for hours.
FLATLINE_TYPES = tuple(t for t, d in DEVICE_TYPES.items() if set(d.metrics) <= set(CONTINUOUS_METRICS))
_STEADY_SHARE = 0.5  # of the devices of the other types: they read one value for hours (see the docstring)
_LATE_WINDOW = 20 * 3600  # late readings come from the last four hours of the previous day
_RESENT_RATE = 0.001  # readings of the previous day's file sent again (among the rows of normal devices)
_RESENT_WINDOW = 22 * 3600  # ... from its last two hours
_JITTER = 10  # seconds
_ROWS_PER_BLOCK = 600_000
_DAY = 86400
_DUP_SPREAD = 2000  # a copy lands at most this many rows after its original

_PLACES = ("兴华大街", "黄村东大街", "金星西路", "兴业大街", "兴政街", "清源路", "林校北路", "康庄路",
           "永华南路", "双河北路", "欣宁街", "红星路", "旧宫东路", "德茂路", "宏业路", "兴丰大街",
           "天华街", "磁各庄路", "京开路", "育英路", "地铁站前", "社区中心", "中心小学", "工业园区",
           "文化广场", "公园", "村委会", "农贸市场")
_URBAN_TOWNS = frozenset({"西红门镇", "旧宫镇", "黄村镇", "瀛海镇", "亦庄镇"})


def city_code(device_type: str, dept: str, serial: int) -> str:
    """The 18-character city code of a device (check character included)."""
    first17 = f"{DISTRICT}{device_type}{dept}{serial:07d}"
    return first17 + cn_id_check_char(first17)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, *tags])


# ----------------------------------------------------------------------------- places

def _inner_points(geom, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uniform points inside ``geom`` (vectorised rejection sampling in its bounds)."""
    xs, ys = [], []
    got = 0
    minx, miny, maxx, maxy = geom.bounds
    fill = max(geom.area / ((maxx - minx) * (maxy - miny)), 0.05)
    shapely.prepare(geom)
    while got < n:
        m = int((n - got) / fill * 1.2) + 16
        x, y = rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)
        ok = shapely.contains_xy(geom, x, y)
        xs.append(x[ok])
        ys.append(y[ok])
        got += int(ok.sum())
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


# ----------------------------------------------------------------------------- the ledger

@dataclass
class _Ledger:
    """Devices that may report (the ledger's devices, then devices the ledger does not know) and the
    ledger rows (devices, plus second registrations)."""
    # per device (index = device id)
    type: np.ndarray  # type code index 0..8
    code: list  # city code used in readings (the correct one)
    registered: np.ndarray  # bool: in the ledger
    reports: np.ndarray  # bool: reports (在用, valid code row; or unknown device)
    town: np.ndarray  # town index 0..21, -1 outside
    phase: np.ndarray  # seconds
    p1: np.ndarray
    p2: np.ndarray
    p3: np.ndarray
    threshold: np.ndarray  # flood alarm threshold (cm), NaN for other types
    ghost_silent: list = field(default_factory=list)  # codes of 在用 second registrations (never report)
    rows: dict = field(default_factory=dict)  # dept -> list of ledger rows (tuples of DEVICE_COLUMNS)
    defects: list = field(default_factory=list)  # (source, record_key, field, defect_type, file, row)
    locations: list = field(default_factory=list)  # (source, record_key, town_code)
    _code_text: pa.Array | None = None

    def code_text(self) -> pa.Array:
        if self._code_text is None:
            self._code_text = pa.array(self.code, pa.string())
        return self._code_text


def _counts(total: int) -> dict[str, int]:
    """Devices per type by share (largest remainder), at least two of each."""
    raw = {t: total * d.share for t, d in DEVICE_TYPES.items()}
    counts = {t: max(2, int(v)) for t, v in raw.items()}
    rest = total - sum(counts.values())
    for t in sorted(raw, key=lambda t: (-(raw[t] - int(raw[t])), t))[:max(rest, 0)]:
        counts[t] += 1
    return counts


def _build_ledger(scale: float, seed: int, extract_date: datetime.date) -> _Ledger:
    rng = _rng(seed, 1)
    total = max(round(BASE_DEVICES * scale), _MIN_DEVICES)
    counts = _counts(total)
    types = sorted(DEVICE_TYPES)
    tidx = np.concatenate([np.full(counts[t], i, dtype=np.int8) for i, t in enumerate(types)])
    n = tidx.size
    rng.shuffle(tidx)
    towns = basemap.district_boundaries()
    areas = np.array([geo.area_km2(b["geometry"]) for b in towns])
    density = np.array([6.0 if b["kind"] == "街道" else 3.0 if b["name"] in _URBAN_TOWNS else 1.0 for b in towns])

    # -- ledger defects: disjoint sets of devices
    n_def = {name: max(1, round(rate * n)) for name, rate in LEDGER_DEFECT_RATES}
    perm = rng.permutation(n)
    cut = np.cumsum([0] + [n_def[name] for name, _ in LEDGER_DEFECT_RATES])
    chosen = {name: np.sort(perm[cut[i]:cut[i + 1]]) for i, (name, _) in enumerate(LEDGER_DEFECT_RATES)}
    # a second registration needs a department after the owner (in code order): not for heat pumps
    last_owner = types.index(max(types, key=lambda t: DEVICE_TYPES[t].dept))
    twice = chosen["device_registered_twice"]
    if (tidx[twice] == last_owner).any():
        spare = np.array([i for i in perm[cut[-1]:] if tidx[i] != last_owner][:int((tidx[twice] == last_owner).sum())])
        chosen["device_registered_twice"] = np.sort(np.concatenate([twice[tidx[twice] != last_owner], spare]))
    outside = np.zeros(n, dtype=bool)
    outside[chosen["point_outside_district"]] = True

    # -- places: towns by type-dependent weights; points inside the town (1 m from its border) or
    # in a ring 0.2-4 km outside the district
    town = np.full(n, -1, dtype=np.int64)
    environmental = tidx <= types.index("04")
    for mask, weight in ((environmental, areas * np.sqrt(density)), (~environmental, areas * density)):
        sel = np.flatnonzero(mask & ~outside)
        town[sel] = rng.choice(len(towns), size=sel.size, p=weight / weight.sum())
    lon = np.zeros(n)
    lat = np.zeros(n)
    for i, b in enumerate(towns):
        sel = np.flatnonzero(town == i)
        if sel.size:
            lon[sel], lat[sel] = _inner_points(b["geometry"].buffer(-1e-5), sel.size, rng)
    outline = basemap.district_outline()
    ring = outline.buffer(0.04).difference(outline.buffer(0.002))
    sel = np.flatnonzero(outside)
    lon[sel], lat[sel] = _inner_points(ring, sel.size, rng)
    glon, glat = geo.from_wgs84(lon, lat, "GCJ02")

    # -- identifiers: serial per (type, owner department) in random order; vendor serial numbers
    serial = np.zeros(n, dtype=np.int64)
    next_serial: dict[tuple[str, str], int] = {}
    for i, t in enumerate(types):
        sel = np.flatnonzero(tidx == i)
        serial[sel] = rng.permutation(sel.size) + 1
        next_serial[(t, DEVICE_TYPES[t].dept)] = sel.size + 1
    codes = [city_code(types[t], DEVICE_TYPES[types[t]].dept, int(s)) for t, s in zip(tidx, serial)]
    first = datetime.date(2016, 1, 1).toordinal()
    last = (extract_date - datetime.timedelta(days=14)).toordinal()
    install = rng.integers(first, last + 1, n)
    install[tidx == 0] = np.maximum(install[tidx == 0], datetime.date(2018, 6, 1).toordinal())
    serial_no_num = rng.choice(10 ** 8, size=n + n_def["duplicate_city_code"], replace=False)
    status_names = [s for s, _ in _STATUS]
    status = rng.choice(len(_STATUS), size=n, p=[w for _, w in _STATUS])
    place = rng.integers(0, len(_PLACES), n)
    threshold = np.full(n, np.nan)
    flood = tidx == types.index("04")
    threshold[flood] = rng.choice(_FLOOD_THRESHOLDS, size=int(flood.sum()))

    def iso(ordinal: int) -> str:
        return datetime.date.fromordinal(int(ordinal)).isoformat()

    def serial_no(i: int, num: int) -> str:
        year = datetime.date.fromordinal(int(install[i])).year
        return f"{DEVICE_TYPES[types[tidx[i]]].vendor}{year}{num:08d}"

    def name_of(i: int, town_i: int) -> str:
        t = DEVICE_TYPES[types[tidx[i]]]
        return f"{DAXING_TOWNS[town_i]}{_PLACES[place[i]]}{t.name}{int(serial[i]) % 10000:04d}"

    def threshold_text(i: int) -> str:
        return "" if math.isnan(threshold[i]) else f"{threshold[i]:g}"

    # -- ledger rows: (sort key, dept, defect or None, values)
    rows: list[tuple[str, int, str, str | None, tuple]] = []
    written_code = list(codes)
    for i in chosen["city_code_checksum"]:
        c = codes[i]
        wrong = [ch for ch in "0123456789X" if ch != c[-1]]
        written_code[i] = c[:-1] + wrong[int(rng.integers(len(wrong)))]
    for i in chosen["city_code_format"]:
        c = codes[i]
        pos = 10 + int(rng.integers(7))  # a digit of the serial
        written_code[i] = c[:pos] + c[pos + 1:] if rng.random() < 0.5 else c[:pos] + c[pos] + c[pos:]
    device_defect: list[str | None] = [None] * n
    for name in ("city_code_checksum", "city_code_format", "point_outside_district"):
        for i in chosen[name]:
            device_defect[i] = name
    for i in range(n):
        t = types[tidx[i]]
        dept = DEVICE_TYPES[t].dept
        name_town = int(town[i]) if town[i] >= 0 else int(rng.integers(len(DAXING_TOWNS)))
        rows.append((written_code[i], 0, dept, device_defect[i], (
            written_code[i], name_of(i, name_town), t, DEPARTMENTS[dept][0], serial_no(i, serial_no_num[i]),
            f"{glon[i]:.6f}", f"{glat[i]:.6f}", iso(install[i]), status_names[status[i]], threshold_text(i))))
    # a different device under an existing code (placed after it: same code, sort rank 1)
    for j, i in enumerate(chosen["duplicate_city_code"]):
        t = types[tidx[i]]
        k = int(rng.integers(len(towns)))
        x, y = _inner_points(towns[k]["geometry"].buffer(-1e-5), 1, rng)
        gx, gy = geo.from_wgs84(x, y, "GCJ02")
        other = int(rng.choice(n))
        rows.append((codes[i], 1, DEVICE_TYPES[t].dept, "duplicate_city_code", (
            codes[i], f"{DAXING_TOWNS[k]}{_PLACES[place[other]]}{DEVICE_TYPES[t].name}{int(serial[i]) % 10000:04d}",
            t, DEPARTMENTS[DEVICE_TYPES[t].dept][0], serial_no(other, serial_no_num[n + j]),
            f"{gx[0]:.6f}", f"{gy[0]:.6f}", iso(install[other]), status_names[status[other]], threshold_text(i))))
    # the same device registered by a department that does not own its type
    ghost_silent = []
    ghost_codes = []
    for i in chosen["device_registered_twice"]:
        t = types[tidx[i]]
        others = sorted(d for d in DEPARTMENTS if d > DEVICE_TYPES[t].dept)
        dept = others[int(rng.integers(len(others)))]
        s = next_serial.get((t, dept), 1)
        next_serial[(t, dept)] = s + 1
        code = city_code(t, dept, s)
        st = status_names[int(rng.choice(len(_STATUS), p=[w for _, w in _STATUS]))]
        name_town = int(town[i]) if town[i] >= 0 else 0
        rows.append((code, 0, dept, "device_registered_twice", (
            code, name_of(i, name_town), t, DEPARTMENTS[dept][0], serial_no(i, serial_no_num[i]),
            f"{glon[i]:.6f}", f"{glat[i]:.6f}", iso(min(last, install[i] + int(rng.integers(30, 700)))), st,
            threshold_text(i))))
        ghost_codes.append((code, int(town[i])))
        if st == "在用":
            ghost_silent.append(code)

    ledger_rows: dict[str, list[tuple]] = {d: [] for d in DEPARTMENTS}
    defects, locations = [], []
    stamp = extract_date.strftime("%Y%m%d")
    seen: set[str] = set()
    town_codes = [b["code"] for b in towns]
    for key, rank, dept, defect, values in sorted(rows, key=lambda r: (r[2], r[0], r[1])):
        ledger_rows[dept].append(values)
        line = len(ledger_rows[dept]) + 1  # header = line 1
        fname = f"{DEVICES}_{dept}_{stamp}.csv"
        if defect is not None:
            defects.append((DEVICES, values[0], LEDGER_DEFECT_FIELDS[defect], defect, fname, line))
    # locations: one per distinct written code (the first row of a duplicated code)
    for i in range(n):
        if written_code[i] not in seen:
            seen.add(written_code[i])
            locations.append((DEVICES, written_code[i], town_codes[town[i]] if town[i] >= 0 else ""))
    for code, t in ghost_codes:
        locations.append((DEVICES, code, town_codes[t] if t >= 0 else ""))

    # -- devices that report although the ledger does not know them
    n_unknown = {t: round(_R["reading_unknown_device"] * counts[t]) for t in types}
    for group, fallback in ((JSON_TYPES, "02"), (CSV_TYPES, "06")):  # at least one in each file
        if not any(n_unknown[t] for t in group):
            n_unknown[fallback] = 1
    u_type = np.concatenate([np.full(n_unknown[t], i, dtype=np.int8) for i, t in enumerate(types)])
    u_codes = []
    for ti in u_type:
        t = types[ti]
        key = (t, DEVICE_TYPES[t].dept)
        u_codes.append(city_code(t, DEVICE_TYPES[t].dept, next_serial[key] + 1000))
        next_serial[key] += 1
    nu = u_type.size
    u_town = rng.integers(0, len(towns), nu)
    u_threshold = np.where(u_type == types.index("04"), 27.0, np.nan)

    all_type = np.concatenate([tidx, u_type])
    code_ok = np.array([w == c for w, c in zip(written_code, codes)])
    reports = np.concatenate([(status == 0) & code_ok, np.ones(nu, dtype=bool)])
    intervals = np.array([DEVICE_TYPES[types[t]].interval for t in all_type])
    m = n + nu
    p1, p2, p3 = _device_params(types, all_type, rng)
    return _Ledger(
        type=all_type, code=codes + u_codes, registered=np.concatenate([np.ones(n, bool), np.zeros(nu, bool)]),
        reports=reports, town=np.concatenate([town, u_town]),
        phase=(rng.random(m) * intervals).astype(np.int64), p1=p1, p2=p2, p3=p3,
        threshold=np.concatenate([threshold, u_threshold]), ghost_silent=sorted(ghost_silent),
        rows=ledger_rows, defects=defects, locations=sorted(locations))


def _device_params(types: list[str], tidx: np.ndarray, rng: np.random.Generator):
    """Per-device constants of the value model (meaning per type, see ``_values``)."""
    m = tidx.size
    p1, p2, p3 = np.zeros(m), np.zeros(m), np.zeros(m)
    u1, u2, u3, g1 = rng.random(m), rng.random(m), rng.random(m), rng.standard_normal(m)
    for i, t in enumerate(types):
        s = tidx == i
        if t not in FLATLINE_TYPES:  # p3 = 1: a steady device (u3 is otherwise unused by these types)
            p3[s] = (u3[s] < _STEADY_SHARE).astype(float)
        if t == "01":  # device factor
            p1[s] = 1 + 0.05 * g1[s]
        elif t == "02":  # dB offset
            p2[s] = -5 + 13 * u2[s]
        elif t == "03":  # pH offset, DO offset, log turbidity
            p1[s], p2[s], p3[s] = 0.3 * g1[s], -1.5 + 2.5 * u2[s], np.log(5 + 35 * u3[s])
        elif t == "04":  # dry level (cm), rain response (x threshold)
            p1[s], p2[s] = 1.5 + 4.5 * u1[s], 0.4 + 1.6 * u2[s]
        elif t == "05":  # resting tilt (deg)
            p1[s] = 0.3 + np.abs(1.2 * g1[s])
        elif t == "06":  # rated lamp power, standby power (W)
            p1[s], p2[s] = 80 + 170 * u1[s], 12 + 23 * u2[s]
        elif t == "07":  # static pressure (MPa)
            p1[s] = 0.28 + 0.14 * u1[s]
        elif t == "08":  # background CH4 (%LEL)
            p1[s] = 0.3 + 1.2 * u1[s]
        elif t == "09":  # supply temperature (°C)
            p1[s] = 40 + 10 * u1[s]
        elif t == "10":  # vehicles per 5 minutes at the evening peak (a road's size), night traffic share
            p1[s], p2[s] = 40 + 260 * u1[s], 0.02 + 0.06 * u2[s]
    return p1, p2, p3


# ----------------------------------------------------------------------------- the day's weather

@dataclass
class _Env:
    pm25: np.ndarray  # (23, 288) µg/m³ by town (22 = outside) and 5-minute slot
    pm10_ratio: np.ndarray  # (23,)
    o3: np.ndarray  # (23, 288)
    no2: np.ndarray  # (288,)
    rain: np.ndarray  # (23, 288) 0..1
    episode_towns: tuple
    rain_towns: tuple


def _env(seed: int, day: datetime.date, ledger: _Ledger) -> _Env:
    rng = _rng(seed, 3, day.toordinal())
    h = (np.arange(288) + 0.5) / 12
    nt = len(DAXING_TOWNS)

    def towns_with(type_index: int) -> np.ndarray:
        sel = (ledger.type == type_index) & ledger.registered & ledger.reports & (ledger.town >= 0)
        return np.unique(ledger.town[sel])

    base = rng.uniform(25, 42)
    diurnal = 1 + 0.25 * np.cos(2 * np.pi * (h - 22) / 24)
    factor = np.append(rng.uniform(0.85, 1.12, nt), 1.0)
    pm25 = base * factor[:, None] * diurnal[None, :]
    o3 = np.tile(15 + 60 * np.maximum(0, np.sin(np.pi * (h - 9) / 10)) * (h >= 9) * (h <= 19), (nt + 1, 1))
    candidates = towns_with(0)
    if candidates.size < 2:
        candidates = np.arange(nt)
    episodes = np.sort(rng.choice(candidates, size=min(int(rng.integers(2, 5)), candidates.size), replace=False))
    for t in episodes:
        dur = rng.uniform(12, 20)
        start = rng.uniform(0, 24 - dur)
        bump = np.where((h >= start) & (h <= start + dur), np.sin(np.pi * (h - start) / dur), 0.0)
        target = rng.uniform(95, 140)
        a = (target - pm25[t].mean()) / (pm25[t] * bump).mean()
        pm25[t] *= 1 + a * bump
        o3[t] *= 1 - 0.5 * bump
    no2 = 22 + 18 * (np.exp(-((h - 8) / 1.5) ** 2) + np.exp(-((h - 18.5) / 2) ** 2))
    rain = np.zeros((nt + 1, 288))
    candidates = towns_with(3)
    if candidates.size < 2:
        candidates = np.arange(nt)
    rain_towns = np.sort(rng.choice(candidates, size=min(int(rng.integers(2, 5)), candidates.size), replace=False))
    for t in rain_towns:
        start, plateau, intensity = rng.uniform(8, 17), rng.uniform(1, 3), rng.uniform(0.85, 1.0)
        x = h - start
        rain[t] = intensity * np.where(x < 0, 0.0, np.where(x < 1, x, np.where(
            x < 1 + plateau, 1.0, np.exp(-(x - 1 - plateau) / 0.8))))
    return _Env(pm25=pm25, pm10_ratio=np.append(rng.uniform(1.4, 1.9, nt), 1.6), o3=o3, no2=no2, rain=rain,
                episode_towns=tuple(int(t) for t in episodes), rain_towns=tuple(int(t) for t in rain_towns))


def _values(type_code: str, dev: np.ndarray, t: np.ndarray, ledger: _Ledger, env: _Env,
            rng: np.random.Generator) -> np.ndarray:
    """Clean values, shape ``t.shape + (metrics,)``, for devices ``dev`` (columns of ``t``) at
    seconds ``t`` of the day."""
    shape = t.shape
    h = t / 3600.0
    slot = np.clip(t // 300, 0, 287).astype(np.int64)
    town = np.where(ledger.town[dev] >= 0, ledger.town[dev], len(DAXING_TOWNS))[None, :]
    p1, p2, p3 = ledger.p1[dev][None, :], ledger.p2[dev][None, :], ledger.p3[dev][None, :]

    def noise(sd: float) -> np.ndarray:
        return rng.normal(0.0, sd, shape)

    if type_code == "01":
        base = env.pm25[town, slot]
        pm25 = base * p1 * (1 + noise(0.06))
        out = [pm25, pm25 * env.pm10_ratio[town] * (1 + noise(0.05)),
               (env.no2[slot] + 0.12 * base) * p1 * (1 + noise(0.08)),
               (3 + 0.03 * base) * (1 + noise(0.1)), env.o3[town, slot] * (1 + noise(0.08)) + np.abs(noise(1.0)),
               (0.3 + 0.009 * base) * (1 + noise(0.06))]
    elif type_code == "02":
        out = [np.where((h >= 7) & (h < 22), 57.0, 46.0) + p2 + noise(2.0)]
    elif type_code == "03":
        wave = np.sin(2 * np.pi * (h - 9) / 24)
        out = [7.5 + p1 + 0.12 * wave + noise(0.03), 8 + p2 + 1.2 * wave + noise(0.15),
               np.exp(p3) * (1 + noise(0.08))]
    elif type_code == "04":  # steady: an ultrasonic gauge over a dry road reads 0 until there is water
        thr = ledger.threshold[dev][None, :]
        wet = p2 * thr * env.rain[town, slot]
        out = [np.where(p3 > 0, np.where(wet > 0.5, wet + noise(0.4), 0.0), p1 + noise(0.4) + wet)]
    elif type_code == "05":  # steady: a closed cover at its resting angle
        out = [np.where(p3 > 0, p1, p1 + noise(0.08))]
    elif type_code == "06":  # steady: a constant-current LED driver
        night = (h < 6.75) | (h >= 17.0)
        dim = np.where((h >= 23) | (h < 5), 0.6, 1.0)
        jitter = np.where(p3 > 0, 0.0, 1.0)
        out = [np.where(night, p1 * dim * (1 + jitter * noise(0.015)), p2 + jitter * noise(0.8))]
    elif type_code == "07":
        demand = np.exp(-((h - 8) / 1.0) ** 2) + np.exp(-((h - 19.5) / 1.5) ** 2)
        out = [p1 - 0.03 * demand + noise(0.004)]
    elif type_code == "08":  # steady: clean air, below the detector's resolution
        out = [np.where(p3 > 0, 0.0, p1 + noise(0.12))]
    elif type_code == "09":
        out = [p1 + 2.5 * np.cos(2 * np.pi * (h - 4) / 24) + noise(0.3)]
    elif type_code == "10":  # whole vehicles: morning and evening peaks, a quiet road counts none at night
        peaks = 0.85 * np.exp(-((h - 8) / 1.2) ** 2) + np.exp(-((h - 18) / 1.5) ** 2)
        day = np.clip(np.sin(np.pi * (h - 5.5) / 17.5), 0.0, None) * 0.45
        mean = p1 * (p2 + day + peaks)
        quiet = (p3 > 0) & ((h < 5) | (h >= 23.5))
        out = [np.where(quiet, 0.0, np.round(np.maximum(mean + noise(1.0) * np.sqrt(mean + 1), 0.0)))]
    else:
        raise ValueError(f"no value model for device type {type_code} (sample/generate_iot.py _values)")
    values = np.stack(out, axis=-1)
    for k, name in enumerate(DEVICE_TYPES[type_code].metrics):
        m = METRICS[name]
        values[..., k] = np.clip(values[..., k], m.lo, m.hi)
    return values


# ----------------------------------------------------------------------------- device health

@dataclass
class _Health:
    silent_from: np.ndarray  # seconds; -1 = not silent (0 = the whole day)
    flat: np.ndarray  # bool
    flat_start: np.ndarray  # uniform 0..1: where the flat window starts
    flat_extra: np.ndarray  # uniform 0..1: how much longer than 3 hours it lasts

    def normal(self) -> np.ndarray:
        return (self.silent_from < 0) & ~self.flat


def _health(seed: int, day: datetime.date, ledger: _Ledger) -> _Health:
    rng = _rng(seed, 4, day.toordinal())
    m = ledger.type.size
    u, whole, cut, fs, fe = (rng.random(m) for _ in range(5))
    eligible = ledger.reports & ledger.registered
    silent = eligible & (u < _SILENT_SHARE)
    flat_type = np.isin(ledger.type, [sorted(DEVICE_TYPES).index(t) for t in FLATLINE_TYPES])
    p_flat = _FLATLINE_SHARE * eligible.sum() / max(1, (eligible & flat_type).sum())  # 0.5 % of all devices
    flat = eligible & flat_type & (u >= _SILENT_SHARE) & (u < _SILENT_SHARE + p_flat)
    silent_from = np.where(silent, np.where(whole < _WHOLE_DAY_SILENT, 0, (cut * 18 * 3600).astype(np.int64)), -1)
    return _Health(silent_from=silent_from, flat=flat, flat_start=fs, flat_extra=fe)


# ----------------------------------------------------------------------------- formatting tables

class _Tables:
    """Lookup tables: the text of every timestamp of three days around a day, and of every value
    of every metric at its resolution."""

    def __init__(self) -> None:
        s = np.arange(_DAY)
        self._hms = [f"{a:02d}:{b:02d}:{c:02d}" for a, b, c in zip(s // 3600, (s // 60) % 60, s % 60)]
        self.value_offset: dict[str, int] = {}
        self.value_lo: dict[str, int] = {}
        self.value_hi: dict[str, int] = {}
        texts: list[str] = []
        for name, m in METRICS.items():
            scale = 10 ** m.decimals
            lo, hi = round(m.lo * scale), round(m.hi * scale)
            self.value_offset[name] = len(texts)
            self.value_lo[name], self.value_hi[name] = lo, hi
            texts.extend(f"{v / scale:.{m.decimals}f}" for v in range(lo, hi + 1))
        self.values = pa.array(texts, pa.string())
        units = sorted({m.unit for m in METRICS.values()} | {m.alt_unit for m in METRICS.values() if m.alt_unit})
        self.unit_id = {u: i for i, u in enumerate(units)}
        self.units = pa.array(units, pa.string())
        self.units_nl = pa.array([u + "\n" for u in units], pa.string())
        self.metrics = pa.array(list(_METRIC_NAMES), pa.string())
        self._day: datetime.date | None = None
        self.ts: pa.Array | None = None

    def for_day(self, day: datetime.date) -> pa.Array:
        """Timestamps of ``day - 1`` .. ``day + 1``: index = seconds since ``day`` 00:00 + 86400."""
        if self._day != day:
            texts = []
            for d in (day - datetime.timedelta(days=1), day, day + datetime.timedelta(days=1)):
                prefix = d.isoformat() + "T"
                texts.extend(prefix + hms + "+08:00" for hms in self._hms)
            self.ts, self._day = pa.array(texts, pa.string()), day
        return self.ts

    def value_index(self, metric_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        out = np.zeros(values.size, dtype=np.int64)
        for mid in np.unique(metric_ids):
            name = _METRIC_NAMES[mid]
            sel = metric_ids == mid
            v = np.rint(values[sel] * 10 ** METRICS[name].decimals).astype(np.int64)
            out[sel] = np.clip(v, self.value_lo[name], self.value_hi[name]) - self.value_lo[name] + self.value_offset[name]
        return out


def ts_text(day: datetime.date, seconds: int) -> str:
    """ISO 8601 text of ``seconds`` after ``day`` 00:00 (Beijing time)."""
    return (datetime.datetime.combine(day, datetime.time()) + datetime.timedelta(seconds=int(seconds))
            ).isoformat() + "+08:00"


# ----------------------------------------------------------------------------- blocks of readings

@dataclass(frozen=True)
class _Block:
    key: tuple[int, int]  # (type index, block number): stable across days
    type_code: str
    devices: np.ndarray  # device ids, in phase order


def _blocks(ledger: _Ledger) -> list[_Block]:
    out = []
    for i, t in enumerate(sorted(DEVICE_TYPES)):
        d = DEVICE_TYPES[t]
        devs = np.flatnonzero((ledger.type == i) & ledger.reports)
        devs = devs[np.lexsort((devs, ledger.phase[devs]))]
        size = max(1, _ROWS_PER_BLOCK // ((_DAY // d.interval) * len(d.metrics)))
        for b, start in enumerate(range(0, devs.size, size)):
            out.append(_Block((i, b), t, devs[start:start + size]))
    return out


@dataclass
class _Rows:
    """Readings as columns: device id, seconds since the delivery day's midnight, metric id, value."""
    dev: np.ndarray
    t: np.ndarray
    metric: np.ndarray
    value: np.ndarray

    def take(self, idx: np.ndarray) -> "_Rows":
        return _Rows(self.dev[idx], self.t[idx], self.metric[idx], self.value[idx])

    @staticmethod
    def concat(parts: Sequence["_Rows"]) -> "_Rows":
        return _Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("dev", "t", "metric", "value")))

    @staticmethod
    def empty() -> "_Rows":
        return _Rows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))


@dataclass
class _Grid:
    """A block's reports of one day as a (report, device) grid, its rows flattened in report order."""
    t: np.ndarray  # (K, nd) seconds
    valid: np.ndarray  # (K, nd) the report exists
    pos: np.ndarray  # (K, nd, nm) row position, -1 if none
    rows: _Rows
    k: np.ndarray  # per row: report index
    j: np.ndarray  # per row: device column
    mi: np.ndarray  # per row: metric index within the type


def _grid(block: _Block, day: datetime.date, ledger: _Ledger, env: _Env, health: _Health,
          rng: np.random.Generator, t_from: int = 0, truth: list | None = None) -> _Grid:
    d = DEVICE_TYPES[block.type_code]
    dev = block.devices
    nd, nm, step = dev.size, len(d.metrics), d.interval
    K = -(-_DAY // step)
    k = np.arange(K)[:, None]
    nominal = ledger.phase[dev][None, :] + k * step
    t = np.clip(nominal + rng.integers(-_JITTER, _JITTER + 1, (K, nd)), 0, _DAY - 1)
    valid = (nominal < _DAY) & (t >= t_from)
    cut = health.silent_from[dev][None, :]
    valid &= ~((cut >= 0) & (t >= cut))
    values = _values(block.type_code, dev, t, ledger, env, rng)
    # flat-lining devices: every metric frozen at the first report of a window of >= 3 hours
    nrep = (_DAY - 1 - ledger.phase[dev]) // step + 1
    for col in np.flatnonzero(health.flat[dev]):
        g = dev[col]
        span = -(-(FLATLINE_MINUTES * 60 + 4 * _JITTER) // step) + 1  # reports covering at least 3 hours
        span += int(health.flat_extra[g] * (5 * 3600 // step))
        span = min(span, int(nrep[col]))
        k0 = int(health.flat_start[g] * (nrep[col] - span + 1))
        values[k0:k0 + span, col, :] = values[k0, col, :]
        if truth is not None:
            truth.append((day.isoformat(), ledger.code[g], "flatline", ts_text(day, t[k0, col]),
                          ts_text(day, t[k0 + span - 1, col])))
    if truth is not None:
        for col in np.flatnonzero(health.silent_from[dev] >= 0):
            g = dev[col]
            truth.append((day.isoformat(), ledger.code[g], "silent", ts_text(day, health.silent_from[g]),
                          ts_text(day, _DAY)))
    valid3 = np.broadcast_to(valid[:, :, None], (K, nd, nm))
    pos = np.full((K, nd, nm), -1, dtype=np.int64)
    n = int(valid3.sum())
    pos[valid3] = np.arange(n)
    kk, jj, mm = np.nonzero(valid3)  # row-major: report, then device, then metric
    metric_ids = np.array([_METRIC_ID[m] for m in d.metrics])
    rows = _Rows(dev[jj], t[kk, jj], metric_ids[mm], values[kk, jj, mm])
    return _Grid(t=t, valid=valid, pos=pos, rows=rows, k=kk, j=jj, mi=mm)


@dataclass
class _BlockOut:
    lines: pa.Array  # one string per row, newline included
    defects: np.ndarray  # defect code per row
    withheld: _Rows  # readings kept back for the next day's file (t relative to that day)
    resent: _Rows  # readings of this file sent again in the next day's file (t relative to that day)


def _block_day(block: _Block, day: datetime.date, ledger: _Ledger, env: _Env, health: _Health,
               late: _Rows, resent: _Rows, withhold: bool, tables: _Tables, seed: int,
               health_truth: list) -> _BlockOut:
    """One block's rows of one day's file, defects injected, formatted. ``late`` and ``resent`` are the
    previous day's readings withheld from its file and re-sent from it (t relative to ``day``)."""
    rng = _rng(seed, 2, day.toordinal(), *block.key)
    g = _grid(block, day, ledger, env, health, rng, truth=health_truth)
    r = g.rows
    n = r.t.size
    K, nd, nm = g.pos.shape
    normal = ledger.registered[r.dev] & health.normal()[r.dev]
    code = np.zeros(n, dtype=np.int8)
    u = rng.random(n)
    has_alt = np.array([bool(METRICS[name].alt_unit) for name in _METRIC_NAMES])[r.metric]
    edges = np.cumsum([_R["reading_out_of_order"], _R["reading_future_timestamp"], _R["reading_unit_mismatch"],
                       _R["reading_impossible_value"], _R["reading_malformed"]])
    picked = np.searchsorted(edges, u, side="right")  # 0..4, 5 = none
    for i, c in enumerate((_OOO, _FUTURE, _UNIT, _IMPOSSIBLE, _MALFORMED)):
        code[normal & (picked == i)] = c
    code[(code == _UNIT) & ~has_alt] = _NONE
    # out of order: the device's next report must exist; its rows stay clean
    nxt_valid = np.zeros(n, dtype=bool)
    inside = g.k + 1 < K
    nxt_valid[inside] = g.valid[g.k[inside] + 1, g.j[inside]]
    ooo = (code == _OOO) & nxt_valid
    # at most one per report: a second row moved with it would follow a row with its own ts
    first_of_report = np.zeros(n, dtype=bool)
    cand = np.flatnonzero(ooo)
    first_of_report[cand[np.unique(g.k[cand] * nd + g.j[cand], return_index=True)[1]]] = True
    ooo &= first_of_report

    def protected_by(mask: np.ndarray) -> np.ndarray:
        p = np.zeros(n, dtype=bool)
        idx = g.pos[g.k[mask] + 1, g.j[mask], :].ravel()
        p[idx[idx >= 0]] = True
        return p

    ooo &= ~protected_by(ooo)
    protected = protected_by(ooo)
    code[(code == _OOO) & ~ooo] = _NONE
    code[protected] = _NONE
    code[~ledger.registered[r.dev]] = _UNKNOWN
    clean = normal & (code == _NONE) & ~protected
    dup = clean & (rng.random(n) < _R["reading_duplicate"])
    held = np.zeros(n, dtype=bool)
    again = np.zeros(n, dtype=bool)
    if withhold:
        cand = clean & ~dup & (r.t >= _LATE_WINDOW)
        p = min(1.0, _R["reading_late"] * normal.sum() / max(1, cand.sum()))
        held = cand & (rng.random(n) < p)
        cand = clean & ~dup & ~held & (r.t >= _RESENT_WINDOW)
        p = min(1.0, _RESENT_RATE * normal.sum() / max(1, cand.sum()))
        again = cand & (rng.random(n) < p)
    withheld = r.take(np.flatnonzero(held))
    withheld.t = withheld.t - _DAY
    sent_again = r.take(np.flatnonzero(again))
    sent_again.t = sent_again.t - _DAY

    # -- order of the file: rows stay in place; copies and moved rows are inserted by key
    future = np.flatnonzero(code == _FUTURE)
    t_all = r.t.copy()
    t_all[future] = _DAY + rng.integers(600, _DAY, future.size)
    base = np.flatnonzero(~((code == _OOO) | (code == _FUTURE) | held))
    dup_i = np.flatnonzero(dup)
    next_pos = np.full(n, n, dtype=np.int64)  # base position of the device's next row
    last_metric = g.mi == nm - 1
    next_pos[~last_metric] = np.arange(n)[~last_metric] + 1
    lm = np.flatnonzero(last_metric & nxt_valid)
    next_pos[lm] = g.pos[g.k[lm] + 1, g.j[lm], 0]
    span = np.minimum(next_pos[dup_i] - dup_i - 1, _DUP_SPREAD)
    dup_key = dup_i + 0.5 + np.floor(rng.random(dup_i.size) * (span + 1)).clip(max=span)
    ooo_i = np.flatnonzero(code == _OOO)
    ooo_key = g.pos[g.k[ooo_i] + 1, g.j[ooo_i], nm - 1] + 0.25
    future = future[np.lexsort((future, t_all[future]))]
    future_key = n + np.arange(future.size, dtype=np.float64)
    # the previous day's readings open the block in time order: late ones and re-sent copies
    opening = _Rows.concat([late, resent])
    opening_kind = np.concatenate([np.full(late.t.size, _LATE), np.full(resent.t.size, _DUP)]).astype(np.int8)
    nl = opening.t.size
    late_order = np.lexsort((opening.dev, opening.t))
    late_src = n + late_order
    late_key = -float(nl) + np.arange(nl, dtype=np.float64)
    keys = np.concatenate([dup_key, ooo_key, future_key, late_key])
    src = np.concatenate([dup_i, ooo_i, future, late_src])
    kinds = np.concatenate([np.full(dup_i.size, _DUP), np.full(ooo_i.size, _OOO), np.full(future.size, _FUTURE),
                            opening_kind[late_order]]).astype(np.int8)
    o = np.argsort(keys, kind="stable")
    at = np.searchsorted(base, keys[o])
    order = np.insert(base, at, src[o])
    defects = np.insert(code[base], at, kinds[o])

    # -- columns of the output rows
    rows = _Rows.concat([_Rows(r.dev, t_all, r.metric, r.value), opening]).take(order)
    ts = tables.for_day(day).take(pa.array(rows.t + _DAY))
    vtext = tables.values.take(pa.array(tables.value_index(rows.metric, rows.value)))
    unit_ids = np.array([tables.unit_id[METRICS[name].unit] for name in _METRIC_NAMES])[rows.metric]
    special = np.flatnonzero((defects == _UNIT) | (defects == _IMPOSSIBLE))
    if special.size:
        replacement = []
        choice = rng.integers(0, 4, special.size)
        for s, c in zip(special, choice):
            m = METRICS[_METRIC_NAMES[rows.metric[s]]]
            v = float(rows.value[s])
            if defects[s] == _UNIT:
                unit_ids[s] = tables.unit_id[m.alt_unit]
                replacement.append(f"{v * m.alt_scale + m.alt_offset:.{m.alt_decimals}f}")
            elif c == 0:  # negative (below -20 °C for temperatures: below any supply temperature)
                replacement.append("-999.9" if m.lo < 0 else f"{-(abs(v) + 1):.{m.decimals}f}")
            else:
                replacement.append(("9999", "NaN", "ERR")[c - 1])
        mask = np.zeros(order.size, dtype=bool)
        mask[special] = True
        vtext = pc.replace_with_mask(vtext, pa.array(mask), pa.array(replacement, pa.string()))
    device_text = ledger.code_text().take(pa.array(rows.dev))
    metric_text = tables.metrics.take(pa.array(rows.metric))
    json_file = _TYPE_SOURCE[block.type_code] == READINGS_JSON
    if json_file:
        lines = pc.binary_join_element_wise(
            '{"device": "', device_text, '", "ts": "', ts, '", "metric": "', metric_text, '", "value": "', vtext,
            '", "unit": "', tables.units.take(pa.array(unit_ids)), '"}\n', "")
    else:
        lines = pc.binary_join_element_wise(device_text, ts, metric_text, vtext,
                                            tables.units_nl.take(pa.array(unit_ids)), ",")
    bad = np.flatnonzero(defects == _MALFORMED)
    if bad.size:
        choice = rng.integers(0, 3, bad.size)
        cut = rng.random(bad.size)
        broken = []
        for s, c, x in zip(bad, choice, cut):
            line = lines[int(s)].as_py()[:-1]
            if json_file:
                if c == 0:  # truncated (no closing brace)
                    broken.append(line[:int(len(line) * (0.3 + 0.6 * x))])
                elif c == 1:
                    broken.append(line[:-1])
                else:
                    broken.append(line.replace('"', "'"))
            else:
                parts = line.split(",")
                if c == 0:  # unit missing
                    broken.append(",".join(parts[:4]))
                elif c == 1:  # decimal comma (a whole count such as vehicles written 12,0)
                    v = parts[3].replace(".", ",") if "." in parts[3] else parts[3] + ",0"
                    broken.append(",".join(parts[:3] + [v] + parts[4:]))
                else:  # cut after ts
                    broken.append(",".join(parts[:2]))
        mask = np.zeros(order.size, dtype=bool)
        mask[bad] = True
        lines = pc.replace_with_mask(lines, pa.array(mask), pa.array([b + "\n" for b in broken], pa.string()))
    return _BlockOut(lines=lines, defects=defects, withheld=withheld, resent=sent_again)


def _previous_day_tail(block: _Block, day: datetime.date, ledger: _Ledger, seed: int, env: _Env,
                       health: _Health) -> _Rows:
    """Late readings for ``day``'s file when the day before was not generated: rows of the last four
    hours of the day before (normal devices only; ``env`` and ``health`` are that day's), t relative
    to ``day``."""
    prev = day - datetime.timedelta(days=1)
    rng = _rng(seed, 5, prev.toordinal(), *block.key)
    g = _grid(block, prev, ledger, env, health, rng, t_from=_LATE_WINDOW)
    r = g.rows
    normal = ledger.registered[r.dev] & health.normal()[r.dev]
    expected = normal.sum() * _DAY / (_DAY - _LATE_WINDOW)  # rows of a whole day
    p = min(1.0, _R["reading_late"] * expected / max(1, normal.sum()))
    rows = r.take(np.flatnonzero(normal & (rng.random(r.t.size) < p)))
    rows.t = rows.t - _DAY
    return rows


# ----------------------------------------------------------------------------- writing

class _File:
    """A file written from byte blocks, with its line count and checksum."""

    def __init__(self, out: Path, relpath: str, source: str, encoding: str, fmt: str) -> None:
        self.relpath, self.source, self.encoding, self.format = relpath, source, encoding, fmt
        self.path = out / relpath
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("wb")
        self._sha = hashlib.sha256()
        self.rows = 0

    def write(self, data) -> None:
        self._fh.write(data)
        self._sha.update(data)

    def write_lines(self, lines: pa.Array) -> None:
        """Write a string array whose every element ends with a newline, straight from its buffer."""
        if len(lines) == 0:
            return
        lines = pc.cast(lines, pa.string()) if lines.type != pa.string() else lines
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
        self.write(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])
        self.rows += len(lines)

    def close(self) -> dict:
        self._fh.close()
        return {"source": self.source, "path": self.relpath, "encoding": self.encoding, "format": self.format,
                "rows": self.rows, "sha256": self._sha.hexdigest()}


def _write_ledger(out: Path, ledger: _Ledger, stamp: str) -> list[dict]:
    import csv
    import io

    entries = []
    for dept in sorted(ledger.rows):
        f = _File(out, f"{DEVICES}/{DEVICES}_{dept}_{stamp}.csv", DEVICES, ENCODINGS[DEVICES], "csv")
        buf = io.StringIO(newline="")
        writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(DEVICE_COLUMNS)
        writer.writerows(ledger.rows[dept])
        f.write(buf.getvalue().encode(ENCODINGS[DEVICES]))
        f.rows = len(ledger.rows[dept])
        entries.append(f.close())
    return entries


def _write_csv(path: Path, header: Sequence[str], rows) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate_iot(scale: float, seed: int, out: Path, days: Sequence[datetime.date] | None = None,
                 extract_date: datetime.date = DEFAULT_EXTRACT_DATE,
                 progress: Callable[[str, int], None] | None = None) -> dict:
    """Write the device ledger (extract date ``extract_date``), the readings of every day of ``days``
    (default: the extract date), the truth files and ``out/iot_manifest.json``; return the manifest.

    ``scale`` 1.0 is the district's size: about 130,000 devices and about 20 million readings a day.
    ``progress(path, rows)`` is called as each file is finished. Truth: ``truth/iot_defects.csv``,
    ``truth/iot_locations.csv``, ``truth/device_health.csv``, ``truth/readings.csv``.
    """
    if not scale > 0:
        raise ValueError("scale must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    days = sorted(set(days)) if days else [extract_date]
    ledger = _build_ledger(scale, seed, extract_date)
    files = _write_ledger(out, ledger, extract_date.strftime("%Y%m%d"))
    if progress is not None:
        for e in files:
            progress(e["path"], e["rows"])
    _write_csv(out / "truth" / "iot_defects.csv", ("source", "record_key", "field", "defect_type", "file", "row"),
               ledger.defects)
    _write_csv(out / "truth" / "iot_locations.csv", ("source", "record_key", "town_code"), ledger.locations)

    tables = _Tables()
    blocks = _blocks(ledger)
    carry: dict[tuple[int, int], tuple[_Rows, _Rows]] = {}
    readings_truth: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    health_truth: list[tuple] = []
    generated = set(days)
    for day in days:
        env = _env(seed, day, ledger)
        health = _health(seed, day, ledger)
        withhold = (day + datetime.timedelta(days=1)) in generated
        previous = day - datetime.timedelta(days=1)
        before = None if previous in generated else (_env(seed, previous, ledger), _health(seed, previous, ledger))
        stamp = day.strftime("%Y%m%d")
        for source, ext, type_codes in ((READINGS_JSON, "jsonl", JSON_TYPES), (READINGS_CSV, "csv", CSV_TYPES)):
            f = _File(out, f"{source}/{source}_{stamp}.{ext}", source, ENCODINGS[source], ext)
            header = 0
            if ext == "csv":
                f.write((",".join(READING_COLUMNS) + "\n").encode())
                header = 1
            for block in blocks:
                if block.type_code not in type_codes:
                    continue
                if before is None:  # the day before was generated: its withheld and re-sent readings
                    late, resent = carry.pop(block.key)
                else:
                    late, resent = _previous_day_tail(block, day, ledger, seed, *before), _Rows.empty()
                res = _block_day(block, day, ledger, env, health, late, resent, withhold, tables, seed, health_truth)
                if withhold:
                    carry[block.key] = (res.withheld, res.resent)
                hit = np.flatnonzero(res.defects != _NONE)
                readings_truth.append((source, f.path.name, hit + f.rows + 1 + header, res.defects[hit]))
                f.write_lines(res.lines)
            files.append(f.close())
            if progress is not None:
                progress(files[-1]["path"], files[-1]["rows"])
        health_truth.extend((day.isoformat(), c, "silent", ts_text(day, 0), ts_text(day, _DAY))
                            for c in ledger.ghost_silent)

    _write_readings_truth(out / "truth" / "readings.csv", readings_truth)
    _write_csv(out / "truth" / "device_health.csv", ("day", "city_code", "condition", "start", "end"),
               sorted(health_truth))
    manifest = {
        "generator": {"scale": scale, "seed": seed, "extract_date": extract_date.isoformat(),
                      "days": [d.isoformat() for d in days]},
        "files": files,
    }
    (out / "iot_manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_readings_truth(path: Path, parts: list[tuple[str, str, np.ndarray, np.ndarray]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.array(_DEFECT_NAMES, dtype=object)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write("source,file,row,defect_type\n")
        for source, fname, rows, codes in sorted(parts, key=lambda p: (p[0], p[1])):
            if rows.size:
                prefix = f"{source},{fname},"
                fh.write("".join(f"{prefix}{r},{d}\n" for r, d in zip(rows.tolist(), names[codes].tolist())))
