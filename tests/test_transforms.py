"""Pure transforms: ingest.check_rows/split, build_base.latest_per_entity/golden_records and the
topic builders, on small inline frames with the real contracts."""
from __future__ import annotations

from pathlib import Path

import datetime
import re

import pytest
from pyspark.sql import functions as F

from jobs.base import golden as build_base
from jobs.landing import ingest
from jobs.topic import legal_entity as topic_legal_entity
from jobs.topic import population as topic_population
from lake import contracts as contracts_mod
from sample import identifiers as ref

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
TS_OLD = datetime.datetime(2026, 10, 1, 8, 0, 0)
TS_NEW = datetime.datetime(2026, 10, 2, 8, 0, 0)
AS_OF = "2026-11-01"


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def _id(birth: datetime.date, seq: int, region: str = "110115") -> str:
    return ref.make_cn_id(region, birth, seq, male=seq % 2 == 1)


def _id_ending_in(check: str, birth: datetime.date) -> str:
    for seq in range(1000):
        v = _id(birth, seq)
        if v[17] == check:
            return v
    raise AssertionError(check)


ID_CLEAN = _id(datetime.date(1990, 1, 1), 123)
ID_BAD_CHECK = (lambda v: v[:17] + ("0" if v[17] != "0" else "1"))(_id(datetime.date(1985, 6, 15), 222))
ID_PHONE = _id(datetime.date(1970, 3, 3), 11)
ID_BLANK_NAME = _id(datetime.date(2001, 12, 31), 40)


# ----------------------------------------------------------------------------- ingest


def parsed_frame(spark, rows: list[list], sc, batch="psb_household-aaaa", sha="a" * 64, ts=TS_OLD):
    """A frame shaped like parse_csv's Parquet plus the metadata columns ingest_file adds."""
    cols = sc.column_names
    schema = ", ".join([f"`{c}` string" for c in cols]
                       + ["_row long", "_field_count int", "_raw_line string"])
    df = spark.createDataFrame([tuple(r) for r in rows], schema)
    return (df.withColumn("_source", F.lit(sc.source)).withColumn("_file_sha256", F.lit(sha))
            .withColumn("_batch_id", F.lit(batch)).withColumn("_ingested_at", F.lit(ts).cast("timestamp")))


def psb_row(record_id, name, id_number, gender="男", birth="1990-01-01", ethnicity="汉族", phone="13812345678",
            town="黄村镇", address="兴华大街1号", registered="2010-05-01", row=2, status="正常"):
    return [record_id, name, id_number, gender, birth, ethnicity, phone, town, address, registered, status, row, 11, None]


@pytest.fixture(scope="module")
def psb(contracts):
    return contracts.source("psb_household")


@pytest.fixture(scope="module")
def ingested(spark, psb):
    rows = [
        # clean, with ASCII, tab and full-width (U+3000) spaces around values
        psb_row(" HJ001\u3000", "\u3000张三 ", f" {ID_CLEAN}\t", " 男", "1990-01-01 ", phone="\u300013812345678",
                town="\u3000\u3000黄村镇\u3000", address="兴华大街1号", registered="", row=2),
        psb_row("HJ002", "李四", ID_BAD_CHECK, birth="1985-06-15", row=3),
        psb_row("HJ003", "王五", ID_PHONE, birth="1970-03-03", phone="12812345678", row=4),
        # a short row as parse_csv leaves it: only the record key kept, raw line kept
        [  "HJ004", None, None, None, None, None, None, None, None, None, None, 5, 9,
           "HJ004,赵六,110115199001011235,男,1990-01-01,汉族,13812345678,黄村镇,兴华大街2号"],
        psb_row("HJ005", "\u3000 ", ID_BLANK_NAME, gender="女", birth="2001-12-31", row=6),
    ]
    df = parsed_frame(spark, rows, psb)
    checked = ingest.check_rows(df, psb).cache()  # as ingest_file does: checked once, split three ways
    try:
        raw, quarantine, found = ingest.split(checked, psb)
        return {
            "n_in": len(rows),
            "raw_schema": dict(raw.dtypes),
            "raw": {r["record_id"]: r for r in raw.collect()},
            "quarantine": {r["record_id"]: r for r in quarantine.collect()},
            "findings": found.collect(),
            "findings_columns": found.columns,
        }
    finally:
        checked.unpersist()


