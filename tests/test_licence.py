"""The e-licence base database (jobs/base/e_licence.py on jobs/base/records.py): the licence
catalogue's authority, the holder checks and the validity checks on small inline frames (the real
contracts and catalogue); then base.e_licence of the tiny lake against the sample files and truth."""
from __future__ import annotations

import csv
import datetime
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from jobs.base import e_licence, records
from lake import contracts as contracts_mod
from lake import reference as reference_mod
from lake.reference import E_LICENCE
from sample import identifiers as ref

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)
D = datetime.date
AS_OF = "2026-11-01"
SAMR, ZJW, PSB = (E_LICENCE.catalogue[t].issuer_code for t in ("YYZZ", "SGXK", "JMSFZ"))


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def code(n: int) -> str:
    return ref.make_uscc("9", "1", "110115", f"{n:08d}0")


def pid(birth: D, seq: int) -> str:
    return ref.make_cn_id("110115", birth, seq, male=seq % 2 == 1)


E1, E2, E9 = code(1), code(2), code(9)
P1, P2, P9 = pid(D(1980, 4, 1), 301), pid(D(1950, 1, 1), 402), pid(D(1990, 2, 2), 503)


def raw(spark, contracts, source: str, rows: list[dict]):
    sc = contracts.source(source)
    schema = ", ".join(f"`{c.name}` {c.type}" for c in sc.columns)
    schema += ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp"
    data = [tuple(r.get(c.name) for c in sc.columns) + (source, "e" * 64, i + 2, f"{source}-b1", TS) for i, r in enumerate(rows)]
    return spark.createDataFrame(data, schema)


def lic(rid, ltype, no, name, issuer_code, code_=None, idn=None, status="有效", vf=D(2024, 1, 1), vt=None):
    return {"record_id": rid, "licence_type": ltype, "licence_no": no, "holder_name": name, "holder_credit_code": code_,
            "holder_id_number": idn, "issuer": "x", "issuer_code": issuer_code, "issue_date": vf, "valid_from": vf,
            "valid_to": vt, "status": status}


@pytest.fixture(scope="module")
def linked(spark, contracts):
    entities = records.entity_view(spark.createDataFrame([
        (E1, "E-1", "北京华兴商贸有限公司", "存续", D(2020, 1, 1)), (E2, "E-2", "北京德瑞科技有限公司", "注销", D(2010, 1, 1)),
    ], "credit_code string, entity_id string, name string, status string, established_date date"))
    people = records.person_view(spark.createDataFrame([
        (P1, "P-1", "张三", "正常", None), (P2, "P-2", "李四", "死亡", D(2026, 1, 1)),
    ], "id_number string, person_id string, name string, register_status string, death_date date"))
    tc = contracts.table(e_licence.TABLE)
    frames = {
        "samr_elicences": raw(spark, contracts, "samr_elicences", [
            lic("S1", "YYZZ", E1, "北京华兴商贸有限公司", SAMR, code_=E1),                          # clean
            lic("S2", "SPJY", "JY1", "北京华兴商贸有限公司", SAMR, code_=E1, vt=D(2026, 10, 31)),   # expired, still 有效
            lic("S3", "SPJY", "JY2", "北京华兴商贸有限公司", SAMR, code_=E1, vt=D(2026, 11, 1)),    # valid through as_of
            lic("S4", "YYZZ", E2, "北京德瑞科技有限公司", SAMR, code_=E2),                          # holder deregistered
            lic("S5", "YYZZ", E2 + "X", "北京德瑞科技有限公司", SAMR, code_=E2, status="注销"),      # consistent
            lic("S6", "SGXK", "SG1", "北京华兴商贸有限公司", SAMR, code_=E1),                       # zjw's type
            lic("S7", "YYZZ", E9, "北京某某有限公司", SAMR, code_=E9),                              # holder unknown
            lic("S8", "SPJY", "JY3", "北京华兴商贸有限公司", SAMR, code_=None),                     # no holder code
            lic("S9", "SPJY", "JY4", "北京华兴商贸有限公司", SAMR, code_=E1, vf=D(2025, 1, 1), vt=D(2024, 1, 1)),  # inverted
        ]),
        "psb_elicences": raw(spark, contracts, "psb_elicences", [
            lic("G1", "JMSFZ", "D1", "张三", PSB, idn=P1, vt=D(2034, 1, 1)),             # clean
            lic("G2", "JMSFZ", "D2", "李四", PSB, idn=P2),                               # dead holder
            lic("G3", "JMSFZ", "D3", "张叁", PSB, idn=P1),                               # name differs
            lic("G4", "JMSFZ", "D4", "王五", PSB, idn=P9),                               # unknown person
            lic("G5", "JMSFZ", "D5", "张三", ZJW, idn=P1),                               # wrong issuer code
        ]),
        "mca_elicences": raw(spark, contracts, "mca_elicences", [
            lic("M1", "JHZ", "J1", "李四", E_LICENCE.catalogue["JHZ"].issuer_code, idn=P2),   # does not end with holder
        ]),
    }
    frames = {s: records.with_meta(df, contracts.source(s)) for s, df in frames.items()}
    departments = {s: contracts.source(s).department_code for s in frames}
    return {"df": e_licence.link(records.unify(tc, frames), entities, people, departments), "tc": tc}


