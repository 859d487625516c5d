"""Golden records across many departments: duplicates and ID/name conflicts, cross-validation against
the authority, the conflicts table, cross-column rules, record linkage with Splink, and the authority
registry (一数一源). Small inline frames, the real contracts and the real linkage model."""
from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from jobs.base import golden as build_base
from jobs.base import linkage as resolve
from lake import contracts as contracts_mod
from sample import identifiers as ref

CONTRACTS_DIR = str(Path(__file__).resolve().parent.parent / "contracts")
TS = datetime.datetime(2026, 10, 2, 8, 0, 0)
D = datetime.date


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(CONTRACTS_DIR)


def pid(birth: D, seq: int) -> str:
    return ref.make_cn_id("110115", birth, seq, male=seq % 2 == 1)


def frame(spark, contracts, source: str, rows: list[dict], batch: str | None = None, sha: str = "f" * 64):
    """A raw frame of ``source``: contract columns (typed) plus the ingest metadata columns."""
    sc = contracts.source(source)
    types = {"date": "date"}
    schema = ", ".join(f"`{c.name}` {types.get(c.type, c.type)}" for c in sc.columns)
    schema += ", _source string, _file_sha256 string, _row long, _batch_id string, _ingested_at timestamp"
    data = []
    for i, r in enumerate(rows):
        data.append(tuple(r.get(c.name) for c in sc.columns)
                    + (source, sha, r.get("_row", i + 2), batch or f"{source}-b1", TS))
    return spark.createDataFrame(data, schema)


A = pid(D(1980, 4, 1), 301)    # male
B = pid(D(1952, 9, 30), 402)   # female
C = pid(D(1990, 1, 1), 503)    # male, dead
E = pid(D(2001, 6, 6), 605)
G = pid(D(1970, 2, 2), 707)    # no source's row carries G itself (the register deleted it): only a linked row


def psb(record_id, id_number, name, gender, birth, town="黄村镇", address="兴华大街1号", status="正常", **kw):
    return {"record_id": record_id, "id_number": id_number, "name": name, "gender": gender, "birth_date": birth,
            "ethnicity": "汉族", "town": town, "address": address, "register_status": status, **kw}


@pytest.fixture(scope="module")
def population(spark, contracts):
    tc = contracts.table("base.population")
    raw = {
        "psb_household": frame(spark, contracts, "psb_household", [
            psb("HJ1", A, "张三", "男", D(1980, 4, 1)),
            psb("HJ2", B, "李四", "女", D(1952, 9, 30), address="清源路8号"),
            psb("HJ3", C, "王五", "男", D(1990, 1, 1)),                           # death not propagated
            psb("HJ4", A, "张三", "男", D(1980, 4, 1)),                           # duplicate of HJ1
            psb("HJ5", B, "赵六", "女", D(1952, 9, 30)),                          # same ID, other name
            psb("HJ6", E, "孙七", "男", D(2001, 6, 6), status="死亡"),            # propagated: no finding
        ]),
        "mca_residents": frame(spark, contracts, "mca_residents", [
            {"record_id": "MZ1", "id_number": A, "name": "张叁", "address": "兴华大街1号", "marital_status": "已婚"},
            {"record_id": "MZ2", "id_number": B, "name": "李四", "address": "旧地址9号"},   # stale address
            {"record_id": "MZ3", "id_number": None, "name": "李四", "gender": "女", "birth_date": D(1952, 9, 30),
             "town": "黄村镇", "address": "清源路8号", "subsistence_allowance": "是"},        # linked to C below
            {"record_id": "MZ4", "id_number": E, "name": "孙七", "death_date": D(2026, 3, 1)},
        ]),
        "nhc_vital_events": frame(spark, contracts, "nhc_vital_events", [
            {"record_id": "WJ1", "event_type": "死亡", "id_number": C, "name": "王五", "gender": "男",
             "birth_date": D(1990, 1, 1), "event_date": D(2026, 9, 9)},
            {"record_id": "WJ2", "event_type": "出生", "id_number": E, "name": "孙七", "gender": "男",
             "birth_date": D(2001, 6, 6), "event_date": D(2001, 6, 6)},
            {"record_id": "WJ3", "event_type": "死亡", "id_number": E, "name": "孙七", "gender": "男",
             "birth_date": D(2001, 6, 6), "event_date": D(2026, 3, 1)},
            {"record_id": "WJ4", "event_type": "死亡", "id_number": None, "name": "周八", "gender": "男",
             "birth_date": D(1970, 2, 2), "event_date": D(2026, 8, 8), "town": "旧宫镇"},   # linked to G below
        ]),
        "hrss_insured": frame(spark, contracts, "hrss_insured", [
            {"record_id": "RS1", "id_number": A, "name": "张三", "employment_status": "在职", "address": "兴华大街1号"},
        ]),
    }
    links = spark.createDataFrame(
        [("mca_residents", "MZ3", "mca_residents-b1", "f" * 64, 4, C, 0.999, "linked", 1),
         ("nhc_vital_events", "WJ4", "nhc_vital_events-b1", "f" * 64, 5, G, 0.999, "linked", 1)],
        resolve.DECISIONS_SCHEMA)
    g, found, conflicts = build_base.golden_records(tc, contracts, raw, links)
    return {"tc": tc, "rows": {r["id_number"]: r.asDict(recursive=True) for r in g.collect()},
            "findings": [r.asDict() for r in found.collect()], "conflicts": [r.asDict() for r in conflicts.collect()]}


