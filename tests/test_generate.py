"""Tests for the synthetic department extracts (sample.generate) and sample.identifiers."""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import os
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from stdnum.cn import ric, uscc

from sample.generate import (
    BASE_ENTITIES,
    BASE_PEOPLE,
    COLUMNS,
    DAXING_TOWNS,
    DEFECT_FIELDS,
    DEFECT_RATES,
    ENCODINGS,
    FORMATS,
    SOURCES,
    _CONTEXTUAL,
    generate,
)
from sample.identifiers import (
    USCC_ALPHABET,
    cn_id_check_char,
    is_valid_cn_id,
    is_valid_cn_mobile,
    is_valid_cn_phone,
    is_valid_uscc,
    is_valid_uscc_authority,
    make_cn_id,
    make_uscc,
    to_fullwidth,
    uscc_check_char,
)

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts" / "sources"
PSB, MCA, HRSS, NHC = "psb_household", "mca_residents", "hrss_insured", "nhc_vital_events"
SAMR, SOC, SEO, TAX = "samr_enterprises", "mca_social_orgs", "seo_institutions", "tax_taxpayers"
PEOPLE_SOURCES = (PSB, MCA, HRSS, NHC)
REGISTERS = (SAMR, SOC, SEO)
EXTRACT = datetime.date(2026, 11, 1)
SCALE = float(os.environ.get("LAKE_TEST_GENERATE_SCALE", "0.01"))  # e.g. 0.1 for a thorough run
DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
RECORD_ID_IN_LINE = re.compile(r'^\{"record_id": "([^"]+)"')
ODD_CHARS = re.compile("[\u3000\uff01-\uff5e ]")  # full-width forms, ideographic and ASCII space
DEREGISTERED = {"注销", "吊销", "撤销"}


# --------------------------------------------------------------------------- helpers

def read_source(path: Path, source: str, encoding: str) -> list[list[str]]:
    """Data rows as lists of strings (record_id first). A malformed JSON line becomes
    ``[record_id, "<malformed>"]`` (record_id recovered from the start of the line)."""
    columns = list(COLUMNS[source])
    if FORMATS[source] == "csv":
        with path.open(encoding=encoding, newline="") as fh:
            reader = csv.reader(fh)
            assert next(reader) == columns
            return list(reader)
    result = []
    for line in path.read_text(encoding=encoding).splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or list(obj) != columns:
            result.append([RECORD_ID_IN_LINE.match(line).group(1), "<malformed>"])
            continue
        assert all(v is None or isinstance(v, str) for v in obj.values()), line
        result.append(["" if obj[c] is None else obj[c] for c in columns])
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def id_gender(id_number: str) -> str:
    return "男" if int(id_number[16]) % 2 else "女"


def id_birth(id_number: str) -> str:
    return f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"


def legal_form_neutral(name: str) -> str:
    return name.replace("有限责任公司", "有限公司")


def one_char_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lake_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    out = tmp_path_factory.mktemp("lake")
    calls: list[tuple[str, int]] = []
    manifest = generate(SCALE, 20261101, out, progress=lambda s, n: calls.append((s, n)))
    return out, manifest, calls


@pytest.fixture(scope="module")
def rows(lake_out) -> dict[str, list[list[str]]]:
    out, manifest, _ = lake_out
    return {e["source"]: read_source(out / e["path"], e["source"], e["encoding"])
            for e in manifest["files"]}


@pytest.fixture(scope="module")
def truth(lake_out) -> list[dict[str, str]]:
    out, _, _ = lake_out
    with (out / "truth" / "defects.csv").open(encoding="utf-8", newline="") as fh:
        # the population and legal-entity defects (spatial ones are tested in test_generate_spatial.py)
        return [t for t in csv.DictReader(fh) if t["source"] in SOURCES]


