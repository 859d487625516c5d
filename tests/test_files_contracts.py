"""lake.files (decoding and splitting department CSVs) and lake.contracts (loading and validation)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import importlib

from lake import contracts as contracts_mod
from lake.contracts import ContractError
from lake.files import InputError, parse_csv

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
COLS = ["record_id", "name", "town"]


def _parse(tmp_path: Path, data: bytes, declared: str, columns=COLS, key="record_id", name="in.csv"):
    src = tmp_path / name
    src.write_bytes(data)
    out = tmp_path / (name + ".parquet")
    res = parse_csv(src, columns, declared, str(out), key)
    # well-formed and odd records are written in separate batches: the row number gives file order
    return res, sorted(pq.read_table(out).to_pylist(), key=lambda r: r["_row"])


def _values(rows, columns=COLS):
    return [tuple(r[c] for c in columns) for r in rows]


# ----------------------------------------------------------------------------- encodings

def test_gbk_file_declared_gb18030(tmp_path):
    text = "record_id,name,town\nHJ1,张三,黄村镇\nHJ2,欧阳娜娜,旧宫镇\n"
    res, rows = _parse(tmp_path, text.encode("gbk"), "gb18030")
    assert res.detected_encoding == "gb18030"
    assert (res.rows, res.malformed, res.header) == (2, 0, COLS)
    assert _values(rows) == [("HJ1", "张三", "黄村镇"), ("HJ2", "欧阳娜娜", "旧宫镇")]


def test_gb18030_only_character_survives(tmp_path):
    # U+20BB7 is not in GBK; a GB18030 file carries it as a four-byte sequence
    text = "record_id,name,town\nHJ1,\U00020bb7大明,黄村镇\n"
    res, rows = _parse(tmp_path, text.encode("gb18030"), "gbk")
    assert res.detected_encoding == "gb18030"
    assert _values(rows) == [("HJ1", "\U00020bb7大明", "黄村镇")]


def test_utf8_with_bom(tmp_path):
    text = "record_id,name,town\nMZ1,李四,采育镇\n"
    res, rows = _parse(tmp_path, b"\xef\xbb\xbf" + text.encode("utf-8"), "utf-8-sig")
    assert res.detected_encoding == "utf-8-sig"
    assert res.header == COLS  # the BOM is not part of the first column name
    assert _values(rows) == [("MZ1", "李四", "采育镇")]


def test_utf8_file_declared_gb18030_is_read_as_utf8(tmp_path):
    text = "record_id,name,town\nHJ1,王五,西红门镇\n"
    res, rows = _parse(tmp_path, text.encode("utf-8"), "gb18030")
    assert (res.declared_encoding, res.detected_encoding) == ("gb18030", "utf-8")
    assert _values(rows) == [("HJ1", "王五", "西红门镇")]


@pytest.mark.parametrize("declared, words", [
    ("utf-8", ["declared utf-8", "not valid UTF-8"]),
    ("gb18030", ["declared gb18030", "GB18030 (byte 24 is not valid GB18030)", "the bytes look like"]),
])
def test_undecodable_file_is_an_input_error_naming_the_file(tmp_path, declared, words):
    data = "record_id,name,town\nHJ1,".encode("utf-8") + b"\xff\xfe\xfa" + b",x\n"
    with pytest.raises(InputError) as exc:
        _parse(tmp_path, data, declared, name="psb_20261101.csv")
    msg = str(exc.value)
    assert "psb_20261101.csv" in msg
    for w in words:
        assert w in msg


# ----------------------------------------------------------------------------- header

def test_header_missing_a_column_names_the_column(tmp_path):
    with pytest.raises(InputError) as exc:
        _parse(tmp_path, b"record_id,name\nHJ1,x\n", "utf-8", name="short_header.csv")
    assert "short_header.csv" in str(exc.value)
    assert "['town']" in str(exc.value)


def test_header_with_unexpected_column(tmp_path):
    with pytest.raises(InputError) as exc:
        _parse(tmp_path, b"record_id,name,town,age\nHJ1,x,y,3\n", "utf-8", name="extra.csv")
    assert "extra.csv" in str(exc.value) and "['age']" in str(exc.value)


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match="empty.csv: the file is empty"):
        _parse(tmp_path, b"\n \n", "utf-8", name="empty.csv")


def test_header_order_may_differ_from_contract(tmp_path):
    res, rows = _parse(tmp_path, " town , record_id ,name\n黄村镇,HJ1,张三\n".encode(), "utf-8")
    assert res.header == ["town", "record_id", "name"]
    assert _values(rows) == [("HJ1", "张三", "黄村镇")]


# ----------------------------------------------------------------------------- rows

def test_row_numbers_quotes_and_blank_lines(tmp_path):
    lines = [
        "record_id,name,town",                # 1 header
        "HJ1,张三,黄村镇",                     # 2
        "",                                   # 3 blank: skipped
        'HJ2,"欧阳,娜娜",旧宫镇',              # 4 quoted comma
        'HJ3,"两行',                           # 5 a quoted field spanning two lines
        '名字",采育镇',                         # 6
        "",                                   # 7 blank
        "",                                   # 8 blank
        'HJ4,"他说""好""",礼贤镇',             # 9 escaped quotes
    ]
    res, rows = _parse(tmp_path, ("\n".join(lines) + "\n").encode("utf-8"), "utf-8")
    assert (res.rows, res.malformed) == (4, 0)
    assert [r["_row"] for r in rows] == [2, 4, 5, 9]
    assert _values(rows) == [("HJ1", "张三", "黄村镇"), ("HJ2", "欧阳,娜娜", "旧宫镇"),
                             ("HJ3", "两行\n名字", "采育镇"), ("HJ4", '他说"好"', "礼贤镇")]
    assert [r["_field_count"] for r in rows] == [3, 3, 3, 3]
    assert [r["_raw_line"] for r in rows] == [None] * 4


