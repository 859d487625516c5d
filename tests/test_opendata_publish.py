"""The open zone of the tiny lake, end to end: the record-level datasets (the legal-entity register, the
de-identified vital events under directed opening), aggregates with totals and complementary
suppression, the directed-opening and sandbox flows on the real tables, and publication refused with
the previous version kept (planted ID number, mobile number and a real person's name; a dataset under
its k) on a copy of the lake."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lake import contracts as contracts_mod
from opendata import access, cells, deid, sandbox

REGISTER = "daxing-legal-entity-register"
VITAL = "daxing-vital-events-deidentified"
POPULATION = "daxing-population-by-town-age-band"


def folder_bytes(root, ds: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(root, "open", ds).iterdir()) if p.is_file()}


def test_record_level_datasets_of_the_tiny_lake(tiny_lake):
    from pycanon import anonymity
    import pandas as pd

    s = tiny_lake["settings"]
    c = contracts_mod.load(s.contracts_dir)
    od = c.table("topic.vital_events").open_dataset
    files = folder_bytes(s.root, VITAL)
    assert {"data.csv", "data.json", "metadata.json", "dcat.ttl", "dcat.jsonld"} <= set(files)
    meta = json.loads(files["metadata.json"])
    assert meta["quasi_identifiers"] == od["quasi_identifiers"] and meta["k"] == 5 and meta["l"] == 2
    header, rows = deid.read_csv(files["data.csv"])
    assert rows, "the tiny lake has vital events to publish"
    assert set(meta["quasi_identifiers"]) <= set(header) and not {"id_number", "name", "birth_date", "event_date"} & set(header)
    df = pd.DataFrame(rows).fillna("")
    assert anonymity.k_anonymity(df, meta["quasi_identifiers"]) >= 5
    assert anonymity.l_diversity(df, meta["quasi_identifiers"], meta["sensitive_attributes"]) >= 2
    assert meta["anonymity"]["k"] == anonymity.k_anonymity(df, meta["quasi_identifiers"])
    # the pseudonyms are no certificate numbers of the source
    from deltalake import DeltaTable

    src_ids = set(DeltaTable(s.path("raw", "nhc_vital_events")).to_pandas()["record_id"].astype(str))
    assert len(src_ids) >= len(rows)
    assert not src_ids & {r["record_id"] for r in rows}
    # the register: public fields only, one row per registered entity
    reg_meta = json.loads(folder_bytes(s.root, REGISTER)["metadata.json"])
    assert [col["name"] for col in reg_meta["columns"]] == c.table("topic.legal_entity_register").column_names
    assert reg_meta["kind"] == "record" and reg_meta["quasi_identifiers"] == []
    _, reg_rows = deid.read_csv(folder_bytes(s.root, REGISTER)["data.csv"])
    assert len(reg_rows) > 10 and all(r["credit_code"] and r["name"] for r in reg_rows)


def test_aggregates_of_the_tiny_lake_publish_totals_no_blank_can_be_recomputed(tiny_lake):
    s = tiny_lake["settings"]
    for ds, dims, count in ((POPULATION, ["town", "age_band", "gender"], "persons"),
                            ("daxing-legal-entities-by-town-industry", ["town", "industry", "status_group"], "entities")):
        files = folder_bytes(s.root, ds)
        meta = json.loads(files["metadata.json"])
        assert meta["suppression_detail"]["method"] == "primary+complementary"
        _, data_rows = deid.read_csv(files["data.csv"])
        _, total_rows = deid.read_csv(files["totals.csv"])
        table, blank = cells.read_published(data_rows, total_rows, dims, count)
        assert all(v >= 5 for k, v in table.counts.items() if k not in blank)
        # what an attacker can work out from the files alone: no blank is pinned to one whole number
        pinned = [k for k, (lo, hi) in cells.ranges(table, blank).items() if hi - lo < 1 - 1e-6]
        assert pinned == [], (ds, pinned[:3])


def test_directed_opening_and_the_sandbox_on_the_tiny_lake(tiny_lake, tmp_path):
    s = tiny_lake["settings"]
    a = access.apply(s, "某大学人口研究所", VITAL, "出生死亡季节性研究", True)
    token = access.approve(s, a["request_id"], "大数据局", 14)["token"]
    got = access.download(s, token, tmp_path / "dl")
    assert (tmp_path / "dl" / "data.csv").read_bytes() == Path(s.root, "open", VITAL, "data.csv").read_bytes()
    assert got["rows"] == len(deid.read_csv((tmp_path / "dl" / "data.csv").read_bytes())[1])
    b = access.apply(s, "某大学人口研究所", "sandbox:base.population", "各镇街人口结构研究", True)
    sandbox_token = access.approve(s, b["request_id"], "大数据局", 14)["token"]
    r = sandbox.query(s, "某大学人口研究所", "SELECT gender, count(*) AS n FROM base.population GROUP BY gender ORDER BY gender",
                      sandbox_token)
    from deltalake import DeltaTable

    pop = DeltaTable(s.path("base", "population")).to_pandas()
    assert sorted(r.rows, key=str) == sorted(((None if g == "" else g), n) for g, n in
                                             pop.groupby(pop["gender"].fillna("")).size().items())
    with pytest.raises(sandbox.Refused, match="fewer than 10 records"):
        sandbox.query(s, "某大学人口研究所", "SELECT person_id, count(*) FROM base.population GROUP BY person_id", sandbox_token)
    acts = [(x["action"], x["decision"]) for x in access.audit_records(s, applicant="某大学人口研究所")]
    assert ("download", "granted") in acts and ("sandbox_query", "granted") in acts and ("sandbox_query", "refused") in acts


@pytest.fixture()
def lake_copy(tiny_lake, tmp_path):
    """The tiny lake's base, topic and open zones in a folder of their own, to break without harm."""
    s = tiny_lake["settings"]
    root = tmp_path / "lake"
    for zone in ("base", "topic", "open"):
        shutil.copytree(Path(s.root, zone), root / zone)
    return replace(s, root=str(root))


