"""IoT sensing (docs/spatial_iot.md): the device ledger, the daily readings, device health and the
IoT topic tables.

- ``build_devices``: ``base.iot_device`` from ``raw/iot_devices`` (each department's newest ledger
  file on or before ``as_of``): coordinates GCJ-02 -> WGS-84 (``lake.geo.to_wgs84``), town assigned
  against ``base.admin_boundary`` (``lake.geo.assign_units``), findings ``duplicate_city_code``,
  ``device_registered_twice`` and ``point_outside_district``; published through the gate.
- ``ingest_readings``: one delivery day of ``iot_readings_json`` / ``iot_readings_csv``. Each file is
  hashed, split into lines with numpy (no per-line Python) and staged as Parquet (``_row``, ``line``);
  Spark parses the lines with native expressions (``from_json`` / ``split``, casts), checks them and
  classifies every row as kept (``base/iot_reading``, partitioned by the reading day), a duplicate
  (counted, listed in ``quality/iot_reading_duplicates``: a second copy within the delivery, or a
  reading already stored from an earlier delivery day, found against the affected day partitions
  only) or quarantined (``quarantine/<source>`` with file, row, rule and reason). Per-file counts go
  to ``quality/iot_reading_counts`` and reconcile: rows read = kept + duplicates + quarantined. Every
  write replaces exactly the delivery day's rows; a re-run with the same files, ledger and rules
  writes nothing. The earliest delivery's copy of a reading is kept whatever the processing order: a
  delivery ingested after later ones re-processes those it affects, in delivery-day order.
- ``device_health`` and ``build_topics``: ``topic.device_health``, ``topic.device_online_rate``,
  ``topic.air_quality_hourly``, ``topic.air_quality_exceedance``, ``topic.flood_points`` and
  ``topic.sensor_coverage_by_town`` for the affected reading days, each through the partition gate
  (``quality.gates.publish_partition``).
- ``run_day``: ledger (if its inputs changed) -> readings -> health -> topics, with seconds and rows/s
  per stage. ``evaluate``: precision and recall per defect type against the generator's truth.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from lake import contracts as contracts_mod
from lake import io, landing, locks, rules, tables
from lake.files import InputError
from lake.log import log
from lake.sensing import CONTINUOUS_METRICS, FLATLINE_MINUTES
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings, gates

# ------------------------------------------------------------------ reference data (docs/spatial_iot.md)

DEVICE_SOURCE = "iot_devices"
READING_SOURCES = {"iot_readings_json": "jsonl", "iot_readings_csv": "csv"}
READING_COLUMNS = ("device", "ts", "metric", "value", "unit")
IN_SERVICE = "在用"
TZ = "Asia/Shanghai"

# code: (type, owner, metrics, report interval in minutes)
DEVICE_TYPES = {
    "01": ("空气质量微站", "生态环境局", ("pm25", "pm10", "no2", "so2", "o3", "co"), 5),
    "02": ("噪声", "生态环境局", ("noise",), 10),
    "03": ("水质", "水务局", ("ph", "do", "turbidity"), 15),
    "04": ("积水点水位", "水务局", ("water_level",), 5),
    "05": ("井盖", "城市管理委", ("tilt",), 15),
    "06": ("智慧灯杆", "城市管理委", ("power",), 15),
    "07": ("消火栓", "消防救援支队", ("pressure",), 15),
    "08": ("燃气", "城市管理委", ("ch4",), 10),
    "09": ("热泵", "住房城乡建设委", ("supply_temp",), 15),
}
# metric: (canonical unit, physical minimum, physical maximum) in the canonical unit
# (inclusive; what a working sensor of the kind can report: urban micro-stations' PM2.5 range 0-1000,
# ambient noise 20-140 dB, a flood gauge 0-5 m, a hydrant's network pressure 0-2.5 MPa, ...)
METRICS = {
    "pm25": ("µg/m³", 0.0, 1000.0), "pm10": ("µg/m³", 0.0, 2000.0), "no2": ("µg/m³", 0.0, 2000.0),
    "so2": ("µg/m³", 0.0, 2000.0), "o3": ("µg/m³", 0.0, 1000.0), "co": ("mg/m³", 0.0, 150.0),
    "noise": ("dB", 20.0, 140.0), "ph": ("1", 0.0, 14.0), "do": ("mg/L", 0.0, 20.0),
    "turbidity": ("NTU", 0.0, 4000.0), "water_level": ("cm", 0.0, 500.0), "tilt": ("deg", 0.0, 90.0),
    "power": ("W", 0.0, 2000.0), "pressure": ("MPa", 0.0, 2.5), "ch4": ("%LEL", 0.0, 100.0),
    "supply_temp": ("°C", -20.0, 120.0),
}
METRIC_TYPE = {m: code for code, (_, _, metrics, _) in DEVICE_TYPES.items() for m in metrics}
# a known other unit: (metric, unit) -> (factor, offset): canonical = value * factor + offset
CONVERSIONS = {
    **{(m, "mg/m³"): (1000.0, 0.0) for m in ("pm25", "pm10", "no2", "so2", "o3")},
    ("co", "µg/m³"): (0.001, 0.0),
    ("water_level", "m"): (100.0, 0.0),
    ("pressure", "kPa"): (0.001, 0.0),
    ("supply_temp", "°F"): (5.0 / 9.0, -32.0 * 5.0 / 9.0),
}
# spellings of the same unit (not a conversion): normalised before the lookup
UNIT_SPELLINGS = {"μg/m³": "µg/m³", "ug/m3": "µg/m³", "µg/m3": "µg/m³", "μg/m3": "µg/m³", "mg/m3": "mg/m³",
                  "℃": "°C", "℉": "°F", "dB(A)": "dB", "dBA": "dB", "pH": "1", "°": "deg", "mg/l": "mg/L"}
# Flat-lining is checked only on CONTINUOUS_METRICS (lake/sensing.py, shared with the generator): a dry
# flood point, a closed manhole cover, a lamp post or a gas detector in clean air legitimately reads
# one value for hours.
SILENT_HOURS = 6
FUTURE_TOLERANCE_MINUTES = 5
# GB 3095-2012 grade II concentration limits (table 1): pollutant -> {averaging period: limit} (CO mg/m³,
# others µg/m³); O3 "8h" is the daily maximum 8-hour moving average (日最大8小时平均)
GB3095_II = {
    "pm25": {"24h": 75.0}, "pm10": {"24h": 150.0},
    "so2": {"1h": 500.0, "24h": 150.0}, "no2": {"1h": 200.0, "24h": 80.0},
    "co": {"1h": 10.0, "24h": 4.0}, "o3": {"1h": 200.0, "8h": 160.0},
}
# GB 3095-2012 data validity (table 4, 数据统计的有效性规定): a 24-hour mean needs at least 20 hourly
# values of the day, an 8-hour mean at least 6 of its 8 hours. An 8-hour window of a day starts at
# 00:00 ... 16:00 (it ends at 08:00 ... 24:00, HJ 663-2013), so it never reaches into another day.
MIN_HOURS = {"24h": 20, "8h": 6}
WINDOW_HOURS = 8
POLLUTANTS = DEVICE_TYPES["01"][2]

# reading rules: rule id -> (defect_type, what happens to the row)
READING_RULES = {
    "reading.malformed": ("reading_malformed", "quarantine"),
    "reading.encoding": ("reading_malformed", "quarantine"),
    "reading.missing_field": ("reading_malformed", "quarantine"),
    "reading.timestamp": ("reading_malformed", "quarantine"),
    "reading.future": ("reading_future_timestamp", "quarantine"),
    "reading.unknown_device": ("reading_unknown_device", "quarantine"),
    "reading.metric": ("reading_unknown_metric", "quarantine"),
    "reading.unit": ("reading_unknown_unit", "quarantine"),
    "reading.value_text": ("reading_impossible_value", "quarantine"),
    "reading.value_nan": ("reading_impossible_value", "quarantine"),
    "reading.value_range": ("reading_impossible_value", "quarantine"),
    "reading.duplicate": ("reading_duplicate", "counted"),
    "reading.late": ("reading_late", "kept"),
    "reading.out_of_order": ("reading_out_of_order", "kept"),
    "reading.unit_converted": ("reading_unit_mismatch", "kept"),
}
QUARANTINE_TYPES = ("reading_malformed", "reading_future_timestamp", "reading_unknown_device", "reading_unknown_metric",
                    "reading_unknown_unit", "reading_impossible_value")
RULES_VERSION = hashlib.sha256(json.dumps(
    [DEVICE_TYPES, sorted(METRICS.items()), sorted(map(str, CONVERSIONS.items())), sorted(UNIT_SPELLINGS.items()),
     READING_RULES, FUTURE_TOLERANCE_MINUTES], ensure_ascii=False, default=str).encode()).hexdigest()[:12]

READINGS = ("base", "iot_reading")
COUNTS = ("quality", "iot_reading_counts")
DUPLICATES = ("quality", "iot_reading_duplicates")
MANIFEST = ("landing", "_manifest")
DEVICE_TABLE = "base.iot_device"
TOPICS = ("topic.device_health", "topic.device_online_rate", "topic.air_quality_hourly",
          "topic.air_quality_exceedance", "topic.flood_points", "topic.sensor_coverage_by_town")
LINEAGE_TYPE = "struct<source:string,batch_id:string,file_sha256:string,row:long>"
CHUNK_BYTES = 64 << 20

COUNTS_SCHEMA = (
    "delivery_day date, source string, file string, _file_sha256 string, rows_read long, kept long, "
    "duplicates long, duplicates_earlier long, late long, out_of_order long, converted long, quarantined long, "
    + ", ".join(f"quarantined_{t.removeprefix('reading_')} long" for t in QUARANTINE_TYPES)
    + ", reading_days string, inputs string"
)


# ------------------------------------------------------------------ small helpers

def _day(day) -> dt.date:
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(str(day))
    except ValueError:
        raise InputError(f"day '{day}' is not a date in YYYY-MM-DD form") from None


def _map(d: dict) -> Column:
    return F.create_map(*[F.lit(x) for kv in d.items() for x in kv])


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _write_if_changed(df: DataFrame, path: str, condition: str, meta: dict | None = None) -> bool:
    """replaceWhere ``condition`` with ``df`` unless the rows stored under ``condition`` already have
    the same content (then no Delta version is added); True if written."""
    spark = df.sparkSession
    new_fp = io.fingerprint(df)
    if io.is_table(spark, path):
        old = io.read(spark, path)
        if sorted(old.columns) == sorted(df.columns) and io.fingerprint(old.where(F.expr(condition)).select(*df.columns)) == new_fp:
            return False
    io.replace_where(df, path, condition, meta)
    return True


# ------------------------------------------------------------------ device ledger

def city_code_long(col: Column) -> Column:
    """The first 17 digits of a city code as a long (a compact sort/join key); null if not digits."""
    return F.when(col.rlike(r"^[0-9]{17}"), F.substring(col, 1, 17).cast("long"))


def _ledger_files(spark: SparkSession, settings: Settings, as_of: dt.date) -> list[dict]:
    """Per department, the newest ledger file dated on or before ``as_of`` (file name
    ``iot_devices_<dept code>_<YYYYMMDD>.csv``; a file without a date in its name counts as delivered
    on its ingest day); a department whose every file is dated later contributes its oldest file."""
    path = io.table_path(settings, *MANIFEST)
    if not io.is_table(spark, path):
        return []
    rows = (io.read(spark, path).where(F.col("source") == DEVICE_SOURCE)
            .select("file_name", "sha256", "batch_id", "ingested_at").collect())
    best: dict[str, dict] = {}
    for r in rows:
        m = re.search(r"_([^_]+)_(\d{8})\.[^.]+$", r["file_name"])
        if m:
            dept, date = m.group(1), dt.datetime.strptime(m.group(2), "%Y%m%d").date()
        else:
            dept, date = r["file_name"], r["ingested_at"].date()
        item = {"dept": dept, "date": date, "file_name": r["file_name"], "sha256": r["sha256"],
                "batch_id": r["batch_id"], "ingested_at": r["ingested_at"]}
        cur = best.get(dept)
        rank = (date <= as_of, date if date <= as_of else -date.toordinal(), r["ingested_at"])
        if cur is None or rank > cur["_rank"]:
            best[dept] = {**item, "_rank": rank}
    for dept, item in best.items():
        if item["date"] > as_of:
            log.warning("%s: department %s has no ledger dated on or before %s; using %s", DEVICE_SOURCE, dept,
                        as_of, item["file_name"])
    return sorted(({k: v for k, v in x.items() if k != "_rank"} for x in best.values()), key=lambda x: x["file_name"])


def wgs84(df: DataFrame, lon: str, lat: str, crs: str, lon_out: str = "_wgs_lon", lat_out: str = "_wgs_lat") -> DataFrame:
    """``df`` with WGS-84 ``lon_out``/``lat_out`` from ``lon``/``lat`` in ``crs`` (``lake.geo.to_wgs84``
    on whole Arrow batches in ``mapInPandas``; rounded to 1e-7°, ~1 cm)."""
    from lake import geo

    crs = geo.canonical_crs(crs)
    schema = StructType([f for f in df.schema.fields if f.name not in (lon_out, lat_out)]
                        + [StructField(lon_out, DoubleType()), StructField(lat_out, DoubleType())])
    names = [f.name for f in schema.fields]

    def convert(batches):
        import pandas as pd

        for pdf in batches:
            x = pd.to_numeric(pdf[lon], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            y = pd.to_numeric(pdf[lat], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            wx, wy = geo.to_wgs84(x, y, crs)
            yield pdf.assign(**{lon_out: np.round(wx, 7), lat_out: np.round(wy, 7)})[names]

    return df.mapInPandas(convert, schema)


def load_boundaries(spark: SparkSession, settings: Settings) -> tuple[list[dict], DataFrame]:
    """(boundaries for ``lake.geo.assign_units``, the ``base.admin_boundary`` frame)."""
    from lake import geo

    path = io.table_path(settings, "base", "admin_boundary")
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError("base.admin_boundary has not been built yet; build it first (jobs/spatial.py)")
    df = io.read(spark, path)
    return geo.boundaries_from_rows(df.select("code", "name", "kind", "geometry").collect()), df


def ledger_findings_and_devices(snapshot: DataFrame, department: str, run_id: str) -> tuple[DataFrame, DataFrame]:
    """(one row per city code, findings) from the rows of the chosen ledger files. Pure.

    ``snapshot`` has the raw ledger columns plus ``_file_name``. The first row of a city code (file
    name, then row) is the device; every later row is ``duplicate_city_code``. A serial number under
    the codes of two departments (the department digits 9-10 of the city code) is
    ``device_registered_twice`` on the rows of the department(s) that do not own the device type: the
    owner of a type is the department registering most devices of it (ties: the smaller code); when
    no row is the owner's, the smaller department code keeps it. Both codes stay devices (each is a
    city code of the ledger), the finding goes back to the department that registered it again."""
    dept_code = F.substring("city_code", 9, 2)
    w_code = Window.partitionBy("city_code").orderBy("_file_name", "_row")
    df = snapshot.where(F.col("city_code").isNotNull()).withColumn("_n_code", F.row_number().over(w_code))
    dup = df.where(F.col("_n_code") > 1)
    first = df.where(F.col("_n_code") == 1).drop("_n_code").withColumn("_dept_code", dept_code)
    owners = (first.groupBy("device_type", "_dept_code").count()
              .withColumn("_rank", F.row_number().over(
                  Window.partitionBy("device_type").orderBy(F.col("count").desc(), F.col("_dept_code"))))
              .where(F.col("_rank") == 1).select("device_type", F.col("_dept_code").alias("_owner")))
    first = first.join(F.broadcast(owners), "device_type", "left")
    w_serial = Window.partitionBy("serial_no").orderBy(
        (F.col("_dept_code") == F.col("_owner")).desc_nulls_last(), "_dept_code", "_file_name", "_row")
    first = first.withColumn("_first_dept", F.when(F.col("serial_no").isNotNull(), F.first("_dept_code").over(w_serial)))
    twice = first.where(F.col("_first_dept").isNotNull() & (F.col("_dept_code") != F.col("_first_dept")))

    def finding(df: DataFrame, field: str, rule: str, defect: str, message: Column, value: Column) -> DataFrame:
        return df.select(
            F.lit(run_id).alias("run_id"), F.lit("build").alias("stage"), F.lit(DEVICE_SOURCE).alias("source"),
            F.coalesce(F.col("owner_department"), F.lit(department)).alias("department"),
            F.col("city_code").alias("record_key"), F.lit(field).alias("field"),
            F.lit(rule).alias("rule"), F.lit(rules.WARNING).alias("severity"), F.lit(defect).alias("defect_type"),
            message.alias("message"), value.cast("string").alias("value"), "_file_sha256",
            F.col("_row").cast("long").alias("_row"), "_batch_id")

    found = finding(dup, "city_code", "iot.duplicate_city_code", "duplicate_city_code",
                    F.lit("the same city code appears earlier in the ledger"), F.col("city_code")).unionByName(
        finding(twice, "serial_no", "iot.registered_twice", "device_registered_twice",
                F.concat(F.lit("serial number already registered by department "), F.col("_first_dept"),
                         F.lit(" under another city code")), F.col("serial_no")))
    return first.drop("_first_dept", "_owner"), found


def build_devices(settings: Settings, as_of, spark: SparkSession | None = None) -> dict:
    """Build and publish ``base.iot_device`` for ``as_of`` (skipped when its inputs are unchanged)."""
    from lake import geo

    t0 = time.time()
    as_of = _day(as_of)
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc, sc = contracts.table(DEVICE_TABLE), contracts.source(DEVICE_SOURCE)
    raw_path = io.table_path(settings, "raw", DEVICE_SOURCE)
    if not io.is_table(spark, raw_path):
        raise contracts_mod.ContractError(f"{DEVICE_TABLE}: no raw data yet from {DEVICE_SOURCE}; ingest it first")
    files = _ledger_files(spark, settings, as_of)
    if not files:
        raise InputError(f"{DEVICE_TABLE}: no {DEVICE_SOURCE} file dated on or before {as_of} in landing/_manifest")
    b_path = io.table_path(settings, "base", "admin_boundary")
    contract_bytes = Path(tc.path).read_bytes() + Path(sc.path).read_bytes()
    inputs = hashlib.sha256(json.dumps([[f["sha256"] for f in files], io.version(spark, b_path),
                                        hashlib.sha256(contract_bytes).hexdigest()]).encode()).hexdigest()[:16]
    path = io.table_path(settings, "base", "iot_device")
    if io.last_metadata(spark, path).get("inputs") == inputs:
        meta = io.last_metadata(spark, path)
        log.info("%s: inputs unchanged (%s); not rebuilt", DEVICE_TABLE, inputs)
        return {"table": DEVICE_TABLE, "status": "unchanged", "rows": int(meta["fingerprint"].split(":")[0]),
                "inputs": inputs, "seconds": round(time.time() - t0, 2)}
    boundaries, _ = load_boundaries(spark, settings)
    names = spark.createDataFrame([(f["sha256"], f["file_name"]) for f in files], "_file_sha256 string, _file_name string")
    snapshot = io.read(spark, raw_path).join(F.broadcast(names), "_file_sha256")
    run_id = f"build-iot_device-{inputs}"
    devices, found = ledger_findings_and_devices(snapshot, sc.department, run_id)
    crs = (sc.geometry or {}).get("crs", "GCJ02")
    lon_c, lat_c = (sc.geometry or {}).get("lon", "lon"), (sc.geometry or {}).get("lat", "lat")
    located = geo.assign_units(wgs84(devices, lon_c, lat_c, crs), "_wgs_lon", "_wgs_lat", boundaries,
                               code_col="_town_code", name_col="_town").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        outside = located.where(F.col("_town_code").isNull() & F.col("_wgs_lon").isNotNull()).select(
            F.lit(run_id).alias("run_id"), F.lit("build").alias("stage"), F.lit(DEVICE_SOURCE).alias("source"),
            F.coalesce(F.col("owner_department"), F.lit(sc.department)).alias("department"),
            F.col("city_code").alias("record_key"), F.lit(lon_c).alias("field"),
            F.lit("geometry.outside_district").alias("rule"), F.lit(rules.WARNING).alias("severity"),
            F.lit("point_outside_district").alias("defect_type"),
            F.concat(F.lit("WGS-84 "), F.col("_wgs_lon").cast("string"), F.lit(","), F.col("_wgs_lat").cast("string"),
                     F.lit(" is outside every unit of base.admin_boundary; kept without a town")).alias("message"),
            F.concat_ws(",", F.col(lon_c).cast("string"), F.col(lat_c).cast("string"), F.lit(crs)).alias("value"),
            "_file_sha256", F.col("_row").cast("long").alias("_row"), "_batch_id")
        all_found = findings.conform(found.unionByName(outside))
        f_path = io.table_path(settings, *findings.FINDINGS)
        _write_if_changed(all_found, f_path, f"run_id = '{run_id}'")
        counts = {r["defect_type"]: r["count"] for r in all_found.groupBy("defect_type").count().collect()}
        candidate = device_rows(located, tc)
        res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of.isoformat(), "inputs": inputs,
                                                              "files": [f["file_name"] for f in files]})
    finally:
        located.unpersist()
    return {"table": DEVICE_TABLE, "status": res.status, "rows": res.rows, "inputs": inputs, "findings": counts,
            "files": [f["file_name"] for f in files], "seconds": round(time.time() - t0, 2)}


# the derived columns of base.iot_device (contracts/tables/base_iot_device.yaml) and how device_rows makes them
DERIVATIONS = {
    "device_type_name": "the device type's name, from the type code in positions 7-8 of the city code",
    "city_code_department": "the owning department's code, positions 9-10 of the city code",
    "device_type_interval": "the device type's reporting interval in minutes",
    "point_in_admin_boundary": "the town/street polygon of base.admin_boundary holding the WGS-84 point",
}


def device_rows(located: DataFrame, tc) -> DataFrame:
    """``base.iot_device`` rows (contract column order, plus ``_lineage``) from located ledger rows. Pure."""
    code = F.col("city_code")
    type_names = _map({k: v[0] for k, v in DEVICE_TYPES.items()})
    intervals = _map({k: v[3] for k, v in DEVICE_TYPES.items()})
    dtype = F.substring(code, 7, 2)
    derived = {
        "device_type": dtype,
        "device_type_name": type_names[dtype],
        "department_code": F.substring(code, 9, 2),
        "report_interval_min": intervals[dtype].cast("int"),
        "lon": F.col("_wgs_lon"), "lat": F.col("_wgs_lat"),
        "town_code": F.col("_town_code"), "town": F.col("_town"),
    }
    lin = F.struct(F.lit(DEVICE_SOURCE).alias("source"), F.col("_batch_id").alias("batch_id"),
                   F.col("_file_sha256").alias("file_sha256"), F.col("_row").cast("long").alias("row"))
    derived_lin = {"device_type", "device_type_name", "department_code", "report_interval_min"}
    cols, lineage = [], []
    for c in tc.columns:
        expr = derived.get(c.name, F.col(c.name) if c.name in located.columns else None)
        if expr is None:
            raise contracts_mod.ContractError(f"{tc.path}: column '{c.name}' is neither a ledger column nor derived here")
        cols.append(expr.cast(c.type).alias(c.name))
        origin = (F.struct(F.lit("derived:city_code").alias("source"), F.lit(None).cast("string").alias("batch_id"),
                           F.lit(None).cast("string").alias("file_sha256"), F.lit(None).cast("long").alias("row"))
                  if c.name in derived_lin else lin)
        lineage += [F.lit(c.name), origin.cast(LINEAGE_TYPE)]
    return located.select(*cols, F.create_map(*lineage).alias("_lineage"))


def load_devices(spark: SparkSession, settings: Settings) -> DataFrame:
    path = io.table_path(settings, "base", "iot_device")
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{DEVICE_TABLE} has not been built yet; run build_devices first")
    return io.read(spark, path)


# ------------------------------------------------------------------ readings: files -> staged lines

@dataclass
class Delivered:
    source: str
    path: Path
    sha256: str = ""
    bytes: int = 0
    staging: str = ""
    rows: int = 0          # non-blank lines (CSV: without the header)
    header: tuple = ()     # CSV only: the column names in file order


def delivery_files(settings: Settings, day: dt.date) -> list[Delivered]:
    """The reading files of delivery day ``day`` in the inbox (``<source>_<YYYYMMDD>.<ext>``, any prefix)."""
    out = []
    stamp = day.strftime("%Y%m%d")
    for source, fmt in READING_SOURCES.items():
        folder = Path(settings.inbox) / source
        ext = "jsonl" if fmt == "jsonl" else "csv"
        if folder.is_dir():
            out += [Delivered(source, p) for p in sorted(folder.glob(f"*_{stamp}.{ext}")) if p.is_file()]
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def _csv_header(first_line: bytes, name: str) -> tuple:
    text = first_line.decode("utf-8-sig", errors="replace").strip("\r\n")
    header = tuple(h.strip().strip('"').strip() for h in text.split(","))
    missing = [c for c in READING_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{name}: line 1 (header) is missing column(s) {missing}; expected {list(READING_COLUMNS)}, "
                         f"found {list(header)}")
    extra = [h for h in header if h not in READING_COLUMNS]
    if extra:
        raise InputError(f"{name}: line 1 (header) has unexpected column(s) {extra}; expected {list(READING_COLUMNS)}")
    return header


def stage_lines(f: Delivered, out_uri: str, csv_header: bool) -> Delivered:
    """Split the file into lines (numpy newline search on 64 MB blocks, no per-line Python) and write
    them as Parquet ``(_row long, line string)``: ``_row`` is the 1-based line number; a trailing CR is
    removed; blank lines are not rows. For a CSV the first line is the header (checked, not staged).
    Bytes are not decoded here: invalid UTF-8 is kept and caught by ``reading.encoding`` in Spark."""
    fs, out_path = io.filesystem(out_uri)
    fs.create_dir(out_path.rsplit("/", 1)[0], recursive=True)
    schema = pa.schema([("_row", pa.int64()), ("line", pa.string())])
    writer = pq.ParquetWriter(out_path, schema, filesystem=fs, compression="snappy")
    line_no = rows = size = 0
    carry = b""
    header = ()
    try:
        with open(f.path, "rb") as fh:
            while True:
                block = fh.read(CHUNK_BYTES)
                size += len(block)
                data = carry + block if carry else block
                if not block:
                    if not data:
                        break
                    data += b"\n"  # the last line has no newline
                buf = np.frombuffer(data, dtype=np.uint8)
                nl = np.flatnonzero(buf == 10)
                if nl.size == 0:
                    carry = data
                    continue
                end = int(nl[-1]) + 1
                carry = data[end:]
                offsets = np.empty(nl.size + 1, dtype=np.int32)  # a block is far below 2 GB
                offsets[0] = 0
                offsets[1:] = nl + 1
                lines = pa.StringArray.from_buffers(nl.size, pa.py_buffer(offsets), pa.py_buffer(data))
                lines = pc.ascii_rtrim(lines, characters="\r\n")
                numbers = np.arange(line_no + 1, line_no + 1 + nl.size, dtype=np.int64)
                line_no += nl.size
                keep = pc.greater(pc.binary_length(lines), 0)
                if csv_header and not header:
                    header = _csv_header(data[: int(nl[0])], f.path.name)
                    keep = pc.and_(keep, pa.array(numbers > 1))
                if not pc.all(keep).as_py():
                    lines, numbers = lines.filter(keep), numbers[keep.to_numpy(zero_copy_only=False)]
                if len(lines):
                    writer.write_batch(pa.record_batch([pa.array(numbers), lines], schema=schema))
                    rows += len(lines)
                if not block:
                    break
    finally:
        writer.close()
    if csv_header and not header:
        raise InputError(f"{f.path.name}: the file is empty (no header line)")
    f.staging, f.rows, f.header, f.bytes = out_uri, rows, header, size
    return f


# ------------------------------------------------------------------ readings: parse and classify (pure)

def parse_lines(lines: DataFrame, fmt: str, header: tuple = ()) -> DataFrame:
    """Staged lines -> ``device, ts_text, metric, value_text, unit`` (text, trimmed) and ``_bad``
    (rule id of a structural problem, or null). Native expressions only."""
    line = F.col("line")
    if fmt == "jsonl":
        j = F.from_json(line, "device STRING, ts STRING, metric STRING, value STRING, unit STRING, _corrupt STRING",
                        {"columnNameOfCorruptRecord": "_corrupt", "mode": "PERMISSIVE", "allowSingleQuotes": "false",
                         "allowUnquotedFieldNames": "false", "allowNonNumericNumbers": "false"})
        df = lines.withColumn("_j", j)
        fields = {c: F.col("_j")[c] for c in READING_COLUMNS}
        structural = F.col("_j").isNull() | F.col("_j")["_corrupt"].isNotNull()
        n_fields = F.lit(None).cast("int")
    elif fmt == "csv":
        parts = F.split(line, ",", -1)
        df = lines.withColumn("_p", parts)
        quoted = line.contains('"')
        fields = {}
        for c in READING_COLUMNS:
            v = F.get(F.col("_p"), header.index(c))
            fields[c] = F.when(quoted, F.regexp_replace(v, r'^\s*"|"\s*$', "")).otherwise(v)
        structural = F.size("_p") != len(header)
        n_fields = F.size("_p")
    else:
        raise InputError(f"unsupported reading format '{fmt}' (jsonl or csv)")
    cleaned = {("ts_text" if c == "ts" else "value_text" if c == "value" else c): F.nullif(F.trim(v), F.lit(""))
               for c, v in fields.items()}
    df = df.withColumns(cleaned)
    missing = [F.when(F.col(c).isNull(), F.lit(c)) for c in ("device", "ts_text", "metric")]
    bad = (F.when(~F.is_valid_utf8(line), F.lit("reading.encoding"))
           .when(structural, F.lit("reading.malformed"))
           .when(F.coalesce(*missing).isNotNull(), F.lit("reading.missing_field")))
    msg = (F.when(~F.is_valid_utf8(line), F.lit("the line is not valid UTF-8"))
           .when(structural, F.lit("not a JSON object with the reading's keys") if fmt == "jsonl"
                 else F.concat(F.lit(f"expected {len(header)} fields, found "), n_fields.cast("string")))
           .when(F.coalesce(*missing).isNotNull(), F.concat(F.coalesce(*missing), F.lit(" is empty"))))
    return df.withColumn("_bad", bad).withColumn("_bad_msg", msg).drop(*[c for c in ("_j", "_p") if c in df.columns])


def classify(parsed: DataFrame, devices: DataFrame, day: dt.date, partitions: int, files: int = 1) -> DataFrame:
    """Every parsed row with its outcome. Pure. Columns: ``_fi`` (file index), ``_row``, the typed
    reading (``city_code, ts, metric, value, unit, converted_from, day``), ``late``,
    ``out_of_order`` (ts earlier than a row the same device sent before it in the file; late rows,
    duplicates and quarantined rows take no part), ``_dup`` (a later copy of the same device, ts and
    metric: counted, not kept),
    ``_rule``/``_reason`` (first failing quarantine rule, every row with a rule is quarantined) and,
    for quarantined rows only, the fields as delivered and the raw line.

    The rules, in order: malformed line (encoding, JSON / field count, empty device/ts/metric),
    timestamp not ISO 8601, future (after the end of the delivery day + 5 min), unknown device (not in
    ``base.iot_device``), metric not of the device's type, unknown unit (a known other unit is
    converted), value not a number / NaN / outside the metric's physical range."""
    # wall-clock literal in the session time zone (Asia/Shanghai), not the Python process's
    limit_text = (dt.datetime.combine(day, dt.time()) + dt.timedelta(days=1, minutes=FUTURE_TOLERANCE_MINUTES)).isoformat(sep=" ")
    limit = F.to_timestamp(F.lit(limit_text))
    dev = devices.select(F.col("city_code").alias("_dev_code"), F.col("device_type").alias("_dev_type"))
    df = parsed.withColumn("_code", F.upper(F.col("device")))
    df = df.join(F.broadcast(dev), F.col("_code") == F.col("_dev_code"), "left")
    ts = F.try_to_timestamp(F.col("ts_text"))
    unit_in = F.col("unit")
    spelled = F.coalesce(_map(UNIT_SPELLINGS)[unit_in], unit_in)
    canonical = _map({m: v[0] for m, v in METRICS.items()})[F.col("metric")]
    conv_key = F.concat_ws("|", F.col("metric"), spelled)
    factor = _map({f"{m}|{u}": f for (m, u), (f, _) in CONVERSIONS.items()})[conv_key]
    offset = _map({f"{m}|{u}": o for (m, u), (_, o) in CONVERSIONS.items()})[conv_key]
    lo = _map({m: v[1] for m, v in METRICS.items()})[F.col("metric")]
    hi = _map({m: v[2] for m, v in METRICS.items()})[F.col("metric")]
    raw_value = F.expr("try_cast(value_text AS DOUBLE)")
    df = df.withColumns({
        "ts": ts, "_unit": spelled, "_canonical": canonical,
        "_factor": F.when(spelled == canonical, F.lit(1.0)).otherwise(factor),
        "_offset": F.when(spelled == canonical, F.lit(0.0)).otherwise(offset),
        "_raw_value": raw_value, "_metric_type": _map(METRIC_TYPE)[F.col("metric")],
    })
    # rounded to 1e-9 so that a converted boundary value (248 °F = 120 °C) is not outside by float error
    value = F.when(F.col("_factor") == 1.0, F.col("_raw_value")).otherwise(
        F.round(F.col("_raw_value") * F.col("_factor") + F.col("_offset"), 9))
    df = df.withColumn("value", value)
    rule = (F.when(F.col("_bad").isNotNull(), F.col("_bad"))
            .when(F.col("ts").isNull(), F.lit("reading.timestamp"))
            .when(F.col("ts") > limit, F.lit("reading.future"))
            .when(F.col("_dev_code").isNull(), F.lit("reading.unknown_device"))
            .when(F.col("_metric_type").isNull() | (F.col("_metric_type") != F.col("_dev_type")), F.lit("reading.metric"))
            .when(F.col("_factor").isNull(), F.lit("reading.unit"))
            .when(F.col("_raw_value").isNull(), F.lit("reading.value_text"))
            .when(F.isnan("_raw_value"), F.lit("reading.value_nan"))
            .when((F.col("value") < lo) | (F.col("value") > hi) | F.isnan("value"), F.lit("reading.value_range")))
    reason = (F.when(F.col("_bad").isNotNull(), F.concat(F.lit("_row: "), F.col("_bad_msg")))
              .when(F.col("ts").isNull(), F.concat(F.lit("ts: not an ISO 8601 timestamp: "), F.col("ts_text")))
              .when(F.col("ts") > limit, F.concat(F.lit(f"ts: after the end of the delivery day {day} + "
                                                              f"{FUTURE_TOLERANCE_MINUTES} min: "), F.col("ts_text")))
              .when(F.col("_dev_code").isNull(), F.concat(F.lit("device: not in base.iot_device: "), F.col("device")))
              .when(F.col("_metric_type").isNull() | (F.col("_metric_type") != F.col("_dev_type")),
                    F.concat(F.lit("metric: "), F.col("metric"), F.lit(" is not measured by device type "), F.col("_dev_type")))
              .when(F.col("_factor").isNull(), F.concat(F.lit("unit: "), F.coalesce(unit_in, F.lit("(empty)")),
                                                        F.lit(" is not a known unit of "), F.col("metric"),
                                                        F.lit(" (canonical "), F.col("_canonical"), F.lit(")")))
              .when(F.col("_raw_value").isNull(), F.concat(F.lit("value: not a number: "), F.coalesce(F.col("value_text"), F.lit("(empty)"))))
              .when(F.isnan("_raw_value"), F.lit("value: NaN"))
              .when((F.col("value") < lo) | (F.col("value") > hi) | F.isnan("value"),
                    F.concat(F.lit("value: "), F.col("value").cast("string"), F.lit(" "), F.col("_canonical"),
                             F.lit(" is outside the physical range of "), F.col("metric"), F.lit(" ["), lo.cast("string"),
                             F.lit(", "), hi.cast("string"), F.lit("]"))))
    df = df.withColumns({"_rule": rule, "_reason": reason})
    q = F.col("_rule").isNotNull()
    # Only what a later step needs crosses the shuffle and the two sorts, in as few fields as
    # possible (a sort copies whole rows): what a quarantined row needs is one struct, null (one bit)
    # on every other row; unit, day and late are recomputed afterwards from metric and ts.
    qi = F.when(q, F.struct(F.col("_rule").alias("rule"), F.col("_reason").alias("reason"),
                            *[F.col(src).alias(c) for c, src in zip(READING_COLUMNS, ("device", "ts_text", "metric",
                                                                                       "value_text", "unit"))],
                            F.col("line").alias("raw_line")))
    df = df.select(
        "_fi", "_row", q.alias("_q"), F.when(~q, F.col("_dev_code")).alias("city_code"), "ts", "metric",
        F.when(~q, F.col("value")).alias("value"),
        F.when(~q & (F.col("_unit") != F.col("_canonical")), unit_in).alias("converted_from"), qi.alias("_qi"))
    # One shuffle by device and ONE sort: per device, newest reading first (then metric, file, row).
    # - duplicate: the row before it in that order has the same ts and metric (the first copy in
    #   file order comes first and is kept);
    # - out of order: a row of the same device and file with a later ts came earlier in the file,
    #   i.e. the smallest row number among the device's later readings is below its own (a running
    #   minimum over the rows sorted before it: Spark computes it incrementally).
    # Late rows, duplicates and quarantined rows take no part in the second; a quarantined row is a
    # group of its own (no big group to buffer). The keys are longs, never the 18-character codes
    # that all start with 11011501 and make every comparison a string comparison.
    df = df.repartition(partitions, "city_code")
    dk = F.when(~F.col("_q"), city_code_long(F.col("city_code"))).otherwise(-1 - F.col("_fi") * (1 << 40) - F.col("_row"))
    df = df.withColumns({"_dk": dk, "_us": F.unix_micros("ts")})
    w = Window.partitionBy("_dk").orderBy(F.col("_us").desc(), "metric", "_fi", "_row")
    same = (F.lag("_us").over(w) == F.col("_us")) & (F.lag("metric").over(w) == F.col("metric"))
    df = df.withColumn("_dup", ~F.col("_q") & F.coalesce(same, F.lit(False)))
    late = ~F.col("_q") & (F.to_date("ts") < F.lit(day))
    seq = ~F.col("_q") & ~F.col("_dup") & ~late
    later = Window.partitionBy("_dk").orderBy(F.col("_us").desc()).rangeBetween(Window.unboundedPreceding, -1)
    first_later = F.array(*[F.min(F.when(seq & (F.col("_fi") == i), F.col("_row"))).over(later) for i in range(files)])
    df = df.withColumn("out_of_order", seq & F.coalesce(F.get(first_later, F.col("_fi")) < F.col("_row"), F.lit(False)))
    canonical = _map({m: v[0] for m, v in METRICS.items()})[F.col("metric")]
    return df.select(
        "_fi", "_row", "_q", "_dup", F.col("_qi")["rule"].alias("_rule"), F.col("_qi")["reason"].alias("_reason"),
        "city_code", "ts", "metric", "value", F.when(~F.col("_q"), canonical).alias("unit"), "converted_from",
        F.to_date("ts").alias("day"), late.alias("late"), "out_of_order",
        *[F.col("_qi")[c].alias(f"_in_{c}") for c in READING_COLUMNS], F.col("_qi")["raw_line"].alias("_raw_line"))


