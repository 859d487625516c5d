"""The macro-economy base database (jobs/base/macro.py): long form of the departments' files, units,
the authority per indicator, revisions (current figure and history), totals against their parts and
the cross-validation between sources, on small inline frames; then the two tables of the tiny lake
against the sample files (current figures recomputed in plain Python)."""
from __future__ import annotations

import csv
import datetime
from collections import defaultdict
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.base import macro, records
from lake import contracts as contracts_mod
from lake.reference import MACRO

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
D = datetime.date
T1, T2 = datetime.datetime(2026, 10, 16, 8, 0), datetime.datetime(2026, 11, 1, 8, 0)
TOTAL_T, TOTAL_I = MACRO.total_town, MACRO.total_industry


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def raw(spark, contracts, source: str, rows: list[dict], batch: str = "b1", ts=T1):
    sc = contracts.source(source)
    schema = ", ".join(f"`{c.name}` {c.type}" for c in sc.columns)
    schema += ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp"
    data = [tuple(r.get(c.name) for c in sc.columns) + (source, batch * 32, i + 2, f"{source}-{batch}", ts)
            for i, r in enumerate(rows)]
    return records.with_meta(spark.createDataFrame(data, schema), sc)


def nbs(rid, ind, period, town, industry, value, unit="万元", release=D(2026, 10, 15)):
    return {"record_id": rid, "indicator": ind, "period": period, "town": town, "industry": industry, "value": value,
            "unit": unit, "release_date": release}


def tax(rid, period, town, industry, revenue, sales, unit="万元", release=D(2026, 10, 15)):
    return {"record_id": rid, "period": period, "town": town, "industry": industry, "tax_revenue": revenue,
            "sales_revenue": sales, "amount_unit": unit, "release_date": release}


def long_of(spark, contracts, frames: dict) -> "DataFrame":  # noqa: F821
    from functools import reduce

    return reduce(lambda a, b: a.unionByName(b), [macro.long_rows(df, contracts.source(s)) for s, df in frames.items()])


def test_long_rows_units_and_authority(spark, contracts):
    frames = {
        "tax_revenue": raw(spark, contracts, "tax_revenue", [tax("S1", "2026-09", "黄村镇", "F", 1.5, 0.002, unit="亿元")]),
        "ndrc_investment": raw(spark, contracts, "ndrc_investment", [
            {"record_id": "F1", "period": "2026-09", "town": "黄村镇", "projects": 4, "investment": 1200.0,
             "amount_unit": "元", "release_date": D(2026, 10, 15)}]),
        "nbs_indicators": raw(spark, contracts, "nbs_indicators", [
            nbs("N1", "tax_revenue", "2026-09", "黄村镇", "F", 9.0),            # not the authority
            nbs("N2", "retail_sales", "2026-9", "黄村镇", TOTAL_I, 1.0),        # not a month
            nbs("N3", "turnover", "2026-09", "黄村镇", "F", 3.0, unit="个"),    # cannot be converted
            nbs("N4", "entity_count", "2026Q3", "黄村镇", "F", 7.0, unit="个")]),
    }
    c = {(r["_rk"], r["indicator"]): r for r in macro.classify(long_of(spark, contracts, frames)).collect()}
    assert c[("S1", "tax_revenue")]["_value"] == pytest.approx(15000.0) and c[("S1", "taxable_sales")]["_value"] == pytest.approx(20.0)
    assert c[("S1", "taxable_sales")]["_field"] == "sales_revenue"
    assert c[("F1", "fixed_asset_investment")]["_value"] == pytest.approx(0.12)
    assert c[("F1", "key_projects")]["_value"] == 4 and c[("F1", "key_projects")]["_unit"] == "个"
    assert c[("F1", "key_projects")]["industry"] == TOTAL_I           # derived in the contract
    assert sorted(k for k, r in c.items() if not r["_used"]) == [("N1", "tax_revenue"), ("N2", "retail_sales"), ("N3", "turnover")]
    found = records.findings_of(macro.classify(long_of(spark, contracts, frames)), macro.row_rules(contracts.table(macro.INDICATOR)))
    got = sorted((r["record_key"], r["defect_type"], r["field"], r["severity"]) for r in macro.dedupe(found).collect())
    assert got == [("F1", "unit_mismatch", "amount_unit", "warning"), ("N1", "indicator_not_authoritative", "indicator", "warning"),
                   ("N2", "invalid_value", "period", "error"), ("N3", "unit_mismatch", "unit", "error"),
                   ("S1", "unit_mismatch", "amount_unit", "warning")]

    # a wide row's two converted figures give one finding, and the same one in any order of the rows
    # (local[2] and the standalone cluster once named different indicators: tests/test_cluster.py)
    s1 = [r for r in found.collect() if r["record_key"] == "S1"]
    assert len({r["message"] for r in s1}) == 2
    for rows in (s1, s1[::-1]):
        kept = macro.dedupe(spark.createDataFrame(rows, found.schema).repartition(1)).collect()
        assert [r["message"] for r in kept] == [min(r["message"] for r in s1)]