@pytest.fixture(scope="module")
def links(lake_out) -> list[dict[str, str]]:
    out, _, _ = lake_out
    with (out / "truth" / "links.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def defective(truth) -> dict[str, dict[str, str]]:
    """source -> record_key -> defect_type."""
    result: dict[str, dict[str, str]] = {s: {} for s in SOURCES}
    for t in truth:
        result[t["source"]][t["record_key"]] = t["defect_type"]
    return result


@pytest.fixture(scope="module")
def records(rows) -> dict[str, dict[str, dict[str, str]]]:
    """source -> record_id -> {column: value} for well-formed rows."""
    return {s: {r[0]: dict(zip(COLUMNS[s], r)) for r in source_rows if len(r) == len(COLUMNS[s])}
            for s, source_rows in rows.items()}


@pytest.fixture(scope="module")
def clean(records, defective) -> dict[str, list[dict[str, str]]]:
    return {s: [r for k, r in recs.items() if k not in defective[s]] for s, recs in records.items()}


@pytest.fixture(scope="module")
def psb_by_id(records, defective) -> dict[str, list[tuple[dict[str, str], str | None]]]:
    """id_number -> [(psb record, its defect or None)]."""
    result = defaultdict(list)
    for key, r in records[PSB].items():
        result[r["id_number"]].append((r, defective[PSB].get(key)))
    return result


# --------------------------------------------------------------------------- identifiers

def test_identifiers_agree_with_stdnum() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        birth = datetime.date(2002, 1, 1) + datetime.timedelta(days=rng.randrange(8000))
        seq = rng.randrange(1000)
        id_number = make_cn_id("110101", birth, seq, male=seq % 2 == 1)
        assert is_valid_cn_id(id_number) and ric.is_valid(id_number)
        assert cn_id_check_char(id_number[:17]) == ric.calc_check_digit(id_number)
        wrong = id_number[:17] + ("0" if id_number[17] != "0" else "1")
        assert not is_valid_cn_id(wrong) and not ric.is_valid(wrong)

        org = "".join(rng.choice(USCC_ALPHABET) for _ in range(9))
        code = make_uscc("9", rng.choice("123"), "110115", org)
        assert is_valid_uscc(code) and uscc.is_valid(code) and is_valid_uscc_authority(code)
        assert uscc_check_char(code[:17]) == uscc.calc_check_digit(code)
        wrong = code[:17] + ("0" if code[17] != "0" else "1")
        assert not is_valid_uscc(wrong) and not uscc.is_valid(wrong)
    assert is_valid_uscc("91110000600037341L")
    assert is_valid_cn_id("360426199101010071")


def test_identifier_edge_cases() -> None:
    assert not is_valid_cn_id(None)
    assert not is_valid_cn_id("11011519900230123" + "X")  # 1990-02-30
    assert not is_valid_cn_id("11011519900101123")  # 17 characters
    assert not is_valid_cn_id("11011519900101123x")  # lower-case x
    assert not is_valid_uscc("91110000600037341I")  # I is not in the alphabet
    with pytest.raises(ValueError):
        make_cn_id("110115", datetime.date(1990, 1, 1), 2, male=True)
    assert is_valid_cn_mobile("13812345678") and not is_valid_cn_mobile("12812345678")
    assert is_valid_cn_phone("010-61234567") and is_valid_cn_phone("01061234567")
    assert not is_valid_cn_phone("010-6123456") and not is_valid_cn_phone("021-61234567")
    assert not is_valid_cn_phone("1381234567\n")
    for pair in ("11", "12", "51", "52", "53", "91", "92", "93", "N1", "Y1"):
        assert is_valid_uscc_authority(pair)
    for pair in ("00", "94", "95", "54", "22", "Y2", "Z1", "9", ""):
        assert not is_valid_uscc_authority(pair)
    assert to_fullwidth("010-61234567X") == "０１０－６１２３４５６７Ｘ"
    assert to_fullwidth("北京 1") == "北京 １"


# --------------------------------------------------------------------------- files and manifest

def test_scale_must_be_positive(tmp_path: Path) -> None:
    for scale in (0, -1.0):
        with pytest.raises(ValueError, match="scale must be > 0"):
            generate(scale, 1, tmp_path)


def test_deterministic_and_tiny_scale(tmp_path: Path) -> None:
    first = generate(0.001, 42, tmp_path / "a")
    second = generate(0.001, 42, tmp_path / "b")
    assert first == second
    names = [e["path"] for e in first["files"]] + ["truth/defects.csv", "truth/links.csv",
                                                    "manifest.json"]
    for name in names:
        assert sha256(tmp_path / "a" / name) == sha256(tmp_path / "b" / name), name
    other = generate(0.001, 43, tmp_path / "c")
    assert other["files"][0]["sha256"] != first["files"][0]["sha256"]
    for manifest in (first, other):  # every source has rows even at this scale
        assert all(e["rows"] > 0 for e in manifest["files"]), manifest["files"]


def test_manifest_matches_files(lake_out, rows) -> None:
    out, manifest, calls = lake_out
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["generator"] == {"scale": SCALE, "seed": 20261101, "extract_date": "2026-11-01"}
    assert [e["source"] for e in manifest["files"]] == list(SOURCES)
    for entry in manifest["files"]:
        source = entry["source"]
        assert set(entry) == {"source", "path", "encoding", "format", "rows", "sha256"}
        assert entry["format"] == FORMATS[source]
        assert entry["path"] == f"{source}/{source}_20261101.{entry['format']}"
        assert entry["sha256"] == sha256(out / entry["path"])
        assert entry["rows"] == len(rows[source])
    assert sorted(calls) == sorted((e["source"], e["rows"]) for e in manifest["files"])


def test_layout_matches_contracts(lake_out) -> None:
    out, manifest, _ = lake_out
    # the eight population and legal-entity sources have contracts (spatial and IoT ones too)
    assert {p.stem for p in CONTRACTS.glob("*.yaml")} >= set(SOURCES)
    for entry in manifest["files"]:
        source = entry["source"]
        contract = yaml.safe_load((CONTRACTS / f"{source}.yaml").read_text(encoding="utf-8"))
        assert entry["encoding"] == contract["encoding"] == ENCODINGS[source]
        assert entry["format"] == contract["format"]
        assert COLUMNS[source] == tuple(c["name"] for c in contract["columns"])
        raw = (out / entry["path"]).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (entry["encoding"] == "utf-8-sig")
        text = raw.decode(entry["encoding"])
        header = 1 if entry["format"] == "csv" else 0
        if entry["encoding"] == "gb18030":
            assert raw.count(b"\n") == raw.count(b"\r\n") == entry["rows"] + header
        else:
            assert b"\r" not in raw and raw.count(b"\n") == entry["rows"] + header
        if entry["format"] == "jsonl":
            wellformed = 0
            for line in text.splitlines():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if list(obj) == list(COLUMNS[source]):
                    wellformed += 1
            assert wellformed > 0.9 * entry["rows"]


def test_gbk_files_decode(lake_out) -> None:
    out, manifest, _ = lake_out
    for entry in manifest["files"]:
        if entry["encoding"] == "gb18030":
            text = (out / entry["path"]).read_bytes().decode("gb18030")
            text.encode("gbk")  # the departments' files are plain GBK
            assert text.startswith("record_id,")


def test_counts_scale(rows) -> None:
    people, entities = round(BASE_PEOPLE * SCALE), round(BASE_ENTITIES * SCALE)
    n = {s: len(r) for s, r in rows.items()}
    assert people < n[PSB] < people * 1.012  # + duplicates and name conflicts
    assert 0.9 < n[MCA] / (people * 0.30 / 0.97) < 1.1
    assert 0.9 < n[HRSS] / (people * 0.83 * 0.45 / 0.92) < 1.15
    births, deaths = people * 0.0085 * 0.9, people * 0.0066
    assert 0.6 < n[NHC] / (births + deaths) < 1.4
    for source, share in ((SAMR, 0.90), (SOC, 0.03), (SEO, 0.07)):  # + a few duplicates
        assert round(entities * share) <= n[source] <= round(entities * share) * 1.03 + 2, source
    expected_tax = (0.8 * entities * 0.9 + 0.5 * entities * 0.03 + 0.3 * entities * 0.07) / 0.98
    assert 0.9 < n[TAX] / expected_tax < 1.1


# --------------------------------------------------------------------------- ground truth

def test_truth_references_real_rows(truth, rows) -> None:
    keys = [(t["source"], t["record_key"]) for t in truth]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys), "a row carries more than one defect"
    ids = {s: {r[0] for r in source_rows} for s, source_rows in rows.items()}
    for t in truth:
        assert t["record_key"] in ids[t["source"]], t
        fields = DEFECT_FIELDS[t["source"]][t["defect_type"]]
        assert t["field"] == fields or (isinstance(fields, tuple) and t["field"] in fields), t


