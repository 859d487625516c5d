"""Detection quality against the generator's ground truth: precision and recall per defect type, and of
record linkage.

A truth row ``(source, record_key, field, defect_type)`` of ``truth/defects.csv`` is found when
``quality/findings`` holds a finding with the same four values for one of the generated files (matched
by sha256 through the manifest). Precision counts the findings of that defect type on those files that
are in the truth file. Linkage compares ``quality/record_links`` (decision ``linked``) with
``truth/links.csv``: precision = right links / links made, recall = right links / rows whose person is
in the register.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lake import io
from lake.files import InputError
from lake.settings import Settings
from quality import findings

THRESHOLD = 0.99


def has_truth(folder: str | Path) -> bool:
    return (Path(folder) / "manifest.json").exists() and (Path(folder) / "truth" / "defects.csv").exists()


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def evaluate(spark: SparkSession, settings: Settings, truth_dir: str | Path) -> dict:
    truth_dir = Path(truth_dir)
    manifest_path = truth_dir / "manifest.json"
    defects_path = truth_dir / "truth" / "defects.csv"
    for p in (manifest_path, defects_path):
        if not p.exists():
            raise InputError(f"{p}: not found; evaluate needs the folder written by `lake generate`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    shas = [f["sha256"] for f in [*manifest["files"], *manifest.get("spatial_files", []),
                                  *manifest.get("governance_files", [])]]
    truth = {(r["source"], r["record_key"], r["field"], r["defect_type"]) for r in _read_csv(defects_path)}

    fpath = io.table_path(settings, *findings.FINDINGS)
    found_rows = (
        io.read(spark, fpath).where(F.col("_file_sha256").isin(shas) & F.col("record_key").isNotNull())
        .select("source", "record_key", "field", "defect_type").distinct().collect()
        if io.is_table(spark, fpath) else []
    )
    found = {tuple(r) for r in found_rows}
    types = sorted({t[3] for t in truth} | {f[3] for f in found})
    per_type = {}
    for t in types:
        tr = {x for x in truth if x[3] == t}
        fo = {x for x in found if x[3] == t}
        tp = len(tr & fo)
        per_type[t] = {
            "truth": len(tr), "found": len(fo), "true_positives": tp,
            "precision": round(tp / len(fo), 4) if fo else (1.0 if not tr else 0.0),
            "recall": round(tp / len(tr), 4) if tr else (1.0 if not fo else 0.0),
            "missed_examples": sorted(tr - fo)[:5], "false_examples": sorted(fo - tr)[:5],
        }
    result = {"defects": per_type, "linkage": _linkage(spark, settings, truth_dir, shas)}
    result["passed"] = all(v["precision"] >= THRESHOLD and v["recall"] >= THRESHOLD for v in per_type.values())
    # the base map and the sensors, when their truth is there
    if (truth_dir / "truth" / "locations.csv").exists():
        from sample import evaluate_spatial

        result["locations"] = evaluate_spatial.evaluate_locations(spark, settings, truth_dir)
    if (truth_dir / "truth" / "address_links.csv").exists():
        from sample import evaluate_spatial

        result["addresses"] = evaluate_spatial.evaluate_addresses(spark, settings, truth_dir)
    if (truth_dir / "iot_manifest.json").exists():
        from sample import evaluate_iot

        result["iot"] = evaluate_iot.evaluate(spark, settings, truth_dir)
    for part in ("locations", "addresses", "iot"):
        if part in result and "passed" in result[part]:
            result["passed"] = result["passed"] and bool(result[part]["passed"])
    return result


def _linkage(spark: SparkSession, settings: Settings, truth_dir: Path, shas: list[str]) -> dict:
    links_csv = truth_dir / "truth" / "links.csv"
    lpath = io.table_path(settings, "quality", "record_links")
    if not links_csv.exists() or not io.is_table(spark, lpath):
        return {}
    truth = {(r["source"], r["record_key"]): r["id_number"] for r in _read_csv(links_csv)}
    rows = (io.read(spark, lpath).where(F.col("_file_sha256").isin(shas))
            .select("source", "record_key", "decision", "linked_key").distinct().collect())
    decisions = Counter(r["decision"] for r in rows)
    linked = {(r["source"], r["record_key"]): r["linked_key"] for r in rows if r["decision"] == "linked"}
    register = _register_ids(spark, settings, set(truth.values()))
    linkable = {k for k, v in truth.items() if v in register}
    right = sum(1 for k, v in linked.items() if truth.get(k) == v)
    return {
        "rows_without_id": len(truth), "linkable": len(linkable), "linked": len(linked),
        "review": decisions.get("review", 0), "unmatched": decisions.get("unmatched", 0),
        "precision": round(right / len(linked), 4) if linked else 1.0,
        "recall": round(right / len(linkable), 4) if linkable else 1.0,
    }


def _register_ids(spark: SparkSession, settings: Settings, ids: set[str]) -> set[str]:
    """Which of ``ids`` the household register knows."""
    path = io.table_path(settings, "raw", "psb_household")
    if not io.is_table(spark, path) or not ids:
        return set()
    wanted = spark.createDataFrame([(i,) for i in sorted(ids)], "id string")
    return {r[0] for r in io.read(spark, path).select(F.upper("id_number").alias("id")).join(wanted, "id").distinct().collect()}


def table(result: dict) -> list[tuple]:
    """Rows for printing: (defect type, truth, found, precision, recall, ok), the IoT parts prefixed
    (``readings:``, ``ledger:``, ``health:``)."""
    out = []

    def add(name: str, v: dict) -> None:
        ok = v["precision"] >= THRESHOLD and v["recall"] >= THRESHOLD
        out.append((name, v.get("truth", 0), v.get("found", 0), v["precision"], v["recall"],
                    "ok" if ok else "BELOW 0.99"))

    for t, v in result["defects"].items():
        add(t, v)
    for part in ("readings", "ledger", "health"):
        for t, v in (result.get("iot") or {}).get(part, {}).items():
            add(f"{part}: {t}", v)
    return out