def test_revisions_replace_the_figure_and_keep_the_history(spark, contracts):
    first = raw(spark, contracts, "nbs_indicators", [
        nbs("A1", "retail_sales", "2026-09", "黄村镇", TOTAL_I, 100.0),
        nbs("A2", "retail_sales", "2026-09", "旧宫镇", TOTAL_I, 50.0)], batch="b1", ts=T1)
    second = raw(spark, contracts, "nbs_indicators", [
        nbs("B1", "retail_sales", "2026-09", "黄村镇", TOTAL_I, 110.0, release=D(2026, 11, 1)),
        nbs("B2", "retail_sales", "2026-09", "旧宫镇", TOTAL_I, 55.0, release=D(2026, 10, 15))], batch="b2", ts=T2)
    v = macro.versions(macro.classify(macro.long_rows(first.unionByName(second), contracts.source("nbs_indicators"))))
    rows = sorted((r["town"], r["_version"], r["_value"], r["_current"], r["_superseded"], r["_previous"], r["_rk"]) for r in v.collect())
    assert rows == [("旧宫镇", 1, 55.0, True, None, None, "B2"),                  # same release re-sent: the later file's
                    ("黄村镇", 1, 100.0, False, D(2026, 11, 1), None, "A1"),
                    ("黄村镇", 2, 110.0, True, None, 100.0, "B1")]
    tc, htc = contracts.table(macro.INDICATOR), contracts.table(macro.HISTORY)
    cur = {r["town"]: r for r in macro.indicator_rows(v, tc).collect()}
    assert (cur["黄村镇"]["value"], cur["黄村镇"]["revisions"], cur["黄村镇"]["previous_value"]) == (110.0, 1, 100.0)
    assert cur["黄村镇"]["indicator_name"] == "社会消费品零售总额" and cur["黄村镇"]["source"] == "nbs_indicators"
    assert cur["黄村镇"]["_lineage"]["value"]["row"] == 2 and cur["黄村镇"]["department"] == "北京市大兴区统计局"
    hist = macro.history_rows(v, htc).collect()
    assert sorted((r["town"], r["version"], r["current"]) for r in hist) == [("旧宫镇", 1, True), ("黄村镇", 1, False), ("黄村镇", 2, True)]


def _checked(spark, contracts, rows, tax_rows=(), entity_counts=None):
    frames = {"nbs_indicators": raw(spark, contracts, "nbs_indicators", rows)}
    if tax_rows:
        frames["tax_revenue"] = raw(spark, contracts, "tax_revenue", list(tax_rows))
    current = macro.versions(macro.classify(long_of(spark, contracts, frames))).where("_current")
    checked = macro.with_cross_checks(macro.with_totals(current), entity_counts)
    found = records.findings_of(checked, macro.current_rules(contracts.table(macro.INDICATOR)))
    return sorted((r["record_key"], r["defect_type"], r["field"]) for r in found.collect())


def test_totals_equal_the_sum_of_their_finest_parts(spark, contracts):
    rows = [
        nbs("P1", "turnover", "2026-09", "黄村镇", "F", 10.0), nbs("P2", "turnover", "2026-09", "黄村镇", "H", 5.5),
        nbs("P3", "turnover", "2026-09", "旧宫镇", "F", 4.0),
        nbs("T1", "turnover", "2026-09", "黄村镇", TOTAL_I, 15.5),        # right
        nbs("T2", "turnover", "2026-09", "旧宫镇", TOTAL_I, 4.5),         # wrong
        nbs("T3", "turnover", "2026-09", TOTAL_T, "F", 14.0),             # right
        nbs("T4", "turnover", "2026-09", TOTAL_T, "H", 5.5),              # right
        nbs("T5", "turnover", "2026-09", TOTAL_T, TOTAL_I, 19.5),         # right: the finest parts, not the wrong T2
        nbs("R1", "retail_sales", "2026-09", "黄村镇", TOTAL_I, 7.0), nbs("R2", "retail_sales", "2026-09", "旧宫镇", TOTAL_I, 3.0),
        nbs("R3", "retail_sales", "2026-09", TOTAL_T, TOTAL_I, 10.1),     # beyond rounding
        nbs("O1", "industrial_output", "2026-09", "黄村镇", TOTAL_I, 7.0),
        nbs("O2", "industrial_output", "2026-09", "旧宫镇", TOTAL_I, 3.0),
        nbs("O3", "industrial_output", "2026-09", TOTAL_T, TOTAL_I, 10.04),  # rounding: within 0.05
        nbs("G1", "gdp_growth", "2026Q3", TOTAL_T, TOTAL_I, 5.1, unit="%"),   # not additive, no parts
        nbs("G2", "gdp", "2026Q3", TOTAL_T, TOTAL_I, 300.0, unit="亿元"),      # no parts
    ]
    assert _checked(spark, contracts, rows) == [("R3", "total_mismatch", "value"), ("T2", "total_mismatch", "value")]