def test_record_ids_unique(rows) -> None:
    prefixes = {PSB: "HJ", MCA: "MZ", HRSS: "SB", NHC: "WJ", SAMR: "SC", SOC: "ST", SEO: "SY",
                TAX: "SW"}
    for source, source_rows in rows.items():
        ids = [row[0] for row in source_rows]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(prefixes[source] + r"\d{9}", i) for i in ids)


def test_defect_rates(rows, truth) -> None:
    counts = Counter((t["source"], t["defect_type"]) for t in truth)
    contextual = _CONTEXTUAL | {"phone_format", "fullwidth"}  # the generator's own list, and two by column
    for source, rates in DEFECT_RATES.items():
        n = len(rows[source])
        for defect, rate in rates:
            expected = n * rate
            if defect in contextual:  # rates among eligible rows only
                assert counts[(source, defect)] < 1.6 * expected + 10, (source, defect)
            elif expected >= 20:  # within ~4 standard deviations
                margin = 4 * expected ** 0.5 + 2
                assert abs(counts[(source, defect)] - expected) < margin, (source, defect)
            else:
                assert counts[(source, defect)] < 3 * expected + 10, (source, defect)
    types = {d for rates in DEFECT_RATES.values() for d, _ in rates}
    assert {t["defect_type"] for t in truth} == types
    assert 0.01 < len(truth) / sum(len(r) for r in rows.values()) < 0.06