def test_crlf_line_endings(tmp_path):
    res, rows = _parse(tmp_path, b"record_id,name,town\r\nHJ1,a,b\r\n\r\nHJ2,c,d\r\n", "utf-8")
    assert [r["_row"] for r in rows] == [2, 4]
    assert _values(rows) == [("HJ1", "a", "b"), ("HJ2", "c", "d")]


def test_wrong_field_count_keeps_key_and_raw_line(tmp_path):
    data = "record_id,name,town\nHJ1,张三\nHJ2,李四,黄村镇,多余\nHJ3,王五,旧宫镇\n".encode("utf-8")
    res, rows = _parse(tmp_path, data, "utf-8")
    assert (res.rows, res.malformed) == (3, 2)
    assert [(r["_row"], r["_field_count"]) for r in rows] == [(2, 2), (3, 4), (4, 3)]
    assert _values(rows) == [("HJ1", None, None), ("HJ2", None, None), ("HJ3", "王五", "旧宫镇")]
    assert [r["_raw_line"] for r in rows] == ["HJ1,张三", "HJ2,李四,黄村镇,多余", None]


def test_header_only_file_gives_empty_parquet(tmp_path):
    res, rows = _parse(tmp_path, b"record_id,name,town\n", "utf-8")
    assert (res.rows, rows) == (0, [])


# ----------------------------------------------------------------------------- the native fast path

PLAIN_CASES = {
    "crlf, blank lines, short and long rows": b"record_id,name,town\r\nHJ1,a,b\r\n\r\nHJ2,c\r\nHJ3,d,e,f\r\n\r\n",
    "no final newline, empty fields, spaces": "record_id,name,town\nHJ1,,\n  HJ2 , 李 四 ,旧宫镇".encode("utf-8"),
    "columns in another order": "town,record_id,name\n黄村镇,HJ1,张三\n,HJ2,\n".encode("utf-8"),
    "only malformed rows": b"record_id,name,town\nHJ1\nHJ2,a\n,,,\n",
    "GBK": "record_id,name,town\nHJ1,张三,黄村镇\nHJ2,欧阳娜娜\n".encode("gbk"),
    "header only": b"record_id,name,town\n",
}