def test_cross_validation_of_turnover_and_entity_counts(spark, contracts):
    rows = [nbs("P1", "turnover", "2026-09", "黄村镇", "F", 100.0), nbs("P2", "turnover", "2026-09", "黄村镇", "H", 100.0),
            nbs("P3", "turnover", "2026-09", "旧宫镇", "F", 100.0),
            nbs("C1", "entity_count", "2026Q3", "黄村镇", "F", 12.0, unit="个"),     # 10 active: within 2
            nbs("C2", "entity_count", "2026Q3", "黄村镇", "H", 8.0, unit="个"),      # 3 active
            nbs("C3", "entity_count", "2026Q3", "旧宫镇", "F", 3.0, unit="个"),      # none active: within 2? no, 3
            nbs("C4", "entity_count", "2026Q2", "旧宫镇", "F", 300.0, unit="个")]    # not the latest period
    taxes = [tax("S1", "2026-09", "黄村镇", "F", 3.0, 109.0),    # within 10%
             tax("S2", "2026-09", "黄村镇", "H", 3.0, 89.0),     # 11% below
             tax("S3", "2026-09", "旧宫镇", "F", 3.0, 100.0),
             tax("S4", "2026-09", "旧宫镇", "H", 3.0, 500.0)]    # no turnover to compare with
    counts = spark.createDataFrame([("黄村镇", "F", 10), ("黄村镇", "H", 3)], "town string, industry string, entities long")
    assert _checked(spark, contracts, rows, taxes, counts) == [
        ("C2", "entity_count_mismatch", "value"), ("C3", "entity_count_mismatch", "value"),
        ("S2", "turnover_mismatch", "sales_revenue")]


def test_active_entity_counts(spark):
    le = spark.createDataFrame([("黄村镇", "F", "存续"), ("黄村镇", "F", "在业"), ("黄村镇", "F", "注销"), (None, "F", "存续"),
                                ("黄村镇", None, "正常")], "town string, industry string, status string")
    assert [tuple(r) for r in macro.active_entity_counts(le).collect()] == [("黄村镇", "F", 2)]


# --------------------------------------------------------------------------- the tiny lake

SOURCES = ("nbs_indicators", "tax_revenue", "mof_budget", "ndrc_investment")


def test_macro_tables_and_findings_against_the_sample(tiny_lake):
    import test_generate_governance as gen

    root = tiny_lake["settings"].root
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        expected = {tuple(r.values()) for r in csv.DictReader(f) if r["source"] in SOURCES}
    shas = {e["sha256"] for e in tiny_lake["manifest"]["governance_files"] if e["source"] in SOURCES}
    found = {(r["source"], r["record_key"], r["field"], r["defect_type"])
             for r in DeltaTable(f"{root}/quality/findings").to_pyarrow_table().to_pylist()
             if r["_file_sha256"] in shas and r["record_key"] is not None}
    assert found == expected
    files = defaultdict(list)
    for e in tiny_lake["manifest"]["governance_files"]:
        files[e["source"]].append((e, gen.read_file(tiny_lake["inbox"], e)))
    defects = defaultdict(dict)
    for s, k, field, d in expected:
        defects[s][k] = (d, field)
    figures, _ = gen.macro_figures({"files": files, "defects": defects})
    current = {cell: sorted(v)[-1] for cell, v in figures.items()}
    rows = {(r["indicator"], r["period"], r["town"], r["industry"]): r
            for r in DeltaTable(f"{root}/base/macro_indicator").to_pyarrow_table().to_pylist()}
    assert set(rows) == set(current)
    for cell, (release, value, source, _, _) in current.items():
        r = rows[cell]
        assert r["value"] == pytest.approx(value, abs=1e-6) and r["source"] == source, cell
        assert r["release_date"].isoformat() == release and r["revisions"] == len(figures[cell]) - 1
    assert any(r["revisions"] for r in rows.values())
    history = DeltaTable(f"{root}/base/macro_indicator_history").to_pyarrow_table().to_pylist()
    assert len(history) == sum(len(v) for v in figures.values())
    opened = Path(root, "open", "daxing-macro-indicators", "data.csv").read_text(encoding="utf-8").splitlines()
    assert len(opened) == len(rows) + 1