def _found(population, defect):
    return sorted((f["source"], f["record_key"], f["field"]) for f in population["findings"] if f["defect_type"] == defect)


def test_one_golden_row_per_person(population):
    assert sorted(population["rows"]) == sorted([A, B, C, E])


def test_linked_rows_alone_do_not_keep_an_entity(population):
    # G's only row is a linked one (its own rows were deleted): no golden record with a null ID
    # number, and no conflict or finding about it (a full build and an increment both drop it)
    assert G not in population["rows"] and None not in population["rows"]
    assert not [c for c in population["conflicts"] if c["entity_key"] == G]
    assert not [f for f in population["findings"] if f.get("entity_key") == G or f["record_key"] == "WJ4"]


def test_duplicate_and_id_name_conflict_blame_the_later_row(population):
    assert _found(population, "duplicate_record") == [("psb_household", "HJ4", "id_number")]
    assert _found(population, "id_name_conflict") == [("psb_household", "HJ5", "name")]
    assert population["rows"][B]["name"] == "李四"   # the first row is kept


def test_cross_validation_against_the_authority(population):
    assert _found(population, "name_mismatch") == [("mca_residents", "MZ1", "name")]
    assert _found(population, "address_mismatch") == [("mca_residents", "MZ2", "address")]
    mismatch = [f for f in population["findings"] if f["record_key"] == "MZ1"][0]
    assert mismatch["value"] == "张叁" and "psb_household" in mismatch["message"] and mismatch["message"].endswith("张三")


def test_conflicts_table_lists_every_source_value(population):
    by = {(c["entity_key"], c["attribute"]): c for c in population["conflicts"]}
    name = by[(A, "name")]
    assert name["authority_source"] == "psb_household" and name["authority_value"] == "张三"
    assert name["values"] == {"psb_household": "张三", "mca_residents": "张叁", "hrss_insured": "张三"}
    assert by[(B, "address")]["values"] == {"psb_household": "清源路8号", "mca_residents": "旧地址9号"}
    assert by[(C, "register_status")]["rule"] == "cross.death_not_propagated"
    assert len(population["conflicts"]) == 3


def test_death_reported_elsewhere_but_register_active(population):
    assert _found(population, "death_not_propagated") == [("psb_household", "HJ3", "register_status")]
    assert population["rows"][C]["death_date"] == D(2026, 9, 9)
    assert population["rows"][E]["death_date"] == D(2026, 3, 1)      # death certificate preferred to birth
    assert population["rows"][E]["_lineage"]["death_date"]["source"] == "nhc_vital_events"


def test_birth_and_death_certificates_of_one_person_are_not_duplicates(population):
    assert not [f for f in population["findings"] if f["source"] == "nhc_vital_events"]


