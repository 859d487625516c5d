"""De-identification of record-level open datasets (opendata/deid.py, jobs/publish/open.record_files):
the contract keys (strict, a personal column never kept), each column rule, the pseudonymisation key,
Datafly anonymisation, and the k-anonymity / l-diversity gate on data.csv checked against pycanon."""
from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import yaml

from jobs.publish import open as publish
from lake import contracts as contracts_mod
from lake.contracts import ContractError
from opendata import deid

REPO = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
AS_OF = "2026-11-01"


@pytest.fixture(scope="module")
def contracts():
    return contracts_mod.load(str(REPO / "contracts"))


def vital_rows(n: int, seed: int = 3, towns=("黄村镇", "旧宫镇", "西红门镇", "亦庄镇")) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ev = rng.choice(["出生", "死亡"])
        d = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(300))
        b = d if ev == "出生" else d - dt.timedelta(days=rng.randrange(30 * 365, 95 * 365))
        rows.append({"record_id": f"R{i:05d}", "event_type": ev, "event_date": d, "id_number": "11011519900101123X",
                     "name": "张伟", "gender": rng.choice("男女"), "birth_date": b, "town": rng.choice(towns),
                     "institution": rng.choice(["北京市大兴区人民医院", "北京市仁和医院", "家中或其他"])})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- contract keys

def _parse(tmp_path, table_file: str, change) -> contracts_mod.TableContract:
    data = yaml.safe_load((REPO / "contracts" / "tables" / table_file).read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / table_file
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return contracts_mod.parse_table(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["open_dataset"].update(quasi_identifier=["town"]), "open_dataset.quasi_identifier: unknown key"),
    (lambda d: d["open_dataset"].update(kindd="record"), "open_dataset.kindd: unknown key"),
    (lambda d: d["open_dataset"].update(kind="records"), "open_dataset.kind: Input should be 'aggregate' or 'record'"),
    (lambda d: d["open_dataset"]["deidentify"].update(name="dorp"), "deidentify.name: Input should be 'keep', 'drop'"),
    (lambda d: d["open_dataset"]["deidentify"].update(town={"generalize": ["town"]}), "deidentify.town.generalize: unknown key"),
    (lambda d: d["open_dataset"]["deidentify"].update(town={"generalise": ["township"]}), "(got 'township')"),
    (lambda d: d["open_dataset"].update(k=1), "open_dataset.k: Input should be greater than or equal to 2"),
    (lambda d: d["open_dataset"].update(max_suppresion=0.1), "open_dataset.max_suppresion: unknown key"),
    (lambda d: d["open_dataset"]["deidentify"].pop("institution"), "deidentify has no rule for column(s) ['institution']"),
    (lambda d: d["open_dataset"]["deidentify"].update(id_number="keep"),
     "would open the personal identifier column(s) ['id_number'] (pii: true)"),
    (lambda d: d["open_dataset"].update(quasi_identifiers=["event_date"]), "quasi_identifiers names ['event_date'], which data.csv does not have"),
    (lambda d: d["open_dataset"].update(sensitive=["town"]), "['town'] both a quasi-identifier and a sensitive attribute"),
    (lambda d: d["open_dataset"].update(l=9), "l (9) cannot exceed k (5)"),
    (lambda d: d["open_dataset"]["deidentify"].update(town={"generalise": ["month"]}), "month needs a date column"),
    (lambda d: d["open_dataset"]["deidentify"].update(birth_date={"generalise": ["age_5y"], "at": "town"}), "'at' names 'town'"),
    (lambda d: d["open_dataset"].pop("quasi_identifiers"), "names its quasi_identifiers"),
])
def test_record_level_keys_are_strict(tmp_path, change, message):
    with pytest.raises(ContractError) as e:
        _parse(tmp_path, "topic_vital_events.yaml", change)
    assert message in str(e.value) and "topic_vital_events.yaml" in str(e.value)
    assert "\n" not in str(e.value)


