"""Sensing detection measured against the IoT generator's truth (``sample.generate_iot``)."""
from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import io
from lake.files import InputError
from lake.rules import literal_map as _map
from lake.settings import Settings
from jobs.base.iot_device import DEVICE_SOURCE
from jobs.base.iot_reading import DUPLICATES, READING_RULES, READING_SOURCES, READINGS
from quality import findings

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
        raise InputError(f"{manifest_path}: not found; evaluate needs the folder written by sample.generate_iot")
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
