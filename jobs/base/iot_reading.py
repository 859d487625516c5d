"""``base.iot_reading``: one delivery day of sensor readings (``iot_readings_json`` / ``iot_readings_csv``,
docs/spatial_iot.md). Readings are not landed row by row through ``raw/`` (about 19 M a day at
Daxing's size): this job lands the delivered files itself and checks every line natively.

Each file is hashed, landed, split into lines with numpy (no per-line Python) and staged as Parquet
(``_row``, ``line``); Spark parses the lines with native expressions (``from_json`` / ``split``,
casts), checks them and classifies every row as kept (``base/iot_reading``, partitioned by the
reading day), a duplicate (counted, listed in ``quality/iot_reading_duplicates``: a second copy
within the delivery, or a reading already stored from an earlier delivery day, found against the
affected day partitions only) or quarantined (``quarantine/<source>`` with file, row, rule and
reason). Per-file counts go to ``quality/iot_reading_counts`` and reconcile: rows read = kept +
duplicates + quarantined. Every write replaces exactly the delivery day's rows; a re-run with the
same files, ledger and rules writes nothing. The earliest delivery's copy of a reading is kept
whatever the processing order: a delivery ingested after later ones re-processes those it affects,
in delivery-day order.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
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

from lake import io, landing, locks, tables
from lake.files import InputError
from lake.log import log
from lake.rules import literal_map as _map, sql_list as _sql_list
from lake.sensing import (CONVERSIONS, DEVICE_TYPES, FUTURE_TOLERANCE_MINUTES, METRIC_TYPE, METRICS, UNIT_SPELLINGS,
                          as_date)
from lake.settings import Settings
from lake.spark import get_spark
from jobs.base.iot_device import load_devices

TABLES = ("base.iot_reading",)

READING_SOURCES = {"iot_readings_json": "jsonl", "iot_readings_csv": "csv"}


READING_COLUMNS = ("device", "ts", "metric", "value", "unit")


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


CHUNK_BYTES = 64 << 20


COUNTS_SCHEMA = (
    "delivery_day date, source string, file string, _file_sha256 string, rows_read long, kept long, "
    "duplicates long, duplicates_earlier long, late long, out_of_order long, converted long, quarantined long, "
    + ", ".join(f"quarantined_{t.removeprefix('reading_')} long" for t in QUARANTINE_TYPES)
    + ", reading_days string, inputs string"
)


def city_code_long(col: Column) -> Column:
    """The first 17 digits of a city code as a long (a compact sort/join key); null if not digits."""
    return F.when(col.rlike(r"^[0-9]{17}"), F.substring(col, 1, 17).cast("long"))


@dataclass
class Delivered:
    source: str
    path: Path
    sha256: str = ""
    bytes: int = 0
    staging: str = ""
    rows: int = 0          # non-blank lines (CSV: without the header)
    header: tuple = ()     # CSV only: the column names in file order


def inbox_delivery_days(settings: Settings) -> list[str]:
    """Delivery days (``YYYY-MM-DD``) of the reading files in the inbox, oldest first."""
    import re

    days = set()
    for source in READING_SOURCES:
        folder = Path(settings.inbox) / source
        if folder.is_dir():
            for f in folder.iterdir():
                m = re.search(r"_(\d{8})\.[^.]+$", f.name)
                if m and f.is_file():
                    d = m.group(1)
                    days.add(f"{d[:4]}-{d[4:6]}-{d[6:]}")
    return sorted(days)


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
    io.make_parent(fs, out_path)
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
    return io.inputs_hash([f"{f.source}/{f.path.name}={f.sha256}" for f in files] + [devices_fp, RULES_VERSION])[:16]


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
    day = as_date(day)
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
        out.append(Delivered(r["source"], _landed_copy(v.uri, r["_file_sha256"]) or Path(v.uri)))
    return out


def _landed_copy(uri: str, sha: str) -> Path | None:
    """A landed file as a local path the driver reads (staging is pure Python): the file itself on a
    local root; on an object store a copy in the driver's temporary folder (only the driver reads it;
    what executors read is the staged Parquet under ``<root>/_staging``). None when it is not there."""
    if "://" not in uri:
        return Path(uri) if Path(uri).is_file() else None
    if not io.file_exists(uri):
        return None
    import tempfile

    local = Path(tempfile.gettempdir()) / "lake-landed" / sha / uri.rsplit("/", 1)[1]
    if not (local.is_file() and sha256_file(local) == sha):
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(io.read_bytes(uri))
    return local


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
    reading_days = sorted(as_date(d) for d in days)
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
    """One ``landing/_manifest`` row per file (jobs/landing/ingest.py's convention; rows_raw are the kept rows,
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


def delivered(settings: Settings, day) -> bool:
    """Whether any reading file of delivery day ``day`` is in the inbox (the daily DAG run skips its day
    without one: nothing delivered is not a failure; timeliness reports the late department)."""
    return bool(delivery_files(settings, as_date(day)))


def build(settings: Settings, as_of, days=None, **context) -> list[dict]:
    """Ingest the readings of every delivery day ``days`` (default: every delivery day in the inbox),
    each checked against the ledger as of its day (``base.iot_device`` is brought up to that day
    first). A result per delivery day; ``context.reading_days`` are the reading days whose health and
    topics must be rebuilt (``jobs.topic.sensing``)."""
    from jobs.base.iot_device import build_devices

    days = [as_date(d).isoformat() for d in days] if days else inbox_delivery_days(settings)
    if not days:
        log.info("base.iot_reading: no reading files in the inbox (%s); nothing to do",
                 " or ".join(str(Path(settings.inbox) / s) for s in READING_SOURCES))
        return []
    out, touched = [], set()
    for d in days:
        t0 = time.time()
        ledger = build_devices(settings, d)
        r = ingest_readings(settings, d)
        touched |= set(r["reading_days"] or [d])
        out.append({"table": "base.iot_reading", "status": "unchanged" if r["skipped"] else "published",
                    "rows": r["kept"], "delivery_day": d, "ledger": ledger, "readings": r,
                    "seconds": round(time.time() - t0, 2)})
    out[-1]["context"] = {"reading_days": sorted(touched)}
    return out