def test_raw_plus_quarantine_equals_input(ingested):
    assert len(ingested["raw"]) + len(ingested["quarantine"]) == ingested["n_in"]
    assert sorted(ingested["raw"]) == ["HJ001", "HJ003"]
    assert sorted(ingested["quarantine"]) == ["HJ002", "HJ004", "HJ005"]


def test_clean_row_lands_in_raw_typed_and_trimmed(ingested):
    r = ingested["raw"]["HJ001"]
    assert ingested["raw_schema"]["birth_date"] == "date"
    assert ingested["raw_schema"]["registered_date"] == "date"
    assert r["birth_date"] == datetime.date(1990, 1, 1)
    assert r["registered_date"] is None  # empty string -> null
    assert (r["record_id"], r["name"], r["id_number"], r["gender"], r["phone"], r["town"]) == (
        "HJ001", "张三", ID_CLEAN, "男", "13812345678", "黄村镇")
    assert (r["_source"], r["_row"], r["_batch_id"]) == ("psb_household", 2, "psb_household-aaaa")
    # spaces around ordinary columns are trimmed silently; in names, identifiers and phones they are
    # reported back to the department (the stored value is clean either way)
    got = sorted((f["field"], f["rule"], f["defect_type"], f["severity"], f["value"])
                 for f in ingested["findings"] if f["record_key"] == "HJ001")
    assert got == sorted([
        ("id_number", "normalize.whitespace", "whitespace", "warning", f" {ID_CLEAN}\t"),
        ("name", "normalize.whitespace", "whitespace", "warning", "\u3000张三 "),
        ("phone", "normalize.whitespace", "whitespace", "warning", "\u300013812345678"),
    ])


def test_bad_check_char_is_quarantined_as_checksum(ingested):
    q = ingested["quarantine"]["HJ002"]
    assert q["_rule"] == "cn_id.checksum"
    assert q["_reason"] == f"id_number: check character should be {ref.cn_id_check_char(ID_BAD_CHECK[:17])}"
    assert q["id_number"] == ID_BAD_CHECK
    assert q["birth_date"] == "1985-06-15"  # quarantine keeps the values as received (strings)
    [f] = [f for f in ingested["findings"] if f["record_key"] == "HJ002"]
    assert (f["rule"], f["severity"], f["defect_type"], f["field"], f["value"]) == (
        "cn_id.checksum", "error", "id_checksum", "id_number", ID_BAD_CHECK)


def test_invalid_phone_is_kept_with_a_warning_finding(ingested):
    r = ingested["raw"]["HJ003"]
    assert r["phone"] == "12812345678"
    [f] = [f for f in ingested["findings"] if f["record_key"] == "HJ003"]
    assert (f["rule"], f["severity"], f["defect_type"], f["field"], f["value"]) == (
        "cn_phone.format", "warning", "phone_format", "phone", "12812345678")
    assert (f["stage"], f["source"], f["department"], f["_row"], f["run_id"]) == (
        "ingest", "psb_household", "北京市公安局大兴分局", 4, "psb_household-aaaa")


def test_short_row_is_quarantined_as_field_count(ingested):
    q = ingested["quarantine"]["HJ004"]
    assert q["_rule"] == "parse.field_count"
    assert q["_reason"] == "_row: expected 11 fields, found 9"
    assert q["_raw_line"].startswith("HJ004,赵六,")
    assert q["_row"] == 5
    # only the field-count problem is reported, not one "required" issue per missing column
    fs = [f for f in ingested["findings"] if f["record_key"] == "HJ004"]
    assert [(f["rule"], f["defect_type"]) for f in fs] == [("parse.field_count", "malformed_row")]


def test_whitespace_only_required_value_is_missing(ingested):
    q = ingested["quarantine"]["HJ005"]
    assert q["name"] is None
    assert q["_rule"] == "required"
    assert q["_reason"] == "name: name is required"


def test_findings_have_the_findings_columns(ingested):
    from quality import findings

    assert ingested["findings_columns"] == [c for c, _ in findings.COLUMNS]
    assert sorted((f["record_key"], f["rule"]) for f in ingested["findings"]) == [
        ("HJ001", "normalize.whitespace"), ("HJ001", "normalize.whitespace"), ("HJ001", "normalize.whitespace"),
        ("HJ002", "cn_id.checksum"), ("HJ003", "cn_phone.format"), ("HJ004", "parse.field_count"),
        ("HJ005", "required")]


