"""Department quality reports (the 评 of 汇·管·用·评): quality goes back to the departments.

For one run (reference date ``as_of`` plus the current inputs) and every department of the contracts:

- the **current findings**: those of the newest ingest batch of each of the department's sources
  (``landing/_manifest``), those of the newest build run of each base table that blame one of those
  batches, and the run's timeliness findings (``stale_source``);
- counts and rates by source, defect type and field, rate = findings / rows the department delivered
  in the batches considered -> Delta ``quality/department_quality``
  (one row per run x department x source x defect_type x field x severity);
- a score per department -> Delta ``quality/department_scores`` (one row per run x department);
- files under ``<root>/reports/<run_id>/<department_code>/``: ``problems.csv`` (UTF-8 with BOM, the
  department's own problem records) and ``index.html`` (counts, rates, score, trend over earlier
  runs), plus ``<root>/reports/index.html`` and ``<root>/reports/latest.json``.

The run id is ``<as_of>-<hash of the inputs>`` (batch ids and build run ids), so re-running the same
run replaces nothing: both tables are rewritten for a run id only when its rows differ, and files only
when their bytes differ. The score is documented in docs/quality_reports.md.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io as pyio
import json
import re
import time
from collections import defaultdict

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import io
from lake import policy as policy_mod
from lake.contracts import Contracts
from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark
from jobs.governance import timeliness
from quality import findings

QUALITY = ("quality", "department_quality")
SCORES = ("quality", "department_scores")
QUALITY_SCHEMA = ("run_id string, as_of string, department string, department_code string, source string, "
                  "defect_type string, field string, severity string, findings long, rows long, rate double")
SCORES_SCHEMA = ("run_id string, as_of string, department string, department_code string, sources long, "
                 "rows long, findings long, errors long, warnings long, weighted double, stale_sources long, "
                 "stale string, score double, inputs string")
PROBLEM_COLUMNS = ["source", "record_key", "field", "defect_type", "severity", "rule", "message", "value",
                   "_file_sha256", "_row"]
BOM = b"\xef\xbb\xbf"


# ------------------------------------------------------------------ score (pure)

def score(rows: int, by_severity: dict[str, int], stale_sources: int, policy: policy_mod.Policy) -> tuple[float, float]:
    """(score, weighted findings). score = max(0, 100 x (1 - min(1, weighted / rows)) - stale_penalty x
    stale sources), weighted = sum of weight[severity] x findings (timeliness findings excluded: they
    count through the penalty). A department that delivered no rows has nothing to weigh: 100 minus
    the penalty."""
    weighted = sum(policy.weights.get(sev, 0.0) * n for sev, n in by_severity.items())
    ratio = min(1.0, weighted / rows) if rows > 0 else (1.0 if weighted > 0 else 0.0)
    return round(max(0.0, 100.0 * (1.0 - ratio) - policy.stale_penalty * stale_sources), 2), round(weighted, 4)


def department_folder(code: str, department: str) -> str:
    """The department's folder name: its code, or a safe form of its name when it has no code."""
    return code or re.sub(r"[^\w\-]+", "_", department)


# ------------------------------------------------------------------ current inputs and findings

def current_inputs(spark: SparkSession, settings: Settings, contracts: Contracts, as_of: str) -> dict:
    """What this run reports on: the newest batch (and its rows) per source, the newest build run
    per base table, and the run's timeliness findings."""
    from jobs.base import golden as build_base

    deliveries = timeliness.last_deliveries(spark, settings)
    build_runs = []
    for tc in sorted((t for t in contracts.tables.values() if t.zone == "base"), key=lambda t: t.table):
        present = [s for s in build_base.sources_used(tc) if io.is_table(spark, io.table_path(settings, "raw", s))]
        if not present:
            continue
        rid = _build_run_id(spark, settings, tc, present)
        published = io.last_metadata(spark, io.table_path(settings, tc.zone, tc.name)).get("inputs")
        # the build for the current raw versions has run (it wrote findings or published them);
        # otherwise the newest build is the one the published table came from
        if findings.has_run(spark, settings, rid) or published == rid or not published:
            build_runs.append(rid)
        else:
            build_runs.append(published)
    return {
        "batches": {s: d["batch_id"] for s, d in sorted(deliveries.items()) if s in contracts.sources},
        "rows": {s: int(d["rows_read"]) for s, d in sorted(deliveries.items()) if s in contracts.sources},
        "last_delivery": {s: d["ingested_at"].isoformat(timespec="seconds") for s, d in sorted(deliveries.items())},
        "build_runs": build_runs,
        "timeliness": timeliness.run_id(as_of),
    }