# ------------------------------------------------------------------ readings: the job

def _counts_row(spark: SparkSession, settings: Settings, day: dt.date) -> list:
    path = io.table_path(settings, *COUNTS)
    if not io.is_table(spark, path):
        return []
    return io.read(spark, path).where(F.col("delivery_day") == F.lit(day)).collect()


def _manifest_rows(spark: SparkSession, settings: Settings, shas: list[str]) -> dict:
    path = io.table_path(settings, *MANIFEST)
    if not io.is_table(spark, path) or not shas:
        return {}
    return {r["sha256"]: r for r in io.read(spark, path).where(F.col("sha256").isin(shas)).collect()}


def _reading_inputs(files: list[Delivered], devices_fp: str) -> str:
    return hashlib.sha256(json.dumps([[(f.source, f.path.name, f.sha256) for f in files], devices_fp, RULES_VERSION]
                                     ).encode()).hexdigest()[:16]


def ingest_readings(settings: Settings, day, spark: SparkSession | None = None, *, force: bool = False,
                    files: list[Delivered] | None = None) -> dict:
    """See ``_ingest_readings``; holds the lease of ``base/iot_reading`` (``lake.locks``) throughout."""
    with locks.table_lock(io.table_path(settings, *READINGS)):
        return _ingest_readings(settings, day, spark, force=force, files=files)


