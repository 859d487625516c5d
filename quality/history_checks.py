"""Checks of a delivery against the source's last deliveries (what DataWorks and DLT users call
data-quality monitoring over time).

At ingest every file gets a profile (``quality/delivery_profiles``: rows, and per column its
contract's ``history_checks`` name the null rate, distinct count and mean of the values as received,
deletions of a change file left out). The profile is compared with the median of the same metric over
the last ``window`` deliveries of the same kind (full file, change file or snapshot) with an earlier
business date; each compared metric's row also holds the baseline, the bounds, the number of
deliveries compared and whether it passed (null: not compared), and every failed one is a finding for the department (stage ``ingest``, rule ``history.<metric>``,
severity error). When ``contracts/policy.yaml`` says ``history.block_publication: true``, a table one
of whose sources' newest delivery failed a check is not published (``blocking``, called by the gates).
"""
from __future__ import annotations

import datetime
import statistics

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import io
from lake.contracts import SourceContract
from lake.settings import Settings

PROFILES = ("quality", "delivery_profiles")
SCHEMA = ("source string, batch_id string, as_of date, kind string, metric string, `column` string, value double, "
          "baseline double, lower double, upper double, deliveries int, passed boolean, message string")
DEFECTS = {"rows": "row_count_out_of_bounds", "null_rate": "null_rate_jump",
           "distinct": "distinct_count_out_of_bounds", "mean": "mean_out_of_bounds"}


def profile(checked: DataFrame, sc: SourceContract, rows_read: int) -> list[tuple[str, str, float]]:
    """(metric, column, value) of a checked delivery: ``rows`` and, for the columns the contract's
    history checks name, null rate, distinct count and mean (numbers; dates as days since 1970)
    over the rows that are not deletions. One pass."""
    hc = sc.history_checks
    out = [("rows", "", float(rows_read))]
    cols = hc.get("columns") or {}
    if not cols:
        return out
    df = checked
    if "_op" in df.columns:
        df = df.where(F.coalesce(F.col("_op"), F.lit("I")) != "D")
    aggs = [F.count("*").alias("n")]
    for name, b in cols.items():
        c = F.col(name)
        empty = c.isNull() | (F.trim(c.cast("string")) == "")
        aggs.append(F.sum(F.when(empty, 1).otherwise(0)).alias(f"null__{name}"))
        if b.get("distinct"):
            aggs.append(F.approx_count_distinct(c).alias(f"distinct__{name}"))
        if b.get("mean_max_change"):
            col_type = sc.column(name).type
            typed = F.col(f"_typed_{name}") if f"_typed_{name}" in df.columns else c
            v = F.datediff(typed, F.lit("1970-01-01")) if col_type == "date" else typed.cast("double")
            aggs.append(F.avg(v).alias(f"mean__{name}"))
    r = df.agg(*aggs).collect()[0].asDict()
    n = r["n"] or 0
    for name, b in cols.items():
        out.append(("null_rate", name, (r[f"null__{name}"] or 0) / n if n else 0.0))
        if b.get("distinct"):
            out.append(("distinct", name, float(r[f"distinct__{name}"] or 0)))
        if b.get("mean_max_change") and r.get(f"mean__{name}") is not None:
            out.append(("mean", name, float(r[f"mean__{name}"])))
    return out


def bounds(metric: str, column: str, baseline: float, hc: dict) -> tuple[float | None, float | None]:
    """(lower, upper) for a metric given the median of the last deliveries."""
    if metric == "rows":
        b = hc.get("rows") or {}
    elif metric == "distinct":
        b = (hc["columns"][column] or {}).get("distinct") or {}
    elif metric == "null_rate":
        rise = hc["columns"][column].get("null_rate_max_rise")
        return (None, min(1.0, baseline + rise)) if rise is not None else (None, None)
    else:
        ch = hc["columns"][column].get("mean_max_change")
        return (baseline - abs(baseline) * ch, baseline + abs(baseline) * ch) if ch is not None else (None, None)
    lo = baseline * (1 - b["max_drop"]) if b.get("max_drop") is not None else None
    hi = baseline * (1 + b["max_rise"]) if b.get("max_rise") is not None else None
    return lo, hi


