"""The resource catalogue (政务数据资源目录), with the fields of GB/T 21063.4 and the national catalogue
guide, generated from the contracts, chained (``catalog.chain``) and published with every publication.

One entry per department source (what is aggregated, 汇: classified 部门信息资源) and per base/topic
table (基础信息资源 / 主题信息资源: what is shared and opened, 用). Registered fields, recorded in the
chain whenever they change: classification, resource code (assigned once, ``catalog.chain``), name,
provider and provider code, abstract, format, data items (name, title, type, length, grade, default
protection, authoritative source and fallbacks), share type / condition / method, open type /
condition, update cycle, grade, related resources, the duties (职责) that produce it (duty -> data),
lineage (upstream resources; which sources feed which columns) and the grants (contract grants and
approved requests: department, columns, row filter, expiry). Status fields, refreshed at every
publication and not chained: publication date (of the ``added`` block), Delta version and last update,
the latest gate result, a quality score and freshness.

Written to the Delta table ``catalog/resources`` (one row per entry, nested fields as JSON text) and
to ``catalog/resources.json``; the chain is appended first, so that ``lake catalog verify`` finds
every entry equal to its resource's last block.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timezone

from lake import contracts as contracts_mod
from lake import io, ledger
from lake.reference import DISTRICT as REF_DISTRICT
from lake.settings import Settings
from catalog import chain as chain_mod

SHARE_ZH = {"unconditional": "无条件共享", "conditional": "有条件共享", "none": "不予共享"}
OPEN_ZH = {"unconditional": "无条件开放", "directed": "有条件开放", "none": "不予开放"}
CYCLE_ZH = {"daily": "每日", "weekly": "每周", "monthly": "每月", "quarterly": "每季度", "yearly": "每年"}
CYCLE_DAYS = contracts_mod.UPDATE_CYCLES
CLASS = {"raw": ("3", "部门信息资源"), "base": ("1", "基础信息资源"), "topic": ("2", "主题信息资源")}
DISTRICT = REF_DISTRICT.code
BUREAU_CODE = REF_DISTRICT.bureau_code
JSON_FIELDS = ("classification", "items", "related_resources", "duties", "lineage", "grants")
REGISTERED = ("resource_code", "resource_id", "layer", "classification", "name", "provider", "provider_code",
              "abstract", "format", "items", "share_type", "share_condition", "share_method", "open_type",
              "open_condition", "update_cycle", "grade", "related_resources", "duties", "lineage", "grants")
STATUS = ("publish_date", "version", "last_updated", "gate", "quality_score", "freshness")
STATUS_JSON = ("gate", "freshness")


def _length(type_: str, declared: int | None) -> int | None:
    if declared:
        return declared
    if type_.startswith("decimal("):
        return int(type_[8:].split(",")[0])
    return {"date": 10, "int": 10, "long": 19, "timestamp": 26, "boolean": 1}.get(type_)


def _duties(c: contracts_mod.Contracts, rid: str) -> list[dict]:
    return [{"department_code": d.code, "department": d.name, "duty": u.duty} for d, u in c.duties_of(rid)]


def registered(c: contracts_mod.Contracts, grades: dict, codes: dict[str, str], grants: dict) -> dict[str, dict]:
    """resource id -> registered fields (``codes``: resource id -> code; ``grants``: table id -> list)."""
    from sharing.masks import plan

    downstream: dict[str, list[str]] = {}
    for t in c.built_tables():
        for u in t.upstream:
            downstream.setdefault(u, []).append(t.table)
    out = {}
    for s in sorted(c.sources.values(), key=lambda s: s.source):
        rid = f"raw.{s.source}"
        out[rid] = {
            "resource_code": codes[rid], "resource_id": rid, "layer": "raw",
            "classification": {"code": CLASS["raw"][0], "class": CLASS["raw"][1], "domain": s.domain},
            "name": s.title, "provider": s.department, "provider_code": s.department_code,
            "abstract": f"{s.department}报送的{s.title}（原始库，按接收原样保存）",
            "format": s.format.upper(),
            "items": [{"name": col.name, "title": col.title, "type": col.type, "length": _length(col.type, None),
                       "grade": None, "protection": None, "authoritative_source": None} for col in s.columns],
            "share_type": SHARE_ZH["none"], "share_condition": "原始数据仅供数据治理使用", "share_method": "不适用",
            "open_type": OPEN_ZH["none"], "open_condition": "不予开放",
            "update_cycle": CYCLE_ZH.get(s.update_cycle, s.update_cycle), "grade": None,
            "related_resources": sorted(codes[t] for t in downstream.get(rid, []) if t in codes),
            "duties": _duties(c, rid), "lineage": {"upstream": [], "columns": {}}, "grants": [],
        }
    for t in c.built_tables():
        p = plan(t, grades)
        shown = dict(p.columns)
        related = set(t.upstream) | set(downstream.get(t.table, []))
        out[t.table] = {
            "resource_code": codes[t.table], "resource_id": t.table, "layer": t.zone,
            "classification": {"code": CLASS[t.zone][0], "class": CLASS[t.zone][1], "domain": t.domain},
            "name": t.title, "provider": t.owner, "provider_code": c.department_named(t.owner).code,
            "abstract": t.description, "format": "Delta (Parquet)",
            "items": [{"name": col.name, "title": col.title, "type": col.type, "length": _length(col.type, col.length),
                       "grade": col.grade or t.grade, "protection": shown.get(col.name, "exclude"),
                       "authoritative_source": (col.authority or None),
                       "fallback": list(col.fallback)} for col in t.columns],
            "share_type": SHARE_ZH[t.share_type], "share_condition": t.share_condition or None,
            "share_method": "Delta Sharing 协议接口（库表共享）" if t.share_type != "none" else "不适用",
            "open_type": OPEN_ZH[t.open_type],
            "open_condition": t.open_condition or ({"unconditional": "无条件开放（小于5的计数不予公开）",
                                                    "directed": "定向开放", "none": "不予开放"}[t.open_type]),
            "update_cycle": CYCLE_ZH.get(t.update_cycle, t.update_cycle), "grade": t.grade,
            "related_resources": sorted(codes[r] for r in related if r in codes),
            "duties": _duties(c, t.table),
            "lineage": {"upstream": list(t.upstream),
                        "columns": {col.name: [s for s in (col.authority, *col.fallback) if s]
                                    for col in t.columns if col.authority}},
            "grants": grants.get(t.table, []),
        }
    return out


def _assign_codes(c: contracts_mod.Contracts, chain: list[dict]) -> dict[str, str]:
    """Codes of the chain for registered resources; the next free number for new ones (in id order)."""
    codes = chain_mod.codes(chain)
    taken = set(codes.values())
    new = [(f"raw.{s.source}", s.department_code, "S") for s in sorted(c.sources.values(), key=lambda s: s.source)]
    new += [(t.table, c.department_named(t.owner).code, "T") for t in c.built_tables()]
    for rid, provider, letter in new:
        if rid not in codes:
            code = chain_mod.next_code(f"{DISTRICT}-{provider}-{letter}", taken)
            codes[rid] = code
            taken.add(code)
    return codes


def _grants(settings: Settings, c: contracts_mod.Contracts, now: datetime) -> dict[str, list]:
    from sharing import grants as grants_mod

    out: dict[str, list] = {}
    for t in c.built_tables():
        if t.share_type == "conditional":
            out[t.table] = [{"department_code": d, "basis": "contract", "grant_id": None, "columns": None,
                             "row_filter": "", "expires": None} for d in t.share_grants]
    for (dept, table), q in sorted(grants_mod.active_grants(grants_mod.requests(settings), now).items()):
        out.setdefault(table, []).append({
            "department_code": dept, "basis": "request", "grant_id": q.request_id, "columns": q.columns,
            "clear_columns": q.clear_columns, "row_filter": grants_mod.row_filter_text(q.row_filter),
            "expires": q.expires_at.date().isoformat()})
    return out


# ---------------------------------------------------------------- status (not chained)

def _delta_rows(settings: Settings, *parts) -> list[dict]:
    try:
        return ledger.read(settings.path(*parts))
    except Exception:  # an unreadable table is reported as no status, never as a failed publication
        return []


def _status(settings: Settings, c: contracts_mod.Contracts, entries: dict, chain: list[dict], as_of: date) -> dict:
    added = {b["resource_id"]: b["at"].date().isoformat() for b in chain if b["kind"] == "added"}
    validations = _delta_rows(settings, "quality", "validations")
    scores = _delta_rows(settings, "quality", "department_scores")
    latest_score = {}
    for r in sorted(scores, key=lambda r: (r["as_of"], r["run_id"])):
        latest_score[r["department_code"]] = r["score"]
    deliveries = {}
    for r in _delta_rows(settings, "landing", "_manifest"):
        src, at = r.get("source"), r.get("ingested_at")
        if src and at and (src not in deliveries or at > deliveries[src]):
            deliveries[src] = at
    out = {}
    for rid, e in entries.items():
        data_date = None  # a table's business date (its commit's as_of), when it has one
        st = {"publish_date": added.get(rid), "version": None, "last_updated": None, "gate": None,
              "quality_score": None, "freshness": None}
        cycle = {v: k for k, v in CYCLE_ZH.items()}.get(e["update_cycle"], "daily")
        if e["layer"] == "raw":
            src = rid.split(".", 1)[1]
            last = deliveries.get(src)
            st["last_updated"] = last.isoformat() if last else None
            st["quality_score"] = latest_score.get(e["provider_code"])
        else:
            uri = io.path_of(settings, rid)
            if io.has_commit(uri):
                dt = io.delta_table(uri)
                h = dt.history(1)[0]
                st["version"] = dt.version()
                last = datetime.fromtimestamp(h["timestamp"] / 1000, tz=timezone.utc)
                st["last_updated"] = last.isoformat()
                meta = {}
                try:
                    meta = json.loads(h.get("userMetadata") or "{}")
                except ValueError:
                    pass
                if meta.get("as_of"):
                    data_date = date.fromisoformat(str(meta["as_of"])[:10])
                run = meta.get("gate_run_id")
                results = [v for v in validations if v["run_id"] == run] if run else []
                if results:
                    failed = [v["expectation"] + (f"({v['column']})" if v.get("column") else "") for v in results
                              if not v["success"]]
                    st["gate"] = {"run_id": run, "success": not failed, "expectations": len(results), "failed": failed}
                    rates = [1 - (v["unexpected_count"] or 0) / v["element_count"] for v in results
                             if v.get("element_count")]
                    st["quality_score"] = round(100 * sum(rates) / len(rates), 2) if rates else None
        if st["last_updated"]:
            updated = data_date or datetime.fromisoformat(st["last_updated"]).date()
            # a delivery landed after the reference date (a run for a past day) is fresh, not -N days old
            age = max(0, (as_of - updated).days)
            st["freshness"] = {"as_of": as_of.isoformat(), "age_days": age, "cycle_days": CYCLE_DAYS[cycle],
                               "fresh": age <= CYCLE_DAYS[cycle]}
        out[rid] = st
    return out


# ---------------------------------------------------------------- publication

def build(settings: Settings, now: datetime | None = None) -> tuple[dict[str, dict], list[dict]]:
    """(the registered entries by resource id, the chain blocks appended for what changed)."""
    from sharing import policy as policy_mod

    c = contracts_mod.load(settings.contracts_dir)
    grades = policy_mod.load(settings.contracts_dir).grades
    now = now or datetime.now(timezone.utc)
    chain = chain_mod.blocks(settings)
    codes = _assign_codes(c, chain)
    entries = registered(c, grades, codes, _grants(settings, c, now))
    appended = chain_mod.record(settings, entries, now)
    return entries, appended


def publish(spark, settings: Settings, as_of: str | None = None, now: datetime | None = None) -> dict:
    """Chain what changed, then write ``catalog/resources`` and ``catalog/resources.json``."""
    now = now or datetime.now(timezone.utc)
    entries, appended = build(settings, now)
    chain = chain_mod.blocks(settings)
    status = _status(settings, contracts_mod.load(settings.contracts_dir), entries, chain,
                     date.fromisoformat(as_of) if as_of else now.date())
    docs = [{**entries[rid], **status[rid]} for rid in sorted(entries, key=lambda r: entries[r]["resource_code"])]
    rows = [{k: (json.dumps(d[k], ensure_ascii=False, sort_keys=True) if k in JSON_FIELDS + STATUS_JSON else d[k])
             for k in REGISTERED + STATUS} for d in docs]
    df = spark.createDataFrame(rows, schema=(
        "resource_code string, resource_id string, layer string, classification string, name string, provider string, "
        "provider_code string, abstract string, format string, items string, share_type string, share_condition string, "
        "share_method string, open_type string, open_condition string, update_cycle string, grade int, "
        "related_resources string, duties string, lineage string, grants string, publish_date string, version long, "
        "last_updated string, gate string, quality_score double, freshness string"))
    written = io.overwrite_if_changed(df, io.table_path(settings, "catalog", "resources"), {"kind": "catalogue"})
    io.write_if_changed(settings.path("catalog", "resources.json"),
                        json.dumps(docs, ensure_ascii=False, indent=2).encode("utf-8"))
    tables = [e for e in entries.values() if e["layer"] in ("base", "topic")]
    unconditional = sum(1 for e in tables if e["share_type"] == SHARE_ZH["unconditional"])
    return {"entries": len(entries), "status": "published" if written else "unchanged",
            "chain_blocks_added": len(appended),
            "unconditional_share_rate": round(unconditional / len(tables), 3) if tables else None}


def current(settings: Settings) -> dict[str, dict[str, dict]]:
    """The catalogue as published, registered fields only: {"resources.json": {...}, "catalog/resources": {...}}
    (resource id -> entry), read without a JVM (what ``lake catalog verify`` compares with the chain)."""
    out = {}
    uri = settings.path("catalog", "resources.json")
    if io.file_exists(uri):
        docs = json.loads(io.read_bytes(uri))
        out["catalog/resources.json"] = {d["resource_id"]: {k: d.get(k) for k in REGISTERED} for d in docs}
    rows = ledger.read(settings.path("catalog", "resources"))
    if rows:
        out["catalog/resources"] = {r["resource_id"]: {k: (json.loads(r[k]) if k in JSON_FIELDS and r[k] is not None
                                                           else r[k]) for k in REGISTERED} for r in rows}
    return out


def documents(settings: Settings) -> list[dict]:
    uri = settings.path("catalog", "resources.json")
    return json.loads(io.read_bytes(uri)) if io.file_exists(uri) else []
