"""Deterministic synthetic spatial extracts: the address book of Daxing and the department files
that locate places in it (design: ``docs/spatial_iot.md``).

The **address book** (``AddressBook``) is the district's set of standard addresses (door plates):
``town | road or village | number | building``, about 110 K at scale 1.0 (at least a few hundred),
each with its true WGS-84 point inside its town's polygon (``sample.basemap.district_boundaries``). Every
town has its own roads and villages; the plates of a road lie along a line through the town, those
of a village around its centre, the buildings of a compound next to each other, and every true
point is at least ~50 m inside its town, so that the jitter of a department's copy (< 30 m) never
moves it into another town. The book is a pure function of ``(seed, scale)``.

An address is written canonically, ``北京市大兴区{town}{road}{n}号[{b}号楼[{u}单元[{r}室]]]``
(``render_address`` without styles), or the way departments write it (``VARIANT_STYLES``: full-width
digits, Chinese numerals ``十二号``, the aliases ``黄村地区``/``亦庄地区``/``大兴县``, no ``北京市``,
stray spaces, ``3#`` for ``3号楼``, ``3-2-501`` for building-unit-room). A variant always denotes the
same door key; ``AddressBook.parse`` / ``key_of`` read every form this module writes (the test oracle
and the way the population writer learns the key of a row's address).

Sources written by ``generate_spatial`` into ``out/<source>/<source>_<YYYYMMDD>.<ext>``:

* ``ghzrzy_boundaries`` (GeoJSON, UTF-8): the 22 towns and streets (``lake.geo.boundaries_geojson``).
* ``psb_doorplates`` (CSV GBK, CRLF, CGCS2000): one row per door plate of the book, the authority of
  the standard library: every row denotes a standard address.
* ``zjw_buildings`` (CSV UTF-8 with BOM, BD-09): about 98% of the book's buildings, grouped in
  projects (one compound = one project).
* ``samr_geocoded`` (JSON lines UTF-8, GCJ-02): the geocoded registered address of about 19% of the
  ``samr_enterprises`` register (credit code and address as the register has them, re-written in a
  variant form for about 30%), or synthetic entities when called on its own.
* ``ghzrzy_poi`` (JSON lines UTF-8): ~56 K POIs in the 24 classes of ``POI_CATEGORIES``, each row in
  its own ``coord_sys`` (WGS84 / GCJ02 / BD09), with the coordinates really in that system.

Defects (``truth/defects.csv``, the vocabulary of ``docs/defects.md``; a row carries at most one):
``point_outside_district`` (field ``lon``; about 0.3% of the point rows: a point 0.4-12 km outside
the district outline), ``duplicate_record`` (about 0.3%: a clean row written again later in the same
file, the same record key in ``psb_doorplates``, ``zjw_buildings`` and ``ghzrzy_poi``, a new
``geocode_id`` for the same credit code in ``samr_geocoded``; field: the contract's entity key) and
``address_unmatched`` (field ``address``; about 1% of the rows of ``zjw_buildings``,
``samr_geocoded`` and ``ghzrzy_poi``: a door number or building on a real road or village that the
book does not have; the point is still the right one). Address variants are not defects: they
resolve. ``psb_doorplates`` is the library, so its addresses all match. People's and legal entities'
addresses (``AddressBook.residence``) are always standard addresses.

Truth: ``truth/locations.csv`` (``source, record_key, town_code``; empty for a point outside the
district) covers every row of the four point sources; ``truth/address_links.csv`` (``source,
record_key, address_key``; empty when the text, possibly empty, denotes no standard address) covers
the same rows and, through ``AddressLinks``, every well-formed population and legal-entity row with
an address. Both are sorted by ``(source, record_key)`` and have one row per record key (a
duplicate repeats its original's key).

Everything is drawn from ``random.Random`` streams seeded with strings derived from the seed (string
seeds are hashed with SHA-512, independent of ``PYTHONHASHSEED``); nothing reads the clock or Faker.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import heapq
import itertools
import json
import math
import random
import re
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import cn2an
import numpy as np
import shapely

from lake import geo
from sample import basemap
from sample.common import (
    _ORG_CODE_WEIGHTS,
    _ROADS,
    _TOWN_WEIGHTS,
    _TRADE_NAME_CHARS,
    _VILLAGES,
    DAXING_TOWNS,
    DEFAULT_EXTRACT_DATE,
    _RecordIds,
    _Weighted,
)
from sample.identifiers import make_uscc, to_fullwidth

__all__ = [
    "BASE_ADDRESSES",
    "BASE_GEOCODED",
    "BASE_POIS",
    "SPATIAL_COLUMNS",
    "SPATIAL_DEFECT_FIELDS",
    "SPATIAL_DEFECT_RATES",
    "SPATIAL_ENCODINGS",
    "SPATIAL_FORMATS",
    "SPATIAL_SOURCES",
    "POI_CATEGORIES",
    "TOWN_ALIASES",
    "VARIANT_STYLES",
    "AddressBook",
    "AddressLinks",
    "RegisteredAddresses",
    "StandardAddress",
    "address_key",
    "generate_spatial",
    "render_address",
]

BOUNDARIES, DOORPLATES, BUILDINGS = "ghzrzy_boundaries", "psb_doorplates", "zjw_buildings"
GEOCODED, POI = "samr_geocoded", "ghzrzy_poi"
SPATIAL_SOURCES = (BOUNDARIES, DOORPLATES, BUILDINGS, GEOCODED, POI)
POINT_SOURCES = (DOORPLATES, BUILDINGS, GEOCODED, POI)
SPATIAL_FORMATS = {BOUNDARIES: "geojson", DOORPLATES: "csv", BUILDINGS: "csv", GEOCODED: "jsonl",
                   POI: "jsonl"}
SPATIAL_ENCODINGS = {BOUNDARIES: "utf-8", DOORPLATES: "gbk", BUILDINGS: "utf-8-sig",
                     GEOCODED: "utf-8", POI: "utf-8"}
SPATIAL_COLUMNS = {
    BOUNDARIES: ("code", "name", "kind", "area_km2"),
    DOORPLATES: ("plate_id", "address", "town", "road", "number", "building", "lon", "lat",
                 "set_date"),
    BUILDINGS: ("building_id", "project_name", "address", "town", "lon", "lat", "floors",
                "completed_year"),
    GEOCODED: ("geocode_id", "credit_code", "address", "lon", "lat", "geocoded_at"),
    POI: ("poi_id", "name", "category", "address", "lon", "lat", "coord_sys"),
}
_CRS = {DOORPLATES: "CGCS2000", BUILDINGS: "BD09", GEOCODED: "GCJ02"}
_RECORD_PREFIX = {DOORPLATES: "MP", BUILDINGS: "LD", GEOCODED: "GC", POI: "PO"}
_ENTITY_KEY = {DOORPLATES: "plate_id", BUILDINGS: "building_id", GEOCODED: "credit_code",
               POI: "poi_id"}

SPATIAL_DEFECT_RATES = {"point_outside_district": 0.003, "duplicate_record": 0.003}
# the field a truth row names, per (source, defect)
UNMATCHED_SHARE = 0.01  # rows of zjw / samr_geocoded / poi whose address is not a standard address
# the field a truth row names, per (source, defect); address_unmatched is the finding of
# jobs.base.standard_address for a record whose (non-empty) address denotes no standard address
SPATIAL_DEFECT_FIELDS = {source: {"point_outside_district": "lon", "duplicate_record": _ENTITY_KEY[source],
                                  "address_unmatched": "address"}
                         for source in POINT_SOURCES}

BASE_ADDRESSES = 110_000  # door plates at scale 1.0
MIN_ADDRESSES = 300
BASE_GEOCODED = 25_000  # geocoded registered addresses at scale 1.0
MIN_GEOCODED = 20
BASE_POIS = 56_000
MIN_POIS = 60
_SAMR_AT_SCALE_1 = 144_000 * 0.90  # samr_enterprises rows at scale 1.0 (sample.generate)
_BUILDING_COVERAGE = 0.98  # share of the book's buildings in zjw_buildings
_JITTER_M = {DOORPLATES: 8.0, BUILDINGS: 25.0, GEOCODED: 28.0, POI: 25.0}
_VARIANT_SHARE = {DOORPLATES: 0.10, BUILDINGS: 0.40, GEOCODED: 0.30, POI: 0.50}
_POPULATION_VARIANT_SHARE = 0.10  # people's and entities' addresses written in a variant form
_POI_CRS = (("GCJ02", 60), ("WGS84", 20), ("BD09", 20))
_DUPLICATE_WINDOW = 5_000

_RECENT = 200_000  # texts of AddressBook.residence remembered for index_of
_MARGIN_DEG = 0.0006  # true points stay this far inside their town (>= ~50 m)
_M_PER_DEG_LAT = 111_195.0
_M_PER_DEG_LON = _M_PER_DEG_LAT * math.cos(math.radians(39.65))
_COMPOUND_SHARE = 0.085  # door numbers on a road that are residential compounds with buildings

# ------------------------------------------------------------------ names

_ROAD_STEMS = (
    "兴华", "金星", "兴业", "兴政", "清源", "林校", "康庄", "永华", "双河", "欣宁", "红星", "德茂",
    "宏业", "兴丰", "天华", "磁各庄", "京开", "育英", "芦城", "新源", "盛坊", "金华寺", "团河",
    "海子角", "南海子", "博兴", "荣华", "景园", "科创", "经海", "地盛", "宏达", "永昌", "同济",
    "凉水河", "采林", "育龙", "庞安", "魏永", "青礼", "长育", "京良", "兴亦", "旧忠", "福苑",
    "鹿圈", "东高地", "西磁", "义和庄", "龙河", "天堂河", "念坛", "新凤河", "大庄", "北兴",
    "庑殿", "狼垡", "金盛", "星光", "瑞合", "春和", "嘉悦", "观音寺", "高米店", "枣园", "车站",
    "前进", "建兴", "富强", "振亚", "泰河", "朝林", "润星", "亦城", "隆盛", "万源", "双高",
    "榆顺", "安福", "长盛", "宏福", "欣荣", "文化", "建设", "光明", "幸福", "和平", "丰收",
    "育才", "康泰", "广平", "秀水", "金海", "银河",
)
_ROAD_SUFFIXES = (("路", 4), ("街", 2), ("大街", 2), ("东路", 1), ("西路", 1), ("南路", 1),
                  ("北路", 1), ("中路", 0.5), ("东街", 0.5), ("西街", 0.5), ("南街", 0.5),
                  ("北街", 0.5))
_VILLAGE_STEMS = (
    "辛庄", "麻各庄", "芦城", "管营", "回城", "白疃", "石垡", "韩园", "太子务", "马房", "留民营",
    "沙窝店", "赵家", "孙家", "李家", "王家", "刘家", "张家", "郭家务", "梨花", "桑马房", "佟营",
    "诸葛营", "潘家", "凤河营", "朱庄", "解州营", "广佛寺", "半壁店", "宋庄", "大练庄", "黎明",
    "求贤", "胡林", "定福庄", "德茂庄", "高店", "鹅房", "野场", "南场", "康张", "垡上", "东黄垡",
    "孝义营", "北研垡", "安场", "铜佛寺", "马各庄", "葛渠", "周营", "河津营", "霍州营", "乐陵营",
)
_VILLAGE_PREFIXES = ("", "东", "西", "南", "北", "前", "后", "大", "小")

# aliases a department may write instead of the registry name (lake.address knows these and more)
TOWN_ALIASES = {"黄村镇": "黄村地区", "亦庄镇": "亦庄地区", "旧宫镇": "旧宫地区", "西红门镇": "西红门地区"}

POI_CATEGORIES = (
    "餐饮服务", "购物服务", "生活服务", "体育休闲服务", "医疗保健服务", "住宿服务", "风景名胜",
    "商务住宅", "政府机构及社会团体", "科教文化服务", "交通设施服务", "金融保险服务", "公司企业",
    "道路附属设施", "地名地址信息", "公共设施", "汽车服务", "汽车销售", "汽车维修", "摩托车服务",
    "室内设施", "通行设施", "事件活动", "产业园区",
)
# class -> (weight, share without an address, name templates)
_POI_CLASSES = {
    "餐饮服务": (12, 0.0, ("{trade}餐厅", "{trade}饭店", "{trade}小吃", "{trade}面馆", "{trade}火锅",
                       "{trade}包子铺", "{trade}烤鸭店", "{trade}咖啡", "{place}{trade}快餐")),
    "购物服务": (14, 0.0, ("{trade}超市", "{trade}便利店", "{trade}五金店", "{trade}服装店",
                       "{trade}水果店", "{place}菜市场", "{trade}家电城")),
    "生活服务": (12, 0.0, ("{trade}美发", "{trade}洗衣店", "{place}快递驿站", "{trade}家政",
                       "{trade}照相馆", "{place}营业厅", "{trade}彩票站")),
    "体育休闲服务": (3, 0.0, ("{trade}健身", "{place}体育公园", "{trade}游泳馆", "{trade}羽毛球馆",
                         "{trade}棋牌室")),
    "医疗保健服务": (4, 0.0, ("{town}社区卫生服务站", "{trade}诊所", "{trade}大药房", "{trade}口腔诊所",
                         "{trade}中医门诊部")),
    "住宿服务": (2, 0.0, ("{trade}宾馆", "{trade}酒店", "{trade}快捷酒店", "{place}招待所")),
    "风景名胜": (1, 0.2, ("{place}公园", "{stem}湿地公园", "{stem}森林公园", "{place}广场")),
    "商务住宅": (6, 0.0, ("{stem}家园", "{stem}小区", "{trade}大厦", "{stem}公寓", "{stem}花园")),
    "政府机构及社会团体": (4, 0.0, ("{place}社区居委会", "{town}人民政府", "{town}派出所",
                              "{place}村民委员会", "{town}市场监督管理所")),
    "科教文化服务": (4, 0.0, ("{place}小学", "{place}中学", "{trade}幼儿园", "{place}图书馆",
                         "{trade}培训学校")),
    "交通设施服务": (8, 0.1, ("{place}公交站", "{place}地铁站", "{trade}停车场", "{place}公交车站")),
    "金融保险服务": (2, 0.0, ("中国工商银行{stem}支行", "中国建设银行{stem}支行", "北京农商银行{stem}支行",
                         "{trade}保险代理", "中国银行ATM")),
    "公司企业": (14, 0.0, ("北京{trade}科技有限公司", "北京{trade}商贸有限公司", "北京{trade}物流有限公司",
                       "北京{trade}建筑工程有限公司", "北京{trade}食品有限公司")),
    "道路附属设施": (1.5, 0.4, ("{stem}收费站", "{stem}服务区", "{stem}桥", "{place}出入口")),
    "地名地址信息": (4, 0.0, ("{place}", "{stem}", "{place}路口")),
    "公共设施": (2, 0.2, ("{place}公共厕所", "{place}报刊亭", "{place}垃圾转运站")),
    "汽车服务": (2, 0.0, ("中国石化{stem}加油站", "{trade}充电站", "{trade}洗车", "{trade}汽车租赁")),
    "汽车销售": (1, 0.0, ("{trade}汽车4S店", "{trade}二手车市场", "{trade}汽车销售服务有限公司")),
    "汽车维修": (1.5, 0.0, ("{trade}汽车修理厂", "{trade}汽车快修", "{trade}轮胎店")),
    "摩托车服务": (0.5, 0.0, ("{trade}摩托车维修", "{trade}电动车行")),
    "室内设施": (1, 0.0, ("{trade}购物中心卫生间", "{trade}广场电梯", "{trade}大厦服务台")),
    "通行设施": (2, 0.3, ("{stem}小区东门", "{stem}小区南门", "{stem}小区北门", "{place}出口")),
    "事件活动": (0.2, 0.5, ("{town}庙会", "{stem}大集", "{stem}西瓜节")),
    "产业园区": (0.8, 0.0, ("{stem}产业园", "{trade}科技园", "{stem}工业园区", "{trade}创新中心")),
}
_PROJECT_SUFFIXES = ("家园", "小区", "花园", "嘉园", "公寓", "雅苑", "新城", "佳园", "里", "名苑")
_FLOORS = ((6, 30), (11, 20), (18, 20), (24, 15), (28, 10), (3, 5))

# ------------------------------------------------------------------ text forms

VARIANT_STYLES = ("fullwidth", "cn_numeral", "town_alias", "county", "no_city", "space",
                  "space_number", "ideographic_space", "hash", "dash")
# styles that keep an address acceptable for the population sources' clean-value invariants:
# the text still starts with 北京市大兴区{town}, has no full-width character and no U+3000
_SAFE_STYLES = ("cn_numeral", "space", "space_number", "hash", "dash")

_CN_TABLE: list[str] = []
_CN_VALUE: dict[str, int] = {}
_CN_DIGITS = "零〇一二三四五六七八九十百千两"


def _cn(n: int) -> str:
    """``n`` in Chinese numerals (``cn2an``), e.g. 12 -> 十二."""
    if not _CN_TABLE:
        _CN_TABLE.extend(cn2an.an2cn(i) for i in range(2000))
        _CN_VALUE.update((s, i) for i, s in enumerate(_CN_TABLE))
    return _CN_TABLE[n] if 0 <= n < len(_CN_TABLE) else cn2an.an2cn(n)


def _from_cn(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    _cn(0)
    value = _CN_VALUE.get(s)
    if value is not None:
        return value
    try:
        return int(cn2an.cn2an(s, "smart"))
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def address_key(town: str, road: str, number: int | str, building: int | str | None = "") -> str:
    """The door key ``town|road|number|building`` (building empty when there is none)."""
    return f"{town}|{road}|{int(number)}|{int(building) if building not in (None, '', 0) else ''}"


def render_address(town: str, road: str, number: int, building: int | None = None,
                   unit: int | None = None, room: int | None = None,
                   styles: Iterable[str] = ()) -> str:
    """The address text; no ``styles`` gives the canonical form
    ``北京市大兴区{town}{road}{n}号[{b}号楼[{u}单元[{r}室]]]``. A style that does not apply (``dash``
    without unit and room, ``town_alias`` for a town without alias) is ignored."""
    st = frozenset(styles)
    unknown = st - set(VARIANT_STYLES)
    if unknown:
        raise ValueError(f"unknown address styles {sorted(unknown)}")
    cn = "cn_numeral" in st
    num = f"{_cn(number) if cn else number}号"
    tail = ""
    if building:
        if "dash" in st and unit and room:
            tail = f"{building}-{unit}-{room}"
        else:
            tail = f"{building}#" if "hash" in st else f"{_cn(building) if cn else building}号楼"
            if unit:
                tail += f"{unit}单元"
                if room:
                    tail += f"{room}室"
    city = "" if "no_city" in st else "北京市"
    district = "大兴县" if "county" in st else "大兴区"
    town_text = TOWN_ALIASES.get(town, town) if "town_alias" in st else town
    gap_district = "\u3000" if "ideographic_space" in st else ""
    gap_town = " " if "space" in st else ""
    gap_number = " " if "space_number" in st else ""
    text = f"{city}{district}{gap_district}{town_text}{gap_town}{road}{gap_number}{num}{tail}"
    return to_fullwidth(text) if "fullwidth" in st else text


def _pick_styles(rng: random.Random, town: str, building: int | None, unit: int | None,
                 room: int | None, safe: bool = False) -> tuple[str, ...]:
    """One or two applicable variant styles (``safe``: only ``_SAFE_STYLES``)."""
    pool = [s for s in (_SAFE_STYLES if safe else VARIANT_STYLES)
            if not (s == "town_alias" and town not in TOWN_ALIASES)
            and not (s == "hash" and not building)
            and not (s == "dash" and not (building and unit and room))]
    k = 1 if rng.random() < 0.7 or len(pool) < 2 else 2
    chosen = rng.sample(pool, k)
    if "hash" in chosen and "dash" in chosen:
        chosen.remove("dash")
    return tuple(sorted(chosen))


# the canonical form, read without normalising first (the common case of the population writer)
_CANONICAL = re.compile(r"北京市大兴区(?P<t>\D+?(?:镇|街道))(?P<p>\D+?)(?P<n>\d+)号"
                        r"(?:(?P<b>\d+)号楼(?:\d+单元(?:\d+室)?)?)?")
_HALF = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_HALF.update({ord(c): None for c in " \t\u3000\u00a0"})
_NUMBER = f"\\d+|[{_CN_DIGITS}]+"
_TAIL = re.compile(
    f"(?P<n>{_NUMBER})号(?:"
    r"(?P<db>\d+)-(?P<du>\d+)-(?P<dr>\d+)"
    f"|(?P<b>{_NUMBER})(?:号楼|#楼|#)(?:(?P<u>\\d+)单元(?:(?P<r>\\d+)室)?)?"
    ")?")


class StandardAddress(NamedTuple):
    key: str
    town: str
    road: str  # road or village
    number: int
    building: int | None
    lon: float  # true WGS-84 point
    lat: float
    village: bool


class _Place(NamedTuple):
    town: int
    name: str
    village: bool
    lon: float  # anchor (WGS-84)
    lat: float
    ux: float  # direction of the road (unit vector in metres east/north)
    uy: float
    half_m: float  # half length of the road / radius of the village
    max_number: int


# ------------------------------------------------------------------ the address book

class AddressBook:
    """The district's standard addresses (door plates), their true points and text forms.

    Built once per ``(seed, scale)``: ``max(round(110 000 * scale), 300)`` door plates in the 22
    towns (weights of ``sample.generate``), each town with its own roads (and, in a 镇, villages). About
    41% of the plates are buildings of residential compounds (``building`` set).
    """

    def __init__(self, seed: int, scale: float, boundaries: list[dict] | None = None) -> None:
        if not scale > 0:
            raise ValueError("scale must be > 0")
        rng = random.Random(f"lake.generate_spatial/address-book/{seed}/{scale!r}")
        self.boundaries = boundaries if boundaries is not None else basemap.district_boundaries()
        self.towns: tuple[str, ...] = tuple(DAXING_TOWNS)
        by_name = {b["name"]: b for b in self.boundaries}
        if set(by_name) != set(self.towns):
            raise ValueError("the boundaries must be the 22 towns and streets of lake.reference (district.towns)")
        self.town_codes = {t: by_name[t]["code"] for t in self.towns}
        self._inner = []
        for t in self.towns:
            inner = by_name[t]["geometry"].buffer(-_MARGIN_DEG)
            shapely.prepare(inner)
            self._inner.append(inner)
        self.outline = basemap.district_outline()
        n_total = max(round(BASE_ADDRESSES * scale), MIN_ADDRESSES)
        total_weight = sum(_TOWN_WEIGHTS)
        exact = [n_total * w / total_weight for w in _TOWN_WEIGHTS]  # largest remainder: sums to n_total
        targets = [int(x) for x in exact]
        for k in sorted(range(len(exact)), key=lambda k: targets[k] - exact[k])[:n_total - sum(targets)]:
            targets[k] += 1
        targets = [max(3, t) for t in targets]

        self.places: list[_Place] = []
        self._town_of = array("B")
        self._place_of = array("I")
        self._number = array("I")
        self._building = array("I")  # 0: none
        self._lon = array("d")
        self._lat = array("d")
        self.keys: list[str] = []
        self._town_range: list[tuple[int, int]] = []
        self._building_index: list[int] = []  # book indexes of the buildings
        self._building_range: list[tuple[int, int]] = []  # per town, into _building_index

        road_names, village_names = self._name_pools(rng)
        for ti, town in enumerate(self.towns):
            start, b_start = len(self.keys), len(self._building_index)
            target = targets[ti]
            village_share = 0.5 if town.endswith("镇") else 0.0
            n_village = round(target * village_share)
            n_road = target - n_village
            roads = max(1, round(n_road / 350))
            villages = max(1, round(n_village / 150)) if n_village else 0
            for budget, count, names, village in ((n_road, roads, road_names, False),
                                                  (n_village, villages, village_names, True)):
                if not count:
                    continue
                shares = [rng.random() + 0.5 for _ in range(count)]
                sizes = [max(1, int(budget * s / sum(shares))) for s in shares]
                sizes[-1] = max(1, sizes[-1] + budget - sum(sizes))
                for size in sizes:
                    self._add_place(rng, ti, names.pop(), village, size)
            self._town_range.append((start, len(self.keys)))
            self._building_range.append((b_start, len(self._building_index)))
        self._index = {k: i for i, k in enumerate(self.keys)}
        self._road_name = [self.places[p].name for p in self._place_of]
        self._by_parts = {(self.towns[self._town_of[i]], self.places[self._place_of[i]].name,
                           self._number[i], self._building[i]): i for i in range(len(self.keys))}
        self._compound_size: dict[tuple[int, int], int] = {}
        for i in self._building_index:
            k = (self._place_of[i], self._number[i])
            self._compound_size[k] = max(self._compound_size.get(k, 0), self._building[i])
        self._places_by_town: list[dict[str, int]] = [{} for _ in self.towns]
        for pi, p in enumerate(self.places):
            self._places_by_town[p.town][p.name] = pi
        self._place_re = [re.compile("|".join(re.escape(n) for n in sorted(d, key=len, reverse=True)))
                          for d in self._places_by_town]
        aliases = {t: t for t in self.towns}
        aliases.update({alias: town for town, alias in TOWN_ALIASES.items()})
        self._town_alias = aliases
        self._town_re = re.compile("|".join(re.escape(a) for a in sorted(aliases, key=len, reverse=True)))
        self._town_index = {t: i for i, t in enumerate(self.towns)}
        self._town_pick = _Weighted(zip(self.towns, _TOWN_WEIGHTS))
        # the texts handed out by residence() lately, with their book index (-1: none): the rows that
        # copy a person's address follow soon after, so index_of mostly finds them here
        self._recent: dict[str, int] = {}
        self._recent_order: deque[str] = deque()

    # -------------------------------------------------------------- construction

    def _name_pools(self, rng: random.Random) -> tuple[list[str], list[str]]:
        """Disjoint road and village names, shuffled; popped town by town, so every town has its own."""
        suffix = _Weighted(_ROAD_SUFFIXES)
        roads = list(dict.fromkeys(_ROADS))
        seen = set(roads)
        stems = list(_ROAD_STEMS)
        rng.shuffle(stems)
        for stem in itertools.islice(itertools.cycle(stems), 4 * len(stems)):
            name = stem + suffix(rng)
            if name not in seen:
                seen.add(name)
                roads.append(name)
        villages = list(dict.fromkeys(_VILLAGES))
        seen = set(villages)
        for prefix in _VILLAGE_PREFIXES:
            for stem in _VILLAGE_STEMS:
                name = f"{prefix}{stem}村"
                if name not in seen:
                    seen.add(name)
                    villages.append(name)
        rng.shuffle(roads)
        rng.shuffle(villages)
        return roads, villages

    def _inside(self, town: int, lon: float, lat: float) -> bool:
        return bool(shapely.contains_xy(self._inner[town], lon, lat))

    def _toward(self, town: int, lon0: float, lat0: float, lon: float, lat: float) -> tuple[float, float]:
        """(lon, lat) if it lies inside the town's inner polygon, else the first point inside on the
        way back to (lon0, lat0) (which is inside)."""
        for _ in range(12):
            if self._inside(town, lon, lat):
                return lon, lat
            lon, lat = (lon + lon0) / 2, (lat + lat0) / 2
        return lon0, lat0

    def _add_place(self, rng: random.Random, town: int, name: str, village: bool, size: int) -> None:
        lon0, lat0 = geo.random_point_in(self._inner[town], rng)
        angle = rng.uniform(0, math.pi)
        half = rng.uniform(150, 450) if village else rng.uniform(600, 2000)
        numbers: list[tuple[int, int]] = []  # (number, building)
        n = 0
        while len(numbers) < size:
            n += 1 if rng.random() < 0.95 else 2 + rng.randrange(2)  # a few gaps
            if not village and rng.random() < _COMPOUND_SHARE and size - len(numbers) >= 2:
                k = min(2 + rng.randrange(23), size - len(numbers))
                b = 0
                for _ in range(k):
                    b += 1 if rng.random() < 0.93 else 2  # buildings are sometimes skipped (no 4)
                    numbers.append((n, b))
            else:
                numbers.append((n, 0))
        place = _Place(town, name, village, lon0, lat0, math.cos(angle), math.sin(angle), half, n)
        pi = len(self.places)
        self.places.append(place)
        compound_point: tuple[float, float] | None = None
        compound_number = -1
        for number, building in numbers:
            if building and number == compound_number and compound_point is not None:
                r, a = 90 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
                lon, lat = self._toward(town, *compound_point,
                                        compound_point[0] + r * math.cos(a) / _M_PER_DEG_LON,
                                        compound_point[1] + r * math.sin(a) / _M_PER_DEG_LAT)
            else:
                lon, lat = self._place_point(rng, place, number)
                if building:
                    compound_point, compound_number = (lon, lat), number
            i = len(self.keys)
            self._town_of.append(town)
            self._place_of.append(pi)
            self._number.append(number)
            self._building.append(building)
            self._lon.append(lon)
            self._lat.append(lat)
            self.keys.append(address_key(self.towns[town], name, number, building))
            if building:
                self._building_index.append(i)

    def _place_point(self, rng: random.Random, place: _Place, number: int) -> tuple[float, float]:
        """A true point for ``number`` of ``place``: along the road (by number, ~20 m off it) or
        scattered around the village centre; always inside the town's inner polygon."""
        if place.village:
            r, a = place.half_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            dx, dy = r * math.cos(a), r * math.sin(a)
        else:
            t = min((number - 0.5) / max(place.max_number, 1), 1.2)
            along = (2 * t - 1) * place.half_m
            off = rng.gauss(0, 20)
            dx, dy = along * place.ux - off * place.uy, along * place.uy + off * place.ux
        return self._toward(place.town, place.lon, place.lat,
                            place.lon + dx / _M_PER_DEG_LON, place.lat + dy / _M_PER_DEG_LAT)

    # -------------------------------------------------------------- lookups

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def index(self, key: str) -> int | None:
        return self._index.get(key)

    def entry(self, i: int) -> StandardAddress:
        p = self.places[self._place_of[i]]
        return StandardAddress(self.keys[i], self.towns[self._town_of[i]], p.name, self._number[i],
                               self._building[i] or None, self._lon[i], self._lat[i], p.village)

    def __iter__(self):
        return (self.entry(i) for i in range(len(self.keys)))

    def town_code(self, town: str) -> str:
        return self.town_codes[town]

    @property
    def building_count(self) -> int:
        return len(self._building_index)

    def buildings(self) -> Iterable[int]:
        """Book indexes of the buildings, in book order."""
        return iter(self._building_index)

    def roads_of(self, town: str) -> list[str]:
        return [n for n, pi in self._places_by_town[self._town_index[town]].items()
                if not self.places[pi].village]

    def villages_of(self, town: str) -> list[str]:
        return [n for n, pi in self._places_by_town[self._town_index[town]].items()
                if self.places[pi].village]

    def random_index(self, rng: random.Random, town: str | None = None) -> int:
        """A door plate of ``town`` (default: a town drawn with the population weights)."""
        start, end = self._town_range[self._town_index[town or self._town_pick(rng)]]
        return start + rng.randrange(end - start)

    # -------------------------------------------------------------- text

    def render(self, i: int, unit: int | None = None, room: int | None = None,
               styles: Iterable[str] = ()) -> str:
        e = self.entry(i)
        return render_address(e.town, e.road, e.number, e.building, unit, room, styles)

    def canonical(self, i: int, unit: int | None = None, room: int | None = None) -> str:
        return self.render(i, unit, room)

    def residence(self, rng: random.Random, town: str, entity: bool = False) -> str:
        """The address text of a person (``entity``: a legal entity) living in ``town``: a door
        plate of the town, in a building with unit and room for most residents of compounds,
        written canonically or (10%) in a variant that keeps the 北京市大兴区{town} prefix and has
        no full-width character. Always a standard address (``index_of`` knows it at once)."""
        start, end = self._town_range[self._town_index[town]]
        i = start + int(rng.random() * (end - start))
        road = self._road_name[i]
        number, building = self._number[i], self._building[i]
        if building and rng.random() < (0.5 if entity else 0.9):
            unit = 1 + int(rng.random() * 6)
            room = (1 + int(rng.random() * 28)) * 100 + 1 + int(rng.random() * 4)
            if rng.random() < _POPULATION_VARIANT_SHARE:
                text = render_address(town, road, number, building, unit, room,
                                      _pick_styles(rng, town, building, unit, room, safe=True))
            else:
                text = f"北京市大兴区{town}{road}{number}号{building}号楼{unit}单元{room}室"
        elif rng.random() < _POPULATION_VARIANT_SHARE:
            text = render_address(town, road, number, building,
                                  styles=_pick_styles(rng, town, building, None, None, safe=True))
        elif building:
            text = f"北京市大兴区{town}{road}{number}号{building}号楼"
        else:
            text = f"北京市大兴区{town}{road}{number}号"
        recent = self._recent
        if text not in recent:
            recent[text] = i
            order = self._recent_order
            order.append(text)
            if len(order) > _RECENT:
                del recent[order.popleft()]
        return text

    def _missing_number(self, rng: random.Random, i: int) -> tuple[int, int | None]:
        """(number, building) near plate ``i`` that is not in the book: a building the compound does
        not have, a gap in the numbers or a number past the end of the road."""
        e = self.entry(i)
        place = self.places[self._place_of[i]]
        town = self._town_of[i]
        while True:
            if e.building and rng.random() < 0.6:
                number = e.number
                building = self._compound_size[(self._place_of[i], e.number)] + 1 + rng.randrange(3)
            else:
                number = rng.randint(1, place.max_number + 30)
                building = None
            if address_key(self.towns[town], e.road, number, building) not in self._index:
                return number, building

    def unmatched(self, rng: random.Random, i: int | None = None) -> tuple[str, str, int, int | None, float, float]:
        """An address that is no standard address, on a real road or village of the book:
        (town, road, number, building, true lon, true lat) inside the town."""
        i = self.random_index(rng) if i is None else i
        number, building = self._missing_number(rng, i)
        e = self.entry(i)
        place = self.places[self._place_of[i]]
        if building:
            lon, lat = self._toward(place.town, e.lon, e.lat,
                                    e.lon + rng.uniform(-60, 60) / _M_PER_DEG_LON,
                                    e.lat + rng.uniform(-60, 60) / _M_PER_DEG_LAT)
        else:
            lon, lat = self._place_point(rng, place, number)
        return e.town, e.road, number, building, lon, lat

    def true_point(self, town: str, road: str, number: int) -> tuple[float, float]:
        """A plausible point for any number of a known road/village (used for unmatched texts)."""
        pi = self._places_by_town[self._town_index[town]][road]
        return self._place_point(random.Random(f"{town}|{road}|{number}"), self.places[pi], number)

    def parse(self, text: str | None) -> tuple[str, str, int, int | None, int | None, int | None] | None:
        """(town, road, number, building, unit, room) of a text in any form this module writes,
        whether or not it is a standard address; None when it is not such a text."""
        if not text:
            return None
        s = text.translate(_HALF)
        if s.startswith("北京市"):
            s = s[3:]
        elif s.startswith("北京"):
            s = s[2:]
        if s.startswith("大兴区") or s.startswith("大兴县"):
            s = s[3:]
        m = self._town_re.match(s)
        if m is None:
            return None
        town = self._town_alias[m.group(0)]
        s = s[m.end():]
        m = self._place_re[self._town_index[town]].match(s)
        if m is None:
            return None
        road = m.group(0)
        t = _TAIL.fullmatch(s, m.end())
        if t is None:
            return None
        number = _from_cn(t.group("n"))
        if t.group("db"):
            building, unit, room = int(t.group("db")), int(t.group("du")), int(t.group("dr"))
        else:
            building = _from_cn(t.group("b")) if t.group("b") else None
            unit = int(t.group("u")) if t.group("u") else None
            room = int(t.group("r")) if t.group("r") else None
        if number is None or (t.group("b") and building is None):
            return None
        return town, road, number, building, unit, room

    def key_of(self, text: str | None) -> str | None:
        """The door key of the standard address ``text`` denotes, None when it denotes none."""
        parsed = self.parse(text)
        if parsed is None:
            return None
        key = address_key(*parsed[:4])
        return key if key in self._index else None

    def index_of(self, text: str | None) -> int:
        """Book index of the address ``text`` denotes, -1 when none."""
        i = self._recent.get(text)
        if i is not None:
            return i
        m = _CANONICAL.fullmatch(text) if text else None
        if m is not None:
            b = m.group("b")
            i = self._by_parts.get((m.group("t"), m.group("p"), int(m.group("n")), int(b) if b else 0))
            if i is not None:  # the text is the canonical form of plate i (and a unit/room)
                return i
        key = self.key_of(text)
        return -1 if key is None else self._index[key]