def _both_paths(tmp_path, monkeypatch, data: bytes, columns=COLS, key="record_id", declared="utf-8"):
    """(result, rows) of the native fast path and of Python's csv module for the same bytes."""
    import lake.files as files_mod

    fast = _parse(tmp_path, data, declared, columns, key, name="fast.csv")
    with monkeypatch.context() as m:
        m.setattr(files_mod, "_plain", lambda text: False)
        general = _parse(tmp_path, data, declared, columns, key, name="general.csv")
    return fast, general


@pytest.mark.parametrize("case", sorted(PLAIN_CASES))
def test_fast_path_gives_exactly_what_the_csv_module_gives(tmp_path, monkeypatch, case):
    from lake.files import _plain

    data = PLAIN_CASES[case]
    assert _plain(data.decode("gbk" if case == "GBK" else "utf-8"))  # the case really takes the fast path
    (f_res, f_rows), (g_res, g_rows) = _both_paths(tmp_path, monkeypatch, data,
                                                   declared="gb18030" if case == "GBK" else "utf-8")
    assert f_rows == g_rows
    assert (f_res.rows, f_res.malformed, f_res.header) == (g_res.rows, g_res.malformed, g_res.header)


def test_fast_path_one_column_file_skips_blank_lines(tmp_path, monkeypatch):
    (f_res, f_rows), (_, g_rows) = _both_paths(tmp_path, monkeypatch, b"record_id\nA1\n\nA2\n\n", columns=["record_id"])
    assert [(r["_row"], r["record_id"]) for r in f_rows] == [(2, "A1"), (4, "A2")]
    assert f_rows == g_rows and f_res.rows == 2


@pytest.mark.parametrize("text", ['a,b\n"q",c\n', "a,b\nx\ry,c\n", "a,b\n\x00,c\n", "a,b\n\ufffd,c\n"])
def test_texts_the_fast_path_cannot_take(text):
    from lake.files import _plain

    assert not _plain(text)


def test_fast_path_agrees_on_generated_department_files(tmp_path, monkeypatch):
    """Every CSV the generator writes (with its injected short, long and blank-padded rows), both ways."""
    from lake.files import _plain, read_text
    from sample.generate import generate

    data = tmp_path / "data"
    generate(0.002, 5, data, iot_days=0)
    contracts = contracts_mod.load(CONTRACTS_DIR)
    checked = malformed = 0
    quoted = []
    for sc in contracts.sources.values():
        folder = data / sc.source
        if sc.format != "csv" or not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if not _plain(read_text(f, sc.encoding)[0]):  # quoted fields: the general path only
                quoted.append(sc.source)
                continue
            (f_res, f_rows), (g_res, g_rows) = _both_paths(tmp_path, monkeypatch, f.read_bytes(), sc.column_names,
                                                           sc.record_key, sc.encoding)
            assert f_rows == g_rows, f.name
            assert (f_res.rows, f_res.malformed) == (g_res.rows, g_res.malformed), f.name
            checked += f_res.rows
            malformed += f_res.malformed
    assert checked > 5_000 and malformed > 0  # the injected field-count defects went through both paths
    # the registers, people and places take the fast path; only a few economic files quote a field
    assert not set(quoted) & {"psb_household", "mca_residents", "samr_enterprises", "tax_taxpayers",
                              "hrss_insured", "nhc_vital_events", "psb_doorplates"}, quoted


# ----------------------------------------------------------------------------- contracts

