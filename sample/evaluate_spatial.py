"""Spatial detection measured against the spatial generator's truth (``sample.generate_spatial``): the
town every located record was placed in (``evaluate_locations``), and the links of every address
record to the standard address library (``evaluate_addresses``)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import address as addr
from lake import io
from lake.files import InputError
from lake.settings import Settings
from quality import findings
from jobs.base.poi import OUTSIDE
from jobs.base.standard_address import BASE_SOURCES, LINKS, RAW_SOURCES, _has_run, run_id

def _read_truth(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def assigned_locations(spark: SparkSession, settings: Settings, shas: list[str] | None = None) -> dict:
    """``{source: {record_key: town_code or ""}}`` as the lake decided it: every base table with a
    ``town_code`` whose key is a source's record key (``base.poi`` -> ghzrzy_poi, ...), the
    ``town_code`` of ``quality/address_links`` when it has one, and ``""`` for every
    ``point_outside_district`` finding (of the files ``shas`` when given)."""
    contracts = contracts_mod.load(settings.contracts_dir)
    out: dict = {}
    for tc in contracts.tables.values():
        if tc.zone != "base" or "town_code" not in tc.column_names or len(tc.key) != 1:
            continue
        src = tc.columns[tc.column_names.index(tc.key[0])].authority
        if src not in contracts.sources or contracts.sources[src].record_key != tc.key[0]:
            continue
        path = io.table_path(settings, tc.zone, tc.name)
        if io.is_table(spark, path):
            for r in io.read(spark, path).select(tc.key[0], "town_code").collect():
                out.setdefault(src, {})[str(r[0])] = r[1] or ""
    links = io.table_path(settings, "quality", "address_links")
    if io.is_table(spark, links):
        ldf = io.read(spark, links)
        if {"source", "record_key", "town_code"} <= set(ldf.columns):
            for r in ldf.select("source", "record_key", "town_code").distinct().collect():
                out.setdefault(r[0], {}).setdefault(str(r[1]), r[2] or "")
    fpath = io.table_path(settings, *findings.FINDINGS)
    if io.is_table(spark, fpath):
        fdf = io.read(spark, fpath).where(F.col("defect_type") == OUTSIDE)
        if shas is not None:
            fdf = fdf.where(F.col("_file_sha256").isin(shas))
        for r in fdf.select("source", "record_key").distinct().collect():
            out.setdefault(r[0], {})[str(r[1])] = ""
    return out


def evaluate_locations(spark: SparkSession, settings: Settings, truth_dir: str | Path) -> dict:
    """Town assignment against ``truth/locations.csv`` (``source, record_key, town_code``; empty =
    outside the district) for every source present in both: per source the records compared, the
    accuracy (assigned code == true code, outside == outside) and the records the lake never
    placed (quarantined earlier); and precision/recall of ``point_outside_district``. When the folder
    has ``manifest.json``, only findings on its files count (as in jobs/evaluate.py)."""
    path = Path(truth_dir) / "truth" / "locations.csv"
    if not path.exists():
        raise InputError(f"{path}: not found; evaluate_locations needs the folder written by the generator")
    truth: dict = {}
    for r in _read_truth(path):
        truth.setdefault(r["source"], {})[r["record_key"]] = (r.get("town_code") or "").strip()
    manifest = Path(truth_dir) / "manifest.json"  # written by `lake generate`: the generated files
    shas = None
    if manifest.exists():  # every list of file entries: "files", "spatial_files", ...
        shas = [f["sha256"] for v in json.loads(manifest.read_text(encoding="utf-8")).values() if isinstance(v, list)
                for f in v if isinstance(f, dict) and "sha256" in f]
    assigned = assigned_locations(spark, settings, shas)
    per_source = {}
    tp = fp = fn = 0
    for src in sorted(set(truth) & set(assigned)):
        t, a = truth[src], assigned[src]
        common = set(t) & set(a)
        right = sum(1 for k in common if t[k] == a[k])
        s_tp = sum(1 for k in common if t[k] == "" and a[k] == "")
        s_fp = sum(1 for k, v in a.items() if v == "" and t.get(k, "x") != "")
        s_fn = sum(1 for k in common if t[k] == "" and a[k] != "")
        tp, fp, fn = tp + s_tp, fp + s_fp, fn + s_fn
        per_source[src] = {
            "truth": len(t), "compared": len(common), "not_placed": len(set(t) - set(a)),
            "accuracy": round(right / len(common), 4) if common else None,
            "outside_truth": sum(1 for v in t.values() if v == ""), "outside_found": sum(1 for v in a.values() if v == ""),
            "wrong_examples": sorted((k, t[k], a[k]) for k in common if t[k] != a[k])[:5],
        }
    outside = {
        "true_positives": tp, "false_positives": fp, "false_negatives": fn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
    }
    return {"sources": per_source, OUTSIDE: outside}


THRESHOLD = 0.99


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 1.0


def read_truth(path: Path) -> list[tuple[str, str, str | None]]:
    """(source, record_key, true address code or None) from ``truth/address_links.csv``; a key in
    another spelling (``黄村地区|…``) is read as the registry's. InputError naming file and row."""
    out = []
    codes: dict[str, str | None] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"source", "record_key", "address_key"} <= set(reader.fieldnames or ()):
            raise InputError(f"{path}: needs the columns source, record_key, address_key; has {reader.fieldnames}")
        for i, r in enumerate(reader, start=2):
            key = (r["address_key"] or "").strip()
            if key and key not in codes:
                canon = addr.canonical_key(key)
                if canon is None:
                    raise InputError(f"{path}: row {i}: address_key '{key}' is not a door key town|road|number|building")
                codes[key] = addr.address_code(canon)
            out.append((r["source"], r["record_key"], codes[key] if key else None))
    return out