# ------------------------------------------------------------------ links of the other sources

class AddressLinks:
    """Collects ``(record_key, address_key)`` of every population / legal-entity row with an address
    as the rows are written (``hook``), compactly (record ids are 2 letters + digits and strictly
    increase within a file)."""

    def __init__(self, book: AddressBook) -> None:
        self.book = book
        self._rows: dict[str, tuple[list[str], array, array]] = {}

    def hook(self, source: str, columns: Sequence[str]) -> Callable[[Sequence[str]], None] | None:
        """A callback for the rows of ``source`` (record key first); None if it has no address."""
        if "address" not in columns:
            return None
        pos = columns.index("address")
        prefix: list[str] = []
        ids, idx = array("q"), array("l")
        self._rows[source] = (prefix, ids, idx)
        index_of = self.book.index_of

        def on_row(row: Sequence[str]) -> None:
            text = row[pos]
            if not text:
                return
            record_id = row[0]
            if not prefix:
                prefix.append(record_id[:2])
            number = int(record_id[2:])
            if record_id[:2] != prefix[0] or (ids and number <= ids[-1]):
                raise ValueError(f"{source}: record ids must be {prefix[0]} + digits in increasing "
                                 f"order, got {record_id!r}")
            ids.append(number)
            idx.append(index_of(text))
        return on_row

    def sources(self) -> list[str]:
        return sorted(self._rows)

    def rows(self, source: str) -> Iterable[tuple[str, str]]:
        """(record_key, address_key) in record-key order."""
        prefix, ids, idx = self._rows[source]
        keys = self.book.keys
        width = 9
        for number, i in zip(ids, idx):
            yield f"{prefix[0]}{number:0{width}d}", keys[i] if i >= 0 else ""