def _ingest_readings(settings: Settings, day, spark: SparkSession | None = None, *, force: bool = False,
                     files: list[Delivered] | None = None) -> dict:
    """Ingest the reading files of delivery day ``day``; returns per-file counts, the reading days
    touched (``reading_days``: every day whose stored readings this call may have changed, so the
    caller rebuilds their health and topics) and seconds. Idempotent: with the same files, ledger and
    rules nothing is written (``force`` re-processes anyway; ``files`` replaces the inbox's files:
    both for re-processing a later delivery, see ``_reprocess_later``).

    A reading (device, ts, metric) already stored from an *earlier* delivery day is a duplicate
    (``reading_duplicate``, ``earlier_delivery`` in quality/iot_reading_duplicates), exactly like a
    second copy within the delivery: the earliest delivery's copy is the one kept (see
    ``earlier_copies``). When this delivery is ingested after later ones (out of order, or re-processed),
    the later deliveries whose outcome it changes are re-processed after it, in delivery-day order."""
    t0 = time.time()
    day = _day(day)
    spark = spark or get_spark(settings)
    files = files or delivery_files(settings, day)
    if not files:
        raise InputError(f"no reading files for delivery day {day} in "
                         + " or ".join(str(Path(settings.inbox) / s) for s in READING_SOURCES)
                         + f" (expected <source>_{day.strftime('%Y%m%d')}.jsonl / .csv)")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for f, sha in zip(files, pool.map(lambda f: sha256_file(f.path), files)):
            f.sha256 = sha
    devices = load_devices(spark, settings)
    devices_fp = io.last_metadata(spark, io.table_path(settings, "base", "iot_device")).get("fingerprint", "")
    inputs = _reading_inputs(files, devices_fp)
    stored = _counts_row(spark, settings, day)
    if (not force and stored and all(r["inputs"] == inputs for r in stored)
            and {r["_file_sha256"] for r in stored} == {f.sha256 for f in files}):
        log.info("readings %s: already ingested with the same files, ledger and rules; nothing written", day)
        names = {sha: r["file_name"] for sha, r in _manifest_rows(spark, settings, [f.sha256 for f in files]).items()}
        for f in files:  # a re-ingest verifies the landed copies (and repairs them from these files)
            if f.sha256 in names:
                landing.verify(settings, f.source, f.sha256, names[f.sha256], inbox_file=f.path)
        return _result(day, [r.asDict() for r in stored], time.time() - t0, skipped=True)
    previous_days = {d for r in stored for d in (r["reading_days"] or "").split(",") if d}

    manifest = _manifest_rows(spark, settings, [f.sha256 for f in files])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    ingested = {f.sha256: (manifest[f.sha256]["ingested_at"] if f.sha256 in manifest else now) for f in files}
    # land (copy) the files in the background while they are staged and checked
    landed = {f.sha256: settings.path("landing", f.source, f.sha256, f.path.name) for f in files}
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iot-landing")
    copies = [pool.submit(landing.land, f.path, landed[f.sha256], f.sha256) for f in files]  # verified copies
    t_stage = time.time()
    staged = {f.sha256: settings.path("_staging", "iot", f"{f.source}-{f.sha256[:16]}.parquet") for f in files}
    try:
        with ThreadPoolExecutor(max_workers=2) as stager:
            list(stager.map(lambda f: stage_lines(f, staged[f.sha256], READING_SOURCES[f.source] == "csv"), files))
    except BaseException:
        for uri in staged.values():
            _remove(uri)  # a failed parse leaves no staging file behind
        raise
    stage_seconds = time.time() - t_stage
    parsed = None
    for i, f in enumerate(files):
        p = parse_lines(spark.read.parquet(f.staging), READING_SOURCES[f.source], f.header).withColumn("_fi", F.lit(i))
        parsed = p if parsed is None else parsed.unionByName(p)
    classified = classify(parsed, devices, day, settings.shuffle_partitions, len(files)).persist(StorageLevel.MEMORY_AND_DISK)
    cross = None
    try:
        t1 = time.time()
        per_file = _count(classified, files)
        check_seconds = time.time() - t1
        log.info("readings %s: staged %d files in %.1fs, parsed and checked %d rows in %.1fs", day, len(files),
                 stage_seconds, sum(f.rows for f in files), check_seconds)
        t1 = time.time()
        candidate_days = {}
        for c in per_file.values():
            for d, n in c["_days"].items():
                candidate_days[d] = candidate_days.get(d, 0) + n
        cross = _stored_earlier(spark, settings, classified, day, candidate_days)
        marked, cross_days = _mark_earlier(classified, cross, per_file, files)
        earlier_seconds = time.time() - t1
        for f in files:
            c = per_file[f.sha256]
            if c["rows_read"] != c["kept"] + c["duplicates"] + c["quarantined"]:
                raise RuntimeError(f"{f.path.name}: reconciliation failed: read {c['rows_read']}, kept {c['kept']} + "
                                   f"duplicates {c['duplicates']} + quarantined {c['quarantined']}")
        t1 = time.time()
        _write_readings(spark, settings, marked, files, day, ingested)
        write_seconds = time.time() - t1
        log.info("readings %s: %d readings already stored from earlier deliveries (%.1fs); written in %.1fs", day,
                 sum(c["duplicates_earlier"] for c in per_file.values()), earlier_seconds, write_seconds)
    finally:
        classified.unpersist()
        if cross is not None:
            cross.unpersist()
    for c in copies:
        c.result()
    pool.shutdown()
    _record_manifest(spark, settings, files, per_file, landed, ingested)
    rows = []
    # the days of the kept readings and of those already stored by an earlier delivery: where a later
    # change of that delivery can change this one (_reprocess_later)
    reading_days = sorted({d.isoformat() for c in per_file.values() for d, n in c.pop("_days").items() if n > 0}
                          | {d.isoformat() for d in cross_days})
    for f in files:
        c = per_file[f.sha256]
        rows.append({"delivery_day": day, "source": f.source, "file": f.path.name, "_file_sha256": f.sha256, **c,
                     "reading_days": ",".join(reading_days), "inputs": inputs})
    io.replace_where(spark.createDataFrame(rows, COUNTS_SCHEMA), io.table_path(settings, *COUNTS),
                     f"delivery_day = DATE'{day}'")
    for f in files:
        _remove(f.staging)
    touched = set(reading_days) | previous_days
    redone = _reprocess_later(spark, settings, day, touched)
    out = _result(day, rows, time.time() - t0, skipped=False)
    out["reading_days"] = sorted(touched.union(*[r["reading_days"] for r in redone]))
    out["redone"] = [r["delivery_day"] for r in redone]
    out["step_seconds"] = {"stage": round(stage_seconds, 2), "check": round(check_seconds, 2),
                           "earlier": round(earlier_seconds, 2), "write": round(write_seconds, 2)}
    return out