def test_lowercase_x_id_accepted_by_ingest_satisfies_base_contract(spark, contracts, psb):
    tc = contracts.table("base.population")
    [regex] = [e["regex"] for e in tc.expectations if e["type"] == "regex" and e["column"] == "id_number"]
    lower = _id_ending_in("X", datetime.date(1988, 8, 8))[:17] + "x"
    df = parsed_frame(spark, [psb_row("HJ009", "钱七", lower, birth="1988-08-08")], psb)
    raw, quarantine, _ = ingest.split(ingest.check_rows(df, psb), psb)
    accepted = [r["id_number"] for r in raw.collect()]
    # either ingest rejects the value, or whatever it accepts must satisfy the base table's contract
    assert all(re.fullmatch(regex, v) for v in accepted), accepted


# ----------------------------------------------------------------------------- latest_per_entity


def test_deregistration_date_rules_on_hand_written_samr_rows(spark, contracts):
    """The samr contract's ``deregistration:`` rules: one warning per row on ``deregistered_date``, the
    row kept; an invalid status, a short row and a deletion are not judged; ``lake check`` (no
    ``_as_of``) skips the future date."""
    sc = contracts.source("samr_enterprises")
    code = ref.make_uscc("9", "1", "110115", "12345678X")

    def row(rid, established, status, date, n=12, r=2):
        return [rid, code, "某公司", "张三", "F", "100.00", established, status, "黄村镇", "兴华大街1号", "", date, r, n,
                None]
    rows = [
        row("S1", "2015-01-01", "存续", ""),                  # clean, active
        row("S2", "2015-01-01", "注销", "2020-05-01"),        # clean, deregistered
        row("S3", "2015-01-01", "吊销", ""),                  # dead without a date
        row("S4", "2015-01-01", "在业", "2020-05-01"),        # a date on an active entity
        row("S5", "2015-01-01", "注销", "2014-12-31"),        # before establishment
        row("S6", "2015-01-01", "吊销", "2026-11-02"),        # after the delivery date 2026-11-01
        row("S7", "2015-01-01", "注销", "2026-11-01"),        # on the delivery date: fine
        row("S8", "2015-02-30", "注销", "2014-01-01"),        # established not a date: error, no order rule
        row("S9", "2015-01-01", "歇业", "2020-05-01"),        # not an allowed status: error only
        row("S10", "2015-01-01", "注销", "", n=11),           # short row: field count only
    ]
    df = parsed_frame(spark, rows, sc, batch="samr_enterprises-aaaa").withColumn(
        "_as_of", F.lit("2026-11-01").cast("date"))
    raw, quarantine, found = ingest.split(ingest.check_rows(df, sc), sc)
    got = {(f["record_key"], f["field"], f["defect_type"], f["severity"]) for f in found.collect()
           if f["rule"].startswith("cross.deregistration")}
    w = "warning"
    assert got == {("S3", "deregistered_date", "deregistration_date_missing", w),
                   ("S4", "deregistered_date", "deregistration_date_on_active", w),
                   ("S5", "deregistered_date", "deregistration_before_establishment", w),
                   ("S6", "deregistered_date", "deregistration_date_future", w)}
    kept = {r["record_id"]: r["deregistered_date"] for r in raw.collect()}
    assert kept == {"S1": None, "S2": datetime.date(2020, 5, 1), "S3": None, "S4": datetime.date(2020, 5, 1),
                    "S5": datetime.date(2014, 12, 31), "S6": datetime.date(2026, 11, 2), "S7": datetime.date(2026, 11, 1)}
    assert {r["record_id"] for r in quarantine.collect()} == {"S8", "S9", "S10"}
    # lake check: no delivery date, so no future-date rule
    _, _, checked = ingest.split(ingest.check_rows(parsed_frame(spark, rows, sc), sc), sc)
    assert {f["record_key"] for f in checked.collect() if f["rule"] == "cross.deregistration_future"} == set()