def test_injected_defects_are_defective(rows, truth, records, psb_by_id, defective) -> None:
    by_key = {s: {r[0]: r for r in source_rows} for s, source_rows in rows.items()}
    position = {s: {r[0]: i for i, r in enumerate(source_rows)} for s, source_rows in rows.items()}
    allowed = {"gender": {"男", "女"}, "status": {"存续", "在业", "注销", "吊销"}}
    for t in truth:
        source, defect, field = t["source"], t["defect_type"], t["field"]
        row = by_key[source][t["record_key"]]
        if defect == "malformed_row":
            if FORMATS[source] == "csv":
                assert len(row) in (len(COLUMNS[source]) - 1, len(COLUMNS[source]) + 1)
            else:
                assert row[1] == "<malformed>"
            continue
        assert len(row) == len(COLUMNS[source]), t
        r = dict(zip(COLUMNS[source], row))
        value = r[field]
        if defect == "missing_value":
            assert value == ""
        elif defect == "whitespace":
            stripped = value.replace(" ", "").replace("\u3000", "")
            assert stripped != value and stripped and not ODD_CHARS.search(stripped)
        elif defect == "fullwidth":
            assert any("\uff01" <= c <= "\uff5e" for c in value)
            plain = "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in value)
            if field == "id_number":
                assert ric.is_valid(plain)
            elif field == "credit_code":
                assert is_valid_uscc(plain) and is_valid_uscc_authority(plain)
            else:
                assert is_valid_cn_phone(plain)
        elif defect == "id_checksum":
            assert len(value) == 18 and value[:17].isdigit() and not is_valid_cn_id(value)
            assert cn_id_check_char(value[:17]) != value[17]
        elif defect == "id_format":
            assert len(value) != 18 or not value[:17].isdigit()
            assert not is_valid_cn_id(value) and not ric.is_valid(value)
        elif defect == "id_region_unknown":
            assert is_valid_cn_id(value) and ric.calc_check_digit(value) == value[17]
            with pytest.raises(Exception):
                ric.get_birth_place(value)
            assert not ric.is_valid(value)
            assert id_birth(value) == r["birth_date"] and id_gender(value) == r["gender"]
        elif defect == "invalid_date":
            assert DATE_SHAPE.fullmatch(value)
            with pytest.raises(ValueError):
                datetime.date.fromisoformat(value)
        elif defect == "id_birth_mismatch":
            assert ric.is_valid(r["id_number"])
            datetime.date.fromisoformat(value)
            assert value != id_birth(r["id_number"])
            assert r["gender"] == id_gender(r["id_number"])
        elif defect == "id_gender_mismatch":
            assert ric.is_valid(r["id_number"])
            assert value in ("男", "女") and value != id_gender(r["id_number"])
            assert r["birth_date"] == id_birth(r["id_number"])
        elif defect == "credit_code_checksum":
            assert not is_valid_uscc(value) and not uscc.is_valid(value)
            assert uscc_check_char(value[:17]) != value[17]
        elif defect == "credit_code_authority":
            assert is_valid_uscc(value) and uscc.is_valid(value)  # right check character
            assert not is_valid_uscc_authority(value)
        elif defect == "phone_format":
            assert value and not is_valid_cn_phone(value)
        elif defect == "invalid_value":
            assert value not in allowed[field]
        elif defect in ("duplicate_record", "id_name_conflict"):
            key = COLUMNS[source].index(field if defect == "duplicate_record" else
                                        ("id_number" if source in PEOPLE_SOURCES else "credit_code"))
            name = COLUMNS[source].index("taxpayer_name" if source == TAX else "name")
            earlier = [o for o in rows[source] if len(o) == len(row) and o[key] == row[key]
                       and o[0] != row[0]]
            assert len(earlier) == 1, t
            original = earlier[0]
            assert position[source][original[0]] < position[source][row[0]]
            assert original[0] not in defective[source]
            if defect == "duplicate_record":
                assert original[1:] == row[1:]
            else:
                assert original[name] != row[name]
                assert [v for i, v in enumerate(original) if i not in (0, name)] == \
                    [v for i, v in enumerate(row) if i not in (0, name)]
        elif defect == "missing_id":
            assert value == ""
        elif defect == "name_mismatch":
            if source == TAX:
                register = [rec for s in REGISTERS for rec in records[s].values()
                            if rec["credit_code"] == r["credit_code"]]
                assert len(register) == 1
                assert legal_form_neutral(register[0]["name"]) != legal_form_neutral(value)
                assert register[0]["record_id"] not in defective[register[0]["_source"]] \
                    if "_source" in register[0] else True
            else:
                (psb, psb_defect), = psb_by_id[r["id_number"]]
                assert psb_defect is None and one_char_apart(value, psb["name"])
        elif defect == "address_mismatch":
            (psb, psb_defect), = psb_by_id[r["id_number"]]
            assert psb_defect is None and value != psb["address"] and value.startswith("北京市大兴区")
        elif defect == "death_not_propagated":
            assert value == "正常"
            deaths = [e for e in records[NHC].values()
                      if e["event_type"] == "死亡" and e["id_number"] == r["id_number"]]
            assert len(deaths) == 1 and deaths[0]["record_id"] not in defective[NHC]
        elif defect == "deregistered_active_in_tax":
            assert value == "正常"
        elif defect == "deregistration_date_missing":
            assert value == "" and r["status"] in {"注销", "吊销"}
        elif defect == "deregistration_date_on_active":
            assert r["status"] in {"存续", "在业"} and r["established_date"] <= value <= EXTRACT.isoformat()
        elif defect == "deregistration_before_establishment":
            assert r["status"] in {"注销", "吊销"} and value < r["established_date"]
        elif defect == "deregistration_date_future":
            assert r["status"] in {"注销", "吊销"} and value > EXTRACT.isoformat()
        else:
            pytest.fail(f"unexpected defect {defect}")