# ------------------------------------------------------------------ readings: duplicates across deliveries

BROADCAST_ROWS = 2_000_000  # a join side at most this long is broadcast (~100 MB of keys)
READING_KEY = ["day", "city_code", "ts", "metric"]


def earlier_copies(candidates: DataFrame, stored: DataFrame, broadcast: str | None = None) -> DataFrame:
    """The rows of ``candidates`` (classified rows to be kept) whose reading (city code, ts, metric) is
    in ``stored`` (rows of base.iot_reading from earlier deliveries): ``_fi, _row, day, late,
    out_of_order, converted``, one row each. Pure.

    The earliest delivery's copy is kept because it is the one the platform sent first and the one the
    topics of that day were built from: a re-send must never change what an earlier day published, and
    the outcome must not depend on the order the deliveries were processed in. ``broadcast`` names the
    side small enough to be broadcast ("candidates", "stored" or None): on a normal day the candidates
    of the day before are only its late and re-sent readings, a small side against that day's whole
    partition, so the partition is read once and never shuffled."""
    c = candidates.select(*READING_KEY, "_fi", "_row", "late", "out_of_order",
                          F.col("converted_from").isNotNull().alias("converted"))
    s = stored.select(*READING_KEY)
    if broadcast == "candidates":
        c = F.broadcast(c)
    elif broadcast == "stored":
        s = F.broadcast(s)
    return s.join(c, READING_KEY).dropDuplicates(["_fi", "_row"])


