"""The social-credit base database (jobs/base/credit.py on jobs/base/records.py): the cross rules on
small inline frames (the real contracts), the red/black conflict on the reference date, the credit
profile and the public disclosure; then the tables the tiny lake built, checked against the sample
files and their truth."""
from __future__ import annotations

import csv
import datetime
import json
import unicodedata
from decimal import Decimal
from collections import defaultdict
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.base import credit, records
from lake import contracts as contracts_mod
from sample import identifiers as ref

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)
D = datetime.date
AS_OF = "2026-11-01"


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def code(n: int, kind: str = "1") -> str:
    return ref.make_uscc("9", kind, "110115", f"{n:08d}0")


def pid(birth: D, seq: int) -> str:
    return ref.make_cn_id("110115", birth, seq, male=seq % 2 == 1)


E1, E2, E3, E9 = code(11), code(22), code(33), code(99)
P1, P2 = pid(D(1980, 4, 1), 301), pid(D(1950, 1, 1), 402)


def raw(spark, contracts, source: str, rows: list[dict], batch: str | None = None):
    """A raw frame of ``source``: contract columns (typed) plus the ingest metadata columns."""
    sc = contracts.source(source)
    types = {"date": "date"}
    schema = ", ".join(f"`{c.name}` {types.get(c.type, c.type)}" for c in sc.columns)
    schema += ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp"
    data = [tuple(r.get(c.name) for c in sc.columns) + (source, "f" * 64, r.get("_row", i + 2), batch or f"{source}-b1", TS)
            for i, r in enumerate(rows)]
    return spark.createDataFrame(data, schema)


@pytest.fixture(scope="module")
def bases(spark):
    entities = spark.createDataFrame([
        (E1, "E-1", "北京华兴商贸有限公司", "存续", D(2020, 1, 1)),
        (E2, "E-2", "北京德瑞科技有限公司", "注销", D(2010, 5, 5)),
        (E3, "E-3", "北京鑫泰餐饮管理有限公司", "吊销", D(2012, 6, 6)),
    ], "credit_code string, entity_id string, name string, status string, established_date date")
    people = spark.createDataFrame([
        (P1, "P-1", "张三", "正常", None), (P2, "P-2", "李四", "死亡", D(2026, 1, 1)),
    ], "id_number string, person_id string, name string, register_status string, death_date date")
    return records.entity_view(entities), records.person_view(people), entities


def entity(code_, name, **kw):
    return {"subject_type": "法人及非法人组织", "credit_code": code_, "subject_name": name, **kw}


def person(idn, name, **kw):
    return {"subject_type": "自然人", "id_number": idn, "subject_name": name, **kw}


def licence(rid, no, subject, decided, valid_to=None, **kw):
    return {"record_id": rid, "decision_no": no, **subject, "licence_category": "普通", "licence_name": "食品经营许可证",
            "content": "准予", "decision_date": decided, "valid_from": kw.pop("valid_from", decided), "valid_to": valid_to,
            "authority": "北京市大兴区市场监督管理局", **kw}


def penalty(rid, no, subject, ptype="罚款", **kw):
    return {"record_id": rid, "decision_no": no, **subject, "violation": "虚假广告", "penalty_type": ptype,
            "content": ptype, "amount": None, "decision_date": D(2026, 3, 3), "publicity_end": D(2027, 3, 3),
            "authority": "北京市大兴区市场监督管理局", **kw}