def _build_run_id(spark: SparkSession, settings: Settings, tc, present: list[str]) -> str:
    """The run id of the base table's current build findings (``jobs.base.incremental``)."""
    from jobs.base import incremental

    return incremental.run_id(spark, settings, tc, present)


def report_run_id(as_of: str, inputs: dict) -> str:
    key = json.dumps({"batches": inputs["batches"], "build_runs": inputs["build_runs"]}, sort_keys=True)
    return f"{as_of}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def current_findings(spark: SparkSession, settings: Settings, inputs: dict) -> DataFrame | None:
    """The findings this run reports: see the module docstring. None when there is no findings table."""
    path = io.table_path(settings, *findings.FINDINGS)
    if not io.is_table(spark, path):
        return None
    batches = list(inputs["batches"].values()) or ["-"]
    builds = inputs["build_runs"] or ["-"]
    f = io.read(spark, path)
    return f.where(
        ((F.col("stage") == "ingest") & F.col("run_id").isin(batches))
        | (F.col("run_id").isin(builds) & F.col("_batch_id").isin(batches))
        | ((F.col("run_id") == inputs["timeliness"]) & (F.col("stage") == timeliness.STAGE))
    )


# ------------------------------------------------------------------ the stage

def run(settings: Settings, as_of: str, spark: SparkSession | None = None) -> dict:
    """Compute, store and render the department reports of the current run."""
    t0 = time.time()
    spark = spark or get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    policy = policy_mod.load(settings.contracts_dir)
    inputs = current_inputs(spark, settings, contracts, as_of)
    rid = report_run_id(as_of, inputs)
    cur = current_findings(spark, settings, inputs)

    counts, problems = [], []
    if cur is not None:
        counts = cur.groupBy("source", "defect_type", "field", "severity").agg(F.count("*").alias("n")).collect()
        problems = cur.select("department", *PROBLEM_COLUMNS, "stage").collect()

    departments: dict[str, dict] = {}
    for s in sorted(contracts.sources.values(), key=lambda s: (s.department_code, s.source)):
        folder = department_folder(s.department_code, s.department)
        d = departments.setdefault(folder, {"department": s.department, "department_code": s.department_code,
                                            "folder": folder, "sources": []})
        d["sources"].append(s.source)
    src_folder = {s: department_folder(c.department_code, c.department) for s, c in contracts.sources.items()}
    stale = {}
    if cur is not None:
        stale = {r["source"]: r for r in problems if r["stage"] == timeliness.STAGE}

    quality_rows = []
    for r in counts:
        sc = contracts.sources.get(r["source"])
        if sc is None:
            continue
        rows = inputs["rows"].get(r["source"], 0)
        source_level = r["defect_type"] == timeliness.DEFECT
        quality_rows.append({
            "run_id": rid, "as_of": as_of, "department": sc.department, "department_code": sc.department_code,
            "source": r["source"], "defect_type": r["defect_type"], "field": r["field"], "severity": r["severity"],
            "findings": int(r["n"]), "rows": rows,
            "rate": None if source_level or not rows else round(r["n"] / rows, 6),
        })
    quality_rows.sort(key=lambda q: (q["department_code"], q["source"], q["defect_type"], q["field"] or "", q["severity"]))

    score_rows = []
    for folder, d in sorted(departments.items()):
        mine = [q for q in quality_rows if src_folder[q["source"]] == folder and q["defect_type"] != timeliness.DEFECT]
        by_sev: dict[str, int] = defaultdict(int)
        for q in mine:
            by_sev[q["severity"]] += q["findings"]
        rows = sum(inputs["rows"].get(s, 0) for s in d["sources"])
        stale_sources = sorted(s for s in d["sources"] if s in stale)
        sc_value, weighted = score(rows, by_sev, len(stale_sources), policy)
        score_rows.append({
            "run_id": rid, "as_of": as_of, "department": d["department"], "department_code": d["department_code"],
            "sources": len(d["sources"]), "rows": rows, "findings": sum(by_sev.values()),
            "errors": by_sev.get("error", 0), "warnings": by_sev.get("warning", 0), "weighted": float(weighted),
            "stale_sources": len(stale_sources), "stale": ",".join(stale_sources), "score": float(sc_value),
            "inputs": json.dumps({s: inputs["batches"].get(s) for s in d["sources"]}, sort_keys=True),
        })

    run = f"run_id = '{rid}'"
    written = {
        "department_quality": io.replace_if_changed(spark.createDataFrame(quality_rows, QUALITY_SCHEMA),
                                                    io.table_path(settings, *QUALITY), run),
        "department_scores": io.replace_if_changed(spark.createDataFrame(score_rows, SCORES_SCHEMA),
                                                   io.table_path(settings, *SCORES), run),
    }
    history = [r.asDict() for r in io.read(spark, io.table_path(settings, *SCORES)).collect()]

    files_written = 0
    by_folder: dict[str, list] = defaultdict(list)
    for p in problems:
        if p["source"] in src_folder:
            by_folder[src_folder[p["source"]]].append(p)
    for srow in score_rows:
        folder = department_folder(srow["department_code"], srow["department"])
        d = departments[folder]
        base = settings.path("reports", rid, folder)
        probs = sorted(by_folder.get(folder, []), key=lambda p: (p["source"], p["_row"] if p["_row"] is not None else -1,
                                                               p["field"] or "", p["rule"] or "", p["record_key"] or ""))
        files_written += io.write_if_changed(f"{base}/problems.csv", problems_csv(probs))
        page = department_html(srow, [q for q in quality_rows if src_folder[q["source"]] == folder],
                               d["sources"], inputs, stale, len(probs),
                               [h for h in history if department_folder(h["department_code"], h["department"]) == folder],
                               policy, contracts)
        files_written += io.write_if_changed(f"{base}/index.html", page.encode("utf-8"))
    summary = {"run_id": rid, "as_of": as_of, "departments": [
        {k: s[k] for k in ("department", "department_code", "score", "rows", "findings", "stale")}
        | {"folder": department_folder(s["department_code"], s["department"])} for s in score_rows]}
    files_written += io.write_if_changed(settings.path("reports", "index.html"),
                                         index_html(rid, as_of, score_rows, history).encode("utf-8"))
    files_written += io.write_if_changed(settings.path("reports", "latest.json"),
                                         json.dumps(summary, ensure_ascii=False, indent=2).encode("utf-8"))
    for s in score_rows:
        log.info("report %s %s: score %.1f (%d findings / %d rows%s)", rid, s["department"], s["score"],
                 s["findings"], s["rows"], f", stale: {s['stale']}" if s["stale"] else "")
    return {"run_id": rid, "as_of": as_of, "path": settings.path("reports", rid),
            "index": settings.path("reports", "index.html"), "departments": summary["departments"],
            "tables_written": written, "files_written": int(files_written), "seconds": round(time.time() - t0, 2)}


