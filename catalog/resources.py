"""Catalogue entries (GB/T 21063 / national catalogue guide fields) generated from the contracts.

One entry per department source (what is aggregated, 汇) and per base/topic table (what is shared and
opened, 用). Written to the Delta table ``catalog/resources`` and to ``catalog/resources.json``;
rewritten only when an entry changes.
"""
from __future__ import annotations

import json

from pyspark.sql import SparkSession

from lake import contracts as contracts_mod
from lake import io
from lake.reference import DISTRICT as REF_DISTRICT
from lake.settings import Settings

SHARE_ZH = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}
OPEN_ZH = {"unconditional": "无条件开放", "directed": "有条件开放", "none": "不予开放"}
CYCLE_ZH = {"daily": "每日", "weekly": "每周", "monthly": "每月", "quarterly": "每季度", "yearly": "每年"}
DISTRICT = REF_DISTRICT.code
BUREAU_CODE = REF_DISTRICT.bureau_code


def entries(c: contracts_mod.Contracts) -> list[dict]:
    out = []
    for i, s in enumerate(sorted(c.sources.values(), key=lambda s: s.source), start=1):
        out.append({
            "resource_code": f"{DISTRICT}-{s.department_code}-S{i:04d}", "layer": "raw", "resource_id": f"raw.{s.source}",
            "name": s.title, "provider": s.department, "provider_code": s.department_code,
            "abstract": f"{s.department}报送的{s.title}（原始库，按接收原样保存）",
            "format": s.format.upper(), "items": [{"name": col.name, "title": col.title, "type": col.type} for col in s.columns],
            "share_type": SHARE_ZH["none"], "share_condition": "原始数据仅供数据治理使用", "share_method": "不适用",
            "open_type": OPEN_ZH["none"], "update_cycle": CYCLE_ZH.get(s.update_cycle, s.update_cycle), "grade": None,
        })
    for i, t in enumerate(c.built_tables(), start=1):
        out.append({
            "resource_code": f"{DISTRICT}-{BUREAU_CODE}-T{i:04d}", "layer": t.zone, "resource_id": t.table,
            "name": t.title, "provider": t.owner, "provider_code": BUREAU_CODE, "abstract": t.description,
            "format": "Delta", "items": [{"name": col.name, "title": col.title, "type": col.type,
                                          "authoritative_source": col.authority or None} for col in t.columns],
            "share_type": SHARE_ZH[t.share_type], "share_condition": t.share_condition or None,
            "share_method": "库表共享(share zone)" if t.share_type != "none" else "不适用",
            "open_type": OPEN_ZH[t.open_type], "update_cycle": CYCLE_ZH.get(t.update_cycle, t.update_cycle),
            "grade": t.grade,
        })
    return out


def publish(spark: SparkSession, settings: Settings) -> dict:
    items = entries(contracts_mod.load(settings.contracts_dir))
    rows = [{**e, "items": json.dumps(e["items"], ensure_ascii=False)} for e in items]
    df = spark.createDataFrame(rows, schema=(
        "resource_code string, layer string, resource_id string, name string, provider string, provider_code string, "
        "abstract string, format string, items string, share_type string, share_condition string, "
        "share_method string, open_type string, update_cycle string, grade int"))
    written = io.overwrite_if_changed(df, io.table_path(settings, "catalog", "resources"), {"kind": "catalogue"})
    io.write_if_changed(settings.path("catalog", "resources.json"),
                        json.dumps(items, ensure_ascii=False, indent=2).encode("utf-8"))
    shared = [e for e in items if e["layer"] in ("base", "topic")]
    unconditional = sum(1 for e in shared if e["share_type"] == SHARE_ZH["unconditional"])
    return {"entries": len(items), "status": "published" if written else "unchanged",
            "unconditional_share_rate": round(unconditional / len(shared), 3) if shared else None}