# --------------------------------------------------------------------------- clean rows

def test_clean_values_have_no_stray_characters(clean) -> None:
    for source, recs in clean.items():
        for r in recs:
            for column, value in r.items():
                if column in ("address", "sponsor", "institution"):
                    assert "\u3000" not in value and not re.search("[\uff01-\uff5e]", value)
                else:
                    assert not ODD_CHARS.search(value), (source, column, value)


def test_clean_ids_are_valid(clean) -> None:
    """Every clean ID validates with stdnum (its region code existed in the birth year) and
    agrees with the row's gender and birth date."""
    for source in PEOPLE_SOURCES:
        assert clean[source]
        for r in clean[source]:
            id_number = r["id_number"]
            assert ric.validate(id_number) == id_number, (source, r)
            ric.get_birth_place(id_number)
            assert r["gender"] == id_gender(id_number), (source, r)
            assert r["birth_date"] == id_birth(id_number), (source, r)


def test_clean_people_are_valid(clean) -> None:
    records = clean[PSB]
    ids = [r["id_number"] for r in records]
    assert len(set(ids)) == len(ids), "identity numbers must be unique across people"
    daxing = sum(i[:6] in ("110204", "110224", "110115") for i in ids)
    assert 0.60 < daxing / len(ids) < 0.70
    for r in records:
        birth = datetime.date.fromisoformat(r["birth_date"])
        assert datetime.date(1930, 1, 1) <= birth < EXTRACT
        assert birth < datetime.date.fromisoformat(r["registered_date"]) <= EXTRACT
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert r["town"] in DAXING_TOWNS and r["address"].startswith("北京市大兴区" + r["town"])
        assert r["name"] and r["ethnicity"].endswith("族")
        assert r["register_status"] in ("正常", "死亡", "迁出")
    status = Counter(r["register_status"] for r in records)
    assert 0.003 < status["死亡"] / len(records) < 0.012
    assert 0.005 < status["迁出"] / len(records) < 0.015
    empty_phone = sum(r["phone"] == "" for r in records) / len(records)
    assert 0.07 < empty_phone < 0.13


