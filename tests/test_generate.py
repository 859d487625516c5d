"""Tests for the synthetic department extracts (lake.generate) and lake.identifiers."""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from stdnum.cn import ric, uscc

from lake.generate import (
    BASE_ENTERPRISES,
    BASE_PEOPLE,
    COLUMNS,
    DAXING_TOWNS,
    DEFECT_FIELDS,
    DEFECT_RATES,
    generate,
)
from lake.identifiers import (
    USCC_ALPHABET,
    cn_id_check_char,
    is_valid_cn_id,
    is_valid_cn_mobile,
    is_valid_cn_phone,
    is_valid_uscc,
    make_cn_id,
    make_uscc,
    uscc_check_char,
)

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts" / "sources"
SOURCES = ("psb_household", "mca_residents", "samr_enterprises", "tax_taxpayers")
EXTRACT = datetime.date(2026, 11, 1)
SCALE = 0.01
DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def lake_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list]:
    out = tmp_path_factory.mktemp("lake")
    calls: list[tuple[str, int]] = []
    manifest = generate(SCALE, 20261101, out, progress=lambda s, n: calls.append((s, n)))
    return out, manifest, calls


@pytest.fixture(scope="module")
def rows(lake_out) -> dict[str, list[list[str]]]:
    """Data rows (header excluded) per source, decoded with the declared encoding."""
    out, manifest, _ = lake_out
    result = {}
    for entry in manifest["files"]:
        with (out / entry["path"]).open(encoding=entry["encoding"], newline="") as fh:
            reader = csv.reader(fh)
            assert next(reader) == list(COLUMNS[entry["source"]])
            result[entry["source"]] = list(reader)
    return result


@pytest.fixture(scope="module")
def truth(lake_out) -> list[dict[str, str]]:
    out, _, _ = lake_out
    with (out / "truth" / "defects.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def by_key(rows) -> dict[str, dict[str, list[str]]]:
    return {source: {row[0]: row for row in source_rows} for source, source_rows in rows.items()}


@pytest.fixture(scope="module")
def defective(truth) -> dict[str, dict[str, str]]:
    """source -> record_key -> defect_type."""
    result: dict[str, dict[str, str]] = {s: {} for s in SOURCES}
    for t in truth:
        result[t["source"]][t["record_key"]] = t["defect_type"]
    return result


def clean_records(source: str, rows, defective) -> list[dict[str, str]]:
    return [dict(zip(COLUMNS[source], row)) for row in rows[source]
            if row[0] not in defective[source]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def known_to_stdnum(id_number: str) -> bool:
    """stdnum checks the region code against the division list of the birth year."""
    try:
        ric.get_birth_place(id_number)
    except Exception:
        return False
    return True


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
        assert is_valid_uscc(code) and uscc.is_valid(code)
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


# --------------------------------------------------------------------------- files and manifest

def test_scale_must_be_positive(tmp_path: Path) -> None:
    for scale in (0, -1.0):
        with pytest.raises(ValueError, match="scale must be > 0"):
            generate(scale, 1, tmp_path)


def test_deterministic(tmp_path: Path) -> None:
    first = generate(0.001, 42, tmp_path / "a")
    second = generate(0.001, 42, tmp_path / "b")
    assert first == second
    names = [e["path"] for e in first["files"]] + ["truth/defects.csv", "manifest.json"]
    for name in names:
        assert sha256(tmp_path / "a" / name) == sha256(tmp_path / "b" / name), name
    other = generate(0.001, 43, tmp_path / "c")
    assert other["files"][0]["sha256"] != first["files"][0]["sha256"]


def test_manifest_matches_files(lake_out, rows) -> None:
    out, manifest, calls = lake_out
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["generator"] == {"scale": SCALE, "seed": 20261101, "extract_date": "2026-11-01"}
    assert [e["source"] for e in manifest["files"]] == list(SOURCES)
    for entry in manifest["files"]:
        source = entry["source"]
        assert entry["path"] == f"{source}/{source}_20261101.csv"
        assert entry["sha256"] == sha256(out / entry["path"])
        assert entry["rows"] == len(rows[source])
    assert calls == [(e["source"], e["rows"]) for e in manifest["files"]]


def test_layout_matches_contracts(lake_out) -> None:
    out, manifest, _ = lake_out
    for entry in manifest["files"]:
        contract = yaml.safe_load((CONTRACTS / f"{entry['source']}.yaml").read_text(encoding="utf-8"))
        assert entry["encoding"] == contract["encoding"]
        assert COLUMNS[entry["source"]] == tuple(c["name"] for c in contract["columns"])
        raw = (out / entry["path"]).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") == (entry["encoding"] == "utf-8-sig")
        if entry["encoding"] == "gb18030":
            assert raw.count(b"\n") == raw.count(b"\r\n") == entry["rows"] + 1
        else:
            assert b"\r" not in raw and raw.count(b"\n") == entry["rows"] + 1


def test_gbk_files_decode(lake_out) -> None:
    out, manifest, _ = lake_out
    for entry in manifest["files"]:
        if entry["encoding"] == "gb18030":
            text = (out / entry["path"]).read_bytes().decode("gb18030")
            text.encode("gbk")  # the departments' files are plain GBK
            assert text.startswith("record_id,")


def test_counts_scale(rows) -> None:
    people, entities = round(BASE_PEOPLE * SCALE), round(BASE_ENTERPRISES * SCALE)
    assert people < len(rows["psb_household"]) < people * 1.012  # + ~0.5% duplicates
    assert 0.9 < len(rows["mca_residents"]) / (people * 0.30 / 0.97) < 1.1
    assert len(rows["samr_enterprises"]) == entities
    assert 0.9 < len(rows["tax_taxpayers"]) / (entities * 0.80 / 0.98) < 1.1


# --------------------------------------------------------------------------- ground truth

def test_truth_references_real_rows(truth, by_key) -> None:
    keys = [(t["source"], t["record_key"]) for t in truth]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys), "a row carries more than one defect"
    for t in truth:
        assert t["record_key"] in by_key[t["source"]]
        assert DEFECT_FIELDS[t["source"]][t["defect_type"]] == t["field"]


def test_record_ids_unique(rows) -> None:
    prefixes = {"psb_household": "HJ", "mca_residents": "MZ", "samr_enterprises": "SC",
                "tax_taxpayers": "SW"}
    for source, source_rows in rows.items():
        ids = [row[0] for row in source_rows]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(prefixes[source] + r"\d{9}", i) for i in ids)