def _stored_earlier(spark: SparkSession, settings: Settings, classified: DataFrame, day: dt.date,
                    candidate_days: dict) -> DataFrame | None:
    """``earlier_copies`` of this delivery's kept candidates against base.iot_reading, reading only the
    partitions of the candidates' reading days and, in them, the rows of earlier deliveries; held in
    memory (it is small); None when no earlier delivery stored anything in those days."""
    path = io.table_path(settings, *READINGS)
    if not candidate_days or not io.is_table(spark, path):
        return None
    stored = io.read(spark, path).where(F.col("day").isin(sorted(candidate_days)) & (F.col("delivery_day") < F.lit(day)))
    n_stored = {r["day"]: r["count"] for r in stored.groupBy("day").count().collect()}
    parts = []
    for d, n in sorted(n_stored.items()):
        side = "candidates" if candidate_days[d] <= BROADCAST_ROWS else "stored" if n <= BROADCAST_ROWS else None
        cand = classified.where(~F.col("_q") & ~F.col("_dup") & (F.col("day") == F.lit(d)))
        parts.append(earlier_copies(cand, stored.where(F.col("day") == F.lit(d)), side))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.persist(StorageLevel.MEMORY_AND_DISK)


def _mark_earlier(classified: DataFrame, cross: DataFrame | None, per_file: dict,
                  files: list[Delivered]) -> tuple[DataFrame, set]:
    """``classified`` with ``_earlier`` (already stored from an earlier delivery) and those rows made
    duplicates; ``per_file`` counts moved from kept (and its late / out-of-order / converted flags) to
    duplicates; the reading days of those rows."""
    if cross is None:
        return classified.withColumn("_earlier", F.lit(False)), set()
    adj = cross.groupBy("_fi", "day").agg(
        F.count("*").alias("n"), F.sum(F.col("late").cast("long")).alias("late"),
        F.sum(F.col("out_of_order").cast("long")).alias("ooo"), F.sum(F.col("converted").cast("long")).alias("conv")).collect()
    if not adj:
        return classified.withColumn("_earlier", F.lit(False)), set()
    for r in adj:
        c = per_file[files[r["_fi"]].sha256]
        c["kept"] -= r["n"]
        c["duplicates"] += r["n"]
        c["duplicates_earlier"] += r["n"]
        c["late"] -= r["late"]
        c["out_of_order"] -= r["ooo"]
        c["converted"] -= r["conv"]
        c["_days"][r["day"]] -= r["n"]
    flag = cross.select("_fi", "_row", F.lit(True).alias("_earlier"))
    if sum(r["n"] for r in adj) <= BROADCAST_ROWS:
        flag = F.broadcast(flag)
    marked = (classified.join(flag, ["_fi", "_row"], "left")
              .withColumn("_earlier", F.coalesce(F.col("_earlier"), F.lit(False)))
              .withColumn("_dup", F.col("_dup") | F.col("_earlier")))
    return marked, {r["day"] for r in adj}


def _landed_files(spark: SparkSession, settings: Settings, day: dt.date) -> list[Delivered] | None:
    """The files delivery day ``day`` was ingested from, in the order ``delivery_files`` lists them: their
    landed copies (exactly the bytes ingested), each verified against its manifest sha256 first and
    repaired from the inbox when needed (``lake.landing.verify``). None when a copy is corrupt and the
    inbox no longer has the file: the copy is not read, a ``landed_copy_corrupt`` finding is written."""
    rows = sorted(_counts_row(spark, settings, day), key=lambda r: (list(READING_SOURCES).index(r["source"]), r["file"]))
    out = []
    for r in rows:
        v = landing.verify(settings, r["source"], r["_file_sha256"], r["file"])
        if v.status == "corrupt":
            landing.record_corrupt(settings, r["source"], r["_file_sha256"], r["file"], v, spark)
            return None
        out.append(Delivered(r["source"], Path(v.uri)))
    return out


def _reprocess_later(spark: SparkSession, settings: Settings, day: dt.date, days: set) -> list[dict]:
    """Re-process, in delivery-day order, the deliveries after ``day`` whose outcome ``day``'s readings
    (just written, in the reading days ``days``) change: one that keeps a reading ``day`` now keeps too
    (it arrived before ``day`` did, so it was no duplicate then), or one that counted a duplicate of an
    earlier delivery's reading no longer stored. Nothing is done on a normal day: no later delivery
    exists. Each re-processing may re-process deliveries after it in turn."""
    cpath, rpath = io.table_path(settings, *COUNTS), io.table_path(settings, *READINGS)
    if not days or not io.is_table(spark, cpath) or not io.is_table(spark, rpath):
        return []
    later = sorted({r["delivery_day"] for r in io.read(spark, cpath).where(F.col("delivery_day") > F.lit(day))
                   .select("delivery_day", "reading_days").collect()
                    if set((r["reading_days"] or "").split(",")) & days})
    if not later:
        return []
    reading_days = sorted(_day(d) for d in days)
    readings = io.read(spark, rpath).where(F.col("day").isin(reading_days)).select("delivery_day", *READING_KEY)
    mine = readings.where(F.col("delivery_day") == F.lit(day)).drop("delivery_day")
    theirs = readings.where(F.col("delivery_day").isin(later))
    redo = {r[0] for r in theirs.join(mine, READING_KEY, "left_semi").select("delivery_day").distinct().collect()}
    dpath = io.table_path(settings, *DUPLICATES)
    if io.is_table(spark, dpath):
        dups = (io.read(spark, dpath).where(F.col("delivery_day").isin(later) & F.col("earlier_delivery"))
                .withColumn("day", F.to_date("ts")).where(F.col("day").isin(reading_days)))
        redo |= {r[0] for r in dups.join(readings.drop("delivery_day"), READING_KEY, "left_anti")
                 .select("delivery_day").distinct().collect()}
    out = []
    for d in sorted(redo):
        files = _landed_files(spark, settings, d)
        if files is None:  # a landed copy is corrupt and cannot be repaired: that day keeps its rows
            log.error("readings %s: delivery day %s should be re-processed after it, but one of its landed copies is "
                      "corrupt (finding landed_copy_corrupt); its stored readings are left as they are", day, d)
            continue
        log.info("readings %s: delivery day %s is re-processed after it (its readings depend on this day's)", day, d)
        out.append(ingest_readings(settings, d, spark, force=True, files=files))
    return out