def test_leaks_refuse_publication_and_keep_the_previous_version(lake_copy, spark):
    """An ID number, a mobile number and the name of a person of base.population planted in the
    register: publication refused naming each, the register's files stay as they were, the other
    datasets are still published."""
    from jobs.publish import open as publish
    from lake import io
    from pyspark.sql import functions as F

    s = lake_copy
    person = io.read(spark, s.path("base", "population")).select("name", "id_number").first()
    path = s.path("topic", "legal_entity_register")
    df = io.read(spark, path)
    codes = [r["credit_code"] for r in df.orderBy("credit_code").limit(3).collect()]
    planted = (df.withColumn("name", F.when(F.col("credit_code") == codes[0], F.lit(person["name"]))
                             .when(F.col("credit_code") == codes[1], F.lit("联系电话13912345678"))
                             .when(F.col("credit_code") == codes[2], F.lit(f"法人{person['id_number']}"))
                             .otherwise(F.col("name"))))
    io.overwrite(planted.localCheckpoint(), path, {"as_of": "2026-11-01"})
    before = folder_bytes(s.root, REGISTER)
    others = {ds: folder_bytes(s.root, ds) for ds in (POPULATION, VITAL)}
    with pytest.raises(publish.PublicationRefused) as e:
        publish.publish_open(spark, s)
    msg = str(e.value)
    assert f"{REGISTER}: " in msg and "look like personal data" in msg and "the previous version of each stays" in msg
    for rule in ("id_number", "mobile", "person_name"):
        assert rule in msg, rule
    assert person["id_number"] not in msg  # the message shows a shortened value, not the ID number itself
    assert folder_bytes(s.root, REGISTER) == before
    assert {ds: folder_bytes(s.root, ds) for ds in others} == others
    assert len(e.value.refusals) == 1


def test_a_dataset_under_its_k_is_refused_and_keeps_its_previous_version(lake_copy, spark, tmp_path):
    from jobs.publish import open as publish

    contracts = tmp_path / "contracts"
    shutil.copytree(lake_copy.contracts_dir, contracts)
    path = contracts / "tables" / "topic_vital_events.yaml"
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["open_dataset"]["k"] = 100_000
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    s = replace(lake_copy, contracts_dir=str(contracts))
    before = folder_bytes(s.root, VITAL)
    with pytest.raises(publish.PublicationRefused, match=rf"{VITAL}: open/{VITAL}: k=100000, l=2 cannot be reached"):
        publish.publish_open(spark, s)
    assert folder_bytes(s.root, VITAL) == before