def test_real_contracts_load():
    c = contracts_mod.load(str(CONTRACTS_DIR))
    assert sorted(c.sources) == sorted([
        "ghzrzy_boundaries", "ghzrzy_poi", "hrss_insured", "iot_devices", "iot_readings_csv", "iot_readings_json",
        "mca_residents", "mca_social_orgs", "nhc_vital_events", "psb_doorplates", "psb_household", "samr_enterprises",
        "samr_geocoded", "seo_institutions", "tax_taxpayers", "zjw_buildings",
        # social credit, e-licences and macro-economy (issue 18)
        "samr_licences", "mem_licences", "samr_penalties", "mee_penalties", "tax_penalties", "mem_penalties",
        "ndrc_credit_lists", "tax_credit_ratings", "samr_elicences", "zjw_elicences", "psb_elicences",
        "mca_elicences", "nbs_indicators", "tax_revenue", "mof_budget", "ndrc_investment",
        # city management (12345) and emergency management (issue 18)
        "csgl_hotline_orders", "mem_shelters", "mem_hazard_sources", "mem_rescue_teams",
        # health and transport (issue 18)
        "nhc_health_facilities", "jtj_bus_lines"])
    assert {s.format for s in c.sources.values()} == {"csv", "jsonl", "geojson"}
    assert {t for t in c.tables if t.startswith("base.")} == {
        "base.admin_boundary", "base.iot_device", "base.iot_reading", "base.legal_entity", "base.poi", "base.population",
        "base.standard_address", "base.population_history", "base.legal_entity_history",
        "base.credit_decision", "base.credit_disclosure", "base.credit_list", "base.credit_profile", "base.e_licence",
        "base.macro_indicator", "base.macro_indicator_history",
        "base.hotline_order", "base.emergency_shelter", "base.hazard_source", "base.rescue_team",
        "base.health_facility", "base.bus_line"}
    assert {"topic.legal_entity_by_town_industry", "topic.population_by_town_age_band",
            "topic.air_quality_hourly", "topic.device_health", "topic.hotline_rates", "topic.hotline_town_counts",
            "topic.hotline_hotspots", "topic.hotline_repeat_complaints", "topic.shelter_reach",
            "topic.emergency_by_town", "topic.service_coverage_by_town", "topic.economic_births",
            "topic.economic_deaths", "topic.macro_trend", "topic.bus_lines_by_town"} <= set(c.tables)
    psb = c.source("psb_household")
    assert (psb.record_key, psb.entity_key, psb.encoding) == ("record_id", "id_number", "gb18030")
    assert psb.column("id_number").checks == ("cn_id",)
    assert c.table("base.population").key == ("id_number",)
    with pytest.raises(ContractError, match="unknown source 'nope'"):
        c.source("nope")


def _base_columns():
    c = contracts_mod.load(str(CONTRACTS_DIR))
    return [(t.table, col.name) for t in c.tables.values() if t.zone == "base" and t.gate for col in t.columns]


def _derivations(table: str) -> set:
    """The derivations the job building ``table`` implements (each such job lists its own)."""
    module = importlib.import_module(contracts_mod.load(str(CONTRACTS_DIR)).table(table).built_by)
    return set(getattr(module, "DERIVATIONS", {}))


@pytest.mark.parametrize("table, column", _base_columns())
def test_every_base_column_has_exactly_one_authority(table, column):
    c = contracts_mod.load(str(CONTRACTS_DIR))
    col = next(x for x in c.table(table).columns if x.name == column)
    assert isinstance(col.authority, str) and col.authority
    if col.authority == "derived":
        assert col.derive in {"surrogate_id", *_derivations(table)}
        assert not col.fallback
        return
    src = c.source(col.authority)
    assert src.domain == c.table(table).domain
    def provided(source) -> set:  # its columns and the ones its contract derives from them
        return {*source.column_names, *source.derived_columns}

    assert col.sources.get(col.authority, col.name) in provided(src)
    assert col.authority not in col.fallback
    assert len(set(col.fallback)) == len(col.fallback)
    for fb in col.fallback:
        assert col.sources.get(fb, col.name) in provided(c.source(fb))
    if col.derive:
        assert col.derive in _derivations(table)