def test_defect_rates(rows, truth) -> None:
    counts = Counter((t["source"], t["defect_type"]) for t in truth)
    for source, rates in DEFECT_RATES.items():
        n = len(rows[source])
        for defect, rate in rates:
            expected = n * rate
            if expected >= 20:
                assert 0.4 * expected < counts[(source, defect)] < 1.6 * expected, (source, defect)
            else:
                assert counts[(source, defect)] < 3 * expected + 10, (source, defect)
    total_rows = sum(len(r) for r in rows.values())
    assert 0.01 < len(truth) / total_rows < 0.04


def test_injected_defects_are_defective(rows, truth, by_key) -> None:
    position = {s: {row[0]: i for i, row in enumerate(rows[s])} for s in SOURCES}
    allowed = {"gender": {"男", "女"}, "status": {"存续", "在业", "注销", "吊销"}}
    psb_names = {row[2]: row[1] for row in rows["psb_household"] if len(row) == 10}
    seen = Counter()
    for t in truth:
        source, defect, field = t["source"], t["defect_type"], t["field"]
        row = by_key[source][t["record_key"]]
        seen[defect] += 1
        if defect == "malformed_row":
            assert len(row) in (len(COLUMNS[source]) - 1, len(COLUMNS[source]) + 1)
            continue
        assert len(row) == len(COLUMNS[source])
        value = row[COLUMNS[source].index(field)]
        if defect == "missing_value":
            assert value == ""
        elif defect == "id_checksum":
            assert len(value) == 18 and value[:17].isdigit() and not is_valid_cn_id(value)
            assert cn_id_check_char(value[:17]) != value[17]
        elif defect == "id_format":
            assert len(value) != 18 or not value[:17].isdigit()
            assert not is_valid_cn_id(value) and not ric.is_valid(value)
        elif defect == "invalid_date":
            assert DATE_SHAPE.fullmatch(value)
            with pytest.raises(ValueError):
                datetime.date.fromisoformat(value)
            if source == "psb_household":
                assert is_valid_cn_id(row[2]) and row[2][6:10] == value[:4]
        elif defect == "credit_code_checksum":
            assert not is_valid_uscc(value) and not uscc.is_valid(value)
            assert uscc_check_char(value[:17]) != value[17]
        elif defect == "phone_format":
            assert value and not is_valid_cn_phone(value)
        elif defect == "invalid_value":
            assert value not in allowed[field]
        elif defect == "duplicate_record":
            originals = [r for r in rows[source]
                         if r[2] == value and r[0] != row[0] and r[1:] == row[1:]]
            assert len(originals) == 1
            assert position[source][originals[0][0]] < position[source][row[0]]
            assert originals[0][0] not in {t2["record_key"] for t2 in truth if t2["source"] == source}
        elif defect == "name_mismatch":
            psb_name = psb_names[row[1]]
            assert value != psb_name and len(value) == len(psb_name)
            assert sum(a != b for a, b in zip(value, psb_name)) == 1
        else:
            pytest.fail(f"unexpected defect {defect}")
    assert set(seen) == {d for rates in DEFECT_RATES.values() for d, _ in rates}