def test_copies_of_people_agree_with_psb(clean, psb_by_id) -> None:
    """Clean mca/hrss/nhc rows of a person in psb carry psb's name, town and address."""
    for source in (MCA, HRSS, NHC):
        in_psb = 0
        for r in clean[source]:
            copies = psb_by_id.get(r["id_number"])
            if not copies:
                continue
            in_psb += 1
            for psb, psb_defect in copies:
                if psb_defect in ("missing_value", "whitespace", "malformed_row"):
                    continue
                assert r["name"] == psb["name"], (source, r, psb)
                if "address" in r:
                    assert r["address"] == psb["address"], (source, r, psb)
                if "town" in r:
                    assert r["town"] == psb["town"], (source, r, psb)
        assert in_psb > 0.85 * len(clean[source]), source


def test_clean_mca_and_hrss_rows_are_valid(clean) -> None:
    for r in clean[MCA]:
        assert r["marital_status"] in {"未婚", "已婚", "离异", "丧偶"}
        assert r["subsistence_allowance"] in {"是", "否"}
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert r["town"] in DAXING_TOWNS
    samr_codes = None
    for r in clean[HRSS]:
        assert r["employment_status"] in {"在职", "灵活就业", "失业", "退休"}
        types = r["insurance_types"].split(";")
        assert types and set(types) <= {"养老", "医疗", "失业", "工伤", "生育"}
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert (r["employer_credit_code"] != "") == (r["employment_status"] == "在职")
        assert int(r["birth_date"][:4]) <= 2010
        samr_codes = samr_codes or set()
    status = Counter(r["employment_status"] for r in clean[HRSS])
    assert status["在职"] > status["退休"] > status["失业"]