def test_latest_per_entity(spark):
    rows = [
        # entity, record, _row, batch, ingested_at, town
        (ID_CLEAN, "A1", 2, "b-old", TS_OLD, "黄村镇"),
        (ID_PHONE, "A2", 3, "b-old", TS_OLD, "旧宫镇"),
        (ID_CLEAN, "A3", 7, "b-old", TS_OLD, "采育镇"),    # duplicate in the old batch
        (ID_CLEAN, "B1", 4, "b-new", TS_NEW, "西红门镇"),  # newer batch wins
        (ID_CLEAN, "B2", 9, "b-new", TS_NEW, "瀛海镇"),    # duplicate in the new batch
        (None, "B3", 5, "b-new", TS_NEW, "榆垡镇"),        # no entity key: ignored
    ]
    df = spark.createDataFrame(rows, "id_number string, record_id string, _row long, _batch_id string, "
                                     "_ingested_at timestamp, town string")
    latest, dups = build_base.latest_per_entity(df, "id_number", "record_id")
    got = sorted((r["id_number"], r["record_id"], r["town"]) for r in latest.collect())
    assert got == sorted([(ID_CLEAN, "B1", "西红门镇"), (ID_PHONE, "A2", "旧宫镇")])
    assert sorted(r["record_id"] for r in dups.collect()) == ["A3", "B2"]
    assert "_n_in_batch" not in latest.columns and "_n_in_batch" not in dups.columns


def test_latest_per_entity_lowercase_x_is_the_same_entity(spark):
    upper = _id_ending_in("X", datetime.date(1995, 5, 5))
    rows = [(upper, "A1", 2, "b1", TS_OLD), (upper[:17] + "x", "A2", 3, "b1", TS_OLD)]
    df = spark.createDataFrame(rows, "id_number string, record_id string, _row long, _batch_id string, "
                                     "_ingested_at timestamp")
    latest, dups = build_base.latest_per_entity(df, "id_number", "record_id")
    assert [(r["_key"], r["record_id"]) for r in latest.collect()] == [(upper, "A1")]
    assert [r["record_id"] for r in dups.collect()] == ["A2"]


def test_latest_per_entity_contract_order_nulls_last_and_own_key_before_linked(spark):
    """Among one batch's rows of an entity: a row with its own key before a linked one, then the
    contract's order (smallest first, null last), then the row."""
    rows = [  # entity, record, _row, batch, linked, rank
        (ID_CLEAN, "A1", 2, "b1", False, None),   # no rank: after every ranked row
        (ID_CLEAN, "A2", 3, "b1", False, "1"),
        (ID_CLEAN, "A3", 4, "b1", False, "0"),    # smallest rank: chosen
        (ID_CLEAN, "A4", 1, "b1", True, "0"),     # linked: after every row with its own key
        (ID_PHONE, "B1", 6, "b1", True, "0"),     # only linked rows: the first by row
        (ID_PHONE, "B2", 5, "b1", True, "0"),
        (ID_PHONE, "B3", 7, "b0", False, "0"),    # an older batch: never chosen
    ]
    df = spark.createDataFrame(rows, "id_number string, record_id string, _row long, _batch_id string, "
                                     "_linked boolean, rank string").withColumn(
        "_as_of", F.when(F.col("_batch_id") == "b1", F.lit("2026-11-02")).otherwise(F.lit("2026-11-01")).cast("date"))
    latest, dups = build_base.latest_per_entity(df, "id_number", "record_id", ("id_number", "record_id"),
                                                "CAST(rank AS INT)")
    assert sorted((r["id_number"], r["record_id"]) for r in latest.collect()) == sorted([(ID_CLEAN, "A3"), (ID_PHONE, "B2")])
    assert dups.count() == 0
    assert not {"_n", "_n_uk", "_dup_kind"} & set(latest.columns)


def test_duplicate_names_are_compared_in_their_comparable_form(spark):
    """A duplicate row names the same entity when its name differs only in bracket width or the
    legal form's spelling (duplicate_record), another entity's name otherwise (id_name_conflict)."""
    rows = [(ID_CLEAN, "A1", 1, "某某（北京）有限责任公司"), (ID_CLEAN, "A2", 2, "某某(北京)有限公司"),
            (ID_CLEAN, "A3", 3, "另一家公司"), (ID_PHONE, "B1", 4, None), (ID_PHONE, "B2", 5, "无名")]
    df = spark.createDataFrame(rows, "id_number string, record_id string, _row long, name string").withColumn(
        "_batch_id", F.lit("b1")).withColumn("_ingested_at", F.lit(TS_OLD))
    latest, dups = build_base.latest_per_entity(df, "id_number", "record_id", name_col="name")
    assert sorted((r["record_id"], r["_dup_kind"]) for r in dups.collect()) == [
        ("A2", "duplicate_record"), ("A3", "id_name_conflict"), ("B2", "duplicate_record")]
    assert sorted(r["record_id"] for r in latest.collect()) == ["A1", "B1"]


