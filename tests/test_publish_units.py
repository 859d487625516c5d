"""Publishing units: small-cell suppression, open-data files, PII regexes, content fingerprints and
the generated quality suites."""
from __future__ import annotations

from pathlib import Path

import csv
import datetime
import io as pyio
import json
import re

import pandas as pd
import pytest

from jobs.publish import open as publish
from lake import contracts as contracts_mod
from sample import identifiers as ref
from lake import io
from quality import gates

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
AS_OF = "2026-11-01"


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


# ----------------------------------------------------------------------------- suppress

def test_suppress_blanks_counts_under_five():
    pdf = pd.DataFrame({"town": list("abcdefg"), "persons": [1, 4, 5, 6, 100, 0, 2]})
    out = publish.suppress(pdf, ["persons"])
    assert out["persons"].tolist() == [pd.NA, pd.NA, 5, 6, 100, pd.NA, pd.NA]
    assert str(out["persons"].dtype) == "Int64"
    assert out["town"].tolist() == list("abcdefg")
    assert pdf["persons"].tolist() == [1, 4, 5, 6, 100, 0, 2]  # input untouched


def test_suppress_only_touches_count_columns():
    pdf = pd.DataFrame({"a": [1, 9], "b": [3, 7]})
    out = publish.suppress(pdf, ["b"])
    assert out["a"].tolist() == [1, 9]
    assert out["b"].tolist() == [pd.NA, 7]


# ----------------------------------------------------------------------------- open files

@pytest.fixture(scope="module")
def population_files(contracts):
    tc = contracts.table("topic.population_by_town_age_band")
    pdf = pd.DataFrame([
        ("黄村镇", "18-34", "男", 12),
        ("旧宫镇", "0-17", "女", 3),
        ("黄村镇", "0-17", "男", 7),
        ("unknown", "80+", "女", 5),
        ("黄村镇", "18-34", "女", 40),
    ], columns=["town", "age_band", "gender", "persons"])[["persons", "gender", "town", "age_band"]]  # any order
    pdf = publish.suppress(pdf, ["persons"])
    return tc, publish.open_files(tc, pdf, AS_OF)


def test_open_files_names(population_files):
    _, files = population_files
    assert sorted(files) == ["data.csv", "data.json", "metadata.json"]
    assert all(isinstance(b, bytes) for b in files.values())


def test_open_csv_is_utf8_with_header_and_sorted_rows(population_files):
    tc, files = population_files
    raw = files["data.csv"]
    assert not raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8")
    rows = list(csv.reader(pyio.StringIO(text)))
    assert rows[0] == ["town", "age_band", "gender", "persons"] == tc.column_names
    expected = sorted([
        ["黄村镇", "18-34", "男", "12"], ["旧宫镇", "0-17", "女", ""], ["黄村镇", "0-17", "男", "7"],
        ["unknown", "80+", "女", "5"], ["黄村镇", "18-34", "女", "40"],
    ], key=lambda r: (r[0], r[1], r[2]))
    assert rows[1:] == expected
    assert text.endswith("\n") and "\r" not in text


def test_open_json_records(population_files):
    _, files = population_files
    records = json.loads(files["data.json"].decode("utf-8"))
    assert records[0] == {"town": "unknown", "age_band": "80+", "gender": "女", "persons": 5}
    by_key = {(r["town"], r["age_band"], r["gender"]): r["persons"] for r in records}
    assert by_key == {("黄村镇", "18-34", "男"): 12, ("旧宫镇", "0-17", "女"): None, ("黄村镇", "0-17", "男"): 7,
                      ("unknown", "80+", "女"): 5, ("黄村镇", "18-34", "女"): 40}
    assert all(type(r["persons"]) in (int, type(None)) for r in records)
    assert "黄村镇" in files["data.json"].decode("utf-8")  # not \u-escaped


def test_open_metadata(population_files):
    tc, files = population_files
    m = json.loads(files["metadata.json"].decode("utf-8"))
    assert m["identifier"] == "daxing-population-by-town-age-band"
    assert m["title"] == tc.open_dataset["title"] and m["description"] == tc.open_dataset["description"]
    assert m["publisher"] == publish.PUBLISHER
    assert m["license"] == "CC-BY-4.0"
    assert m["accrualPeriodicity"] == "http://purl.org/cld/freq/daily"
    assert m["spatial"]["admin_code"] == "110115" and m["spatial"]["name"] == "北京市大兴区"
    assert m["temporal"] == {"as_of": AS_OF}
    assert m["columns"] == [{"name": c.name, "title": c.title, "type": c.type} for c in tc.columns]
    assert m["keywords"] == ["人口", "镇街", "年龄"]
    assert "5" in m["small_cell_suppression"]