# --------------------------------------------------------------------------- clean rows

def test_clean_people_are_valid(rows, defective) -> None:
    records = clean_records("psb_household", rows, defective)
    ids = [r["id_number"] for r in records]
    assert len(set(ids)) == len(ids), "identity numbers must be unique across people"
    regions = Counter(i[:6] for i in ids)
    assert 0.60 < regions["110115"] / len(ids) < 0.70
    stdnum_checked = 0
    for r in records:
        id_number = r["id_number"]
        assert is_valid_cn_id(id_number), r
        assert ric.calc_check_digit(id_number) == id_number[17]
        if known_to_stdnum(id_number):
            assert ric.is_valid(id_number), r
            stdnum_checked += 1
        birth = datetime.date.fromisoformat(r["birth_date"])
        assert id_number[6:14] == birth.strftime("%Y%m%d")
        assert datetime.date(1930, 1, 1) <= birth < EXTRACT
        assert r["gender"] == ("男" if int(id_number[16]) % 2 else "女")
        assert birth < datetime.date.fromisoformat(r["registered_date"]) <= EXTRACT
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert r["town"] in DAXING_TOWNS and r["address"].startswith("北京市大兴区" + r["town"])
        assert r["name"] and r["ethnicity"].endswith("族")
    # stdnum only accepts e.g. 110115 (大兴区, since 2001) for people born from 2001 on.
    assert stdnum_checked > 0.3 * len(records)
    empty_phone = sum(r["phone"] == "" for r in records) / len(records)
    assert 0.07 < empty_phone < 0.13


def test_clean_mca_rows_are_valid(rows, defective) -> None:
    psb = {row[2]: row for row in rows["psb_household"]}
    records = clean_records("mca_residents", rows, defective)
    in_psb = 0
    for r in records:
        assert is_valid_cn_id(r["id_number"])
        if known_to_stdnum(r["id_number"]):
            assert ric.is_valid(r["id_number"])
        assert r["marital_status"] in {"未婚", "已婚", "离异", "丧偶"}
        assert r["subsistence_allowance"] in {"是", "否"}
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert r["town"] in DAXING_TOWNS
        if r["id_number"] in psb:
            in_psb += 1
            assert r["name"] == psb[r["id_number"]][1] or defective["psb_household"].get(
                psb[r["id_number"]][0]) == "missing_value"
            if int(psb[r["id_number"]][4][:4]) > 2008:
                assert r["marital_status"] == "未婚"
    assert 0.94 < in_psb / len(records) < 0.995
    allowance = sum(r["subsistence_allowance"] == "是" for r in records) / len(records)
    assert 0.015 < allowance < 0.05


def test_clean_enterprises_are_valid(rows, defective) -> None:
    records = clean_records("samr_enterprises", rows, defective)
    codes = [r["credit_code"] for r in records]
    assert len(set(codes)) == len(codes)
    for r in records:
        code = r["credit_code"]
        assert is_valid_uscc(code) and uscc.is_valid(code)
        assert code[:2] in {"91", "92"} and code[2:8] in {"110115", "110100", "110000"}
        assert r["industry"] in "ABCDEFGHIJKLMNOPQRST" and len(r["industry"]) == 1
        assert 10 <= float(r["registered_capital"]) <= 50000
        assert re.fullmatch(r"\d+\.\d{2}", r["registered_capital"])
        assert datetime.date(1990, 1, 1) <= datetime.date.fromisoformat(r["established_date"]) <= EXTRACT
        assert r["status"] in {"存续", "在业", "注销", "吊销"}
        assert r["town"] in DAXING_TOWNS
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        assert r["name"].startswith("北京") and r["legal_rep"]
    status = Counter(r["status"] for r in records)
    assert 0.72 < status["存续"] / len(records) < 0.88


def test_clean_taxpayers_are_valid(rows, defective) -> None:
    samr = {row[1]: row for row in rows["samr_enterprises"]}
    records = clean_records("tax_taxpayers", rows, defective)
    in_samr = 0
    for r in records:
        assert is_valid_uscc(r["credit_code"]) and uscc.is_valid(r["credit_code"])
        assert r["tax_status"] in {"正常", "非正常", "注销"}
        assert r["taxpayer_type"] in {"一般纳税人", "小规模纳税人"}
        assert re.fullmatch(r"国家税务总局北京市大兴区税务局第[一二三四五]税务所", r["tax_authority"])
        assert r["phone"] == "" or is_valid_cn_phone(r["phone"])
        if r["credit_code"] in samr:
            in_samr += 1
    assert 0.95 < in_samr / len(records) < 0.995
    codes = [r["credit_code"] for r in records]
    assert len(set(codes)) == len(codes)