class RegisteredAddresses:
    """A sample of the market register's entities (credit code, town, address) for ``samr_geocoded``:
    each is kept with the share that gives ~25 K rows at scale 1.0, with its own random stream."""

    def __init__(self, seed: int, share: float = BASE_GEOCODED / _SAMR_AT_SCALE_1) -> None:
        self._rng = random.Random(f"lake.generate_spatial/registered/{seed}")
        self._share = share
        self.rows: list[tuple[str, str, str]] = []

    def add(self, credit_code: str, town: str, address: str) -> None:
        if self._rng.random() < self._share:
            self.rows.append((credit_code, town, address))


def _synthetic_entities(book: AddressBook, rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """``n`` enterprises (valid distinct credit codes, 91/92/93 + 110115) with registered addresses."""
    out = []
    offset = rng.randrange(10**8)
    for k in range(n):
        body = f"{(k * 5_483_521 + offset) % 10**8:08d}"
        check = 11 - sum(int(c) * w for c, w in zip(body, _ORG_CODE_WEIGHTS)) % 11
        org = body + {10: "X", 11: "0"}.get(check, str(check))
        u = rng.random()
        code = make_uscc("9", "1" if u < 0.89 else "2" if u < 0.99 else "3", "110115", org)
        town = book._town_pick(rng)
        out.append((code, town, book.residence(rng, town, entity=True)))
    return out


# ------------------------------------------------------------------ files

class _File:
    """A spatial source file being written (CSV with header or JSON lines) and its manifest entry."""

    def __init__(self, out: Path, source: str, stamp: str) -> None:
        self.source = source
        self.format = SPATIAL_FORMATS[source]
        self.encoding = SPATIAL_ENCODINGS[source]
        self.columns = SPATIAL_COLUMNS[source]
        self.relpath = f"{source}/{source}_{stamp}.{self.format}"
        self.path = out / self.relpath
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("w", encoding=self.encoding, newline="")
        self.rows = 0
        if self.format == "csv":
            terminator = "\r\n" if self.encoding == "gbk" else "\n"
            self._csv = csv.writer(self._fh, quoting=csv.QUOTE_MINIMAL, lineterminator=terminator)
            self._csv.writerow(self.columns)

    def write(self, row: Sequence) -> None:
        if self.format == "csv":
            self._csv.writerow(row)
        else:
            self._fh.write(json.dumps({c: (None if v == "" else v) for c, v in zip(self.columns, row)},
                                      ensure_ascii=False) + "\n")
        self.rows += 1

    def write_text(self, text: str, rows: int) -> None:
        self._fh.write(text)
        self.rows += rows

    def close(self) -> dict:
        self._fh.close()
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"source": self.source, "path": self.relpath, "encoding": self.encoding,
                "format": self.format, "rows": self.rows, "sha256": digest}