def _result(day: dt.date, rows: list[dict], seconds: float, skipped: bool) -> dict:
    days = sorted({d for r in rows for d in (r.get("reading_days") or "").split(",") if d})
    read = sum(r["rows_read"] for r in rows)
    return {"delivery_day": day.isoformat(), "skipped": skipped, "files": [
        {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in r.items() if k != "inputs"} for r in rows],
        "rows_read": read, "kept": sum(r["kept"] for r in rows), "duplicates": sum(r["duplicates"] for r in rows),
        "quarantined": sum(r["quarantined"] for r in rows), "reading_days": days,
        "seconds": round(seconds, 2), "rows_per_second": round(read / seconds) if seconds > 0 else None}


def _count(classified: DataFrame, files: list[Delivered]) -> dict:
    """Per file: rows read, kept, duplicates, late, out of order, converted, quarantined (and by
    defect type) and the kept rows per reading day (``_days``), from one aggregation."""
    defect = _map({k: v[0] for k, v in READING_RULES.items()})[F.col("_rule")]
    agg = (classified.groupBy("_fi", "_q", "_dup", F.when(F.col("_q"), defect).alias("defect"),
                              F.when(~F.col("_q") & ~F.col("_dup"), F.col("day")).alias("kday"))
           .agg(F.count("*").alias("n"), F.sum(F.col("late").cast("long")).alias("late"),
                F.sum(F.col("out_of_order").cast("long")).alias("ooo"),
                F.sum(F.col("converted_from").isNotNull().cast("long")).alias("conv")).collect())
    out = {}
    for i, f in enumerate(files):
        c = {"rows_read": f.rows, "kept": 0, "duplicates": 0, "duplicates_earlier": 0, "late": 0, "out_of_order": 0, "converted": 0,
             "quarantined": 0, **{f"quarantined_{t.removeprefix('reading_')}": 0 for t in QUARANTINE_TYPES}, "_days": {}}
        for r in agg:
            if r["_fi"] != i:
                continue
            if r["_q"]:
                c["quarantined"] += r["n"]
                c[f"quarantined_{r['defect'].removeprefix('reading_')}"] += r["n"]
            elif r["_dup"]:
                c["duplicates"] += r["n"]
            else:
                c["kept"] += r["n"]
                c["late"] += r["late"] or 0
                c["out_of_order"] += r["ooo"] or 0
                c["converted"] += r["conv"] or 0
                c["_days"][r["kday"]] = c["_days"].get(r["kday"], 0) + r["n"]
        out[f.sha256] = c
    return out


def _file_columns(files: list[Delivered]) -> dict[str, Column]:
    fi = F.col("_fi")

    def pick(values: list) -> Column:
        expr = F.lit(None).cast("string")
        for i, v in enumerate(values):
            expr = F.when(fi == i, F.lit(v)).otherwise(expr)
        return expr

    return {"_source": pick([f.source for f in files]), "_file_sha256": pick([f.sha256 for f in files]),
            "_batch_id": pick([f"{f.source}-{f.sha256[:16]}" for f in files])}


def _write_readings(spark: SparkSession, settings: Settings, classified: DataFrame, files: list[Delivered],
                    day: dt.date, ingested: dict) -> None:
    fc = _file_columns(files)
    cond = f"delivery_day = DATE'{day}'"
    kept = classified.where(~F.col("_q") & ~F.col("_dup")).select(
        "city_code", "ts", "metric", "value", "unit", "late", "out_of_order", "converted_from",
        fc["_source"].alias("_source"), fc["_file_sha256"].alias("_file_sha256"), F.col("_row").cast("long").alias("_row"),
        F.lit(day).alias("delivery_day"), "day")
    path = io.table_path(settings, *READINGS)
    tables.prepare_for_write(path)  # (the lease of this table is held by ingest_readings)
    if io.is_table(spark, path):
        kept.write.format("delta").mode("overwrite").option("replaceWhere", cond).save(path)
    else:
        kept.write.format("delta").mode("overwrite").partitionBy("day").save(path)
    dups = classified.where(F.col("_dup")).select(
        F.lit(day).alias("delivery_day"), fc["_source"].alias("_source"), fc["_file_sha256"].alias("_file_sha256"),
        F.col("_row").cast("long").alias("_row"), "city_code", "ts", "metric", F.col("_earlier").alias("earlier_delivery"))
    io.replace_where(dups, io.table_path(settings, *DUPLICATES), cond)
    for source in sorted({f.source for f in files}):
        idx = [i for i, f in enumerate(files) if f.source == source]
        at = F.lit(None).cast("timestamp")
        for i in idx:
            at = F.when(F.col("_fi") == i, F.lit(ingested[files[i].sha256]).cast("timestamp")).otherwise(at)
        q = classified.where(F.col("_q") & F.col("_fi").isin(idx)).select(
            *[F.col(f"_in_{c}").alias(c) for c in READING_COLUMNS], "_raw_line",
            fc["_source"].alias("_source"), fc["_file_sha256"].alias("_file_sha256"), F.col("_row").cast("long").alias("_row"),
            fc["_batch_id"].alias("_batch_id"), at.alias("_ingested_at"), "_rule", "_reason",
            F.lit(day).alias("delivery_day"))
        io.replace_where(q, io.table_path(settings, "quarantine", source), cond)


MANIFEST_SCHEMA = ("source string, file_name string, landing_path string, sha256 string, bytes long, "
                   "declared_encoding string, detected_encoding string, rows_read long, rows_raw long, "
                   "rows_quarantined long, findings long, batch_id string, ingested_at timestamp")


def _record_manifest(spark: SparkSession, settings: Settings, files: list[Delivered], per_file: dict, landed: dict,
                     ingested: dict) -> None:
    """One ``landing/_manifest`` row per file (jobs/ingest.py's convention; rows_raw are the kept rows,
    the duplicates are counted in quality/iot_reading_counts): appended for a new file; replaced for a
    file re-processed with other counts (a changed ledger, or an earlier delivery ingested after it),
    so that the manifest keeps reconciling with the stored rows."""
    have = _manifest_rows(spark, settings, [f.sha256 for f in files])
    rows = [{
        "source": f.source, "file_name": f.path.name, "landing_path": landed[f.sha256], "sha256": f.sha256,
        "bytes": f.bytes, "declared_encoding": "utf-8", "detected_encoding": "utf-8",
        "rows_read": per_file[f.sha256]["rows_read"], "rows_raw": per_file[f.sha256]["kept"],
        "rows_quarantined": per_file[f.sha256]["quarantined"], "findings": 0,
        "batch_id": f"{f.source}-{f.sha256[:16]}", "ingested_at": ingested[f.sha256],
    } for f in files]
    path = io.table_path(settings, *MANIFEST)
    new = [r for r in rows if r["sha256"] not in have]
    changed = [r for r in rows if r["sha256"] in have
               and (have[r["sha256"]]["rows_raw"], have[r["sha256"]]["rows_quarantined"]) != (r["rows_raw"], r["rows_quarantined"])]
    if new:
        io.append(spark.createDataFrame(new, schema=MANIFEST_SCHEMA), path)
    if changed:
        io.replace_where(spark.createDataFrame(changed, schema=MANIFEST_SCHEMA), path,
                         f"sha256 IN ({_sql_list(r['sha256'] for r in changed)})")


def _remove(uri: str) -> None:
    fs, path = io.filesystem(uri)
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


# ------------------------------------------------------------------ health and topics

def _days_list(days) -> list[dt.date]:
    if isinstance(days, (str, dt.date)):
        days = [days]
    return sorted({_day(d) for d in days})


def _devices_in_service(devices: DataFrame, day: Column) -> Column:
    """A device is expected to report on ``day``: status 在用 and installed on or before it."""
    installed = F.col("install_date").isNull() | (F.col("install_date") <= day)
    return (F.col("status") == IN_SERVICE) & installed


def hourly_stats(readings: DataFrame, devices: DataFrame) -> DataFrame:
    """Readings -> one row per device, metric and hour: count, sum, min, max, first/last ts, and for
    flood points the readings over the device's alarm threshold (count, first time). Pure."""
    thr = devices.where(F.col("device_type") == "04").select("city_code", F.col("alarm_threshold").alias("_thr"))
    r = readings.join(F.broadcast(thr), "city_code", "left")
    over = (F.col("metric") == "water_level") & F.col("_thr").isNotNull() & (F.col("value") > F.col("_thr"))
    return r.groupBy("day", "city_code", "metric", F.date_trunc("hour", "ts").alias("hour")).agg(
        F.count("*").alias("n"), F.sum("value").alias("s"), F.min("value").alias("vmin"), F.max("value").alias("vmax"),
        F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"),
        F.sum(over.cast("long")).alias("n_over"), F.min(F.when(over, F.col("ts"))).alias("first_over"))


def flatlines(readings: DataFrame, hourly: DataFrame) -> DataFrame:
    """(day, city_code, metric, minutes) of the longest run of one value of a continuous metric lasting
    at least FLATLINE_MINUTES, per device and metric. Pure.

    A run lasts from its first to its last reading. A run of 3 hours contains at least one whole
    clock hour with one value, so only the (device, metric) pairs with such an hour are read again and
    examined row by row."""
    candidates = (hourly.where(F.col("metric").isin(*CONTINUOUS_METRICS) & (F.col("n") >= 2) & (F.col("vmin") == F.col("vmax")))
                  .select("day", "city_code", "metric").distinct())
    r = readings.join(F.broadcast(candidates), ["day", "city_code", "metric"], "left_semi")
    w = Window.partitionBy("day", "city_code", "metric").orderBy("ts")
    r = r.withColumn("_new", F.coalesce(F.col("value") != F.lag("value").over(w), F.lit(True)))
    r = r.withColumn("_run", F.sum(F.col("_new").cast("long")).over(w.rowsBetween(Window.unboundedPreceding, 0)))
    runs = (r.groupBy("day", "city_code", "metric", "_run").agg(F.min("ts").alias("a"), F.max("ts").alias("b"))
            .withColumn("minutes", (F.unix_timestamp("b") - F.unix_timestamp("a")) / 60))
    return (runs.where(F.col("minutes") >= FLATLINE_MINUTES)
            .groupBy("day", "city_code", "metric").agg(F.max("minutes").cast("long").alias("minutes")))