def test_employers_are_enterprises(clean, records) -> None:
    samr = {r["credit_code"]: r for r in clean[SAMR]}
    for r in clean[HRSS]:
        if r["employer_credit_code"]:
            employer = samr[r["employer_credit_code"]]
            assert employer["status"] in ("存续", "在业")
            assert employer["credit_code"].startswith("91")


def test_vital_events_and_deaths(clean, records, defective, psb_by_id) -> None:
    events = list(records[NHC].values())
    births = [e for e in events if e["event_type"] == "出生"]
    deaths = [e for e in events if e["event_type"] == "死亡"]
    assert births and deaths
    for e in births:
        assert e["event_date"] == e["birth_date"] or defective[NHC].get(e["record_id"]) == \
            "id_birth_mismatch"
        assert (EXTRACT - datetime.date.fromisoformat(e["event_date"])).days <= 365
    no_id = sum(e["id_number"] == "" for e in births) / len(births)
    assert 0.25 < no_id < 0.55
    assert all(e["id_number"] for e in deaths)
    with_id = Counter(e["id_number"] for e in events if e["id_number"])
    for key, e in records[NHC].items():  # an ID number appears once, except in duplicate rows
        if e["id_number"] and with_id[e["id_number"]] > 1:
            assert defective[NHC].get(key) == "duplicate_record" or any(
                defective[NHC].get(o["record_id"]) == "duplicate_record"
                for o in events if o["id_number"] == e["id_number"])
    dead_ids = set()
    for e in deaths:
        assert 0 < (EXTRACT - datetime.date.fromisoformat(e["event_date"])).days <= 365
        dead_ids.add(e["id_number"])
    # psb says 死亡 exactly for the people with a death event, unless death_not_propagated
    # (or the death event's ID number is itself defective)
    defective_deaths = sum(1 for key in defective[NHC] if key not in records[NHC]
                           or records[NHC][key]["event_type"] == "死亡")
    unmatched = 0
    for r in clean[PSB]:
        if r["register_status"] == "死亡":
            unmatched += r["id_number"] not in dead_ids
        else:
            assert r["id_number"] not in dead_ids, r
    assert unmatched <= defective_deaths
    for key, r in records[PSB].items():
        if defective[PSB].get(key) == "death_not_propagated":
            assert r["register_status"] == "正常" and r["id_number"] in dead_ids
    # civil affairs knows the death of some of the dead, and nobody else's
    death_dates = {e["id_number"]: e["event_date"] for e in deaths}
    with_date = [r for r in clean[MCA] if r["death_date"]]
    assert with_date
    unmatched = 0
    for r in with_date:
        if r["id_number"] in death_dates:
            assert death_dates[r["id_number"]] == r["death_date"]
        else:  # the death event's ID number is defective
            unmatched += 1
    assert unmatched <= defective_deaths
    assert all(r["id_number"] not in dead_ids for r in clean[HRSS])


def test_links_cover_rows_without_id(records, links, defective, psb_by_id) -> None:
    linked = {(lk["source"], lk["record_key"]): lk["id_number"] for lk in links}
    assert len(linked) == len(links)
    empty = set()
    for source in (MCA, HRSS, NHC):
        for key, r in records[source].items():
            if r["id_number"] == "":
                empty.add((source, key))
                assert defective[source][key] == "missing_id"
    for source in (PSB,):
        assert all(r["id_number"] for r in records[source].values())
    assert set(linked) == empty
    variants = 0
    for (source, key), id_number in linked.items():
        r = records[source][key]
        assert ric.is_valid(id_number)
        assert r["gender"] == id_gender(id_number) and r["birth_date"] == id_birth(id_number)
        if id_number not in psb_by_id:  # the person's psb row has a defective ID number
            assert source == NHC
            continue
        psb, psb_defect = psb_by_id[id_number][0]  # (a later duplicate is identical)
        if "town" in r:
            assert r["town"] == psb["town"]
        if "address" in r:
            assert r["address"] == psb["address"]
        if psb_defect in ("missing_value", "whitespace"):
            continue
        if r["name"] != psb["name"]:
            assert one_char_apart(r["name"], psb["name"])
            variants += 1
    assert variants < 0.1 * len(linked) + 3