def test_an_aggregate_cannot_open_a_personal_column(tmp_path):
    def change(d):
        d["columns"][0]["pii"] = True
    with pytest.raises(ContractError, match=r"would open the personal column\(s\) \[.town.\]"):
        _parse(tmp_path, "topic_population_by_town_age_band.yaml", change)
    with pytest.raises(ContractError, match="deidentify is for record-level datasets"):
        _parse(tmp_path, "topic_population_by_town_age_band.yaml",
               lambda d: d["open_dataset"].update(deidentify={"town": "keep"}))


def test_the_sandbox_key_is_strict(tmp_path):
    with pytest.raises(ContractError, match="sandbox.kk: unknown key"):
        _parse(tmp_path, "base_population.yaml", lambda d: d.update(sandbox={"kk": 10}))
    assert _parse(tmp_path, "base_population.yaml", lambda d: None).sandbox == {"k": 10}


def test_the_contracts_defaults(contracts):
    od = contracts.table("topic.vital_events").open_dataset
    assert (od["kind"], od["k"], od["l"], od["max_suppression"]) == ("record", 5, 2, 0.05)
    assert contracts.table("topic.population_by_town_age_band").open_dataset["kind"] == "aggregate"
    register = contracts.table("topic.legal_entity_register")
    assert register.open_dataset["quasi_identifiers"] == [] and "legal_rep" not in register.column_names


# ----------------------------------------------------------------------------------- rules

def test_generalisation_levels():
    g = deid.generalise
    assert g(["2026-03-05", dt.date(2026, 12, 31), None], "month") == ["2026-03", "2026-12", None]
    assert g(["2026-03-05", "2026-04-01"], "quarter") == ["2026-Q1", "2026-Q2"]
    assert g(["2026-03-05"], "year") == ["2026"]
    births = ["1990-11-02", "1990-11-01", "2026-10-01", "1930-01-01", None]
    assert g(births, "age_5y", as_of=AS_OF) == ["35-39", "35-39", "0-4", "85+", "unknown"]
    assert g(births, "age_20y", at=["2026-11-01"] * 5) == ["20-39", "20-39", "0-19", "80+", "unknown"]
    assert g(["1990-11-02"], "age_5y", at=["2026-11-01"]) == ["35-39"]  # 35 the day before the birthday
    assert g(["1990-11-01"], "age_10y", at=["2026-11-01"]) == ["30-39"]
    assert g(["北京市大兴区黄村镇兴华大街12号院3号楼2单元501", "大兴区旧宫地区德茂路5号", "清源街道", ""], "town") == \
        ["黄村镇", "旧宫镇", "清源街道", "unknown"]
    assert g(["黄村镇", None], "district") == ["北京市大兴区", None]
    assert g(["a", "b"], "*") == ["*", "*"]
    cells = g([116.3301, 116.3302, 116.3501], "grid_1km", lat=[39.7302, 39.7303, 39.7302])
    assert cells[0] == cells[1] != cells[2] and cells[0].startswith("1km:")


def test_pseudonyms_are_keyed_stable_and_never_look_like_numbers():
    a = deid.pseudonym(KEY, "ds/record_id", "R00001")
    assert a == deid.pseudonym(KEY, "ds/record_id", "R00001")
    assert a != deid.pseudonym(bytes(32), "ds/record_id", "R00001")       # another key
    assert a != deid.pseudonym(KEY, "other/record_id", "R00001")          # another dataset: not linkable
    assert len(a) == 16 and set(a) <= set("abcdefghijklmnopqrstuvwxyz234567")
    from opendata import leaks
    values = [deid.pseudonym(KEY, "s", i) for i in range(20000)]
    assert len(set(values)) == len(values)
    assert not any(leaks.MOBILE_TOKEN.search(v) or leaks.ID_TOKEN.search(v) for v in values)


