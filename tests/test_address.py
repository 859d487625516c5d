"""The standard address library: the parser and normaliser (lake/address.py) on the variant forms
departments send, and jobs.base.standard_address on small raw tables written here."""
from __future__ import annotations

import hashlib
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from lake import address as A
from sample import evaluate_spatial
from sample.generate import DAXING_TOWNS, _Residences

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- parser

@pytest.mark.parametrize("text, canonical", [
    ("北京市大兴区黄村镇兴华大街12号3号楼2单元501室", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    # full width, U+3000 and ASCII spaces
    ("北京市大兴区黄村镇兴华大街１２号３号楼２单元５０１室", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    ("北京市大兴区\u3000黄村镇 兴华大街 12号", "北京市大兴区黄村镇兴华大街12号"),
    (" 北京市大兴区黄村镇兴华大街12号\u3000", "北京市大兴区黄村镇兴华大街12号"),
    # Chinese numerals
    ("北京市大兴区黄村镇兴华大街十二号", "北京市大兴区黄村镇兴华大街12号"),
    ("北京市大兴区青云店镇东村一百零三号", "北京市大兴区青云店镇东村103号"),
    ("北京市大兴区黄村镇兴华大街十二号三号楼二单元五零一室", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    # aliases of towns and of the district
    ("北京市大兴区黄村地区兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("北京市大兴区亦庄地区康庄路8号", "北京市大兴区亦庄镇康庄路8号"),
    ("北京市大兴县黄村镇兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("北京市大兴区黄村兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("北京市大兴区兴丰街道办事处兴丰大街3号", "北京市大兴区兴丰街道兴丰大街3号"),
    # missing prefixes
    ("大兴区黄村镇兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("黄村镇兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("北京黄村镇兴华大街12号", "北京市大兴区黄村镇兴华大街12号"),
    ("亦庄康庄路8号", "北京市大兴区亦庄镇康庄路8号"),
    # building forms
    ("北京市大兴区黄村镇兴华大街12号3#", "北京市大兴区黄村镇兴华大街12号3号楼"),
    ("北京市大兴区黄村镇兴华大街12号3#楼2单元501室", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    ("北京市大兴区黄村镇兴华大街12号3栋", "北京市大兴区黄村镇兴华大街12号3号楼"),
    ("北京市大兴区黄村镇兴华大街12号3幢2单元501", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    ("北京市大兴区黄村镇兴华大街12号院3号楼", "北京市大兴区黄村镇兴华大街12号3号楼"),
    ("北京市大兴区黄村镇兴华大街12号3-2-501", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    ("北京市大兴区黄村镇兴华大街12号３－２－５０１", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    ("北京市大兴区黄村镇兴华大街12号3-501", "北京市大兴区黄村镇兴华大街12号3号楼501室"),
    ("北京市大兴区黄村镇兴华大街12号3号楼2-501", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室"),
    # villages, and numerals that are part of a name stay
    ("北京市大兴区青云店镇东村5号", "北京市大兴区青云店镇东村5号"),
    ("青云店东村5号", "北京市大兴区青云店镇东村5号"),
    ("北京市大兴区北臧村镇西村5号", "北京市大兴区北臧村镇西村5号"),
    ("北臧村西村5号", "北京市大兴区北臧村镇西村5号"),
    ("北京市大兴区采育镇十里铺村三号", "北京市大兴区采育镇十里铺村3号"),
    ("北京市大兴区黄村镇兴华大街012号", "北京市大兴区黄村镇兴华大街12号"),
])
def test_variant_forms_normalise_to_the_standard_text(text, canonical):
    a = A.parse(text)
    assert a.ok, (text, a)
    assert A.canonical(a) == canonical
    assert A.normalise(text) == canonical


def test_components_and_door_key():
    a = A.parse("亦庄地区 康庄路１２号 3-2-五零一室")
    assert (a.district, a.town, a.road, a.number, a.building, a.unit, a.room, a.rest) == (
        "大兴区", "亦庄镇", "康庄路", "12", "3", "2", "501", None)
    assert A.door_key(a) == "亦庄镇|康庄路|12|3"
    assert A.door_text(a) == "北京市大兴区亦庄镇康庄路12号3号楼"
    village = A.parse("北京市大兴区青云店镇东村5号")
    assert A.door_key(village) == "青云店镇|东村|5|"
    # rooms are sub-addresses: same door key with or without them
    assert A.door_key(A.parse("黄村镇兴华大街12号3号楼1单元101室")) == A.door_key(A.parse("黄村镇兴华大街12号3#"))
    # what follows the last component is kept, not part of the key
    near = A.parse("北京市大兴区黄村镇兴华大街12号东侧")
    assert near.rest == "东侧" and A.door_key(near) == "黄村镇|兴华大街|12|"


def test_a_road_named_after_a_town_is_not_the_town():
    # 黄村东大街 / 旧宫东路 start with a town's bare name; without a town the text names none
    a = A.parse("北京市大兴区黄村东大街8号")
    assert a.reason == "no_town" and a.town is None
    assert A.door_key(A.parse("北京市大兴区黄村东大街8号", town="黄村地区")) == "黄村镇|黄村东大街|8|"
    assert A.door_key(A.parse("旧宫镇旧宫东路5号")) == "旧宫镇|旧宫东路|5|"
    # a street's bare name is never read as the street (清源路 is a road)
    assert A.parse("清源路3号").reason == "no_town"
    assert A.door_key(A.parse("清源街道清源路3号")) == "清源街道|清源路|3|"


def test_town_hint_is_used_only_when_the_text_names_no_town():
    assert A.parse("兴华大街12号", town="黄村镇").town == "黄村镇"
    assert A.parse("兴华大街12号", town="黄村地区").town == "黄村镇"
    assert A.parse("旧宫镇兴华大街12号", town="黄村镇").town == "旧宫镇"
    assert A.parse("兴华大街12号", town="朝阳区").reason == "no_town"


@pytest.mark.parametrize("text, reason", [
    (None, "empty"), ("", "empty"), ("\u3000 ", "empty"),
    ("北京市朝阳区建国路1号", "outside_district"),
    ("天津市和平区南京路1号", "outside_district"),
    ("河北省廊坊市固安县新中街1号", "outside_district"),
    ("北京市大兴区某某镇东村1号", "unknown_town"),
    ("兴华大街12号", "no_town"),
    ("北京市大兴区黄村镇兴华大街", "no_number"),
    ("北京市大兴区黄村镇兴华大街3号楼", "no_number"),
    ("北京市大兴区黄村镇12号", "no_road"),
])
def test_unreadable_addresses_have_a_reason_and_no_key(text, reason):
    a = A.parse(text)
    assert a.reason == reason and reason in A.REASONS
    assert not a.ok and A.canonical(a) is None and A.door_key(a) is None


def test_garbage_never_raises():
    rng = random.Random(3)
    alphabet = "北京市大兴区黄村镇兴华大街号楼单元室#-－０１２3456789十百零一二三 \u3000栋幢院东西()"
    for _ in range(5000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        a = A.parse(s)
        assert a.ok == (A.door_key(a) is not None)
        if a.ok:
            assert A.canonical(A.parse(A.canonical(a))) == A.canonical(a)
    assert A.parse(12345).reason == "no_town"


def test_every_form_the_generator_writes_resolves_to_its_key():
    """Every door plate of a generated address book, with unit and room where it has a building, in
    the canonical form and in every variant style of the spatial generator (an independent writer)."""
    from sample.generate_spatial import VARIANT_STYLES, AddressBook, render_address

    book = AddressBook(7, 0.02)
    rng = random.Random(11)
    styles = [()] + [(st,) for st in VARIANT_STYLES]
    n = 0
    for i in range(len(book)):
        e = book.entry(i)
        unit = room = None
        if e.building:
            unit, room = rng.randint(1, 6), rng.randint(1, 28) * 100 + rng.randint(1, 4)
        canonical = render_address(e.town, e.road, e.number, e.building, unit, room)
        a = A.parse(canonical)
        assert A.canonical(a) == canonical and A.canonical(A.parse(A.canonical(a))) == canonical
        assert A.door_key(a) == e.key and (a.unit, a.room) == (
            None if unit is None else str(unit), None if room is None else str(room))
        for st in styles + [tuple(rng.sample(VARIANT_STYLES, 2))]:
            text = render_address(e.town, e.road, e.number, e.building, unit, room, st)
            b = A.parse(text)
            assert A.door_key(b) == e.key, (text, b)
            assert A.canonical(b) == canonical, (text, st)
            n += 1
    assert n >= 2200 * 11


def test_round_trip_on_the_population_generators_addresses():
    from sample.generate_spatial import AddressBook

    book = AddressBook(3, 0.01)
    residences = _Residences(random.Random(5), book)
    for _ in range(3000):
        town, text = residences()
        a = A.parse(text)
        assert a.ok and a.town == town, text
        c = A.canonical(a)
        assert A.canonical(A.parse(c)) == c
        assert A.door_key(a) == book.key_of(text)


def test_codes_are_stable():
    assert A.address_code("黄村镇|兴华大街|12|") == "110115012F02EFBC9"
    assert A.address_code("黄村镇|兴华大街|12|3") == "110115012940CBAD7"
    assert A.address_code("青云店镇|东村|5|") == "110115001FEBB0D0A"
    assert A.address_code("博兴街道|康庄路|200|30") == "11011502227E2F5E5"
    key = A.door_key(A.parse("亦庄地区康庄路十二号３#"))
    code = A.address_code(key)
    assert code == "110115014" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:8].upper()
    assert len(code) == 17
    for i, t in enumerate(DAXING_TOWNS, start=1):
        assert A.town_code(t) == f"110115{i:03d}"
        assert A.address_code(f"{t}|兴华大街|1|")[:9] == f"110115{i:03d}"
    assert A.town_code("黄村地区") == "110115012"
    with pytest.raises(ValueError, match="朝阳区"):
        A.address_code("朝阳区|建国路|1|")
    assert A.canonical_key("黄村地区|兴华大街|十二|3") == "黄村镇|兴华大街|12|3"
    assert A.canonical_key("not a key") is None


def test_the_fast_reader_agrees_with_the_general_one():
    """``parse`` reads standard texts in one match; on every text it reads that way the general
    reader gives the same result."""
    from sample.generate_spatial import VARIANT_STYLES, AddressBook, render_address

    book = AddressBook(5, 0.01)
    rng = random.Random(2)
    texts = ["北京市大兴区黄村镇兴华大街12号X5号", "北京市大兴区林校路街道办事处林校北路7号", "北京市大兴区黄村镇1号路5号",
             "北京市大兴区黄村镇兴华大街12号3号楼附近", "北京市大兴区黄村镇兴华大街012号", "北京市大兴区黄村镇兴华大街12号2单元"]
    for i in range(len(book)):
        e = book.entry(i)
        unit, room = (rng.randint(1, 6), rng.randint(101, 2804)) if e.building else (None, None)
        texts += [render_address(e.town, e.road, e.number, e.building, unit, room, st)
                  for st in ((), (rng.choice(VARIANT_STYLES),))]
    fast = 0
    for t in texts:
        assert A.parse(t) == A._parse_slow(t), t
        fast += A._parse_fast(t) is not None
    assert fast > len(texts) // 3


def test_parse_many_matches_parse():
    texts = ["北京市大兴区黄村镇兴华大街12号", "黄村地区兴华大街12号3-2-501", None, "兴华大街1号"]
    hints = [None, None, None, "旧宫镇"]
    out = A.parse_many(texts, hints)
    assert out["door_key"] == ["黄村镇|兴华大街|12|", "黄村镇|兴华大街|12|3", None, "旧宫镇|兴华大街|1|"]
    assert out["exact"] == [True, False, False, False]
    assert out["reason"] == [None, None, "empty", None]
    assert out["address_code"][0] == A.address_code("黄村镇|兴华大街|12|")
    for i, t in enumerate(texts):  # the batch form is the single form, field by field
        a = A.parse(t, hints[i])
        assert [out[f][i] for f in ("town", "road", "number", "building", "unit", "room", "rest", "reason")] == [
            a.town, a.road, a.number, a.building, a.unit, a.room, a.rest, a.reason]
        assert (out["canonical"][i], out["door_text"][i], out["door_key"][i]) == (A.canonical(a), A.door_text(a), A.door_key(a))


# ----------------------------------------------------------------------------- the job (Spark)

SOURCES_FROM_DESIGN = {  # docs/spatial_iot.md "Source columns", used only while the repo lacks them
    "psb_doorplates": ("北京市公安局大兴分局", "csv", "gb18030", "monthly", "plate_id", "plate_id",
                       {"lon": "lon", "lat": "lat", "crs": "CGCS2000"},
                       [("plate_id", "string"), ("address", "string"), ("town", "string"), ("road", "string"),
                        ("number", "string"), ("building", "string"), ("lon", "double"), ("lat", "double"),
                        ("set_date", "date")]),
    "zjw_buildings": ("北京市大兴区住房和城乡建设委员会", "csv", "utf-8-sig", "quarterly", "building_id", "building_id",
                      {"lon": "lon", "lat": "lat", "crs": "BD09"},
                      [("building_id", "string"), ("project_name", "string"), ("address", "string"),
                       ("town", "string"), ("lon", "double"), ("lat", "double"), ("floors", "int"),
                       ("completed_year", "int")]),
    "samr_geocoded": ("北京市大兴区市场监督管理局", "jsonl", "utf-8", "monthly", "geocode_id", "credit_code",
                      {"lon": "lon", "lat": "lat", "crs": "GCJ02"},
                      [("geocode_id", "string"), ("credit_code", "string"), ("address", "string"),
                       ("lon", "double"), ("lat", "double"), ("geocoded_at", "string")]),
    "ghzrzy_poi": ("北京市规划和自然资源委员会大兴分局", "jsonl", "utf-8", "quarterly", "poi_id", "poi_id",
                   {"lon": "lon", "lat": "lat", "crs_column": "coord_sys"},
                   [("poi_id", "string"), ("name", "string"), ("category", "string"), ("address", "string"),
                    ("lon", "double"), ("lat", "double"), ("coord_sys", "string")]),
}


def _contracts(base: Path) -> Path:
    """The repository's contracts, plus the design's address sources while the repository lacks them."""
    import yaml

    contracts = base / "contracts"
    shutil.copytree(REPO / "contracts", contracts)
    for name, (dept, fmt, enc, cycle, rk, ek, geometry, cols) in SOURCES_FROM_DESIGN.items():
        p = contracts / "sources" / f"{name}.yaml"
        if not p.exists():
            p.write_text(yaml.safe_dump({
                "source": name, "title": name, "department": dept, "department_code": "11011500000",
                "domain": "spatial", "format": fmt, "encoding": enc, "update_cycle": cycle, "record_key": rk,
                "entity_key": ek, "geometry": geometry,
                "columns": [{"name": c, "type": t, "required": c == rk} for c, t in cols],
            }, allow_unicode=True), encoding="utf-8")
    return contracts


@pytest.fixture(scope="module")
def addr_settings(settings, tmp_path_factory):
    """A lake of its own (not the shared one) with the repository's contracts."""
    base = tmp_path_factory.mktemp("address_lake")
    return replace(settings.with_root(str(base / "lake")), contracts_dir=str(_contracts(base)))


def _raw(spark, settings, source: str, rows: list[dict], schema: list[tuple[str, str]], batch: str = "b1",
         ingested: str = "2026-10-01 08:00:00"):
    from pyspark.sql import functions as F

    from lake import io

    sha = hashlib.sha256(f"{source}-{batch}".encode()).hexdigest()
    data = [tuple(r.get(c) for c, _ in schema) + (i + 2,) for i, r in enumerate(rows)]
    ddl = ", ".join(f"{c} {t}" for c, t in schema) + ", _row long"
    df = (spark.createDataFrame(data, ddl).withColumn("_source", F.lit(source)).withColumn("_file_sha256", F.lit(sha))
          .withColumn("_batch_id", F.lit(f"{source}-{sha[:16]}"))
          .withColumn("_ingested_at", F.lit(ingested).cast("timestamp")))
    io.replace_where(df, io.table_path(settings, "raw", source), f"_file_sha256 = '{sha}'")
    return sha


def _schema(name):
    return [(c, t) for c, t in SOURCES_FROM_DESIGN[name][7]]


def _points():
    """WGS-84 points inside given towns (from the district's unit polygons)."""
    from lake.geo import random_point_in
    from sample.basemap import district_boundaries

    rng = random.Random(5)
    units = {b["name"]: b["geometry"] for b in district_boundaries()}
    return {t: random_point_in(units[t], rng) for t in ("黄村镇", "青云店镇")}


@pytest.fixture(scope="module")
def address_lake(spark, addr_settings):
    import numpy as np
    from pyspark.sql import functions as F

    from lake import io
    from lake.geo import from_wgs84

    s = addr_settings
    pts = _points()
    hx, hy = pts["黄村镇"]
    qx, qy = pts["青云店镇"]
    bx, by = (float(v[0]) for v in from_wgs84(np.array([hx + 0.001]), np.array([hy + 0.001]), "BD09"))
    gx, gy = (float(v[0]) for v in from_wgs84(np.array([qx]), np.array([qy]), "GCJ02"))
    psb = [
        {"plate_id": "P1", "address": "北京市大兴区黄村镇兴华大街12号", "town": "黄村镇", "road": "兴华大街",
         "number": "12", "building": None, "lon": hx, "lat": hy},
        {"plate_id": "P2", "address": "北京市大兴区黄村镇兴华大街12号3号楼", "town": "黄村镇", "road": "兴华大街",
         "number": "12", "building": "3", "lon": None, "lat": None},
        {"plate_id": "P3", "address": "黄村地区兴华大街十四号", "town": "黄村地区", "road": "兴华大街",
         "number": "14", "building": None, "lon": hx, "lat": hy + 0.0005},
        {"plate_id": "P4", "address": "北京市大兴区青云店镇东村5号", "town": "青云店镇", "road": "东村",
         "number": "5", "building": None, "lon": None, "lat": None},
        {"plate_id": "P5", "address": "北京市朝阳区建国路1号", "town": "朝阳区", "road": None,
         "number": None, "building": None, "lon": 116.45, "lat": 39.91},
        # the same plate again later in the file: a duplicate, the first row is the record
        {"plate_id": "P4", "address": "北京市大兴区青云店镇东村5号", "town": "青云店镇", "road": "东村",
         "number": "5", "building": None, "lon": None, "lat": None},
    ]
    old = [{"plate_id": "P1", "address": "北京市大兴区黄村镇兴华大街99号", "town": "黄村镇", "road": "兴华大街",
            "number": "99", "building": None, "lon": hx, "lat": hy}]
    _raw(spark, s, "psb_doorplates", old, _schema("psb_doorplates"), batch="b0", ingested="2026-09-01 08:00:00")
    _raw(spark, s, "psb_doorplates", psb, _schema("psb_doorplates"))
    _raw(spark, s, "zjw_buildings", [
        {"building_id": "B1", "address": "北京市大兴区黄村镇兴华大街12号3#", "town": "黄村镇", "lon": bx, "lat": by},
        {"building_id": "B2", "address": "大兴区青云店镇东村5号1号楼", "town": "青云店镇", "lon": bx, "lat": by},
    ], _schema("zjw_buildings"))
    _raw(spark, s, "samr_geocoded", [
        {"geocode_id": "G1", "credit_code": "91110115MA0000001X", "address": "北京市大兴区青云店镇东村５号",
         "lon": gx, "lat": gy},
        {"geocode_id": "G2", "credit_code": "91110115MA0000002X", "address": "北京市大兴区黄村镇兴华大街12号3-2-501",
         "lon": gx, "lat": gy},
        {"geocode_id": "G3", "credit_code": "91110115MA0000003X", "address": None, "lon": None, "lat": None},
        {"geocode_id": "G4", "credit_code": "91110115MA0000004X", "address": "某某路附近", "lon": None, "lat": None},
    ], _schema("samr_geocoded"))
    _raw(spark, s, "ghzrzy_poi", [
        {"poi_id": "POI1", "name": "兴华超市", "category": "购物服务", "address": "北京市大兴区黄村镇兴华大街12号",
         "lon": hx, "lat": hy, "coord_sys": "WGS84"},
    ], _schema("ghzrzy_poi"))
    # the population's addresses come from the household register: a raw table to trace them to
    hh_sha = _raw(spark, s, "psb_household", [{"record_id": "HJ1"}, {"record_id": "HJ2"}],
                  [("record_id", "string")])
    lin = "struct<source:string,batch_id:string,file_sha256:string,row:long>"
    people = spark.createDataFrame([
        ("P" + "0" * 16, "110115199001011234", "北京市大兴区黄村镇兴华大街12号3号楼2单元501室", "黄村镇", 2),
        ("P" + "1" * 16, "11011519900101123X", "北京市大兴区黄村镇兴华大街99号", "黄村镇", 3),
    ], "person_id string, id_number string, address string, town string, _r long").select(
        "person_id", "id_number", "address", "town",
        F.create_map(F.lit("address"), F.struct(F.lit("psb_household").alias("source"),
                                                F.lit(f"psb_household-{hh_sha[:16]}").alias("batch_id"),
                                                F.lit(hh_sha).alias("file_sha256"), F.col("_r").alias("row")).cast(lin))
        .alias("_lineage"))
    io.overwrite(people, io.table_path(s, "base", "population"), {})
    entities = spark.createDataFrame([("91110115MA0000001X", "北京市大兴区亦庄地区康庄路8号", "亦庄镇")],
                                     "credit_code string, address string, town string").withColumn(
        "_lineage", F.create_map(F.lit("address"), F.lit(None).cast(lin)))
    io.overwrite(entities, io.table_path(s, "base", "legal_entity"), {})
    return {"settings": s, "points": pts}


def _columns(schema):
    return [(f.name, f.dataType) for f in schema.fields]


def _versions(spark, settings):
    from lake import io

    return {t: io.version(spark, io.table_path(settings, *t.split("/"))) for t in
            ("base/standard_address", "quality/address_links", "quality/address_match", "quality/findings")}


def test_build_library_links_rates_findings_and_idempotency(spark, address_lake):
    from pyspark.sql import functions as F

    from jobs.base import standard_address as job
    from lake import io

    s = address_lake["settings"]
    stats = job.build_library(s, "2026-11-01", spark=spark)
    assert stats["status"] == "published"
    rid = stats["run_id"]

    lib = {r["door_key"]: r.asDict() for r in io.read(spark, io.table_path(s, "base", "standard_address")).collect()}
    assert set(lib) == {"黄村镇|兴华大街|12|", "黄村镇|兴华大街|12|3", "黄村镇|兴华大街|14|", "青云店镇|东村|5|"}
    for key, row in lib.items():
        assert row["address_code"] == A.address_code(key)
        assert row["town_code"] is None  # no base.admin_boundary yet
    p12 = lib["黄村镇|兴华大街|12|"]
    assert (p12["town"], p12["road"], p12["number"], p12["building"], p12["canonical"]) == (
        "黄村镇", "兴华大街", "12", None, "北京市大兴区黄村镇兴华大街12号")
    hx, hy = address_lake["points"]["黄村镇"]
    qx, qy = address_lake["points"]["青云店镇"]
    assert (p12["lon"], p12["lat"]) == pytest.approx((hx, hy), abs=1e-9)   # CGCS2000 = WGS-84
    assert p12["_lineage"]["lon"]["source"] == "psb_doorplates"
    b3 = lib["黄村镇|兴华大街|12|3"]  # no point on the plate: the building register's (BD-09) converted
    assert (b3["lon"], b3["lat"]) == pytest.approx((hx + 0.001, hy + 0.001), abs=1e-6)
    assert b3["_lineage"]["lon"]["source"] == "zjw_buildings"
    v5 = lib["青云店镇|东村|5|"]  # neither plate nor building: market regulation's GCJ-02 geocode converted
    assert (v5["lon"], v5["lat"]) == pytest.approx((qx, qy), abs=1e-6)
    assert v5["_lineage"]["lon"]["source"] == "samr_geocoded"
    assert (p12["n_records"], p12["sources"]) == (2, "ghzrzy_poi,psb_doorplates")
    assert (b3["n_records"], b3["sources"]) == (4, "base.population,psb_doorplates,samr_geocoded,zjw_buildings")
    assert (v5["n_records"], v5["sources"]) == (2, "psb_doorplates,samr_geocoded")
    assert lib["黄村镇|兴华大街|14|"]["n_records"] == 1

    links = {(r["source"], r["record_key"]): (r["match"], r["address_code"], r["reason"]) for r in
             io.read(spark, io.table_path(s, "quality", "address_links")).where(F.col("run_id") == rid).collect()}
    code = A.address_code
    assert links == {
        ("psb_doorplates", "P1"): ("exact", code("黄村镇|兴华大街|12|"), None),
        ("psb_doorplates", "P2"): ("exact", code("黄村镇|兴华大街|12|3"), None),
        ("psb_doorplates", "P3"): ("normalised", code("黄村镇|兴华大街|14|"), None),
        ("psb_doorplates", "P4"): ("exact", code("青云店镇|东村|5|"), None),
        ("psb_doorplates", "P5"): ("unmatched", None, "outside_district"),
        ("zjw_buildings", "B1"): ("normalised", code("黄村镇|兴华大街|12|3"), None),
        ("zjw_buildings", "B2"): ("unmatched", None, "not_in_library"),
        ("samr_geocoded", "G1"): ("normalised", code("青云店镇|东村|5|"), None),
        ("samr_geocoded", "G2"): ("normalised", code("黄村镇|兴华大街|12|3"), None),
        ("samr_geocoded", "G3"): ("unmatched", None, "empty"),
        ("samr_geocoded", "G4"): ("unmatched", None, "no_town"),
        ("ghzrzy_poi", "POI1"): ("exact", code("黄村镇|兴华大街|12|"), None),
        ("base.population", "110115199001011234"): ("exact", code("黄村镇|兴华大街|12|3"), None),
        ("base.population", "11011519900101123X"): ("unmatched", None, "not_in_library"),
        ("base.legal_entity", "91110115MA0000001X"): ("unmatched", None, "not_in_library"),
    }

    rates = {r["source"]: (r["records"], r["matched"], r["match_rate"]) for r in
             io.read(spark, io.table_path(s, "quality", "address_match")).where(F.col("run_id") == rid).collect()}
    origin = {r["record_key"]: r["origin_source"] for r in io.read(spark, io.table_path(s, "quality", "address_links"))
              .where((F.col("run_id") == rid) & (F.col("source") == "base.population")).collect()}
    assert origin == {"110115199001011234": "psb_household", "11011519900101123X": "psb_household"}
    match_df = io.read(spark, io.table_path(s, "quality", "address_match"))
    assert _columns(match_df.schema) == _columns(spark.createDataFrame([], job.MATCH_COLUMNS).schema)
    assert rates == {"psb_doorplates": (5, 4, 0.8), "zjw_buildings": (2, 1, 0.5), "samr_geocoded": (4, 2, 0.5),
                     "ghzrzy_poi": (1, 1, 1.0), "base.population": (2, 1, 0.5), "base.legal_entity": (1, 0, 0.0)}

    found = io.read(spark, io.table_path(s, "quality", "findings")).where(F.col("run_id") == rid).collect()
    got = {(f["source"], f["record_key"], f["field"], f["defect_type"]) for f in found}
    assert got == {
        ("psb_doorplates", "P5", "address", "address_unmatched"),
        ("zjw_buildings", "B2", "address", "address_unmatched"),
        ("samr_geocoded", "G4", "address", "address_unmatched"),
        # the person's address came from the household register: reported to it, its own record
        ("psb_household", "HJ2", "address", "address_unmatched"),
        # the entity's address has no lineage to a department row: in the links, not a finding
        ("psb_doorplates", "P4", "plate_id", "duplicate_record"),
        # no point_outside_district for P5 yet: there is no boundary registry to tell
    }
    by_key = {f["record_key"]: f for f in found}
    assert by_key["HJ2"]["department"] == "北京市公安局大兴分局" and by_key["HJ2"]["_row"] == 3
    assert by_key["HJ2"]["message"].startswith("not_in_library") and "黄村镇|兴华大街|99|" in by_key["HJ2"]["message"]
    assert by_key["P5"]["value"] == "北京市朝阳区建国路1号" and by_key["P5"]["_row"] == 6
    assert by_key["G4"]["_file_sha256"] == hashlib.sha256(b"samr_geocoded-b1").hexdigest()

    # same inputs: nothing new anywhere
    before = _versions(spark, s)
    again = job.build_library(s, "2026-11-01", spark=spark)
    assert again["run_id"] == rid and again["status"] == "unchanged"
    assert _versions(spark, s) == before
    assert again["match"] == stats["match"] and again["findings"] == stats["findings"] == 5
    links_df = io.read(spark, io.table_path(s, "quality", "address_links"))
    assert _columns(links_df.schema) == _columns(spark.createDataFrame([], job.LINK_COLUMNS).schema)


def test_build_assigns_town_codes_once_boundaries_exist(spark, address_lake):
    from pyspark.sql import functions as F

    from jobs.base import standard_address as job
    from lake import io
    from sample.basemap import district_boundaries
    import json
    import shapely.geometry

    s = address_lake["settings"]
    first = job.build_library(s, "2026-11-01", spark=spark)
    rows = [(b["code"], b["name"], b["kind"], json.dumps(shapely.geometry.mapping(b["geometry"])))
            for b in district_boundaries()]
    io.overwrite(spark.createDataFrame(rows, "code string, name string, kind string, geometry string"),
                 io.table_path(s, "base", "admin_boundary"), {})
    stats = job.build_library(s, "2026-11-01", spark=spark)
    assert stats["run_id"] != first["run_id"] and stats["status"] == "published"
    lib = {r["door_key"]: r["town_code"] for r in io.read(spark, io.table_path(s, "base", "standard_address")).collect()}
    assert lib == {"黄村镇|兴华大街|12|": "110115012", "黄村镇|兴华大街|12|3": "110115012",
                   "黄村镇|兴华大街|14|": "110115012", "青云店镇|东村|5|": "110115001"}
    # the previous run's links stay as they were; this run has its own
    runs = {r[0] for r in io.read(spark, io.table_path(s, "quality", "address_links")).select("run_id").distinct().collect()}
    assert {first["run_id"], stats["run_id"]} <= runs
    n = io.read(spark, io.table_path(s, "quality", "address_links")).where(F.col("run_id") == stats["run_id"]).count()
    assert n == 15
    links = {(r["source"], r["record_key"]): r["town_code"] for r in io.read(spark, io.table_path(
        s, "quality", "address_links")).where(F.col("run_id") == stats["run_id"]).collect()}
    assert links[("psb_doorplates", "P1")] == links[("ghzrzy_poi", "POI1")] == "110115012"
    assert links[("samr_geocoded", "G1")] == "110115001"
    assert links[("psb_doorplates", "P5")] is None and links[("psb_doorplates", "P2")] is None  # outside; no point
    outside = {(r["source"], r["record_key"], r["field"]) for r in io.read(spark, io.table_path(s, "quality", "findings"))
               .where((F.col("run_id") == stats["run_id"]) & (F.col("defect_type") == "point_outside_district")).collect()}
    assert outside == {("psb_doorplates", "P5", "lon")}
    assert stats["findings_by_type"] == {"address_unmatched": 4, "duplicate_record": 1, "point_outside_district": 1}


def test_evaluate_against_a_truth_file(spark, address_lake, tmp_path):
    from jobs.base import standard_address as job
    from lake.files import InputError

    s = address_lake["settings"]
    job.build_library(s, "2026-11-01", spark=spark)
    (tmp_path / "truth").mkdir()
    lines = ["source,record_key,address_key",
             "psb_doorplates,P1,黄村镇|兴华大街|12|", "psb_doorplates,P3,黄村地区|兴华大街|14|",  # another spelling
             "psb_doorplates,P5,", "zjw_buildings,B1,黄村镇|兴华大街|12|3",
             "zjw_buildings,B2,青云店镇|东村|5|",          # truly the plate: we said unmatched (a miss)
             "samr_geocoded,G2,黄村镇|兴华大街|14|",       # we matched 12|3: wrong
             "samr_geocoded,G4,",
             # population rows are evaluated through base.population's lineage to the register row
             "psb_household,HJ1,黄村镇|兴华大街|12|3", "psb_household,HJ2,"]
    (tmp_path / "truth" / "address_links.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = evaluate_spatial.evaluate_addresses(spark, s, tmp_path)
    psb, zjw, samr = (res["sources"][k] for k in ("psb_doorplates", "zjw_buildings", "samr_geocoded"))
    assert psb["match"] == {"truth": 2, "made": 2, "right": 2, "precision": 1.0, "recall": 1.0}
    assert psb["unmatched"]["precision"] == 1.0 and psb["unmatched"]["recall"] == 1.0
    assert zjw["match"]["recall"] == 0.5 and zjw["match"]["precision"] == 1.0
    assert zjw["unmatched"] == {"truth": 0, "flagged": 1, "right": 0, "precision": 0.0, "recall": 1.0}
    assert samr["match"]["precision"] == 0.0 and samr["unmatched"]["recall"] == 1.0
    hh = res["sources"]["psb_household"]
    assert hh["coverage"] == 1.0 and hh["match"]["right"] == 1 and hh["unmatched"]["right"] == 1
    assert res["passed"] is False
    (tmp_path / "truth" / "address_links.csv").write_text("source,record_key,address_key\nx,1,nokey\n", encoding="utf-8")
    with pytest.raises(InputError, match="row 2.*nokey"):
        evaluate_spatial.evaluate_addresses(spark, s, tmp_path)


# ----------------------------------------------------------------------------- against the generator

@pytest.fixture(scope="module")
def generated_lake(settings, tmp_path_factory):
    """The spatial generator's sources at a small scale, landed through the ingest."""
    from jobs.base import admin_boundary
    from jobs.landing import ingest
    from sample.generate_spatial import generate_spatial

    base = tmp_path_factory.mktemp("address_generated")
    s = replace(settings.with_root(str(base / "lake")), contracts_dir=str(_contracts(base)))
    generate_spatial(0.02, 7, Path(s.inbox))
    for source in ("ghzrzy_boundaries", "psb_doorplates", "zjw_buildings", "samr_geocoded", "ghzrzy_poi"):
        ingest.run(s, source)
    admin_boundary.build_admin_boundary(s, "2026-11-01")
    return s


def test_matches_the_spatial_generators_truth(spark, generated_lake):
    import csv

    from pyspark.sql import functions as F

    from jobs.base import standard_address as job
    from lake import io

    s = generated_lake
    stats = job.build_library(s, "2026-11-01", spark=spark)
    res = evaluate_spatial.evaluate_addresses(spark, s, s.inbox)
    for source in ("psb_doorplates", "zjw_buildings", "samr_geocoded", "ghzrzy_poi"):
        r = res["sources"][source]
        assert r["coverage"] == 1.0, (source, r)
        for m in ("match", "unmatched"):
            assert r[m]["precision"] >= 0.99 and r[m]["recall"] >= 0.99, (source, m, r)
    assert res["sources"]["psb_doorplates"]["match"]["recall"] == 1.0  # the library is the police's plates
    assert res["passed"]
    assert stats["door_keys"] == stats["rows"] == 2200
    # the findings are the generator's defects: unmatched addresses of every address source, and the
    # duplicates and outside points of the three address sources (the POIs' are jobs.base.poi's)
    with open(Path(s.inbox) / "truth" / "defects.csv", encoding="utf-8", newline="") as f:
        truth = {tuple(r.values()) for r in csv.DictReader(f)
                 if r["defect_type"] == "address_unmatched" or r["source"] != "ghzrzy_poi"}
    found = {tuple(r) for r in io.read(spark, io.table_path(s, "quality", "findings"))
             .where(F.col("run_id") == stats["run_id"]).select("source", "record_key", "field", "defect_type").collect()}
    for defect in ("address_unmatched", "duplicate_record", "point_outside_district"):
        t = {x for x in truth if x[3] == defect}
        f = {x for x in found if x[3] == defect}
        assert t == f, (defect, sorted(t - f)[:5], sorted(f - t)[:5])
    assert {x[3] for x in found} == {"address_unmatched", "duplicate_record", "point_outside_district"}