def evaluate(current: list[tuple[str, str, float]], earlier: dict[tuple[str, str], list[float]], hc: dict,
             rows_read: int) -> list[dict]:
    """One result per metric of ``current`` that has bounds and enough earlier deliveries, when the
    earlier deliveries' median row count reaches ``min_rows``. Pure."""
    out = []
    past_rows = earlier.get(("rows", ""), [])
    if not past_rows or statistics.median(past_rows) < hc.get("min_rows", 0):
        return out  # a source this small (usually) is not judged: its numbers move too much
    for metric, column, value in current:
        past = earlier.get((metric, column), [])
        if len(past) < hc.get("min_deliveries", 3):
            continue
        base = float(statistics.median(past))
        lo, hi = bounds(metric, column, base, hc)
        if lo is None and hi is None:
            continue
        ok = (lo is None or value >= lo - 1e-12) and (hi is None or value <= hi + 1e-12)
        what = "rows" if metric == "rows" else f"{metric} of {column}"
        msg = (f"{what} {value:.4g} against the median {base:.4g} of the last {len(past)} deliveries "
               f"(allowed {'-' if lo is None else f'{lo:.4g}'} .. {'-' if hi is None else f'{hi:.4g}'})")
        out.append({"metric": metric, "column": column, "observed": float(value), "baseline": base,
                    "lower": lo, "upper": hi, "deliveries": len(past), "passed": bool(ok), "message": msg})
    return out


def profile_and_check(spark: SparkSession, settings: Settings, sc: SourceContract, checked: DataFrame,
                      batch_id: str, sha: str, as_of: str, kind: str, rows_read: int, lock) -> DataFrame | None:
    """Profile a delivery, check it against the last ones and record both; the failed checks as
    findings rows (None when there are none). ``lock`` serialises the writes to the shared tables."""
    hc = sc.history_checks
    current = profile(checked, sc, rows_read)
    ppath = io.table_path(settings, *PROFILES)
    earlier: dict[tuple[str, str], list[float]] = {}
    window = int(hc.get("window", 7)) if hc else 7
    if hc and io.has_commit(ppath):  # a small table, read with deltalake: no Spark job per delivery
        day = datetime.date.fromisoformat(str(as_of)[:10])
        prev = [r for r in io.delta_table(ppath).to_pyarrow_table(
                    columns=["source", "batch_id", "as_of", "kind", "metric", "column", "value"]).to_pylist()
                if r["source"] == sc.source and r["kind"] == kind and r["as_of"] < day and r["batch_id"] != batch_id]
        batches = {b for _, b in sorted({(r["as_of"], r["batch_id"]) for r in prev}, reverse=True)[:window]}
        for r in prev:
            if r["batch_id"] in batches:
                earlier.setdefault((r["metric"], r["column"] or ""), []).append(r["value"])
    results = {(r["metric"], r["column"]): r for r in (evaluate(current, earlier, hc, rows_read) if hc else [])}
    rows = []
    as_of_day = datetime.date.fromisoformat(str(as_of)[:10])
    for m, c, v in current:
        r = results.get((m, c), {})
        rows.append((sc.source, batch_id, as_of_day, kind, m, c, v, r.get("baseline"), r.get("lower"), r.get("upper"),
                     r.get("deliveries"), r.get("passed"), r.get("message")))
    with lock:  # a few rows: committed by delta-rs
        io.replace_where_rows(spark, io.arrow_rows(rows, SCHEMA), ppath, f"batch_id = '{batch_id}'")
    results = list(results.values())
    failed = [r for r in results if not r["passed"]]
    if not failed:
        return None
    return spark.createDataFrame([{
        "run_id": batch_id, "stage": "ingest", "source": sc.source, "department": sc.department,
        "record_key": None, "field": r["column"] or "_rows", "rule": f"history.{r['metric']}", "severity": "error",
        "defect_type": DEFECTS[r["metric"]], "message": r["message"], "value": f"{r['observed']:.6g}",
        "_file_sha256": sha, "_row": None, "_batch_id": batch_id} for r in failed],
        "run_id string, stage string, source string, department string, record_key string, field string, "
        "rule string, severity string, defect_type string, message string, value string, _file_sha256 string, "
        "_row long, _batch_id string")


def blocking(spark: SparkSession, settings: Settings, sources: list[str]) -> list[dict]:
    """The failed checks of the newest delivery (latest business date, then batch id) of each of
    ``sources``: what blocks publication when the policy says so."""
    ppath = io.table_path(settings, *PROFILES)
    if not sources or not io.has_commit(ppath):
        return []
    wanted = set(sources)  # a small table, read with deltalake: no Spark job per publication
    prof = [r for r in io.delta_table(ppath).to_pyarrow_table().to_pylist() if r["source"] in wanted]
    latest: dict = {}
    for r in prof:
        cur = latest.get(r["source"])
        if cur is None or (r["as_of"], r["batch_id"]) > cur:
            latest[r["source"]] = (r["as_of"], r["batch_id"])
    newest = {b for _, b in latest.values()}
    rows = [{("observed" if k == "value" else k): v for k, v in r.items()} for r in prof
            if r["batch_id"] in newest and r["passed"] is False]
    return sorted(rows, key=lambda r: (r["source"], r["metric"], r["column"] is not None, r["column"] or ""))