def test_the_key_comes_from_the_environment_or_a_file_outside_git(monkeypatch, tmp_path):
    monkeypatch.setenv(deid.KEY_ENV, KEY.hex())
    assert deid.pseudonym_key() == KEY
    monkeypatch.setenv(deid.KEY_ENV, "not hex")
    with pytest.raises(deid.OpenDataError, match="must be a hex string"):
        deid.pseudonym_key()
    monkeypatch.delenv(deid.KEY_ENV)
    key_file = tmp_path / "secrets" / "pseudonym.key"
    monkeypatch.setenv(deid.KEY_FILE_ENV, str(key_file))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(deid.OpenDataError, match="no pseudonymisation key: set LAKE_PSEUDONYM_KEY"):
        deid.pseudonym_key()
    assert not key_file.exists()
    monkeypatch.delenv("CI")
    first = deid.pseudonym_key()  # generated on first use, mode 600, then reused
    assert len(first) == 32 and key_file.stat().st_mode & 0o777 == 0o600
    assert deid.pseudonym_key() == first
    assert ".cache/" in (REPO / ".gitignore").read_text() and deid.DEFAULT_KEY_FILE.is_relative_to(REPO / ".cache")


def test_prepare_applies_one_rule_per_column(contracts):
    tc = contracts.table("topic.vital_events")
    pdf = vital_rows(40)
    p = deid.prepare(tc, {c: pdf[c].tolist() for c in tc.column_names}, AS_OF, KEY)
    names = [c["name"] for c in p.columns]
    assert names == ["record_id", "event_type", "event_month", "gender", "age_band", "town", "institution"]
    assert p.levels["event_month"] == ["month", "quarter", "year", "*"] and p.levels["record_id"] == ["pseudonym"]
    assert p.values["record_id"][0][0] == deid.pseudonym(KEY, "daxing-vital-events-deidentified/record_id", "R00000")
    births = pdf["event_type"] == "出生"
    assert {p.values["age_band"][0][i] for i in range(40) if births[i]} == {"0-4"}  # age at the event, not today


def test_suppress_withholds_rare_values(contracts):
    import dataclasses
    tc = contracts.table("topic.vital_events")
    od = {**tc.open_dataset, "deidentify": {**tc.open_dataset["deidentify"], "institution": "suppress"}}
    tc = dataclasses.replace(tc, open_dataset=od)
    pdf = vital_rows(30)
    pdf.loc[0, "institution"] = "罕见诊所"
    p = deid.prepare(tc, {c: pdf[c].tolist() for c in tc.column_names}, AS_OF, KEY)
    vals = p.values["institution"][0]
    assert vals[0] == "*" and "罕见诊所" not in vals and vals.count("*") == 1


# ----------------------------------------------------------------------------------- k and l, against pycanon

def _pycanon(rows: list[dict], qi: list[str], sens: list[str]) -> tuple[int, int | None]:
    from pycanon import anonymity

    df = pd.DataFrame(rows).fillna("")
    return int(anonymity.k_anonymity(df, qi)), (int(anonymity.l_diversity(df, qi, sens)) if sens else None)


@pytest.mark.parametrize("seed", range(40))
def test_measure_equals_pycanon_on_random_tables(seed):
    rng = random.Random(seed)
    qi = ["a", "b", "c"][: rng.randint(1, 3)]
    rows = [{"a": rng.choice("xyz"), "b": rng.randint(0, rng.randint(1, 4)), "c": rng.choice(["p", "q", None]),
             "s": rng.choice(["s1", "s2", "s3"][: rng.randint(1, 3)])} for _ in range(rng.randint(1, 60))]
    m = deid.measure(rows, qi, ["s"])
    assert (m["k"], m["l"]) == _pycanon(rows, qi, ["s"])