@pytest.fixture(scope="module")
def decisions(spark, contracts, bases):
    entities, people, _ = bases
    tc = contracts.table(credit.DECISION)
    frames = {
        "samr_licences": raw(spark, contracts, "samr_licences", [
            licence("L1", "许1", entity(E1, "北京华兴商贸有限公司"), D(2021, 1, 1)),                 # clean
            licence("L2", "许2", entity(E1, "北京华兴商贸有限公司"), D(2019, 6, 1)),                 # before establishment
            licence("L3", "许3", entity(E1, "北京华兴商贸有限公司"), D(2021, 1, 1), D(2020, 1, 1)),  # inverted validity
            licence("L4", "许4", entity(E1, "北京华兴商贸有限责任公司"), D(2022, 2, 2)),             # legal form only
            licence("L5", "许5", person(P1, "张三"), D(2022, 2, 2)),                                # a person: no date check
            licence("L6", "许1", entity(E1, "北京华兴商贸有限公司"), D(2021, 1, 1)),                 # duplicate of L1
        ]),
        "samr_penalties": raw(spark, contracts, "samr_penalties", [
            penalty("P1", "罚1", entity(E2, "北京德瑞科技有限公司")),                     # on a deregistered entity
            penalty("P2", "罚2", entity(E3, "北京鑫泰餐饮管理有限公司"), "吊销许可证件"),  # the revocation: expected
            penalty("P3", "罚3", entity(E9, "北京某某有限公司")),                         # unknown subject
            penalty("P4", "罚4", person(P1, "张叁")),                                     # name differs
            penalty("P5", "罚5", person(None, "王五")),                                   # names no subject
            penalty("P6", "罚6", person(P2, "李四"), amount=Decimal("2.5")),              # dead person: no rule
        ]),
    }
    frames = {s: records.with_meta(records.current_rows(df, contracts.source(s).unique_key)[0], contracts.source(s))
              for s, df in frames.items()}
    dups = records.duplicate_findings(records.current_rows(raw(spark, contracts, "samr_licences", [
        licence("L1", "许1", entity(E1, "x"), D(2021, 1, 1)), licence("L6", "许1", entity(E1, "x"), D(2021, 1, 1))]),
        ("decision_no",))[1], contracts.source("samr_licences"))
    linked = credit.link(records.unify(tc, frames), entities, people)
    found = records.findings_of(linked, credit.rules_of(tc, {"name_col": "subject_name"}))
    return {"linked": linked, "found": found, "dups": dups, "tc": tc}


def test_decision_rules(decisions):
    got = {(r["record_key"], r["defect_type"], r["field"]) for r in decisions["found"].collect()}
    assert got == {
        ("L2", "licence_before_establishment", "decision_date"),
        ("L3", "invalid_period", "valid_to"),
        ("P1", "penalty_on_deregistered", "credit_code"),
        ("P3", "credit_subject_unknown", "credit_code"),
        ("P4", "name_mismatch", "subject_name"),
        ("P5", "missing_value", "id_number"),
    }
    sev = {r["record_key"]: (r["severity"], r["department"], r["source"]) for r in decisions["found"].collect()}
    assert sev["P5"] == ("error", "北京市大兴区市场监督管理局", "samr_penalties") and sev["P4"][0] == "warning"
    assert [(r["record_key"], r["defect_type"]) for r in decisions["dups"].collect()] == [("L6", "duplicate_record")]


def test_decision_candidate_links_subjects_and_keeps_lineage(decisions):
    rows = {r["decision_no"]: r for r in credit.candidate(decisions["linked"], decisions["tc"],
                                                           credit.decision_derived()).collect()}
    assert "罚5" not in rows                              # names no subject: not published
    assert rows["许1"]["entity_id"] == "E-1" and rows["许1"]["person_id"] is None
    assert rows["罚4"]["person_id"] == "P-1" and rows["罚3"]["entity_id"] is None
    assert rows["许1"]["kind"] == "行政许可" and rows["罚1"]["kind"] == "行政处罚"
    assert rows["罚1"]["department"] == "北京市大兴区市场监督管理局"
    assert rows["许1"]["category"] == "普通" and rows["罚2"]["category"] == "吊销许可证件"
    lin = rows["罚6"]["_lineage"]
    assert lin["amount"]["source"] == "samr_penalties" and lin["amount"]["row"] == 7
    assert lin["entity_id"]["source"] == "derived:legal_entity_link"