# ------------------------------------------------------------------ rendering (pure)

def problems_csv(problems: list) -> bytes:
    """UTF-8 with BOM (Excel then reads Chinese correctly), CRLF line ends, one row per finding."""
    buf = pyio.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["source", "record_key", "field", "defect_type", "severity", "rule", "message", "value",
                "file_sha256", "row"])
    for p in problems:
        w.writerow(["" if p[c] is None else p[c] for c in PROBLEM_COLUMNS])
    return BOM + buf.getvalue().encode("utf-8")


_CSS = """body{font-family:system-ui,"Microsoft YaHei","PingFang SC",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}td.n{text-align:right}.score{font-size:2.5em;font-weight:bold}
.bar{display:inline-block;height:10px;background:#4a8}.stale{color:#b00}.muted{color:#777}"""


def _e(v) -> str:
    return "—" if v is None or v == "" else html.escape(str(v))


def _pct(rate) -> str:
    return "—" if rate is None else f"{100 * rate:.2f}%"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _trend_rows(history: list[dict], link_prefix: str, folder: str | None) -> str:
    out = []
    for h in sorted(history, key=lambda h: (h["as_of"], h["run_id"])):
        link = f"{link_prefix}{h['run_id']}/{folder}/index.html" if folder else f"{link_prefix}{h['run_id']}/"
        out.append(f"<tr><td>{_e(h['as_of'])}</td><td><a href=\"{_e(link)}\">{_e(h['run_id'])}</a></td>"
                   f"<td class=n>{h['score']:.1f} <span class=bar style=\"width:{max(0.0, h['score']):.0f}px\"></span></td>"
                   f"<td class=n>{h['findings']:,}</td><td class=n>{h['rows']:,}</td><td>{_e(h['stale'])}</td></tr>")
    return "".join(out)