# ----------------------------------------------------------------------------- golden_records

PSB_RAW = ("record_id string, name string, id_number string, gender string, birth_date date, ethnicity string, "
           "phone string, town string, address string, registered_date date, register_status string, "
           "_source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp")
MCA_RAW = ("record_id string, id_number string, name string, gender string, birth_date date, marital_status string, "
           "subsistence_allowance string, death_date date, phone string, town string, address string, "
           "_source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp")
P_BOTH = _id(datetime.date(1980, 4, 1), 301)    # male, in both
P_MCA = _id(datetime.date(1952, 9, 30), 402)    # female, only in mca
P_PSB = _id(datetime.date(2010, 1, 20), 503)    # male, only in psb


@pytest.fixture(scope="module")
def golden(spark, contracts):
    tc = contracts.table("base.population")
    psb = spark.createDataFrame([
        ("HJ1", "张三", P_BOTH, "男", datetime.date(1980, 4, 1), "汉族", None, "黄村镇", "兴华大街1号", None, "正常",
         "psb_household", "s1", 2, "psb-b1", TS_NEW),
        ("HJ2", "孙八", P_PSB, "男", datetime.date(2010, 1, 20), "回族", "13800000001", None, None, None, "正常",
         "psb_household", "s1", 3, "psb-b1", TS_NEW),
    ], PSB_RAW)
    mca = spark.createDataFrame([
        ("MZ1", P_BOTH, "张叁", "男", datetime.date(1980, 4, 1), "已婚", "否", None, "13900000000", "旧宫镇", "兴华大街1号",
         "mca_residents", "s2", 2, "mca-b1", TS_OLD),
        ("MZ2", P_MCA, "周九", "女", None, "丧偶", "是", None, None, "礼贤镇", None,
         "mca_residents", "s2", 3, "mca-b1", TS_OLD),
    ], MCA_RAW)
    g, found, _ = build_base.golden_records(tc, contracts, {"psb_household": psb, "mca_residents": mca})
    return {"tc": tc, "columns": g.columns, "dtypes": dict(g.dtypes),
            "rows": {r["id_number"]: r for r in g.collect()}, "findings": found.collect()}


def test_golden_one_row_per_person_with_contract_columns(golden):
    assert sorted(golden["rows"]) == sorted([P_BOTH, P_MCA, P_PSB])
    assert golden["columns"] == ["_key", *golden["tc"].column_names, "_lineage"]
    assert golden["dtypes"]["birth_date"] == "date"
    ids = [r["person_id"] for r in golden["rows"].values()]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"P[0-9a-f]{16}", i) for i in ids)


def test_golden_authority_wins_over_fallback(golden):
    r = golden["rows"][P_BOTH]
    assert (r["name"], r["town"], r["address"]) == ("张三", "黄村镇", "兴华大街1号")
    assert r["register_status"] == "正常" and r["death_date"] is None
    assert (r["marital_status"], r["subsistence_allowance"]) == ("已婚", "否")
    assert r["_lineage"]["name"]["batch_id"] == "psb-b1"
    assert r["_lineage"]["name"]["file_sha256"] == "s1" and r["_lineage"]["name"]["source"] == "psb_household"
    assert r["_lineage"]["town"]["batch_id"] == "psb-b1"
    assert r["_lineage"]["marital_status"]["batch_id"] == "mca-b1"


def test_golden_fallback_when_authority_is_null(golden):
    r = golden["rows"][P_BOTH]
    assert r["phone"] == "13900000000"
    assert r["_lineage"]["phone"]["batch_id"] == "mca-b1"
    assert r["_lineage"]["phone"]["source"] == "mca_residents" and r["_lineage"]["phone"]["row"] == 2
    only_psb = golden["rows"][P_PSB]
    assert only_psb["town"] is None and only_psb["_lineage"]["town"] is None
    assert only_psb["marital_status"] is None


def test_golden_person_only_in_mca_gets_gender_and_birth_date_from_id(golden):
    r = golden["rows"][P_MCA]
    assert (r["gender"], r["birth_date"]) == ("女", datetime.date(1952, 9, 30))
    assert (r["name"], r["town"], r["ethnicity"]) == ("周九", "礼贤镇", None)
    assert r["_lineage"]["gender"]["source"] == "derived:gender_from_id"
    assert r["_lineage"]["birth_date"]["source"] == "derived:birth_date_from_id"
    assert r["_lineage"]["name"]["batch_id"] == "mca-b1"
    assert r["_lineage"]["ethnicity"] is None