class _Row(NamedTuple):
    values: list  # without coordinates: filled in when the source is written
    lon: float  # the point as the department has it, in WGS-84 (converted when written)
    lat: float
    crs: str
    town_code: str  # truth: "" outside the district
    address_key: str  # truth: "" for no standard address
    defect: str | None


class _Writer:
    """Collects a source's rows, injects its defects and writes the file and the truth rows."""

    def __init__(self, out: Path, source: str, stamp: str, rng: random.Random, book: AddressBook,
                 outside: Callable[[], tuple[float, float]]) -> None:
        self.source = source
        self.out, self.stamp, self.rng, self.book = out, stamp, rng, book
        self.outside = outside
        self.rows: list[_Row] = []
        self._ids = _RecordIds(rng, _RECORD_PREFIX[source])

    def add(self, values: list, lon: float, lat: float, town: str, key: str, crs: str | None = None,
            address: str = "") -> None:
        """A row whose true point is (lon, lat) in ``town`` and whose ``address`` text denotes the
        standard address ``key`` ("": none); jitter and defects are added here. A row carries at
        most one defect: address_unmatched (an address that denotes no standard address) or
        point_outside_district."""
        rng = self.rng
        defect = None
        if address and not key:
            defect = "address_unmatched"
        if defect is None and rng.random() < SPATIAL_DEFECT_RATES["point_outside_district"]:
            defect = "point_outside_district"
            lon, lat = self.outside()
            town_code = ""
        else:
            r, a = _JITTER_M[self.source] * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            lon += r * math.cos(a) / _M_PER_DEG_LON
            lat += r * math.sin(a) / _M_PER_DEG_LAT
            town_code = self.book.town_code(town)
        self.rows.append(_Row(values, lon, lat, crs or _CRS[self.source], town_code, key, defect))

    def write(self) -> tuple[dict, list, list, list]:
        """(manifest entry, defect truth rows, location rows, address-link rows)."""
        rng, source = self.rng, self.source
        rows = self.rows
        xs, ys = np.array([r.lon for r in rows]), np.array([r.lat for r in rows])
        crs = [r.crs for r in rows]
        cx, cy = geo.from_wgs84(xs, ys, crs if source == POI else crs[0] if crs else "WGS84")
        f = _File(self.out, source, self.stamp)
        lon_pos = f.columns.index("lon")
        defects, locations, links = [], [], []
        pending: list[tuple[int, int, list]] = []
        seq = 0
        for k, row in enumerate(rows):
            while pending and pending[0][0] <= k:
                _, _, copy = heapq.heappop(pending)
                self._write_duplicate(f, copy, defects, locations, links)
            record_key = self._ids()
            lon, lat = round(float(cx[k]), 6), round(float(cy[k]), 6)
            coords = [f"{lon:.6f}", f"{lat:.6f}"] if f.format == "csv" else [lon, lat]
            values = [record_key, *row.values[:lon_pos - 1], *coords, *row.values[lon_pos - 1:]]
            if source == POI:
                values[-1] = row.crs
            if row.defect:
                defects.append((source, record_key, SPATIAL_DEFECT_FIELDS[source][row.defect], row.defect))
            elif row.address_key and rng.random() < SPATIAL_DEFECT_RATES["duplicate_record"]:
                seq += 1
                heapq.heappush(pending, (k + 1 + rng.randrange(_DUPLICATE_WINDOW), seq,
                                         (list(values), row)))
            f.write(values)
            locations.append((source, record_key, row.town_code))
            links.append((source, record_key, row.address_key))
        while pending:
            _, _, copy = heapq.heappop(pending)
            self._write_duplicate(f, copy, defects, locations, links)
        return f.close(), defects, locations, links

    def _write_duplicate(self, f: _File, copy: tuple[list, _Row], defects: list, locations: list,
                         links: list) -> None:
        """The later copy of a clean row: the same record (same key) again; in samr_geocoded a new
        geocode_id for the same entity (credit code), as in the population sources."""
        values, row = copy
        source = self.source
        if source == GEOCODED:
            values = [self._ids(), *values[1:]]
            locations.append((source, values[0], row.town_code))
            links.append((source, values[0], row.address_key))
        f.write(values)
        defects.append((source, values[0], SPATIAL_DEFECT_FIELDS[source]["duplicate_record"],
                        "duplicate_record"))