def department_html(srow: dict, quality_rows: list[dict], sources: list[str], inputs: dict, stale: dict,
                    n_problems: int, history: list[dict], policy: policy_mod.Policy, contracts: Contracts) -> str:
    folder = department_folder(srow["department_code"], srow["department"])
    src_rows = []
    for s in sources:
        sc = contracts.sources[s]
        n = sum(q["findings"] for q in quality_rows if q["source"] == s and q["defect_type"] != timeliness.DEFECT)
        rows = inputs["rows"].get(s, 0)
        flag = f'<span class=stale>stale: {_e(stale[s]["message"])}</span>' if s in stale else "on time"
        src_rows.append(f"<tr><td>{_e(s)}</td><td>{_e(sc.title)}</td><td>{_e(inputs['batches'].get(s))}</td>"
                        f"<td>{_e(inputs['last_delivery'].get(s))}</td><td>{_e(sc.update_cycle)}</td><td>{flag}</td>"
                        f"<td class=n>{rows:,}</td><td class=n>{n:,}</td></tr>")
    q_rows = "".join(
        f"<tr><td>{_e(q['source'])}</td><td>{_e(q['defect_type'])}</td><td>{_e(q['field'])}</td>"
        f"<td>{_e(q['severity'])}</td><td class=n>{q['findings']:,}</td><td class=n>{q['rows']:,}</td>"
        f"<td class=n>{_pct(q['rate'])}</td></tr>" for q in quality_rows
    ) or '<tr><td colspan=7 class=muted>no findings in this run</td></tr>'
    w = policy.weights
    body = f"""<h1>数据质量报告 · {_e(srow['department'])}</h1>
<p class=muted>department code {_e(srow['department_code'])} · run <b>{_e(srow['run_id'])}</b> · as of {_e(srow['as_of'])}
 · <a href="../../index.html">all departments</a></p>
<p><span class=score>{srow['score']:.1f}</span> / 100 &nbsp; {srow['findings']:,} findings ({srow['errors']:,} errors,
 {srow['warnings']:,} warnings) in {srow['rows']:,} delivered rows; stale sources: {srow['stale_sources']}</p>
<p class=muted>score = max(0, 100 × (1 − min(1, ({w.get('error', 0)} × errors + {w.get('warning', 0)} × warnings) / rows))
 − {policy.stale_penalty:g} × stale sources) = max(0, 100 × (1 − min(1, {srow['weighted']:g} / {srow['rows']:,}))
 − {policy.stale_penalty:g} × {srow['stale_sources']}); see docs/quality_reports.md</p>
<p><a href="problems.csv">problems.csv</a> — your {n_problems:,} problem records (source, record key, field, defect,
 rule, message, value, file sha256, row), UTF-8 with BOM</p>
<h2>Sources</h2>
<table><tr><th>source</th><th>title</th><th>batch considered</th><th>last delivery</th><th>cycle</th>
<th>timeliness</th><th>rows</th><th>findings</th></tr>{''.join(src_rows)}</table>
<h2>Findings by defect type and field</h2>
<p class=muted>rate = findings / rows delivered in the batch considered</p>
<table><tr><th>source</th><th>defect type</th><th>field</th><th>severity</th><th>findings</th><th>rows</th><th>rate</th></tr>
{q_rows}</table>
<h2>Trend</h2>
<table><tr><th>as of</th><th>run</th><th>score</th><th>findings</th><th>rows</th><th>stale</th></tr>
{_trend_rows(history, '../../', folder)}</table>"""
    return _page(f"数据质量报告 {srow['department']} {srow['run_id']}", body)


def index_html(rid: str, as_of: str, score_rows: list[dict], history: list[dict]) -> str:
    rows = "".join(
        f"<tr><td><a href=\"{_e(rid)}/{_e(department_folder(s['department_code'], s['department']))}/index.html\">"
        f"{_e(s['department'])}</a></td><td>{_e(s['department_code'])}</td><td class=n>{s['score']:.1f}</td>"
        f"<td class=n>{s['findings']:,}</td><td class=n>{s['rows']:,}</td><td class=stale>{_e(s['stale'])}</td></tr>"
        for s in sorted(score_rows, key=lambda s: (s["score"], s["department_code"])))
    runs: dict[str, list] = defaultdict(list)
    for h in history:
        runs[(h["as_of"], h["run_id"])].append(h)
    run_rows = "".join(
        f"<tr><td>{_e(a)}</td><td>{_e(r)}</td><td class=n>{sum(x['score'] for x in hs) / len(hs):.1f}</td>"
        f"<td class=n>{sum(x['findings'] for x in hs):,}</td>"
        f"<td>{' '.join(_e(x['department_code'] or x['department']) + ':' + format(x['score'], '.0f') for x in sorted(hs, key=lambda x: x['department_code']))}</td></tr>"
        for (a, r), hs in sorted(runs.items()))
    body = f"""<h1>部门数据质量报告 · department quality reports</h1>
<p class=muted>run <b>{_e(rid)}</b> · as of {_e(as_of)} · lowest score first</p>
<table><tr><th>department</th><th>code</th><th>score</th><th>findings</th><th>rows</th><th>stale sources</th></tr>{rows}</table>
<h2>All runs</h2>
<table><tr><th>as of</th><th>run</th><th>mean score</th><th>findings</th><th>scores by department</th></tr>{run_rows}</table>"""
    return _page("部门数据质量报告", body)