def test_linked_row_contributes_without_being_cross_checked(population):
    c = population["rows"][C]
    assert c["subsistence_allowance"] == "是" and c["name"] == "王五"
    assert c["_lineage"]["subsistence_allowance"]["source"] == "mca_residents"
    assert c["_lineage"]["subsistence_allowance"]["row"] == 4
    # its name and address differ from the register's, but it was matched on them: no finding
    assert not [f for f in population["findings"] if f["record_key"] == "MZ3"]
    # a row with its own key wins over a linked one
    assert population["rows"][B]["subsistence_allowance"] is None


def test_authority_and_other_sources_per_column(population):
    a = population["rows"][A]
    assert (a["name"], a["marital_status"], a["employment_status"]) == ("张三", "已婚", "在职")
    assert a["_lineage"]["employment_status"]["source"] == "hrss_insured"


# ----------------------------------------------------------------------------- legal entities

@pytest.fixture(scope="module")
def entities(spark, contracts):
    tc = contracts.table("base.legal_entity")
    ent = [ref.make_uscc("9", "1", "110115", f"MA{i:07d}") for i in range(3)]
    org = ref.make_uscc("5", "1", "110115", "MJ0000001")
    raw = {
        "samr_enterprises": frame(spark, contracts, "samr_enterprises", [
            {"record_id": "SC1", "credit_code": ent[0], "name": "北京兴华科技有限责任公司", "industry": "I",
             "established_date": D(2015, 1, 1), "status": "存续", "town": "黄村镇"},
            {"record_id": "SC2", "credit_code": ent[1], "name": "北京新名字贸易有限公司", "industry": "F",
             "established_date": D(2016, 1, 1), "status": "注销", "town": "旧宫镇"},
            {"record_id": "SC3", "credit_code": ent[2], "name": "北京大兴餐饮有限公司", "industry": "H",
             "established_date": D(2017, 1, 1), "status": "吊销", "town": "旧宫镇"},
        ]),
        "mca_social_orgs": frame(spark, contracts, "mca_social_orgs", [
            {"record_id": "ST1", "credit_code": org, "name": "大兴区书法协会", "org_type": "社会团体",
             "registered_date": D(2012, 3, 3), "status": "正常", "town": "林校路街道"},
        ]),
        "tax_taxpayers": frame(spark, contracts, "tax_taxpayers", [
            {"record_id": "SW1", "credit_code": ent[0], "taxpayer_name": "北京兴华科技有限公司", "tax_status": "正常"},
            {"record_id": "SW2", "credit_code": ent[1], "taxpayer_name": "北京旧名字贸易有限公司", "tax_status": "正常"},
            {"record_id": "SW3", "credit_code": ent[2], "taxpayer_name": "北京大兴餐饮有限公司", "tax_status": "注销"},
            {"record_id": "SW4", "credit_code": org, "taxpayer_name": "大兴区书法协会", "tax_status": "正常"},
        ]),
    }
    g, found, conflicts = build_base.golden_records(tc, contracts, raw)
    return {"codes": ent + [org], "rows": {r["credit_code"]: r.asDict(recursive=True) for r in g.collect()},
            "findings": [r.asDict() for r in found.collect()], "conflicts": [r.asDict() for r in conflicts.collect()]}


def test_entities_from_every_register_with_their_type(entities):
    ent0, ent1, ent2, org = entities["codes"]
    assert sorted(entities["rows"]) == sorted(entities["codes"])
    assert entities["rows"][org]["entity_type"] == "社会团体" and entities["rows"][ent0]["entity_type"] == "企业"
    assert entities["rows"][org]["name"] == "大兴区书法协会"
    assert entities["rows"][org]["_lineage"]["name"]["source"] == "mca_social_orgs"
    assert entities["rows"][org]["established_date"] == D(2012, 3, 3)


def test_legal_form_spelling_is_not_a_mismatch_but_an_old_name_is(entities):
    got = sorted((f["record_key"], f["field"], f["defect_type"]) for f in entities["findings"])
    assert got == sorted([("SW2", "taxpayer_name", "name_mismatch"), ("SW2", "tax_status", "deregistered_active_in_tax")])


def test_deregistered_but_active_in_tax_conflict(entities):
    ent1 = entities["codes"][1]
    c = [c for c in entities["conflicts"] if c["rule"] == "cross.deregistered_active_in_tax"]
    assert len(c) == 1 and c[0]["entity_key"] == ent1
    assert c[0]["values"] == {"samr_enterprises": "注销", "tax_taxpayers": "正常"}