def test_disclosure_leaves_out_people_and_ended_publicity(spark, contracts, decisions):
    tc = contracts.table(credit.DISCLOSURE)
    linked = decisions["linked"]
    rows = {r["decision_no"] for r in credit.disclosed(linked, tc, AS_OF).collect()}
    assert rows == {"许1", "许2", "许3", "许4", "罚1", "罚2", "罚3"}
    assert {r["decision_no"] for r in credit.disclosed(linked, tc, "2027-06-01").collect()} == {"许1", "许2", "许3", "许4"}
    assert not any(c.pii for c in tc.columns) and tc.open_type == "unconditional"


def list_row(rid, no, subject, list_name, status="有效", included=D(2025, 1, 1), until=None):
    return {"record_id": rid, "entry_no": no, **subject, "list_name": list_name, "basis_department": "x",
            "included_date": included, "valid_until": until, "status": status}


@pytest.fixture(scope="module")
def lists(spark, contracts, bases):
    entities, people, _ = bases
    E4, E5, E6 = code(44), code(55), code(66)
    df = raw(spark, contracts, "ndrc_credit_lists", [
        list_row("M1", "N1", entity(E1, "北京华兴商贸有限公司"), "失信被执行人"),
        list_row("M2", "N2", entity(E1, "北京华兴商贸有限公司"), "守信激励对象"),                  # conflict
        list_row("M3", "N3", entity(E4, "甲"), "严重违法失信主体", status="已移出"),              # removed
        list_row("M4", "N4", entity(E4, "甲"), "诚信示范企业"),
        list_row("M5", "N5", entity(E5, "乙"), "失信被执行人", until=D(2026, 10, 1)),             # expired
        list_row("M6", "N6", entity(E5, "乙"), "纳税信用A级纳税人"),
        list_row("M7", "N7", entity(E6, "丙"), "失信被执行人", included=D(2026, 12, 1)),          # not yet listed
        list_row("M8", "N8", entity(E6, "丙"), "守信激励对象"),
        list_row("M9", "N9", person(P1, "张三"), "失信被执行人"),
        list_row("M10", "N10", person(P1, "张三"), "守信激励对象", until=D(2020, 1, 1)),          # red not in force
    ])
    tc = contracts.table(credit.LIST)
    frames = {"ndrc_credit_lists": records.with_meta(df, contracts.source("ndrc_credit_lists"))}
    linked = credit.with_list_state(credit.link(records.unify(tc, frames), entities, people), AS_OF)
    return {"linked": linked, "tc": tc}


def test_red_black_conflict_only_for_lists_in_force(lists):
    found = records.findings_of(lists["linked"], credit.rules_of(lists["tc"], {"name_col": "subject_name"}))
    conflicts = {(r["record_key"], r["field"], r["value"]) for r in found.collect() if r["defect_type"] == "red_black_conflict"}
    assert conflicts == {("M2", "list_name", "守信激励对象")}
    msg = next(r["message"] for r in found.collect() if r["defect_type"] == "red_black_conflict")
    assert "失信被执行人" in msg
    from pyspark.sql import functions as F

    derived = {**credit.decision_derived(), "colour": F.col("colour")}
    colours = {r["entry_no"]: r["colour"] for r in credit.candidate(lists["linked"], lists["tc"], derived).collect()}
    assert colours["N1"] == "black" and colours["N2"] == "red"