def test_anonymised_vital_events_are_k_anonymous_and_l_diverse_by_pycanon(contracts):
    tc = contracts.table("topic.vital_events")
    od = tc.open_dataset
    for n, seed in ((25, 1), (120, 2), (600, 3)):
        files, _ = publish.record_files(tc, vital_rows(n, seed), AS_OF, KEY)
        header, rows = deid.read_csv(files["data.csv"])
        k, l = _pycanon(rows, od["quasi_identifiers"], od["sensitive"])
        assert k >= 5 and l >= 2, (n, k, l)
        meta = json.loads(files["metadata.json"])
        assert meta["kind"] == "record" and meta["quasi_identifiers"] == od["quasi_identifiers"] and meta["k"] == 5
        assert set(meta["quasi_identifiers"]) <= set(header)  # column names as in data.csv
        assert (meta["anonymity"]["k"], meta["anonymity"]["l"]) == (k, l)
        assert meta["suppressed_records"] + len(rows) == n and meta["suppressed_records"] <= 0.05 * n
        assert "id_number" not in header and "name" not in header and "11011519900101123X" not in files["data.csv"].decode()
        assert "small_cell_threshold" not in meta
    # more rows: coarser levels are not needed
    big = json.loads(publish.record_files(tc, vital_rows(5000, 4), AS_OF, KEY)[0]["metadata.json"])
    small = json.loads(publish.record_files(tc, vital_rows(60, 4), AS_OF, KEY)[0]["metadata.json"])
    order = {lv: i for q in od["quasi_identifiers"] for i, lv in enumerate(
        {"event_month": ["month", "quarter", "year", "*"], "age_band": ["age_5y", "age_20y", "*"], "gender": ["value", "*"],
         "town": ["town", "district"], "event_type": ["value", "*"]}[q])}
    assert sum(order[v] for v in big["generalisation"].values()) < sum(order[v] for v in small["generalisation"].values())


def test_the_gate_reads_the_file_and_refuses_a_dataset_under_its_k():
    rows = "record_id,event_type,town,institution\n" + "".join(f"r{i},出生,黄村镇,医院{i % 2}\n" for i in range(6)) + \
        "r9,死亡,旧宫镇,家中或其他\n"
    with pytest.raises(deid.Refused, match=r"not 5-anonymous: its smallest equivalence class over \['event_type', 'town'\] has 1 row"):
        deid.check_file(rows.encode(), "ds", ["event_type", "town"], ["institution"], 5, 2)
    ok = "".join(rows.splitlines(keepends=True)[:7]).encode()
    assert deid.check_file(ok, "ds", ["event_type", "town"], ["institution"], 5, 2)["k"] == 6
    with pytest.raises(deid.Refused, match="not 3-diverse"):
        deid.check_file(ok, "ds", ["event_type", "town"], ["institution"], 5, 3)
    with pytest.raises(deid.Refused, match=r"has no column\(s\) \['age_band'\]"):
        deid.check_file(ok, "ds", ["age_band"], [], 5, None)


def test_anonymise_refuses_when_every_level_is_used_up(contracts):
    tc = contracts.table("topic.vital_events")
    pdf = vital_rows(4)  # even with every column at its coarsest level (births and deaths together) 4 < k
    with pytest.raises(deid.Refused, match=r"k=5, l=2 cannot be reached: .* 4 of 4 rows \(100%\)"):
        publish.record_files(tc, pdf, AS_OF, KEY)


def test_the_register_keeps_only_public_fields(contracts):
    tc = contracts.table("topic.legal_entity_register")
    pdf = pd.DataFrame([{"credit_code": "91110115MA00000001", "name": "北京星河科技有限公司", "entity_type": "企业",
                         "industry": "I", "industry_name": "信息传输、软件和信息技术服务业", "town": "黄村镇", "status": "存续",
                         "established_date": dt.date(2015, 3, 1)}])
    files, _ = publish.record_files(tc, pdf, AS_OF, KEY)
    meta = json.loads(files["metadata.json"])
    assert meta["quasi_identifiers"] == [] and meta["anonymity"]["k"] is None
    assert files["data.csv"].decode().splitlines()[0] == ",".join(tc.column_names)