def test_open_files_legal_entity_columns_in_contract_order(contracts):
    tc = contracts.table("topic.legal_entity_by_town_industry")
    pdf = pd.DataFrame({"entities": [9, 2], "status_group": ["active", "closed"], "industry_name": ["制造业", "制造业"],
                        "industry": ["C", "C"], "town": ["黄村镇", "黄村镇"]})
    files = publish.open_files(tc, publish.suppress(pdf, ["entities"]), AS_OF)
    assert files["data.csv"].decode("utf-8").splitlines() == [
        "town,industry,industry_name,status_group,entities", "黄村镇,C,制造业,active,9", "黄村镇,C,制造业,closed,"]
    assert json.loads(files["metadata.json"])["identifier"] == "daxing-legal-entities-by-town-industry"


def test_pii_specs_and_regexes():
    specs = publish.pii_specs(["town", "persons"])
    assert [(s["type"], s["column"]) for s in specs] == [("not_regex", "town")] * 2 + [("not_regex", "persons")] * 2
    id_re, mobile_re = specs[0]["regex"], specs[1]["regex"]
    person = ref.make_cn_id("110115", datetime.date(1990, 1, 1), 123, True)
    for value in (person, f"身份证{person}号", person[:17] + "x"):
        assert re.search(id_re, value), value
    for value in ("13812345678", "电话19912345678"):
        assert re.search(mobile_re, value), value
    for value in ("黄村镇", "18-34", "80+", "12", "男", "unknown", "2026-11-01", "010-62345678"):
        assert not re.search(id_re, value) and not re.search(mobile_re, value), value


# ----------------------------------------------------------------------------- fingerprint

ROWS = [("a", 1, datetime.date(2020, 1, 1)), ("b", 2, None), ("c", None, datetime.date(2021, 5, 6)), ("a", 1, None)]
SCHEMA = "k string, n int, d date"


def test_fingerprint_ignores_row_and_column_order(spark):
    a = spark.createDataFrame(ROWS, SCHEMA)
    b = spark.createDataFrame(list(reversed(ROWS)), SCHEMA).repartition(3).select("d", "k", "n")
    fa, fb = io.fingerprint(a), io.fingerprint(b)
    assert fa == fb
    assert fa.startswith("4:") and fa.endswith(":d,k,n")


def test_fingerprint_changes_when_one_value_changes(spark):
    base = io.fingerprint(spark.createDataFrame(ROWS, SCHEMA))
    changed = [ROWS[0], ("b", 3, None), *ROWS[2:]]
    assert io.fingerprint(spark.createDataFrame(changed, SCHEMA)) != base
    null_filled = [ROWS[0], ROWS[1], ("c", 0, datetime.date(2021, 5, 6)), ROWS[3]]
    assert io.fingerprint(spark.createDataFrame(null_filled, SCHEMA)) != base
    dropped = ROWS[:3]
    assert io.fingerprint(spark.createDataFrame(dropped, SCHEMA)) != base
    duplicated = ROWS + [ROWS[0]]
    assert io.fingerprint(spark.createDataFrame(duplicated, SCHEMA)) != base


def test_fingerprint_hashes_map_columns(spark):
    schema = "k string, m map<string,string>"
    a = spark.createDataFrame([("x", {"town": "b1"})], schema)
    b = spark.createDataFrame([("x", {"town": "b2"})], schema)
    assert io.fingerprint(a) == io.fingerprint(spark.createDataFrame([("x", {"town": "b1"})], schema))
    assert io.fingerprint(a) != io.fingerprint(b)


def test_fingerprint_hashes_lineage_shaped_and_nested_maps(spark):
    lineage = "k string, m map<string,struct<source:string,row:bigint>>"
    rows = [("x", {"name": ("psb", 2), "town": ("mca", 7)})]
    fp = io.fingerprint(spark.createDataFrame(rows, lineage))
    assert fp == io.fingerprint(spark.createDataFrame(rows, lineage))
    for changed in ({"name": ("psb", 3), "town": ("mca", 7)},    # a row number
                    {"name": ("psb", 2), "addr": ("mca", 7)},    # a key
                    {"name": ("psb", 2), "town": (None, 7)},     # a value turned null
                    {"name": ("psb", 2)}):                       # an entry dropped
        assert io.fingerprint(spark.createDataFrame([("x", changed)], lineage)) != fp, changed
    nested = "k string, m map<string,map<string,string>>"
    n = io.fingerprint(spark.createDataFrame([("x", {"a": {"b": "1"}})], nested))
    assert n != io.fingerprint(spark.createDataFrame([("x", {"a": {"b": "2"}})], nested))


def test_fingerprint_detects_a_value_moving_to_a_null_column(spark):
    schema = "address string, town string"
    before = spark.createDataFrame([("兴华大街1号", None), (None, "黄村镇")], schema)
    after = spark.createDataFrame([("兴华大街1号", None), ("黄村镇", None)], schema)
    assert io.fingerprint(before) != io.fingerprint(after)


# ----------------------------------------------------------------------------- small writes by delta-rs

def test_datafusion_predicate_quotes_identifiers_not_literals():
    assert io._datafusion_predicate("run_id = 'a`b' AND `table` = 'x'") == 'run_id = \'a`b\' AND "table" = \'x\''
    assert io._datafusion_predicate("_batch_id IN ('p', 'q''s')") == "_batch_id IN ('p', 'q''s')"