def test_profile_counts_lists_and_newest_rating(spark, contracts, decisions, lists, bases):
    _, _, legal_entity = bases
    tc = contracts.table(credit.PROFILE)
    published = credit.candidate(decisions["linked"], decisions["tc"], credit.decision_derived())
    ratings = records.with_meta(raw(spark, contracts, "tax_credit_ratings", [
        {"record_id": "R1", "credit_code": E1, "taxpayer_name": "x", "rating_year": 2024, "rating": "B", "evaluated_date": D(2025, 4, 1)},
        {"record_id": "R2", "credit_code": E1, "taxpayer_name": "x", "rating_year": 2025, "rating": "A", "evaluated_date": D(2026, 4, 1)},
        {"record_id": "R3", "credit_code": E2, "taxpayer_name": "y", "rating_year": 2025, "rating": "D", "evaluated_date": D(2026, 4, 1)},
    ]), contracts.source("tax_credit_ratings"))
    rows = {r["credit_code"]: r for r in credit.profile(legal_entity, published, lists["linked"], ratings, tc).collect()}
    assert set(rows) == {E1, E2, E3}
    e1 = rows[E1]
    assert (e1["licences"], e1["penalties"], e1["tax_rating"], e1["rating_year"]) == (4, 0, "A", 2025)
    assert (e1["red_lists"], e1["black_lists"], e1["name"], e1["entity_id"]) == ("守信激励对象", "失信被执行人", "北京华兴商贸有限公司", "E-1")
    assert e1["_lineage"]["tax_rating"]["row"] == 3 and e1["_lineage"]["licences"]["source"] == "derived:decisions_count"
    assert (rows[E2]["penalties"], rows[E2]["licences"], rows[E2]["tax_rating"]) == (1, 0, "D")
    assert rows[E3]["penalties"] == 1 and rows[E3]["red_lists"] is None and rows[E3]["last_penalty_date"] == D(2026, 3, 3)


# --------------------------------------------------------------------------- the tiny lake

SOURCES = ("samr_licences", "mem_licences", "samr_penalties", "mee_penalties", "tax_penalties", "mem_penalties",
           "ndrc_credit_lists", "tax_credit_ratings")


def lake_table(root: str, rel: str):
    return DeltaTable(f"{root}/{rel}").to_pyarrow_table().to_pylist()


def sample_rows(tiny_lake, source: str) -> list[dict]:
    from test_generate_governance import read_file

    entry = next(e for e in tiny_lake["manifest"]["governance_files"] if e["source"] == source)
    return read_file(tiny_lake["inbox"], entry)


def cleaned(code_: str | None) -> str:
    """A credit code as the build cleans it (lake.rules.normalized): full-width to half-width, spaces
    removed, upper case."""
    return "".join(unicodedata.normalize("NFKC", code_ or "").split()).upper()


def truth(tiny_lake) -> dict:
    out = defaultdict(dict)
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            out[r["source"]][r["record_key"]] = r["defect_type"]
    return out


def test_findings_of_the_credit_sources_are_the_truth(tiny_lake):
    root = tiny_lake["settings"].root
    shas = {e["sha256"] for e in tiny_lake["manifest"]["governance_files"] if e["source"] in SOURCES}
    found = {(r["source"], r["record_key"], r["field"], r["defect_type"]) for r in lake_table(root, "quality/findings")
             if r["_file_sha256"] in shas and r["record_key"] is not None}
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        expected = {tuple(r.values()) for r in csv.DictReader(f) if r["source"] in SOURCES}
    assert found == expected