def test_clean_entities_are_valid(clean) -> None:
    codes = []
    prefixes = {SAMR: {"91", "92", "93"}, SOC: {"51", "52", "53"}, SEO: {"12"}}
    for source in REGISTERS:
        for r in clean[source]:
            code = r["credit_code"]
            codes.append(code)
            assert is_valid_uscc(code) and uscc.is_valid(code) and is_valid_uscc_authority(code)
            assert code[:2] in prefixes[source] and code[2:8] in {"110115", "110100", "110000"}
            assert r["town"] in DAXING_TOWNS and r["name"].startswith("北京")
            assert r.get("phone", "") == "" or is_valid_cn_phone(r["phone"])
    assert len(set(codes)) == len(codes)
    for r in clean[SAMR]:
        assert r["industry"] in "ABCDEFGHIJKLMNOPQRST" and len(r["industry"]) == 1
        assert 10 <= float(r["registered_capital"]) <= 50000
        assert re.fullmatch(r"\d+\.\d{2}", r["registered_capital"])
        assert datetime.date(1990, 1, 1) <= datetime.date.fromisoformat(r["established_date"]) <= EXTRACT
        assert r["status"] in {"存续", "在业", "注销", "吊销"}
        # a deregistered enterprise has its date, from its establishment to the extract date; an active
        # one none (the rows whose date is a defect are not clean)
        if r["status"] in {"注销", "吊销"}:
            assert r["established_date"] <= r["deregistered_date"] <= EXTRACT.isoformat()
        else:
            assert r["deregistered_date"] == ""
    status = Counter(r["status"] for r in clean[SAMR])
    assert 0.72 < status["存续"] / len(clean[SAMR]) < 0.88
    types = {"51": "社会团体", "52": "民办非企业单位", "53": "基金会"}
    for r in clean[SOC]:
        assert r["org_type"] == types[r["credit_code"][:2]]
        assert r["status"] in {"正常", "注销", "撤销"}
    for r in clean[SEO]:
        assert r["status"] in {"正常", "注销"}
        assert r["funding_type"] in {"全额拨款", "差额拨款", "自收自支"}


def test_taxpayers_agree_with_registers(clean, records, defective) -> None:
    register = {}
    for source in REGISTERS:
        for key, r in records[source].items():
            register[r["credit_code"]] = (r, defective[source].get(key))
    in_register = 0
    for r in clean[TAX]:
        assert is_valid_uscc(r["credit_code"]) and uscc.is_valid(r["credit_code"])
        assert r["tax_status"] in {"正常", "非正常", "注销"}
        assert r["taxpayer_type"] in {"一般纳税人", "小规模纳税人"}
        assert re.fullmatch(r"国家税务总局北京市大兴区税务局第[一二三四五]税务所", r["tax_authority"])
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        if r["credit_code"] not in register:
            continue
        in_register += 1
        reg, reg_defect = register[r["credit_code"]]
        if reg_defect is None:
            assert legal_form_neutral(r["taxpayer_name"]) == legal_form_neutral(reg["name"])
            if reg["status"] in DEREGISTERED:
                assert r["tax_status"] in ("注销", "非正常")
    assert 0.95 < in_register / len(clean[TAX]) < 0.995
    for key, r in records[TAX].items():
        if defective[TAX].get(key) in ("deregistered_active_in_tax", "name_mismatch"):
            reg, reg_defect = register[r["credit_code"]]
            assert reg_defect is None
            if defective[TAX][key] == "deregistered_active_in_tax":
                assert reg["status"] in DEREGISTERED and r["tax_status"] == "正常"