def test_golden_lineage_covers_every_non_derived_column(golden):
    expected = [c.name for c in golden["tc"].columns if c.authority != "derived"]
    for r in golden["rows"].values():
        assert sorted(r["_lineage"]) == sorted(expected)


def test_golden_name_mismatch_is_one_finding_on_the_mca_record(golden):
    assert len(golden["findings"]) == 1
    f = golden["findings"][0]
    assert (f["source"], f["record_key"], f["field"], f["rule"], f["severity"], f["defect_type"], f["value"]) == (
        "mca_residents", "MZ1", "name", "consistency.authority", "warning", "name_mismatch", "张叁")
    assert (f["department"], f["_row"], f["_batch_id"], f["_file_sha256"]) == ("北京市大兴区民政局", 2, "mca-b1", "s2")
    assert f["message"].endswith("张三")


# ----------------------------------------------------------------------------- topic builders

AGE_CASES = [
    # (birth_date, expected band at AS_OF 2026-11-01)
    (datetime.date(2008, 11, 1), "18-34"),   # exactly the 18th birthday
    (datetime.date(2008, 11, 2), "0-17"),    # one day short of 18
    (datetime.date(2026, 11, 1), "0-17"),    # born on the reference date
    (datetime.date(2026, 11, 2), "unknown"),  # born after the reference date
    (datetime.date(1991, 11, 2), "18-34"),   # one day short of 35
    (datetime.date(1991, 11, 1), "35-59"),   # exactly 35
    (datetime.date(1966, 11, 1), "60-79"),   # exactly 60
    (datetime.date(1946, 11, 2), "60-79"),   # one day short of 80
    (datetime.date(1946, 11, 1), "80+"),     # exactly 80
    (datetime.date(1900, 1, 1), "80+"),
    (None, "unknown"),
]


@pytest.fixture(scope="module")
def age_bands(spark):
    df = spark.createDataFrame([(i, b) for i, (b, _) in enumerate(AGE_CASES)], "i int, birth_date date")
    rows = df.select("i", topic_population.age_band(F.col("birth_date"), AS_OF).alias("band")).collect()
    return {r["i"]: r["band"] for r in rows}


@pytest.mark.parametrize("i", range(len(AGE_CASES)), ids=[f"{b}->{e}" for b, e in AGE_CASES])
def test_age_band(age_bands, i):
    assert age_bands[i] == AGE_CASES[i][1]


def test_population_by_town_age_band(spark):
    df = spark.createDataFrame([
        ("黄村镇", datetime.date(2008, 11, 1), "男"),
        ("黄村镇", datetime.date(1995, 1, 1), "男"),
        ("黄村镇", datetime.date(2008, 11, 2), "男"),
        (None, datetime.date(1950, 1, 1), "女"),
        ("旧宫镇", None, None),
    ], "town string, birth_date date, gender string")
    out = topic_population.population_by_town_age_band(df, AS_OF)
    assert out.columns == ["town", "age_band", "gender", "persons"]
    got = sorted(tuple(r) for r in out.collect())
    assert got == sorted([
        ("黄村镇", "18-34", "男", 2), ("黄村镇", "0-17", "男", 1),
        ("unknown", "60-79", "女", 1), ("旧宫镇", "unknown", "unknown", 1),
    ])


def test_legal_entity_by_town_industry(spark):
    df = spark.createDataFrame([
        ("黄村镇", "C", "存续"), ("黄村镇", "C", "在业"), ("黄村镇", "C", "注销"), ("黄村镇", "C", "吊销"),
        ("黄村镇", "I", "迁出"), ("黄村镇", "Z", None), (None, None, "存续"),
    ], "town string, industry string, status string")
    out = topic_legal_entity.legal_entity_by_town_industry(df)
    got = sorted((r["town"], r["industry"], r["status_group"], r["entities"], r["industry_name"]) for r in out.collect())
    assert got == sorted([
        ("黄村镇", "C", "active", 2, "制造业"),
        ("黄村镇", "C", "closed", 2, "制造业"),
        ("黄村镇", "I", "unknown", 1, "信息传输、软件和信息技术服务业"),
        ("黄村镇", "Z", "unknown", 1, "unknown"),
        ("unknown", "unknown", "active", 1, "unknown"),
    ])