def device_health_rows(hourly: DataFrame, flat: DataFrame, devices: DataFrame, days: list[dt.date]) -> DataFrame:
    """``topic.device_health`` rows: every ledger device on every day. Pure."""
    spark = hourly.sparkSession
    day_df = spark.createDataFrame([(d,) for d in days], "day date")
    per_dev = hourly.groupBy("day", "city_code").agg(
        F.sum("n").alias("readings"), F.max("last_ts").alias("last_seen"))
    per_flat = flat.groupBy("day", "city_code").agg(
        F.max("minutes").alias("flatline_minutes"),
        F.min_by("metric", F.struct(-F.col("minutes"), F.col("metric"))).alias("flatline_metric"))
    n_metrics = _map({k: len(v[2]) for k, v in DEVICE_TYPES.items()})[F.col("device_type")]
    dev = devices.select("city_code", "device_type", "owner_department", "town_code", "status", "install_date",
                         "report_interval_min")
    base = dev.crossJoin(F.broadcast(day_df))
    in_service = _devices_in_service(base, F.col("day"))
    silent_from = F.col("day").cast("timestamp") + F.expr(f"INTERVAL {24 - SILENT_HOURS} HOURS")
    out = (base.join(per_dev, ["day", "city_code"], "left").join(per_flat, ["day", "city_code"], "left")
           .withColumn("_in_service", in_service))
    return out.select(
        "day", "city_code", "device_type", "owner_department", "town_code", "status",
        F.coalesce(F.col("readings"), F.lit(0)).cast("long").alias("readings"),
        F.when(F.col("_in_service"), n_metrics * (1440 / F.col("report_interval_min"))).otherwise(F.lit(0)).cast("long").alias("expected"),
        "last_seen",
        (F.col("_in_service") & (F.col("last_seen").isNull() | (F.col("last_seen") < silent_from))).alias("silent"),
        F.col("flatline_minutes").isNotNull().alias("flatline"), "flatline_metric",
        F.coalesce(F.col("flatline_minutes"), F.lit(0)).cast("long").alias("flatline_minutes"),
    )


def online_rate_rows(health: DataFrame) -> DataFrame:
    """``topic.device_online_rate``: per day, department and type, the devices in service, those not
    silent, and the rate. Pure."""
    in_service = F.col("expected") > 0
    return (health.where(in_service).groupBy("day", "owner_department", "device_type")
            .agg(F.count("*").alias("devices"), F.sum((~F.col("silent")).cast("long")).alias("online"))
            .withColumn("rate", F.round(F.col("online") / F.col("devices"), 4)))


def coverage_rows(health: DataFrame, boundary: DataFrame) -> DataFrame:
    """``topic.sensor_coverage_by_town``: per day, town and type, the devices in service, online, and
    per km² (area from ``base.admin_boundary``). Devices outside every town are not counted. Pure."""
    area = boundary.select(F.col("code").alias("town_code"), F.col("name").alias("town"), "area_km2")
    return (health.where((F.col("expected") > 0) & F.col("town_code").isNotNull())
            .groupBy("day", "town_code", "device_type")
            .agg(F.count("*").alias("devices"), F.sum((~F.col("silent")).cast("long")).alias("online"))
            .join(F.broadcast(area), "town_code")
            .withColumn("devices_per_km2", F.round(F.col("devices") / F.col("area_km2"), 4))
            .withColumn("online_per_km2", F.round(F.col("online") / F.col("area_km2"), 4))
            .drop("area_km2"))


def air_quality_hourly_rows(hourly: DataFrame, devices: DataFrame, boundary: DataFrame) -> DataFrame:
    """``topic.air_quality_hourly``: per town and hour, the mean of every pollutant over all readings
    of the town's air stations, and the number of stations that reported. Pure."""
    town = devices.where(F.col("town_code").isNotNull()).select("city_code", "town_code")
    names = boundary.select(F.col("code").alias("town_code"), F.col("name").alias("town"))
    h = hourly.where(F.col("metric").isin(*POLLUTANTS)).join(F.broadcast(town), "city_code")
    aggs = [F.round(F.sum(F.when(F.col("metric") == p, F.col("s"))) / F.sum(F.when(F.col("metric") == p, F.col("n"))), 3).alias(p)
            for p in POLLUTANTS]
    return (h.groupBy("day", "hour", "town_code").agg(*aggs, F.countDistinct("city_code").alias("devices"))
            .join(F.broadcast(names), "town_code"))


def exceedance_rows(aq_hourly: DataFrame) -> DataFrame:
    """``topic.air_quality_exceedance``: per town, day, pollutant and averaging period of GB 3095-2012
    grade II, from the town's hourly means. Pure.

    - ``1h``: value = the highest hourly mean of the day, ``hours_over`` = hours over the 1-hour limit;
    - ``24h``: value = the mean of the day's hourly means, valid with at least 20 of them;
    - ``8h`` (O3): the 8-hour moving averages of the day (windows starting 00:00 ... 16:00), each valid
      with at least 6 hourly means in it; value = the highest valid one, valid when there is one.

    ``hours`` is the hours of the day with a mean. A row that is not valid is not judged: its value and
    ``exceeded`` are null (the standard does not allow a statement from too few hours), so a gap in the
    data never reads as clean air. The hourly means are unpivoted once, so that every pollutant and
    period comes out of one daily aggregation and one window aggregation, not one per limit. The
    windows are made by exploding each hour into the windows that contain it rather than by a range
    window, which would miss windows starting at an hour without data."""
    keys = ["day", "town_code", "town", "pollutant"]
    long = (aq_hourly.select("day", "town_code", "town", "hour", F.explode(F.array(*[
        F.struct(F.lit(p).alias("pollutant"), F.col(p).cast("double").alias("v")) for p in GB3095_II])).alias("_p"))
        .select("day", "town_code", "town", "hour", "_p.pollutant", "_p.v").where(F.col("v").isNotNull()))
    limit_1h = _map({p: lim["1h"] for p, lim in GB3095_II.items() if "1h" in lim})[F.col("pollutant")]
    daily = long.groupBy(*keys).agg(
        F.max("v").alias("_max"), F.avg("v").alias("_avg"), F.count("*").alias("hours"),
        F.sum((F.col("v") > limit_1h).cast("long")).alias("_over"))
    h = F.hour("hour")
    windows = (long.where(F.col("pollutant").isin(*[p for p, lim in GB3095_II.items() if "8h" in lim]))
               .withColumn("_start", F.explode(F.sequence(F.greatest(h - (WINDOW_HOURS - 1), F.lit(0)),
                                                          F.least(h, F.lit(24 - WINDOW_HOURS)))))
               .groupBy(*keys, "_start").agg(F.avg("v").alias("_mean"), F.count("*").alias("_n"))
               .groupBy(*keys).agg(F.max(F.when(F.col("_n") >= MIN_HOURS["8h"], F.col("_mean"))).alias("_max8")))
    periods = aq_hourly.sparkSession.createDataFrame(
        [(p, period, limit, METRICS[p][0]) for p, lim in GB3095_II.items() for period, limit in lim.items()],
        "pollutant string, period string, limit_value double, unit string")
    period = F.col("period")
    valid = (F.when(period == "1h", F.lit(True)).when(period == "24h", F.col("hours") >= MIN_HOURS["24h"])
             .otherwise(F.col("_max8").isNotNull()))
    raw = F.when(period == "1h", F.col("_max")).when(period == "24h", F.col("_avg")).otherwise(F.col("_max8"))
    value = F.when(valid, F.round(raw, 3))
    return (daily.join(windows, keys, "left").join(F.broadcast(periods), "pollutant")
            .select("day", "town_code", "town", "pollutant", "period", value.alias("value"), "limit_value", "unit",
                    F.when(period == "1h", F.col("_over")).alias("hours_over"), "hours", valid.alias("valid"),
                    (value > F.col("limit_value")).alias("exceeded")))


def point_code(city_code: Column) -> Column:
    """A city code written with hyphens (110115-04-01-0000123-5): the open zone's PII gate would take
    18 plain digits for an ID or mobile number."""
    return F.concat_ws("-", F.substring(city_code, 1, 6), F.substring(city_code, 7, 2), F.substring(city_code, 9, 2),
                       F.substring(city_code, 11, 7), F.substring(city_code, 18, 1))


def flood_point_rows(hourly: DataFrame, devices: DataFrame) -> DataFrame:
    """``topic.flood_points``: flood points (type 04) over their alarm threshold on a day: highest
    level, first reading over, minutes over (readings over x report interval). Pure."""
    fp = devices.where(F.col("device_type") == "04").select(
        "city_code", "device_name", "town_code", "town", "lon", "lat", "alarm_threshold", "report_interval_min")
    return (hourly.where(F.col("metric") == "water_level").groupBy("day", "city_code").agg(
        F.max("vmax").alias("max_level"), F.min("first_over").alias("first_over"), F.sum("n_over").alias("n_over"))
        .where(F.col("n_over") > 0).join(F.broadcast(fp), "city_code")
        .select("day", point_code(F.col("city_code")).alias("point_code"), "device_name", "town_code", "town", "lon", "lat",
                "alarm_threshold", "max_level", "first_over",
                (F.col("n_over") * F.col("report_interval_min")).cast("long").alias("minutes_over")))


@dataclass
class DayData:
    days: list
    hourly: DataFrame
    flat: DataFrame
    health: DataFrame
    devices: DataFrame
    boundary: DataFrame
    inputs: str

    def release(self) -> None:
        for df in (self.hourly, self.flat, self.health):
            df.unpersist()


def day_data(spark: SparkSession, settings: Settings, days) -> DayData:
    """The reading days' hourly statistics, flat-lines and health rows, held (memory, then disk) for
    the health and topic tables built from them."""
    days = _days_list(days)
    path = io.table_path(settings, *READINGS)
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError("base/iot_reading has no readings yet; run ingest_readings first")
    readings = io.read(spark, path).where(F.col("day").isin(days))
    devices = load_devices(spark, settings)
    _, boundary = load_boundaries(spark, settings)
    hourly = hourly_stats(readings, devices).persist(StorageLevel.MEMORY_AND_DISK)
    flat = flatlines(readings, hourly).persist(StorageLevel.MEMORY_AND_DISK)
    health = device_health_rows(hourly, flat, devices, days).persist(StorageLevel.MEMORY_AND_DISK)
    inputs = (f"base.iot_reading@v{io.version(spark, path)};base.iot_device@v{io.version(spark, io.table_path(settings, 'base', 'iot_device'))};"
              f"base.admin_boundary@v{io.version(spark, io.table_path(settings, 'base', 'admin_boundary'))}")
    return DayData(days, hourly, flat, health, devices, boundary, inputs)


def _publish(spark: SparkSession, settings: Settings, table: str, candidate: DataFrame, data: DayData,
             partitioned: bool = False) -> dict:
    t0 = time.time()
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    res = gates.publish_partition(spark, settings, tc, candidate, "day", [d.isoformat() for d in data.days],
                                  {"as_of": data.days[-1].isoformat(), "inputs": data.inputs}, partitioned=partitioned)
    return {"table": table, "status": res.status, "rows": res.rows, "days": [d.isoformat() for d in data.days],
            "seconds": round(time.time() - t0, 2)}


def device_health(settings: Settings, day, spark: SparkSession | None = None, data: DayData | None = None) -> dict:
    """Publish ``topic.device_health`` for the reading day(s) ``day`` (a date or a list)."""
    spark = spark or get_spark(settings)
    own = data is None
    data = data or day_data(spark, settings, day)
    try:
        return _publish(spark, settings, "topic.device_health", data.health, data, partitioned=True)
    finally:
        if own:
            data.release()