def _outside_sampler(rng: random.Random) -> Callable[[], tuple[float, float]]:
    """Points 0.4-12 km outside the district's outline (a neighbouring district or beyond)."""
    outline = basemap.district_outline()
    near = outline.buffer(0.005)
    shapely.prepare(near)
    x0, y0, x1, y1 = geo.EXTENT

    def sample() -> tuple[float, float]:
        while True:
            x, y = rng.uniform(x0 - 0.12, x1 + 0.12), rng.uniform(y0 - 0.10, y1 + 0.10)
            if not shapely.contains_xy(near, x, y):
                return x, y
    return sample


def _iso(day: datetime.date) -> str:
    return day.isoformat()


def _trade(rng: random.Random) -> str:
    return "".join(rng.sample(_TRADE_NAME_CHARS, 2 if rng.random() < 0.7 else 3))


def _styles(rng: random.Random, source: str, town: str, building: int | None, unit: int | None = None,
            room: int | None = None) -> tuple[str, ...]:
    if rng.random() < _VARIANT_SHARE[source]:
        return _pick_styles(rng, town, building, unit, room)
    return ()


# ------------------------------------------------------------------ the generator

def generate_spatial(scale: float, seed: int, out: Path,
                     extract_date: datetime.date = DEFAULT_EXTRACT_DATE, *,
                     book: AddressBook | None = None,
                     entities: Sequence[tuple[str, str, str]] | None = None,
                     links: AddressLinks | None = None,
                     defects: list | None = None) -> dict:
    """Write the five spatial sources and ``truth/locations.csv`` / ``truth/address_links.csv``.

    ``book`` defaults to ``AddressBook(seed, scale)``; ``entities`` are the registered addresses
    ``(credit_code, town, address)`` to geocode (default: ~25 K × scale synthetic enterprises);
    ``links`` adds the address links of the population / legal-entity rows to
    ``address_links.csv``. The spatial defect rows ``(source, record_key, field, defect_type)`` are
    appended to ``defects`` when given (``sample.generate`` writes them with its own), else written to
    ``truth/defects.csv``. Returns ``{"files": [manifest entries], "defects": n, "rows": {source: n}}``.
    """
    if not scale > 0:
        raise ValueError("scale must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = extract_date.strftime("%Y%m%d")
    book = book if book is not None else AddressBook(seed, scale)
    streams = {name: random.Random(f"lake.generate_spatial/{name}/{seed}/{scale!r}")
               for name in (*POINT_SOURCES, "entities", "outside")}
    if entities is None:
        entities = _synthetic_entities(book, streams["entities"],
                                       max(round(BASE_GEOCODED * scale), MIN_GEOCODED))
    outside = _outside_sampler(streams["outside"])
    files = [_write_boundaries(out, stamp, book)]
    truth_defects: list = []
    locations: list = []
    spatial_links: list = []
    writers = (_doorplates(out, stamp, streams[DOORPLATES], book, outside, extract_date),
               _buildings(out, stamp, streams[BUILDINGS], book, outside, extract_date),
               _geocoded(out, stamp, streams[GEOCODED], book, outside, extract_date, entities),
               _pois(out, stamp, streams[POI], book, outside, extract_date, scale))
    for writer in writers:
        entry, d, loc, lk = writer.write()
        files.append(entry)
        truth_defects += d
        locations += loc
        spatial_links += lk
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    _write_truth(truth / "locations.csv", ("source", "record_key", "town_code"), _unique(locations))
    _write_links(truth / "address_links.csv", _unique(spatial_links), links)
    if defects is not None:
        defects.extend(truth_defects)
    else:
        _write_truth(truth / "defects.csv", ("source", "record_key", "field", "defect_type"),
                     sorted(truth_defects))
    return {"files": files, "defects": len(truth_defects),
            "rows": {e["source"]: e["rows"] for e in files}}


def _unique(rows: list[tuple]) -> list[tuple]:
    """Sorted by (source, record_key), one row per record key (a duplicate repeats its original)."""
    seen: dict[tuple[str, str], tuple] = {}
    for r in rows:
        seen.setdefault((r[0], r[1]), r)
    return [seen[k] for k in sorted(seen)]


def _write_truth(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _write_links(path: Path, spatial: list[tuple], links: AddressLinks | None) -> None:
    """Spatial links and the collected population / legal-entity links, in (source, record_key) order."""
    by_source: dict[str, Iterable[tuple[str, str]]] = {}
    for source, group in itertools.groupby(spatial, key=lambda r: r[0]):
        by_source[source] = [(r[1], r[2]) for r in group]
    if links is not None:
        for source in links.sources():
            if source in by_source:
                raise ValueError(f"{source}: address links from two writers")
            by_source[source] = links.rows(source)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        w.writerow(("source", "record_key", "address_key"))
        for source in sorted(by_source):
            w.writerows((source, key, address) for key, address in by_source[source])


def _write_boundaries(out: Path, stamp: str, book: AddressBook) -> dict:
    f = _File(out, BOUNDARIES, stamp)
    collection = geo.boundaries_geojson(book.boundaries)
    f.write_text(json.dumps(collection, ensure_ascii=False) + "\n", len(collection["features"]))
    return f.close()


def _date_between(rng: random.Random, first: datetime.date, last: datetime.date) -> datetime.date:
    return first + datetime.timedelta(days=rng.randrange((last - first).days + 1))


def _doorplates(out, stamp, rng, book: AddressBook, outside, extract_date) -> _Writer:
    """One row per door plate (the police keep the standard library)."""
    w = _Writer(out, DOORPLATES, stamp, rng, book, outside)
    first, last = datetime.date(1995, 1, 1), extract_date - datetime.timedelta(days=1)
    for e in book:
        text = render_address(e.town, e.road, e.number, e.building,
                              styles=_styles(rng, DOORPLATES, e.town, e.building))
        w.add([text, e.town, e.road, str(e.number), str(e.building or ""),
               _iso(_date_between(rng, first, last))], e.lon, e.lat, e.town, e.key, address=text)
    return w


def _buildings(out, stamp, rng, book: AddressBook, outside, extract_date) -> _Writer:
    """~98% of the buildings, a project per compound; ~1% of rows name a building the book lacks."""
    w = _Writer(out, BUILDINGS, stamp, rng, book, outside)
    compound: tuple | None = None
    project = ""
    floors_typ, year = 6, 2000
    floors = _Weighted(_FLOORS)
    for i in book.buildings():
        e = book.entry(i)
        if (e.town, e.road, e.number) != compound:
            compound = (e.town, e.road, e.number)
            stem = rng.choice(_ROAD_STEMS)
            project = f"{stem}{rng.choice(_PROJECT_SUFFIXES)}"
            if rng.random() < 0.3:
                project += f"{rng.randint(1, 4)}期"
            floors_typ = floors(rng)
            year = rng.randint(1985, extract_date.year - 1)
        if rng.random() >= _BUILDING_COVERAGE:
            continue
        n_floors = max(2, floors_typ + rng.choice((0, 0, 0, -1, 1, 2)))
        if rng.random() < UNMATCHED_SHARE:
            town, road, number, building, lon, lat = book.unmatched(rng, i)
            key = ""
        else:
            town, road, number, building, lon, lat, key = e.town, e.road, e.number, e.building, e.lon, e.lat, e.key
        text = render_address(town, road, number, building, styles=_styles(rng, BUILDINGS, town, building))
        w.add([project, text, town, str(n_floors), str(year)], lon, lat, town, key, address=text)
    return w


def _geocoded(out, stamp, rng, book: AddressBook, outside, extract_date,
              entities: Sequence[tuple[str, str, str]]) -> _Writer:
    """The registered address of each sampled entity, at the address's point: the text as the
    register has it or re-written in a variant; ~1% with a door number or building that does not
    exist (a typing error of the geocoding clerk; the point is still the real one)."""
    w = _Writer(out, GEOCODED, stamp, rng, book, outside)
    first, last = extract_date - datetime.timedelta(days=730), extract_date - datetime.timedelta(days=1)
    for code, town, address in entities:
        parsed = book.parse(address)
        if parsed is None:
            raise ValueError(f"registered address {address!r} is not an address of the book's form")
        p_town, road, number, building, unit, room = parsed
        key = address_key(p_town, road, number, building)
        i = book.index(key)
        if i is None:  # not a standard address in the register already
            key = ""
            lon, lat = book.true_point(p_town, road, number)
        else:
            lon, lat = book._lon[i], book._lat[i]
        styles = _styles(rng, GEOCODED, p_town, building, unit, room)
        text = render_address(p_town, road, number, building, unit, room, styles) if styles else address
        if i is not None and rng.random() < UNMATCHED_SHARE:
            number, wrong_building = book._missing_number(rng, i)
            if wrong_building != building:
                unit = room = None
            text = render_address(p_town, road, number, wrong_building, unit, room, styles)
            key = ""
        w.add([code, text, _iso(_date_between(rng, first, last))], lon, lat, p_town, key, address=text)
    return w


def _pois(out, stamp, rng, book: AddressBook, outside, extract_date, scale: float) -> _Writer:
    """POIs of the 24 classes at (next to) a door plate, each in its own coordinate system."""
    w = _Writer(out, POI, stamp, rng, book, outside)
    category = _Weighted((c, _POI_CLASSES[c][0]) for c in POI_CATEGORIES)
    crs = _Weighted(_POI_CRS)
    n = max(round(BASE_POIS * scale), MIN_POIS)
    for k in range(n):
        cat = POI_CATEGORIES[k] if k < len(POI_CATEGORIES) else category(rng)  # every class occurs
        _, no_address, templates = _POI_CLASSES[cat]
        i = book.random_index(rng)
        e = book.entry(i)
        name = rng.choice(templates).format(
            trade=_trade(rng), stem=rng.choice(_ROAD_STEMS), place=e.road,
            town=e.town[:-2] if e.town.endswith("街道") else e.town[:-1])
        if rng.random() < no_address:
            text, key, lon, lat = "", "", e.lon, e.lat
        elif rng.random() < UNMATCHED_SHARE:
            town, road, number, building, lon, lat = book.unmatched(rng, i)
            text = render_address(town, road, number, building, styles=_styles(rng, POI, town, building))
            key = ""
        else:
            text = render_address(e.town, e.road, e.number, e.building,
                                  styles=_styles(rng, POI, e.town, e.building))
            key, lon, lat = e.key, e.lon, e.lat
        w.add([name, cat, text, ""], lon, lat, e.town, key, crs(rng), address=text)
    return w