def test_credit_tables_hold_the_clean_and_the_flagged_records(tiny_lake):
    """Every decision of the files that is not quarantined, not a duplicate and names its subject is
    in base.credit_decision, with the deciding department; the profile counts them per entity."""
    root = tiny_lake["settings"].root
    t = truth(tiny_lake)
    unusable = {"malformed_row", "missing_value", "invalid_date", "invalid_value", "credit_code_checksum",
                "id_checksum", "duplicate_record"}
    expected, per_code = set(), defaultdict(lambda: [0, 0])
    entities = {r["credit_code"] for r in lake_table(root, "base/legal_entity")}
    for source in SOURCES[:6]:
        for r in sample_rows(tiny_lake, source):
            if t[source].get(r["record_id"]) in unusable:
                continue
            kind = "行政许可" if source.endswith("licences") else "行政处罚"
            expected.add((kind, r["decision_no"]))
            code_ = cleaned(r["credit_code"])
            if code_ in entities and r["subject_type"] != "自然人":
                per_code[code_][0 if kind == "行政许可" else 1] += 1
    got = lake_table(root, "base/credit_decision")
    assert {(r["kind"], r["decision_no"]) for r in got} == expected
    assert {r["department"] for r in got} == {"北京市大兴区市场监督管理局", "北京市大兴区应急管理局", "北京市大兴区生态环境局",
                                             "国家税务总局北京市大兴区税务局"}
    profile = {r["credit_code"]: r for r in lake_table(root, "base/credit_profile")}
    assert set(profile) == entities
    for c, (lic, pen) in per_code.items():
        assert (profile[c]["licences"], profile[c]["penalties"]) == (lic, pen), c
    years = defaultdict(set)  # the years of each entity's usable ratings: the profile has the newest
    for r in sample_rows(tiny_lake, "tax_credit_ratings"):
        if t["tax_credit_ratings"].get(r["record_id"]) not in unusable:
            years[cleaned(r["credit_code"])].add(int(r["rating_year"]))
    rated = [r for r in profile.values() if r["tax_rating"]]
    assert rated and all(r["rating_year"] == max(years[r["credit_code"]]) for r in rated)
    assert {r["rating_year"] for r in rated} <= {2024, 2025}


def test_credit_disclosure_is_open_without_personal_data(tiny_lake):
    from lake.rules import ID_NUMBER_REGEX

    root = Path(tiny_lake["settings"].root)
    folder = root / "open" / "daxing-credit-disclosure"
    records_ = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    assert records_ and all(r["subject_type"] != "自然人" and r["credit_code"] for r in records_)
    text = (folder / "data.csv").read_text(encoding="utf-8")
    import re
    assert not re.search(r"(?<![0-9])" + ID_NUMBER_REGEX + r"(?![0-9])", text)
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    assert meta["source_table"] == "base.credit_disclosure"
    grants = {(r["share_table"], r["department_code"]) for r in lake_table(str(root), "share/_grants")}
    assert ("base__credit_decision", "11011500020") in grants  # 北京市大兴区发展和改革委员会
    assert ("base__credit_profile", "*") in grants


def test_credit_findings_reach_the_department_reports(tiny_lake):
    root = tiny_lake["settings"].root
    rows = lake_table(root, "quality/department_quality")
    run = max(r["run_id"] for r in rows)
    mine = {(r["source"], r["defect_type"]) for r in rows if r["run_id"] == run}
    assert ("samr_penalties", "penalty_on_deregistered") in mine
    assert ("ndrc_credit_lists", "red_black_conflict") in mine
    assert ("tax_credit_ratings", "credit_subject_unknown") in mine
    scores = {r["department"] for r in lake_table(root, "quality/department_scores") if r["run_id"] == run}
    assert {"北京市大兴区应急管理局", "北京市大兴区发展和改革委员会"} <= scores
    catalogue = {r["resource_id"] for r in lake_table(root, "catalog/resources")}
    assert {"raw.samr_penalties", "raw.ndrc_credit_lists", "base.credit_profile", "base.credit_disclosure"} <= catalogue


def test_open_pii_gate_passes_credit_codes_and_still_catches_people():
    """The open zone's PII gate looks for ID and mobile numbers standing alone: a credit code (its
    digits 7-17 look like a mobile number) passes, people's numbers do not."""
    import re

    from jobs.publish.open import pii_specs

    id_re, mobile_re = (s["regex"] for s in pii_specs(["c"]))
    for value in (code(11), code(99, "2"), "91110115012345678X", "911101150123456789", "京兴市监罚〔2026〕1234号"):
        assert not re.search(id_re, value) and not re.search(mobile_re, value), value
    for value in ("13812345678", "电话：13812345678。", "+8613812345678", "tel 8613912345678"):
        assert re.search(mobile_re, value), value
    for value in (P1, f"身份证{P1}号", P1[:17] + "x"):
        assert re.search(id_re, value), value
