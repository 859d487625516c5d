"""``base.iot_device``, the sensing ledger (感知前端台账, docs/spatial_iot.md): one row per city code
(城市码, "一前端一标识").

The rows of each department's newest ledger file on or before ``as_of`` (``raw/iot_devices``):
coordinates GCJ-02 -> WGS-84 (``lake.geo.to_wgs84``), town assigned against ``base.admin_boundary``
(``lake.geo.assign_units``), findings ``duplicate_city_code``, ``device_registered_twice`` and
``point_outside_district``; published through the gate. Skipped when its inputs are unchanged.
"""
from __future__ import annotations

import datetime as dt
import re
import time

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io, rules
from lake.files import InputError
from lake.log import log
from lake.sensing import DEVICE_TYPES, as_date
from lake.settings import Settings
from lake.spark import get_spark
from jobs.base.admin_boundary import load_boundaries
from quality import findings, gates

DEVICE_SOURCE = "iot_devices"
DEVICE_TABLE = "base.iot_device"
TABLES = (DEVICE_TABLE,)
MANIFEST = ("landing", "_manifest")
LINEAGE_TYPE = io.LINEAGE_TYPE

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
    as_of = as_date(as_of)
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc, sc = contracts.table(DEVICE_TABLE), contracts.source(DEVICE_SOURCE)
    raw_path = io.table_path(settings, "raw", DEVICE_SOURCE)
    if not io.is_table(spark, raw_path):
        raise contracts_mod.ContractError(f"{DEVICE_TABLE}: no raw data yet from {DEVICE_SOURCE}; ingest it first")
    files = _ledger_files(spark, settings, as_of)
    if not files:
        raise InputError(f"{DEVICE_TABLE}: no {DEVICE_SOURCE} file dated on or before {as_of} in landing/_manifest")
    inputs = io.inputs_hash([f["sha256"] for f in files] + io.table_versions(spark, settings, ["base.admin_boundary"]),
                            [tc.path, sc.path])[:16]
    path = io.table_path(settings, "base", "iot_device")
    if io.last_metadata(spark, path).get("inputs") == inputs:
        meta = io.last_metadata(spark, path)
        log.info("%s: inputs unchanged (%s); not rebuilt", DEVICE_TABLE, inputs)
        return {"table": DEVICE_TABLE, "status": "unchanged", "rows": int(meta["fingerprint"].split(":")[0]),
                "inputs": inputs, "seconds": round(time.time() - t0, 2)}
    boundaries = load_boundaries(spark, settings)
    names = spark.createDataFrame([(f["sha256"], f["file_name"]) for f in files], "_file_sha256 string, _file_name string")
    snapshot = io.read(spark, raw_path).join(F.broadcast(names), "_file_sha256")
    run_id = f"build-iot_device-{inputs}"
    devices, found = ledger_findings_and_devices(snapshot, sc.department, run_id)
    crs = (sc.geometry or {}).get("crs", "GCJ02")
    lon_c, lat_c = (sc.geometry or {}).get("lon", "lon"), (sc.geometry or {}).get("lat", "lat")
    located = geo.assign_units(geo.wgs84_columns(devices, {"lon": lon_c, "lat": lat_c, "crs": crs}, "_wgs_lon", "_wgs_lat",
                                                 decimals=7), "_wgs_lon", "_wgs_lat", boundaries,
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
        io.replace_if_changed(all_found, f_path, f"run_id = '{run_id}'")
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
    type_names = rules.literal_map({k: v[0] for k, v in DEVICE_TYPES.items()})
    intervals = rules.literal_map({k: v[3] for k, v in DEVICE_TYPES.items()})
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


def build(settings: Settings, as_of, **context) -> list[dict]:
    """Build and publish ``base.iot_device`` from each department's newest ledger on or before ``as_of``."""
    r = build_devices(settings, as_of)
    return [r]