def test_replace_where_rows_creates_through_spark_then_commits_by_delta_rs(spark, tmp_path):
    from delta.tables import DeltaTable

    ddl = "table string, n long, as_of date, at timestamp"
    path = str(tmp_path / "t")
    day = datetime.date(2026, 11, 1)
    at = datetime.datetime(2026, 11, 1, 8, tzinfo=datetime.timezone.utc)
    io.replace_where_rows(spark, io.arrow_rows([("a", 1, day, at), ("b", 2, None, None)], ddl), path, "`table` = 'a'")
    # created by Spark: the statistics property every table gets from its condition's columns
    assert io.delta_table(path).metadata().configuration[io.STATS_PROPERTY] == "`table`"
    io.replace_where_rows(spark, io.arrow_rows([{"table": "a", "n": 7}], ddl), path, "`table` = 'a'", {"run": 2})
    engine = DeltaTable.forPath(spark, path).history(1).select("userMetadata", "engineInfo").collect()[0]
    assert json.loads(engine["userMetadata"]) == {"run": 2} and "Spark" not in (engine["engineInfo"] or "")
    assert io.last_metadata(spark, path) == {"run": 2} and io.version(spark, path) == 1
    rows = sorted((r["table"], r["n"], r["as_of"]) for r in io.read(spark, path).collect())
    assert rows == [("a", 7, None), ("b", 2, None)]
    io.replace_where_rows(spark, io.arrow_rows([], ddl), path, "`table` = 'b'")  # nothing left of b
    assert [r["table"] for r in io.read(spark, path).collect()] == ["a"]


def test_replace_if_changed_small_writes_only_a_change(spark, tmp_path):
    path = str(tmp_path / "t")
    schema = "run_id string, k string, m map<string,string>"
    rows = [("r1", "x", {"a": "1"}), ("r1", "y", None), ("r2", "z", {"b": "2"})]
    assert io.replace_if_changed_small(spark.createDataFrame(rows, schema), path, "run_id IN ('r1', 'r2')")
    v = io.version(spark, path)
    same = spark.createDataFrame(list(reversed(rows[:2])), schema)  # r1's rows again, in another order
    assert not io.replace_if_changed_small(same, path, "run_id = 'r1'") and io.version(spark, path) == v
    changed = spark.createDataFrame([("r1", "x", {"a": "9"}), rows[1]], schema)
    assert io.replace_if_changed_small(changed, path, "run_id = 'r1'") and io.version(spark, path) == v + 1
    assert io.rows_where(path, "run_id = 'r1' AND k = 'x'").to_pylist()[0]["m"] == [("a", "9")]
    assert io.rows_where(path, "run_id = 'r2'", "count(*) AS n").column("n")[0].as_py() == 1
    empty = spark.createDataFrame([], schema)
    assert not io.replace_if_changed_small(empty, str(tmp_path / "none"), "run_id = 'r'", create_empty=False)
    assert io.rows_where(str(tmp_path / "none"), "run_id = 'r'") is None


# ----------------------------------------------------------------------------- expectation specs

def test_expectation_specs_single_key(contracts):
    tc = contracts.table("base.population")
    specs = gates.expectation_specs(tc, ["_lineage"])
    assert specs[0] == {"type": "columns_match", "columns": sorted([*tc.column_names, "_lineage"])}
    assert {"type": "not_null", "column": "id_number"} in specs
    assert {"type": "unique", "column": "id_number"} in specs
    assert specs[-len(tc.expectations):] == [dict(e) for e in tc.expectations]
    assert len(specs) == 3 + len(tc.expectations)
    for s in specs:  # every generated spec maps to a GX expectation
        assert gates._gx_expectation(s) is not None


def test_expectation_specs_compound_key(contracts):
    tc = contracts.table("topic.population_by_town_age_band")
    specs = gates.expectation_specs(tc)
    assert specs[0] == {"type": "columns_match", "columns": sorted(tc.column_names)}
    assert [s for s in specs[1:4]] == [
        {"type": "not_null", "column": "town"}, {"type": "not_null", "column": "age_band"},
        {"type": "not_null", "column": "gender"}]
    assert specs[4] == {"type": "compound_unique", "columns": ["town", "age_band", "gender"]}
    assert not [s for s in specs if s["type"] == "unique"]


def test_suite_hash_is_stable_and_sensitive(contracts):
    tc = contracts.table("base.legal_entity")
    a = gates.expectation_specs(tc)
    assert gates.suite_hash(a) == gates.suite_hash(gates.expectation_specs(tc))
    b = [*a[:-1], {**a[-1], "min": 2}]
    assert gates.suite_hash(a) != gates.suite_hash(b)


def test_unknown_expectation_type_is_rejected():
    with pytest.raises(ValueError, match="unknown expectation type 'nonsense'"):
        gates._gx_expectation({"type": "nonsense"})