def _edit(folder: Path, rel: str, fn) -> None:
    p = folder / rel
    data = yaml.safe_load(p.read_text(encoding="utf-8"))
    fn(data)
    p.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _col(data, name):
    return next(c for c in data["columns"] if c["name"] == name)


def _unknown_check(d):
    _col(d, "id_number")["checks"] = ["cn_id", "cn_passport"]


def _unknown_authority(d):
    _col(d, "name")["authority"] = "hr_people"


def _unknown_fallback(d):
    _col(d, "phone")["fallback"] = ["mca_residents", "tax_taxpayers_old"]


def _authority_as_fallback(d):
    _col(d, "town")["fallback"] = ["psb_household"]


def _missing_source_column(d):
    _col(d, "name")["sources"] = {"tax_taxpayers": "company_name"}


def _no_authority(d):
    del _col(d, "ethnicity")["authority"]


def _pii_in_open_topic(d):
    _col(d, "town")["pii"] = True


def _open_base_with_pii(d):
    # a complete aggregate open_dataset, so that the refusal comes from the personal columns alone
    topic = yaml.safe_load((CONTRACTS_DIR / "tables/topic_population_by_town_age_band.yaml").read_text(encoding="utf-8"))
    d["open_type"] = "unconditional"
    d["open_dataset"] = {**topic["open_dataset"], "id": "population-register", "count_columns": []}


def _wrong_source_name(d):
    d["source"] = "psb"


def _bad_type(d):
    _col(d, "birth_date")["type"] = "datetime"


def _bad_key(d):
    d["key"] = ["town", "age", "gender"]


def _geojson_without_columns(d):
    d["open_dataset"]["geojson"] = {"points": ["longitude", "lat"]}


BROKEN = [
    ("sources/psb_household.yaml", _unknown_check, "cn_passport"),
    ("tables/base_population.yaml", _unknown_authority, "unknown source 'hr_people'"),
    ("tables/base_population.yaml", _unknown_fallback, "unknown source 'tax_taxpayers_old'"),
    ("tables/base_population.yaml", _authority_as_fallback, "lists its authority 'psb_household' as a fallback"),
    ("tables/base_legal_entity.yaml", _missing_source_column, "source 'tax_taxpayers' has no column 'company_name'"),
    ("tables/base_population.yaml", _no_authority, "column 'ethnicity' has no authoritative source"),
    ("tables/topic_population_by_town_age_band.yaml", _pii_in_open_topic, "cannot be opened"),
    ("tables/base_population.yaml", _open_base_with_pii, "cannot be opened"),
    ("sources/psb_household.yaml", _wrong_source_name, "must equal the file name"),
    ("sources/psb_household.yaml", _bad_type, "unknown type 'datetime'"),
    ("tables/topic_population_by_town_age_band.yaml", _bad_key, "key column 'age'"),
    ("tables/topic_flood_points.yaml", _geojson_without_columns, "open_dataset.geojson names column(s) ['longitude']"),
]


@pytest.mark.parametrize("rel, edit, words", BROKEN, ids=[b[1].__name__.strip("_") for b in BROKEN])
def test_broken_contract_is_a_contract_error_naming_the_file(tmp_path, rel, edit, words):
    folder = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, folder)
    # the untouched copy loads: the error below comes from the edit alone
    assert len(contracts_mod.load(str(folder)).tables) == len(contracts_mod.load(str(CONTRACTS_DIR)).tables)
    contracts_mod.load.cache_clear()
    _edit(folder, rel, edit)
    with pytest.raises(ContractError) as exc:
        contracts_mod.load(str(folder))
    msg = str(exc.value)
    assert Path(rel).name in msg
    assert words in msg


def test_missing_contracts_folder(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        contracts_mod.load(str(tmp_path / "nope"))