def _found(spark: SparkSession, settings: Settings, links: DataFrame, sources: set[str]) -> DataFrame:
    """(source, record_key, address_code) of the records of ``sources``: linked directly, or (a
    department's population / legal-entity row) through the base table whose address came from it."""
    direct = links.where(F.col("source").isin(*sources)).select("source", "record_key", "address_code")
    parts = [direct]
    contracts = contracts_mod.load(settings.contracts_dir)
    via = links.where(F.col("source").isin(*BASE_SOURCES) & F.col("origin_source").isin(*sources))
    for o in sorted(sources - set(RAW_SOURCES)):
        path = io.table_path(settings, "raw", o)
        if o not in contracts.sources or not io.is_table(spark, path):
            continue
        raw = io.read(spark, path).select(F.col("_file_sha256").alias("_s"), F.col("_row").alias("_r"),
                                          F.col(contracts.source(o).record_key).cast("string").alias("_rk"))
        part = via.where(F.col("origin_source") == o)
        parts.append(part.join(raw, (part["_file_sha256"] == raw["_s"]) & (part["_row"] == raw["_r"]), "inner")
                     .select(F.lit(o).alias("source"), F.col("_rk").alias("record_key"), "address_code"))
    return reduce(DataFrame.unionByName, parts).dropDuplicates(["source", "record_key"])


def evaluate_addresses(spark: SparkSession, settings: Settings, truth_dir: str | Path, run: str | None = None) -> dict:
    """Compare ``quality/address_links`` (the run of the current inputs, or ``run``) with the
    generator's ``truth/address_links.csv`` (source, record_key, address_key; an empty key: no
    standard address). A department's population / legal-entity row is evaluated through the base
    table whose address came from it (``_lineage``); ``coverage`` is the share of a source's truth
    rows the links reach. Over the rows reached, per source: precision and recall of matching (a
    match is right when its code is ``address_code`` of the true key) and of ``unmatched``."""
    path = Path(truth_dir) / "truth" / "address_links.csv"
    if not path.exists():
        raise InputError(f"{path}: not found; evaluate needs the folder written by the spatial generator")
    truth_rows = read_truth(path)
    rid = run or run_id(spark, settings)
    lpath = io.table_path(settings, *LINKS)
    if not _has_run(spark, settings, rid):
        raise InputError(f"{lpath}: no links for run {rid}; build base.standard_address first")
    links = io.read(spark, lpath).where(F.col("run_id") == rid)
    truth = spark.createDataFrame(truth_rows, "source string, record_key string, true_code string")
    sources = {r[0] for r in truth_rows}
    found = _found(spark, settings, links, sources) if sources else None
    out: dict = {}
    if found is not None:
        j = truth.join(found.withColumn("_in", F.lit(True)), ["source", "record_key"], "left")
        reached = F.coalesce(F.col("_in"), F.lit(False))
        code, true = F.col("address_code"), F.col("true_code")

        def n(cond):
            return F.sum(F.when(cond, 1).otherwise(0)).cast("long")

        agg = j.groupBy("source").agg(
            F.count("*").alias("records"), n(reached).alias("reached"),
            n(reached & true.isNotNull()).alias("m_truth"), n(code.isNotNull()).alias("m_made"),
            n(code.isNotNull() & (code == true)).alias("m_right"),
            n(reached & true.isNull()).alias("u_truth"), n(reached & code.isNull()).alias("u_flagged"),
            n(reached & code.isNull() & true.isNull()).alias("u_right"),
        ).collect()
        wrong = j.where(F.col("address_code").isNotNull() & ~F.col("address_code").eqNullSafe(F.col("true_code"))) \
            .select("source", "record_key", "address_code", "true_code").orderBy("source", "record_key").limit(20).collect()
        missed = j.where(reached & F.col("address_code").isNull() & F.col("true_code").isNotNull()) \
            .select("source", "record_key", "true_code").orderBy("source", "record_key").limit(20).collect()
        for r in sorted(agg, key=lambda r: r["source"]):
            s = r["source"]
            out[s] = {
                "records": r["records"], "reached": r["reached"], "coverage": _rate(r["reached"], r["records"]),
                "match": {"truth": r["m_truth"], "made": r["m_made"], "right": r["m_right"],
                          "precision": _rate(r["m_right"], r["m_made"]), "recall": _rate(r["m_right"], r["m_truth"])},
                "unmatched": {"truth": r["u_truth"], "flagged": r["u_flagged"], "right": r["u_right"],
                              "precision": _rate(r["u_right"], r["u_flagged"]),
                              "recall": _rate(r["u_right"], r["u_truth"])},
                "wrong_examples": [tuple(x) for x in wrong if x["source"] == s][:5],
                "missed_examples": [tuple(x) for x in missed if x["source"] == s][:5],
            }
    passed = all(v[m]["precision"] >= THRESHOLD and v[m]["recall"] >= THRESHOLD
                 for v in out.values() for m in ("match", "unmatched"))
    return {"run_id": rid, "sources": out, "passed": passed}