# ----------------------------------------------------------------------------- linkage (Splink)

def test_splink_links_unambiguous_rows_and_lists_undecided_pairs(spark, contracts):
    model = resolve.model_for(CONTRACTS_DIR, "population")
    reference = spark.createDataFrame([
        (A, "张三", "男", "1980-04-01", "黄村镇", "兴华大街1号"),
        (B, "李四", "女", "1952-09-30", "清源街道", "清源路8号"),
        (C, "王芳", "女", "1990-01-01", "旧宫镇", "旧宫东路3号"),
        (E, "王芳", "女", "1990-01-01", "旧宫镇", "旧宫东路5号"),   # namesake born the same day
    ], "_key string, name string, gender string, birth_date string, town string, address string")
    query = spark.createDataFrame([
        ("mca_residents", "Q1", "b1", "s", 2, "张三", "男", "1980-04-01", "黄村镇", "兴华大街1号"),   # exact
        ("hrss_insured", "Q2", "b1", "s", 3, "李思", "女", "1952-09-30", None, "清源路8号"),         # one char off
        ("nhc_vital_events", "Q3", "b1", "s", 4, "王芳", "女", "1990-01-01", "旧宫镇", None),        # two candidates
        ("mca_residents", "Q4", "b1", "s", 5, "陈十", "男", "1999-09-09", "榆垡镇", "某路1号"),       # nobody
    ], "source string, record_key string, _batch_id string, _file_sha256 string, _row long, "
       "name string, gender string, birth_date string, town string, address string")
    decided, review = resolve.link(spark, model, reference, query)
    d = {r["record_key"]: r for r in decided.collect()}
    assert (d["Q1"]["decision"], d["Q1"]["linked_key"]) == ("linked", A)
    assert (d["Q2"]["decision"], d["Q2"]["linked_key"]) == ("linked", B)
    assert d["Q3"]["decision"] == "review" and d["Q3"]["linked_key"] is None
    assert d["Q4"]["decision"] == "unmatched" and d["Q4"]["linked_key"] is None
    assert d["Q1"]["match_probability"] >= model.link_threshold
    assert d["Q3"]["candidates"] == 2   # ambiguous: two namesakes born the same day, neither is linked
    pairs = sorted((r["record_key"], r["candidate_key"]) for r in review.collect())
    assert pairs == sorted([("Q3", C), ("Q3", E)])


def test_linkage_model_errors_name_the_file(tmp_path):
    bad = tmp_path / "population.yaml"
    bad.write_text(yaml.safe_dump({"link_threshold": 0.4, "review_threshold": 0.9, "blocking": [["name"]],
                                   "comparisons": []}))
    with pytest.raises(contracts_mod.ContractError, match="population.yaml.*review_threshold"):
        resolve.LinkageModel.load(bad)


# ----------------------------------------------------------------------------- authority registry

def test_every_published_base_column_has_exactly_one_authority(contracts):
    for t in contracts.tables.values():
        if t.zone != "base" or not t.gate:  # the readings (gate: false) are each source's own rows
            continue
        for c in t.columns:
            assert isinstance(c.authority, str) and c.authority, (t.table, c.name)
            assert c.authority not in c.fallback, (t.table, c.name)
            assert len(set(c.fallback)) == len(c.fallback), (t.table, c.name)


@pytest.mark.parametrize("authority, message", [
    (["psb_household", "mca_residents"], "names 2 authoritative sources"),
    ("", "has no authoritative source"),
])
def test_a_column_with_two_or_no_authorities_is_rejected(tmp_path, authority, message):
    import shutil
    shutil.copytree(CONTRACTS_DIR, tmp_path / "c")
    p = tmp_path / "c" / "tables" / "base_population.yaml"
    d = yaml.safe_load(p.read_text(encoding="utf-8"))
    d["columns"][2]["authority"] = authority
    p.write_text(yaml.safe_dump(d, allow_unicode=True), encoding="utf-8")
    with pytest.raises(contracts_mod.ContractError, match=message):
        contracts_mod.load.__wrapped__(str(tmp_path / "c"))