def test_licence_rules(linked):
    found = records.findings_of(linked["df"], e_licence.rules_of(linked["tc"], AS_OF)).collect()
    got = {(r["record_key"], r["defect_type"], r["field"]) for r in found}
    assert got == {
        ("S2", "licence_expired_active", "status"),
        ("S4", "licence_holder_inactive", "holder_credit_code"),
        ("S6", "licence_issuer_unauthorised", "issuer_code"),
        ("S7", "licence_holder_unknown", "holder_credit_code"),
        ("S8", "missing_value", "holder_credit_code"),
        ("S9", "invalid_period", "valid_to"),
        ("G2", "licence_holder_inactive", "holder_id_number"),
        ("G3", "name_mismatch", "holder_name"),
        ("G4", "licence_holder_unknown", "holder_id_number"),
        ("G5", "licence_issuer_unauthorised", "issuer_code"),
    }
    by_key = {r["record_key"]: r for r in found}
    assert by_key["S6"]["severity"] == "error" and "北京市大兴区住房和城乡建设委员会" in by_key["S6"]["message"]
    assert by_key["G2"]["department"] == "北京市公安局大兴分局" and "died 2026-01-01" in by_key["G2"]["message"]


def test_only_authorised_licences_naming_their_holder_are_published(linked):
    rows = {r["licence_no"]: r for r in e_licence.candidate(linked["df"], linked["tc"]).collect()}
    assert set(rows) == {E1, "JY1", "JY2", E2, E2 + "X", E9, "JY4", "D1", "D2", "D3", "D4", "J1"}
    assert rows[E1]["licence_name"] == "营业执照" and rows[E1]["holder_type"] == "法人" and rows[E1]["entity_id"] == "E-1"
    assert rows["D1"]["holder_type"] == "自然人" and rows["D1"]["person_id"] == "P-1" and rows["D4"]["person_id"] is None
    assert rows["D1"]["_lineage"]["licence_name"]["source"] == "derived:catalogue_name"
    assert rows["D1"]["_lineage"]["status"]["source"] == "psb_elicences"


def test_catalogue_names_one_issuer_per_type_and_rejects_a_misspelt_key(tmp_path):
    assert {t.issuer_code for t in E_LICENCE.catalogue.values()} >= {SAMR, ZJW, PSB}
    data = yaml.safe_load(reference_mod.PATH.read_text(encoding="utf-8"))
    data["e_licence"]["catalogue"]["YYZZ"]["issuer_cde"] = data["e_licence"]["catalogue"]["YYZZ"].pop("issuer_code")
    p = tmp_path / "reference.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(reference_mod.ReferenceError, match="issuer_cde"):
        reference_mod.parse(p)


# --------------------------------------------------------------------------- the tiny lake

SOURCES = ("samr_elicences", "zjw_elicences", "psb_elicences", "mca_elicences")


def test_e_licence_table_and_findings_against_the_sample(tiny_lake):
    from test_generate_governance import read_file

    root = tiny_lake["settings"].root
    truth = defaultdict(dict)
    with open(tiny_lake["inbox"] / "truth" / "defects.csv", encoding="utf-8") as f:
        expected = set()
        for r in csv.DictReader(f):
            truth[r["source"]][r["record_key"]] = r["defect_type"]
            if r["source"] in SOURCES:
                expected.add(tuple(r.values()))
    shas = {e["sha256"] for e in tiny_lake["manifest"]["governance_files"] if e["source"] in SOURCES}
    found = {(r["source"], r["record_key"], r["field"], r["defect_type"])
             for r in DeltaTable(f"{root}/quality/findings").to_pyarrow_table().to_pylist()
             if r["_file_sha256"] in shas and r["record_key"] is not None}
    assert found == expected
    unpublished = {"malformed_row", "missing_value", "invalid_date", "invalid_value", "credit_code_checksum",
                   "id_checksum", "duplicate_record", "licence_issuer_unauthorised"}
    want = set()
    for e in tiny_lake["manifest"]["governance_files"]:
        if e["source"] in SOURCES:
            want |= {(r["licence_type"], r["licence_no"]) for r in read_file(tiny_lake["inbox"], e)
                     if truth[e["source"]].get(r["record_id"]) not in unpublished}
    rows = DeltaTable(f"{root}/base/e_licence").to_pyarrow_table().to_pylist()
    assert {(r["licence_type"], r["licence_no"]) for r in rows} == want
    for r in rows:
        assert r["issuer_code"] == E_LICENCE.catalogue[r["licence_type"]].issuer_code
        assert (r["holder_type"] == "法人") == (E_LICENCE.catalogue[r["licence_type"]].holder == "entity")
    grants = {r["department_code"] for r in DeltaTable(f"{root}/share/_grants").to_pyarrow_table().to_pylist()
              if r["share_table"] == "base__e_licence"}
    assert grants == set(contracts_mod.load(CONTRACTS_DIR).table("base.e_licence").share_grants)