def build_topics(settings: Settings, days, spark: SparkSession | None = None, data: DayData | None = None) -> list[dict]:
    """Publish the IoT topic tables other than device health for the reading day(s) ``days``."""
    spark = spark or get_spark(settings)
    own = data is None
    data = data or day_data(spark, settings, days)
    try:
        aq = air_quality_hourly_rows(data.hourly, data.devices, data.boundary).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            return [
                _publish(spark, settings, "topic.device_online_rate", online_rate_rows(data.health), data),
                _publish(spark, settings, "topic.air_quality_hourly", aq, data),
                _publish(spark, settings, "topic.air_quality_exceedance", exceedance_rows(aq), data),
                _publish(spark, settings, "topic.flood_points", flood_point_rows(data.hourly, data.devices), data),
                _publish(spark, settings, "topic.sensor_coverage_by_town", coverage_rows(data.health, data.boundary), data),
            ]
        finally:
            aq.unpersist()
    finally:
        if own:
            data.release()


# ------------------------------------------------------------------ the day

def run_day(settings: Settings, day, spark: SparkSession | None = None) -> dict:
    """Ledger (if its inputs changed) -> readings of delivery day ``day`` -> health -> topics for every
    reading day the delivery touched. Returns counts and seconds (and rows/s) per stage."""
    day = _day(day)
    spark = spark or get_spark(settings)
    stages: dict = {}
    t = time.time()
    ledger = build_devices(settings, day, spark)
    stages["ledger"] = {"seconds": round(time.time() - t, 2), "rows": ledger["rows"], "status": ledger["status"]}
    t = time.time()
    readings = ingest_readings(settings, day, spark)
    stages["readings"] = {"seconds": round(time.time() - t, 2), "rows": readings["rows_read"],
                          "kept": readings["kept"], "duplicates": readings["duplicates"],
                          "quarantined": readings["quarantined"], "skipped": readings["skipped"],
                          "redone": readings.get("redone", [])}
    days = readings["reading_days"] or [day.isoformat()]
    t = time.time()
    data = day_data(spark, settings, days)
    try:
        health = device_health(settings, days, spark, data)
        n_in = data.hourly.agg(F.sum("n")).collect()[0][0] or 0
        stages["health"] = {"seconds": round(time.time() - t, 2), "rows": n_in, "health_rows": health["rows"],
                            "status": health["status"]}
        t = time.time()
        topics = build_topics(settings, days, spark, data)
        stages["topics"] = {"seconds": round(time.time() - t, 2), "rows": n_in,
                            "tables": {x["table"]: {"status": x["status"], "rows": x["rows"]} for x in topics}}
    finally:
        data.release()
    for s in stages.values():
        s["rows_per_second"] = round(s["rows"] / s["seconds"]) if s["seconds"] > 0 and s["rows"] else None
    return {"day": day.isoformat(), "reading_days": days, "stages": stages,
            "seconds": round(sum(s["seconds"] for s in stages.values()), 2), "ledger": ledger, "readings": readings,
            "topics": [health, *topics]}


# ------------------------------------------------------------------ evaluation against the generator's truth

THRESHOLD = 0.99
def kept_flags() -> dict:
    """Defect types of kept readings and the flag that marks them (built when a session exists: a
    Column cannot be made at import time)."""
    return {"reading_late": F.col("late"), "reading_out_of_order": F.col("out_of_order"),
            "reading_unit_mismatch": F.col("converted_from").isNotNull()}


def _scores(truth: set, found: set, types: list[str] | None = None, kind=lambda x: x[-1]) -> dict:
    types = types or sorted({kind(t) for t in truth} | {kind(f) for f in found})
    out = {}
    for t in types:
        tr = {x for x in truth if kind(x) == t}
        fo = {x for x in found if kind(x) == t}
        tp = len(tr & fo)
        out[t] = {"truth": len(tr), "found": len(fo), "true_positives": tp,
                  "precision": round(tp / len(fo), 4) if fo else (1.0 if not tr else 0.0),
                  "recall": round(tp / len(tr), 4) if tr else (1.0 if not fo else 0.0),
                  "missed_examples": sorted(tr - fo)[:5], "false_examples": sorted(fo - tr)[:5]}
    return out


def _truth_csv(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def found_readings(spark: SparkSession, settings: Settings, shas: list[str]) -> DataFrame:
    """``(source, sha256, row, defect_type)`` of every reading defect the lake recorded for the files
    ``shas``: quarantined rows (by rule), duplicates, and the kept rows' late / out-of-order /
    converted flags."""
    parts = []
    defect = _map({k: v[0] for k, v in READING_RULES.items()})
    for source in READING_SOURCES:
        path = io.table_path(settings, "quarantine", source)
        if io.is_table(spark, path):
            parts.append(io.read(spark, path).where(F.col("_file_sha256").isin(shas)).select(
                "_source", "_file_sha256", "_row", defect[F.col("_rule")].alias("defect_type")))
    path = io.table_path(settings, *DUPLICATES)
    if io.is_table(spark, path):
        parts.append(io.read(spark, path).where(F.col("_file_sha256").isin(shas)).select(
            "_source", "_file_sha256", "_row", F.lit("reading_duplicate").alias("defect_type")))
    path = io.table_path(settings, *READINGS)
    if io.is_table(spark, path):
        kept = io.read(spark, path).where(F.col("_file_sha256").isin(shas))
        flags = F.array(*[F.when(cond, F.lit(name)) for name, cond in kept_flags().items()])
        parts.append(kept.where(F.col("late") | F.col("out_of_order") | F.col("converted_from").isNotNull()).select(
            "_source", "_file_sha256", "_row", F.explode(F.filter(flags, lambda x: x.isNotNull())).alias("defect_type")))
    if not parts:
        return spark.createDataFrame([], "_source string, _file_sha256 string, _row long, defect_type string")
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def evaluate(spark: SparkSession, settings: Settings, truth_dir) -> dict:
    """Precision and recall against the IoT generator's truth in ``truth_dir`` (``iot_manifest.json``,
    ``truth/readings.csv``, ``truth/iot_defects.csv``, ``truth/device_health.csv``,
    ``truth/iot_locations.csv``): per reading defect type (by file and row), per ledger defect type
    (by file, row and field), per health condition (by day and city code), and the share of devices
    placed in the right town. Only the files of the manifest are looked at (matched by sha256)."""
    truth_dir = Path(truth_dir)
    manifest_path = truth_dir / "iot_manifest.json"
    if not manifest_path.exists():
        raise InputError(f"{manifest_path}: not found; evaluate needs the folder written by lake.generate_iot")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    names = {f["sha256"]: Path(f["path"]).name for f in manifest["files"]}
    sources = {f["sha256"]: f["source"] for f in manifest["files"]}
    reading_shas = [s for s, src in sources.items() if src in READING_SOURCES]
    result: dict = {}

    # readings: compared in Spark (a day at full scale has ~0.5 M truth rows)
    truth_path = truth_dir / "truth" / "readings.csv"
    if truth_path.exists() and reading_shas:
        truth = (spark.read.option("header", "true").schema("source string, file string, row long, defect_type string")
                 .csv(str(truth_path)).where(F.col("file").isin(list({names[s] for s in reading_shas}))))
        file_of = spark.createDataFrame([(s, names[s]) for s in reading_shas], "_file_sha256 string, file string")
        found = (found_readings(spark, settings, reading_shas).join(F.broadcast(file_of), "_file_sha256")
                 .select(F.col("_source").alias("source"), "file", F.col("_row").alias("row"), "defect_type"))
        keys = ["source", "file", "row", "defect_type"]
        t = truth.select(*keys).distinct().withColumn("_t", F.lit(True))
        f = found.select(*keys).distinct().withColumn("_f", F.lit(True))
        rows = (t.join(f, keys, "full_outer").groupBy("defect_type")
                .agg(F.sum(F.col("_t").isNotNull().cast("long")).alias("truth"),
                     F.sum(F.col("_f").isNotNull().cast("long")).alias("found"),
                     F.sum((F.col("_t").isNotNull() & F.col("_f").isNotNull()).cast("long")).alias("tp")).collect())
        per = {}
        for r in sorted(rows, key=lambda r: r["defect_type"]):
            per[r["defect_type"]] = {
                "truth": r["truth"], "found": r["found"], "true_positives": r["tp"],
                "precision": round(r["tp"] / r["found"], 4) if r["found"] else (1.0 if not r["truth"] else 0.0),
                "recall": round(r["tp"] / r["truth"], 4) if r["truth"] else (1.0 if not r["found"] else 0.0)}
        result["readings"] = per

    # ledger defects: by file, row, field and defect type
    ledger_truth = _truth_csv(truth_dir / "truth" / "iot_defects.csv")
    ledger_shas = [s for s, src in sources.items() if src == DEVICE_SOURCE]
    if ledger_truth:
        fpath = io.table_path(settings, *findings.FINDINGS)
        frows = (io.read(spark, fpath).where((F.col("source") == DEVICE_SOURCE) & F.col("_file_sha256").isin(ledger_shas))
                 .select("_file_sha256", "_row", "field", "defect_type").distinct().collect()
                 if io.is_table(spark, fpath) else [])
        found = {(names[r["_file_sha256"]], int(r["_row"]), r["field"], r["defect_type"]) for r in frows}
        truth = {(r["file"], int(r["row"]), r["field"], r["defect_type"]) for r in ledger_truth}
        kinds = sorted({t[3] for t in truth} | {"duplicate_city_code", "device_registered_twice",
                                                 "point_outside_district", "city_code_checksum", "city_code_format"})
        result["ledger"] = _scores(truth, {x for x in found if x[3] in kinds}, kinds)

    # device health: (day, city code, condition)
    health_truth = _truth_csv(truth_dir / "truth" / "device_health.csv")
    hpath = io.table_path(settings, "topic", "device_health")
    days = sorted({r["day"] for r in health_truth}) or manifest.get("generator", {}).get("days", [])
    if days and io.is_table(spark, hpath):
        h = io.read(spark, hpath).where(F.col("day").isin(days) & (F.col("silent") | F.col("flatline"))).select(
            F.col("day").cast("string").alias("day"), "city_code", "silent", "flatline").collect()
        found = {(r["day"], r["city_code"], "silent") for r in h if r["silent"]}
        found |= {(r["day"], r["city_code"], "flatline") for r in h if r["flatline"]}
        truth = {(r["day"], r["city_code"], r["condition"]) for r in health_truth}
        result["health"] = _scores(truth, found, ["silent", "flatline"])

    # town assignment of the ledger's devices
    loc_truth = _truth_csv(truth_dir / "truth" / "iot_locations.csv")
    dpath = io.table_path(settings, "base", "iot_device")
    if loc_truth and io.is_table(spark, dpath):
        placed = {r["city_code"]: r["town_code"] or "" for r in io.read(spark, dpath).select("city_code", "town_code").collect()}
        compared = [(placed[r["record_key"]], r["town_code"]) for r in loc_truth if r["record_key"] in placed]
        right = sum(1 for a, b in compared if a == b)
        result["locations"] = {"devices": len(compared), "right": right,
                               "accuracy": round(right / len(compared), 4) if compared else 1.0}

    checks = [v for part in ("readings", "ledger", "health") for v in result.get(part, {}).values()]
    result["passed"] = (all(v["precision"] >= THRESHOLD and v["recall"] >= THRESHOLD for v in checks)
                        and result.get("locations", {}).get("accuracy", 1.0) >= THRESHOLD)
    return result
