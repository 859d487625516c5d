"""Deterministic synthetic department extracts for the Daxing data lake.

The real department extracts contain personal data and cannot leave the
district network, so the pipeline is developed and tested against synthetic
files that look like them: same columns, formats and encodings
(``contracts/sources/*.yaml``), plausible Chinese names, addresses, identity
numbers and credit codes, and overlapping populations so that records can be
linked across departments.

Population (one pass over the people of the household register):

* ``psb_household`` (公安户籍, CSV GB18030): one row per registered person;
  ``register_status`` 正常, 死亡 (died in the last year) or 迁出 (moved out).
* ``mca_residents`` (民政, CSV UTF-8 with BOM): about 30% of those people plus
  about 3% of rows for people the police register does not know; dead people
  carry their ``death_date`` in about 60% of cases.
* ``hrss_insured`` (人社, CSV GB18030): about 45% of the living people aged 16+
  plus about 8% of rows for insured people without a Daxing household
  registration; employees carry a market entity's credit code.
* ``nhc_vital_events`` (卫健, JSON lines UTF-8): a 出生 event for about 90% of
  the people born in the year before the extract date (about 40% of them
  without an ID number yet) and a 死亡 event for every person who died.

Legal entities (one pass per register):

* ``samr_enterprises`` (市场监管, CSV UTF-8): about 90% of the entities (credit
  codes 91/92/93); a 注销/吊销 entity has its deregistration date, from its establishment
  to the extract date.
* ``mca_social_orgs`` (民政社会组织, CSV UTF-8 with BOM): about 3% (51/52/53).
* ``seo_institutions`` (编办事业单位, JSON lines UTF-8): about 7% (12).
* ``tax_taxpayers`` (税务, CSV GB18030): about 80% / 50% / 30% of the entities
  of those registers plus about 2% of rows for entities no register knows.
  A taxpayer whose register says 注销/吊销/撤销 is 注销 or 非正常 in tax.

Addresses: every person and legal entity lives at a standard address (door plate) of the
district's address book (``sample.generate_spatial.AddressBook``), written canonically or, for about
10%, the way departments write it (Chinese numerals, ``3#``, ``3-2-501``, spaces); the same text in
every source.  The spatial sources (boundaries, door plates, buildings, geocoded register addresses,
POIs) are written from the same book after the population, with their own truth files
(``truth/locations.csv``, ``truth/address_links.csv``; see ``sample.generate_spatial``).

A known share of rows carries exactly one injected defect (``DEFECT_RATES``,
vocabulary in ``docs/defects.md``); each is one row of ``truth/defects.csv``.
Rows without an ID number (``missing_id``) are listed with the true ID number
of the person they describe in ``truth/links.csv``.  Apart from the recorded
defects the sources agree: copies of a person carry the register's name,
town and address, gender and birth date always agree with the ID number,
and the cross-source defects are only injected where the authoritative row
(psb for people, the register for entities) is itself clean, so that every
difference a detector can see is a recorded one.  The one unrecorded
variation is the legal-form spelling of taxpayer names (有限公司 vs
有限责任公司), which real extracts have and the vocabulary excludes.

Every identity number that is not a recorded defect passes
``stdnum.cn.ric.validate``: its region code was a county code in the
person's birth year (Daxing is 110204 before 1982, 110224 until 2000 and
110115 since 2001).

Output is a pure function of ``(scale, seed, extract_date)``: one
``random.Random(seed)`` drives the department extracts (the address book and the
spatial files use streams seeded with strings derived from the seed), nothing
reads the clock or Faker's global state, so the same arguments give
byte-identical files.  Rows are
streamed to disk; memory stays bounded (a fixed-size table of used identity
number sequences, the credit codes of active enterprises for employers, a
small window of pending duplicate rows, the truth lists and, for the address links, 12 bytes
per row with an address).
"""

from __future__ import annotations

import bisect
import csv
import datetime
import hashlib
import heapq
import itertools
import json
import random
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple


from lake.reference import DISTRICT, LEGAL_ENTITY
from sample.common import (  # noqa: F401 (re-exported: tests and callers read them here)
    _ORG_CODE_WEIGHTS, _ROADS, _TOWN_WEIGHTS, _TRADE_NAME_CHARS, _VILLAGES, DAXING_TOWNS, DEFAULT_EXTRACT_DATE,
    _Names, _RecordIds, _Weighted, _weighted_items,
)
from sample.identifiers import USCC_ALPHABET, cn_id_check_char, make_uscc, to_fullwidth, uscc_check_char

__all__ = [
    "BASE_ENTERPRISES",
    "BASE_ENTITIES",
    "BASE_PEOPLE",
    "COLUMNS",
    "DAXING_TOWNS",
    "DEFAULT_EXTRACT_DATE",
    "DEFECT_FIELDS",
    "DEFECT_RATES",
    "ENCODINGS",
    "FORMATS",
    "SOURCES",
    "generate",
]

BASE_PEOPLE = 1_810_000  # registered population of Daxing at scale 1.0
BASE_ENTITIES = 144_000  # registered legal entities (all registers) at scale 1.0
BASE_ENTERPRISES = BASE_ENTITIES  # former name

PSB, MCA, HRSS, NHC = "psb_household", "mca_residents", "hrss_insured", "nhc_vital_events"
SAMR, SOC, SEO, TAX = "samr_enterprises", "mca_social_orgs", "seo_institutions", "tax_taxpayers"
SOURCES = (PSB, MCA, HRSS, NHC, SAMR, SOC, SEO, TAX)

ENCODINGS = {PSB: "gb18030", MCA: "utf-8-sig", HRSS: "gb18030", NHC: "utf-8",
             SAMR: "utf-8", SOC: "utf-8-sig", SEO: "utf-8", TAX: "gb18030"}
FORMATS = {source: "jsonl" if source in (NHC, SEO) else "csv" for source in SOURCES}

COLUMNS = {
    PSB: ("record_id", "name", "id_number", "gender", "birth_date", "ethnicity",
          "phone", "town", "address", "registered_date", "register_status"),
    MCA: ("record_id", "id_number", "name", "gender", "birth_date", "marital_status",
          "subsistence_allowance", "death_date", "phone", "town", "address"),
    HRSS: ("record_id", "id_number", "name", "gender", "birth_date", "employment_status",
           "insurance_types", "employer_credit_code", "phone", "address"),
    NHC: ("record_id", "event_type", "id_number", "name", "gender", "birth_date", "event_date",
          "institution", "town"),
    SAMR: ("record_id", "credit_code", "name", "legal_rep", "industry", "registered_capital",
           "established_date", "status", "town", "address", "phone", "deregistered_date"),
    SOC: ("record_id", "credit_code", "name", "org_type", "legal_rep", "registered_date",
          "status", "town", "address", "phone"),
    SEO: ("record_id", "credit_code", "name", "legal_rep", "sponsor", "funding_type", "status",
          "town", "address"),
    TAX: ("record_id", "credit_code", "taxpayer_name", "tax_status", "taxpayer_type",
          "tax_authority", "phone"),
}

_RECORD_PREFIX = {PSB: "HJ", MCA: "MZ", HRSS: "SB", NHC: "WJ",
                  SAMR: "SC", SOC: "ST", SEO: "SY", TAX: "SW"}

# Per-row probability of each defect among the rows *eligible* for it; a row
# gets at most one.  Most defects are eligible everywhere; the exceptions:
# phone_format needs a phone; name_mismatch, address_mismatch and missing_id
# (mca, hrss) need a person whose psb row is clean (nhc births may lack the ID
# whatever psb says); death_not_propagated applies to the psb rows of people
# who died; id_name_conflict to living adults in psb and to hrss rows of people
# not in psb; tax name_mismatch to entities whose register row is clean and
# deregistered_active_in_tax to those that are deregistered as well; the
# deregistration-date defects of 市场监管 to its deregistered rows (missing, before
# establishment, after the extract date) or its active rows (a date on an active
# entity).  Rows of a
# person whose psb row carries death_not_propagated get no defect.
DEFECT_RATES: dict[str, tuple[tuple[str, float], ...]] = {
    PSB: (("malformed_row", 0.001), ("missing_value", 0.0015), ("whitespace", 0.002),
          ("duplicate_record", 0.003), ("id_checksum", 0.002), ("id_format", 0.001),
          ("id_region_unknown", 0.0007), ("fullwidth", 0.0015), ("phone_format", 0.002),
          ("invalid_date", 0.001), ("invalid_value", 0.001), ("id_birth_mismatch", 0.0015),
          ("id_gender_mismatch", 0.0015), ("id_name_conflict", 0.0007),
          ("death_not_propagated", 0.12)),
    MCA: (("malformed_row", 0.001), ("missing_value", 0.0015), ("whitespace", 0.002),
          ("duplicate_record", 0.003), ("id_checksum", 0.002), ("id_format", 0.001),
          ("fullwidth", 0.0015), ("phone_format", 0.002), ("id_birth_mismatch", 0.0015),
          ("id_gender_mismatch", 0.0015), ("name_mismatch", 0.003), ("address_mismatch", 0.003),
          ("missing_id", 0.01)),
    HRSS: (("malformed_row", 0.001), ("missing_value", 0.0015), ("whitespace", 0.002),
           ("duplicate_record", 0.003), ("id_checksum", 0.002), ("id_format", 0.001),
           ("id_region_unknown", 0.0007), ("fullwidth", 0.0015), ("phone_format", 0.002),
           ("id_birth_mismatch", 0.0015), ("id_gender_mismatch", 0.0015),
           ("name_mismatch", 0.003), ("address_mismatch", 0.003), ("missing_id", 0.01),
           ("id_name_conflict", 0.03)),
    NHC: (("missing_id", 0.40), ("malformed_row", 0.006), ("missing_value", 0.006),
          ("whitespace", 0.008), ("duplicate_record", 0.008), ("id_checksum", 0.008),
          ("id_format", 0.006), ("fullwidth", 0.008), ("id_birth_mismatch", 0.008),
          ("name_mismatch", 0.015)),
    SAMR: (("malformed_row", 0.002), ("missing_value", 0.002), ("whitespace", 0.003),
           ("duplicate_record", 0.003), ("credit_code_checksum", 0.005),
           ("credit_code_authority", 0.009), ("fullwidth", 0.003), ("phone_format", 0.004),
           ("invalid_date", 0.002), ("invalid_value", 0.002),
           ("deregistration_date_missing", 0.05), ("deregistration_before_establishment", 0.03),
           ("deregistration_date_future", 0.03), ("deregistration_date_on_active", 0.005)),
    SOC: (("malformed_row", 0.005), ("missing_value", 0.005), ("whitespace", 0.008),
          ("duplicate_record", 0.008), ("credit_code_checksum", 0.008),
          ("credit_code_authority", 0.01), ("fullwidth", 0.008), ("phone_format", 0.008)),
    SEO: (("malformed_row", 0.005), ("missing_value", 0.005), ("whitespace", 0.008),
          ("duplicate_record", 0.008), ("credit_code_checksum", 0.008), ("fullwidth", 0.008)),
    TAX: (("malformed_row", 0.002), ("missing_value", 0.002), ("whitespace", 0.003),
          ("duplicate_record", 0.003), ("credit_code_checksum", 0.005), ("fullwidth", 0.003),
          ("phone_format", 0.004), ("name_mismatch", 0.01),
          ("deregistered_active_in_tax", 0.12)),
}

# Defects that only some rows are eligible for (decided by the writer, see above).
_DEREGISTRATION_DEFECTS = ("deregistration_date_missing", "deregistration_before_establishment",
                           "deregistration_date_future")  # on a deregistered row; on an active one:
_DATE_ON_ACTIVE = "deregistration_date_on_active"
_CONTEXTUAL = frozenset({"name_mismatch", "address_mismatch", "missing_id", "death_not_propagated",
                         "deregistered_active_in_tax", "id_name_conflict", *_DEREGISTRATION_DEFECTS,
                         _DATE_ON_ACTIVE})
# Defects written as a later copy of a clean row (the truth names the copy).
_DELAYED = frozenset({"duplicate_record", "id_name_conflict"})


def _person_fields(name_col: str = "name", extra: Mapping[str, str] | None = None) -> dict[str, str]:
    fields = {"malformed_row": "_row", "missing_value": name_col, "whitespace": name_col,
              "duplicate_record": "id_number", "id_checksum": "id_number", "id_format": "id_number",
              "id_region_unknown": "id_number", "fullwidth": ("id_number", "phone"),
              "phone_format": "phone", "id_birth_mismatch": "birth_date",
              "id_gender_mismatch": "gender", "id_name_conflict": "name", "name_mismatch": "name",
              "address_mismatch": "address", "missing_id": "id_number"}
    fields.update(extra or {})
    return fields


def _entity_fields(name_col: str = "name", extra: Mapping[str, str] | None = None) -> dict[str, str]:
    fields = {"malformed_row": "_row", "missing_value": name_col, "whitespace": name_col,
              "duplicate_record": "credit_code", "credit_code_checksum": "credit_code",
              "credit_code_authority": "credit_code", "fullwidth": ("credit_code", "phone"),
              "phone_format": "phone", "name_mismatch": name_col}
    fields.update(extra or {})
    return fields


# The field named in the truth file for each (source, defect); a tuple lists the
# columns the defect may hit (the truth names the one it did hit).
DEFECT_FIELDS: dict[str, dict[str, str | tuple[str, ...]]] = {
    source: {defect: fields[defect] for defect, _ in DEFECT_RATES[source]}
    for source, fields in (
        (PSB, _person_fields(extra={"invalid_date": "birth_date", "invalid_value": "gender",
                                    "death_not_propagated": "register_status"})),
        (MCA, _person_fields()),
        (HRSS, _person_fields()),
        (NHC, _person_fields(extra={"fullwidth": ("id_number",)})),
        (SAMR, _entity_fields(extra={"invalid_date": "established_date", "invalid_value": "status",
                                     **{d: "deregistered_date" for d in (*_DEREGISTRATION_DEFECTS, _DATE_ON_ACTIVE)}})),
        (SOC, _entity_fields()),
        (SEO, _entity_fields(extra={"fullwidth": ("credit_code",)})),
        (TAX, _entity_fields("taxpayer_name", {"deregistered_active_in_tax": "tax_status"})),
    )
}

_MCA_COVERAGE = 0.30  # share of psb people known to civil affairs
_MCA_EXTRA_SHARE = 0.03  # share of mca rows for people not in psb
_MCA_DEATH_DATE_SHARE = 0.60  # share of dead people in mca whose death is recorded there
_HRSS_MIN_AGE = 16
_HRSS_COVERAGE = 0.45  # share of living psb people aged 16+ who are insured
_HRSS_EXTRA_SHARE = 0.08  # share of hrss rows for people not in psb
_BIRTH_EVENT_SHARE = 0.90  # share of people born in the last year with a birth event
_MOVED_OUT_SHARE = 0.01
_DEATH_RATE_BY_AGE = ((60, 0.0015), (70, 0.010), (80, 0.025), (200, 0.07))  # (age below, rate)
_LINK_NAME_VARIANT = 0.02  # share of rows without an ID whose name is a variant
_SAMR_SHARE, _SOC_SHARE, _SEO_SHARE = 0.90, 0.03, 0.07  # of all registered entities
_MIN_REGISTER_ROWS = {SAMR: 20, SOC: 10, SEO: 10}
_MIN_PEOPLE = 200
_TAX_COVERAGE = {SAMR: 0.80, SOC: 0.50, SEO: 0.30}
_TAX_EXTRA_SHARE = 0.02  # share of tax rows for entities no register knows
_TAX_NAME_DRIFT = 0.01  # 有限公司 <-> 有限责任公司, not a recorded defect
_DUPLICATE_WINDOW = 50_000  # a duplicate appears up to this many rows later


_DAXING = DISTRICT.code
# Region of the ID number: (weight, eras) with eras = ((last birth year, code), ...), so that
# every code was a county code in the birth year (as stdnum.cn.ric checks).  Daxing was 大兴县
# 110204 until 1982, 110224 from 1982 to 2001 and is 大兴区 110115 since 2001.
_REGIONS: tuple[tuple[float, tuple[tuple[int, str], ...]], ...] = (
    (65.0, ((1981, "110204"), (2000, "110224"), (9999, _DAXING))),
    *((15.0 / 7, ((9999, code),)) for code in
      ("110101", "110102", "110105", "110106", "110107", "110108", "110109")),
    *((20.0 / 10, ((9999, code),)) for code in
      ("120101", "120103", "140121", "210421", "330122", "340121", "510121", "422822",
       "230722", "340621")),
)
DAXING_ID_REGIONS = frozenset(code for _, code in _REGIONS[0][1])
# Two-digit prefixes that have never been a province code: IDs of id_region_unknown.
_UNKNOWN_PROVINCES = ("10", "16", "17", "18", "19", "20", "24", "25", "27", "28", "29", "30", "38",
                      "39", "40", "47", "48", "49", "55", "56", "58", "59", "60", "66", "67", "68",
                      "69", "70", "72", "77", "80", "84", "88", "90", "93", "96", "99")
# (min age, max age exclusive, weight): a Daxing-like pyramid, heavy at 20-60.
_AGE_BANDS = ((0, 10, 9), (10, 20, 8), (20, 30, 13), (30, 40, 18), (40, 50, 15),
              (50, 60, 14), (60, 70, 12), (70, 80, 7), (80, 90, 3), (90, 97, 0.6))
_EARLIEST_BIRTH = datetime.date(1930, 1, 1)
_ETHNICITIES = (("汉族", 95.0), ("回族", 2.0), ("满族", 1.5), ("蒙古族", 0.5), ("朝鲜族", 0.3),
                ("壮族", 0.3), ("土家族", 0.2), ("苗族", 0.1), ("维吾尔族", 0.05), ("藏族", 0.05))
_MARITAL_BY_AGE = (  # (age below, weights)
    (20, (("未婚", 1.0),)),
    (25, (("未婚", 85), ("已婚", 15))),
    (30, (("未婚", 50), ("已婚", 48), ("离异", 2))),
    (40, (("未婚", 10), ("已婚", 85), ("离异", 5))),
    (60, (("未婚", 3), ("已婚", 88), ("离异", 7), ("丧偶", 2))),
    (75, (("未婚", 2), ("已婚", 80), ("离异", 5), ("丧偶", 13))),
    (200, (("未婚", 1), ("已婚", 52), ("离异", 2), ("丧偶", 45))),
)
_MOBILE_PREFIXES = tuple(
    str(p) for p in itertools.chain(range(130, 140), range(150, 160), (166,),
                                    range(170, 179), range(180, 190), (198, 199))
    if p not in (154, 170, 171)
)

_ENTERPRISE_INDUSTRY = (("F", 28), ("M", 14), ("L", 14), ("I", 10), ("C", 8), ("E", 7),
                        ("G", 5), ("K", 3), ("H", 3), ("O", 2), ("R", 2), ("N", 1.2),
                        ("A", 1), ("P", 0.8), ("Q", 0.5), ("J", 0.5), ("D", 0.4),
                        ("B", 0.1), ("S", 0.05), ("T", 0.01))
_INDIVIDUAL_INDUSTRY = (("F", 50), ("H", 25), ("O", 15), ("E", 3), ("G", 3), ("I", 2),
                        ("C", 2))
# Industry letter -> words used in company names and in individual shop names.
_INDUSTRY_WORDS = {
    "A": (("农业科技", "种植专业", "养殖"), ("农资店",)),
    "B": (("矿业",), ()),
    "C": (("机械制造", "食品", "服装", "电子科技", "印刷", "家具"), ("加工部",)),
    "D": (("能源科技", "燃气", "电力工程"), ()),
    "E": (("建筑工程", "装饰工程", "建材"), ("装饰部",)),
    "F": (("商贸", "贸易", "医药", "商业"), ("便利店", "超市", "五金店", "服装店", "水果店")),
    "G": (("物流", "运输", "仓储服务"), ("货运部",)),
    "H": (("餐饮管理", "酒店管理"), ("小吃店", "餐馆", "面馆", "快餐店")),
    "I": (("信息技术", "网络科技", "软件开发", "数据科技"), ("电脑维修部",)),
    "J": (("投资管理", "融资租赁"), ()),
    "K": (("房地产开发", "物业管理", "房地产经纪"), ()),
    "L": (("商务服务", "企业管理咨询", "广告", "人力资源"), ()),
    "M": (("科技", "生物科技", "技术服务", "工程设计"), ()),
    "N": (("环保科技", "园林绿化"), ()),
    "O": (("家政服务", "汽车维修"), ("美发店", "汽车修理部", "洗衣店")),
    "P": (("教育科技", "培训"), ()),
    "Q": (("健康管理", "医疗器械"), ()),
    "R": (("文化传媒", "体育文化", "影视文化"), ()),
    "S": (("社区服务",), ()),
    "T": (("国际交流服务",), ()),
}
_COMPANY_FORMS = (("有限公司", 78), ("有限责任公司", 12), ("中心", 6), ("股份有限公司", 2),
                  ("合伙企业", 2))  # no full-width brackets: clean names have no full-width characters
_ENTERPRISE_STATUS = (("存续", 80), ("在业", 8), ("注销", 8), ("吊销", 4))
_CREDIT_REGIONS = (("110115", 85), ("110100", 9), ("110000", 6))
_ROUND_CAPITALS = (10, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 50000)
_INDIVIDUAL_CAPITALS = (10, 20, 30, 50)
_TAX_OFFICES = tuple(f"国家税务总局北京市大兴区税务局第{n}税务所" for n in "一二三四五")

_COOP_WORDS = ("种植专业合作社", "养殖专业合作社", "农机专业合作社", "果品产销专业合作社")
_SOC_STATUS = (("正常", 85), ("注销", 10), ("撤销", 5))
_SEO_STATUS = (("正常", 93), ("注销", 7))
# org_type -> (credit code type digit, weight, name prefix, name words)
_SOC_TYPES = (
    ("社会团体", "1", 45, "北京市大兴区", ("商会", "餐饮行业协会", "书法家协会", "摄影家协会",
                                   "老年人体育协会", "志愿者协会", "个体劳动者协会")),
    ("民办非企业单位", "2", 50, "北京市大兴区", ("幼儿园", "培训学校", "养老照料中心",
                                      "社会工作服务中心", "康复中心")),
    ("基金会", "3", 5, "北京", ("公益基金会", "慈善基金会", "教育基金会")),
)
# institution kind -> (weight, sponsor, funding weights)
_SEO_KINDS = (
    ("中心小学", 20, "北京市大兴区教育委员会", (("全额拨款", 95), ("差额拨款", 5))),
    ("中学", 12, "北京市大兴区教育委员会", (("全额拨款", 95), ("差额拨款", 5))),
    ("幼儿园", 15, "北京市大兴区教育委员会", (("全额拨款", 60), ("差额拨款", 40))),
    ("社区卫生服务中心", 14, "北京市大兴区卫生健康委员会", (("差额拨款", 90), ("全额拨款", 10))),
    ("文化服务中心", 8, "{town}人民政府", (("全额拨款", 100),)),
    ("农业技术推广站", 6, "北京市大兴区农业农村局", (("全额拨款", 100),)),
    ("社区服务中心", 10, "{town}人民政府", (("全额拨款", 100),)),
    ("检验检测中心", 5, "北京市大兴区市场监督管理局", (("差额拨款", 50), ("自收自支", 50))),
    ("物业管理中心", 5, "北京市大兴区住房和城乡建设委员会", (("自收自支", 100),)),
    ("研究所", 5, "北京市大兴区科学技术委员会", (("差额拨款", 60), ("自收自支", 40))),
)
_BIRTH_INSTITUTIONS = (("北京市大兴区妇幼保健院", 40), ("北京市大兴区人民医院", 30),
                       ("北京市仁和医院", 15), ("北京大学第一医院大兴院区", 15))
_DEATH_INSTITUTIONS = (("北京市大兴区人民医院", 35), ("北京市仁和医院", 20),
                       ("北京市大兴区中西医结合医院", 15), ("北京大学第一医院大兴院区", 15),
                       ("", 15))  # died at home
_INSURANCE_TYPES = ("养老", "医疗", "失业", "工伤", "生育")
_INVALID_VALUES = {"gender": ("未知", "男性", "女性", "1", "2", "M"),
                   "status": ("正常", "营业", "迁出", "停业")}
_ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVWYZ"
# First two characters that are not a GB 32100 authority/type pair (all digits, so that the
# code keeps the format stdnum.cn.uscc expects); see sample.identifiers.USCC_AUTHORITY_TYPES.
_BAD_AUTHORITY_PAIRS = ("00", "01", "02", "09", "94", "95", "96", "97", "98", "54", "55", "56",
                        "57", "22", "23", "28")
_FIRST_SOC_DATE = datetime.date(1996, 1, 1).toordinal()
_LATEST_DATE = DEFAULT_EXTRACT_DATE  # injected birth dates stay in the past
_DEREGISTERED = frozenset(LEGAL_ENTITY.deregistered_statuses)


class _DefectPicker:
    """Draws at most one of the given defects according to their rates."""

    def __init__(self, rates: Sequence[tuple[str, float]]) -> None:
        self._names = [name for name, _ in rates]
        self._cum = list(itertools.accumulate(rate for _, rate in rates))

    def __call__(self, rng: random.Random) -> str | None:
        u = rng.random()
        if u >= self._cum[-1]:
            return None
        return self._names[bisect.bisect_right(self._cum, u)]


class _Person(NamedTuple):
    name: str
    id_number: str
    male: bool
    birth: int  # date ordinal
    ethnicity: str
    phone: str
    town: str
    address: str
    registered: int  # date ordinal

    @property
    def gender(self) -> str:
        return "男" if self.male else "女"


def _iso(ordinal: int) -> str:
    return datetime.date.fromordinal(ordinal).isoformat()


class _Residences:
    """Daxing towns/streets (population weighted) and addresses in them, drawn from the district's
    standard addresses (``sample.generate_spatial.AddressBook``): a door plate of the town, with unit
    and room in a residential building, written canonically or (10%) the way a department writes
    it; a person's or entity's text is drawn once and copied unchanged to every source
    (``entities``: addresses of legal entities, fewer of them with unit and room)."""

    def __init__(self, rng: random.Random, book, entities: bool = False) -> None:
        self._rng = rng
        self._town = _Weighted(zip(DAXING_TOWNS, _TOWN_WEIGHTS))
        self._book = book
        self._entities = entities

    def __call__(self) -> tuple[str, str]:
        town = self._town(self._rng)
        return town, self._book.residence(self._rng, town, self._entities)

    def other(self, address: str) -> tuple[str, str]:
        """A residence whose address differs from ``address`` (a stale one)."""
        while True:
            town, other = self()
            if other != address:
                return town, other


class _Population:
    """Creates people with unique, valid identity numbers.

    Uniqueness is guaranteed without remembering every number: for each
    (region, birth date, sex) cell a 16-bit counter k says how many sequence
    numbers were handed out, and the k-th one is a fixed permutation of the
    499 odd (men) or even (women) sequences 1..998 starting at a per-cell offset.
    A region's code depends only on the birth year, and no two regions share a
    code, so distinct cells give distinct numbers.
    """

    _SEQS_PER_CELL = 499  # prime, so stepping by 7 visits every slot

    def __init__(self, rng: random.Random, extract_date: datetime.date, names: _Names,
                 residences: _Residences) -> None:
        self._rng = rng
        self._names = names
        self._residence = residences
        self.extract_ord = extract_date.toordinal()
        self._first_ord = _EARLIEST_BIRTH.toordinal()
        self._days = self.extract_ord - self._first_ord
        self._region_eras = [eras for _, eras in _REGIONS]
        self._region = _Weighted((i, w) for i, (w, _) in enumerate(_REGIONS))
        self._band = _Weighted(self._age_band_ranges(0, 200))
        self._worker_band = _Weighted(self._age_band_ranges(20, 60))
        self._ethnicity = _Weighted(_ETHNICITIES)
        self._issued = array("H", bytes(2 * len(_REGIONS) * self._days * 2))
        self._salt = rng.randrange(self._SEQS_PER_CELL)

    def _age_band_ranges(self, youngest: int, oldest: int) -> list[tuple[tuple[int, int], float]]:
        """Birth ordinal ranges [lo, hi) per age band, clipped to 1930..extract-1."""
        ranges = []
        for min_age, max_age, weight in _AGE_BANDS:
            if min_age < youngest or max_age > oldest:
                continue
            lo = max(self._first_ord, self.extract_ord - round(max_age * 365.25) + 1)
            hi = min(self.extract_ord, self.extract_ord - round(min_age * 365.25) + 1)
            if lo < hi:
                ranges.append(((lo, hi), weight))
        return ranges

    def _id_number(self, region: int, birth: int, male: bool) -> str | None:
        cell = (region * self._days + birth - self._first_ord) * 2 + male
        k = self._issued[cell]
        if k >= self._SEQS_PER_CELL:
            return None
        self._issued[cell] = k + 1
        slot = (k * 7 + cell * 261 + self._salt) % self._SEQS_PER_CELL + 1
        seq = 2 * slot - 1 if male else 2 * slot
        date = datetime.date.fromordinal(birth)
        code = next(code for last_year, code in self._region_eras[region] if date.year <= last_year)
        first17 = f"{code}{date.year:04d}{date.month:02d}{date.day:02d}{seq:03d}"
        return first17 + cn_id_check_char(first17)

    def age(self, person: _Person) -> int:
        """Completed years at the extract date (approximately)."""
        return int((self.extract_ord - person.birth) / 365.25)

    def new(self, worker: bool = False) -> _Person:
        """A new person; ``worker`` ones are aged 20 to 59."""
        rng = self._rng
        male = rng.random() < 0.51
        band = self._worker_band if worker else self._band
        while True:
            region = self._region(rng)
            lo, hi = band(rng)
            birth = lo + int(rng.random() * (hi - lo))
            id_number = self._id_number(region, birth, male)
            if id_number is not None:
                break
        span = self.extract_ord - birth
        if region == 0 and rng.random() < 0.7:
            registered = birth + 1 + rng.randrange(min(90, span))  # registered at birth
        else:
            registered = birth + 1 + rng.randrange(span)  # moved in later
        town, address = self._residence()
        return _Person(self._names(rng, male), id_number, male, birth, self._ethnicity(rng),
                       _phone(rng, empty=0.10, landline=0.05), town, address, registered)


def _mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(100_000_000):08d}"


def _phone(rng: random.Random, empty: float, landline: float) -> str:
    """A valid phone: empty, a Beijing landline or a mobile number."""
    u = rng.random()
    if u < empty:
        return ""
    if u < empty + landline:
        sep = "-" if rng.random() < 0.7 else ""
        return f"010{sep}{rng.choice('68')}{rng.randrange(10_000_000):07d}"
    return _mobile(rng)


def _corrupt(rng: random.Random, defect: str, field: str, value: str) -> str:
    """Return a defective replacement for ``value`` (the field's valid value)."""
    if defect == "missing_value":
        return ""
    if defect == "whitespace":
        space = " " if rng.random() < 0.6 else "\u3000"
        pos = rng.choice((0, len(value), rng.randint(1, max(1, len(value) - 1))))
        return value[:pos] + space + value[pos:]
    if defect == "fullwidth":
        return to_fullwidth(value)
    if defect == "id_checksum":
        return value[:17] + rng.choice([c for c in "0123456789X" if c != value[17]])
    if defect == "id_format":
        variant = rng.randrange(3)
        pos = rng.randrange(17)
        if variant == 0:
            return value[:pos] + value[pos + 1:]
        if variant == 1:
            return value[:pos] + str(rng.randrange(10)) + value[pos:]
        return value[:pos] + rng.choice(_ID_LETTERS) + value[pos + 1:]
    if defect == "id_region_unknown":
        first17 = rng.choice(_UNKNOWN_PROVINCES) + f"{rng.randrange(10_000):04d}" + value[6:17]
        return first17 + cn_id_check_char(first17)
    if defect == "invalid_date":
        year = int(value[:4])
        choices = [f"{year}-02-30", f"{year}-02-31", f"{year}-04-31", f"{year}-06-31",
                   f"{year}-09-31", f"{year}-11-31", f"{year}-13-{rng.randint(1, 28):02d}",
                   f"{year}-00-{rng.randint(1, 28):02d}"]
        if year % 4 != 0 or (year % 100 == 0 and year % 400 != 0):
            choices.append(f"{year}-02-29")
        return rng.choice(choices)
    if defect == "id_birth_mismatch":  # another real date: a typo in day, month or year
        date = datetime.date.fromisoformat(value)
        while True:
            shift = rng.choice((rng.randint(1, 30), 365 * rng.randint(1, 10) + rng.randint(0, 3)))
            other = date + datetime.timedelta(days=shift if rng.random() < 0.5 else -shift)
            if other != date and 1900 <= other.year and other < _LATEST_DATE:
                return other.isoformat()
    if defect == "id_gender_mismatch":
        return "女" if value == "男" else "男"
    if defect == "credit_code_checksum":
        return value[:17] + rng.choice([c for c in USCC_ALPHABET if c != value[17]])
    if defect == "credit_code_authority":
        first17 = rng.choice(_BAD_AUTHORITY_PAIRS) + value[2:17]
        return first17 + uscc_check_char(first17)
    if defect == "phone_format":
        variant = rng.randrange(3)
        if variant == 0:
            return value[:-1 - rng.randrange(3)]  # too few digits
        return ("12" if variant == 1 else "10") + value.replace("-", "")[-9:]
    if defect == "invalid_value":
        return rng.choice(_INVALID_VALUES[field])
    raise ValueError(f"unknown defect {defect!r}")


class _SourceFile:
    """A department file being written (CSV with header or JSON lines), then its manifest entry."""

    def __init__(self, out: Path, source: str, stamp: str,
                 on_row: Callable[[Sequence[str]], None] | None = None) -> None:
        self.source = source
        self._on_row = on_row  # sees every well-formed row written (sample.generate_spatial.AddressLinks)
        self.format = FORMATS[source]
        self.relpath = f"{source}/{source}_{stamp}.{self.format}"
        self.path = out / self.relpath
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoding = ENCODINGS[source]
        self.columns = COLUMNS[source]
        self._fh = self.path.open("w", encoding=self.encoding, newline="")
        if self.format == "csv":
            terminator = "\r\n" if self.encoding == "gb18030" else "\n"
            self._writer = csv.writer(self._fh, quoting=csv.QUOTE_MINIMAL, lineterminator=terminator)
            self._writer.writerow(self.columns)
        self.rows = 0

    def json_line(self, row: Sequence[str]) -> str:
        return json.dumps({c: v if v != "" else None for c, v in zip(self.columns, row)},
                          ensure_ascii=False)

    def write(self, row: Sequence[str]) -> None:
        if self._on_row is not None and len(row) == len(self.columns):
            self._on_row(row)
        if self.format == "csv":
            self._writer.writerow(row)
        else:
            self._fh.write(self.json_line(row) + "\n")
        self.rows += 1

    def write_line(self, line: str) -> None:
        """A raw (malformed) JSON line."""
        self._fh.write(line + "\n")
        self.rows += 1

    def close(self) -> dict:
        self._fh.close()
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return {"source": self.source, "path": self.relpath, "encoding": self.encoding,
                "format": self.format, "rows": self.rows, "sha256": digest.hexdigest()}


class _Defects:
    """Draws, applies and records the injected defects of every source, and the ID links."""

    FORCE_EVERY = 3

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rates = {source: dict(rates) for source, rates in DEFECT_RATES.items()}
        self._generic = {source: frozenset(d for d, _ in rates if d not in _CONTEXTUAL)
                         for source, rates in DEFECT_RATES.items()}
        self._pickers: dict[tuple[str, frozenset[str]], _DefectPicker] = {}
        # generic defects a source has not shown yet: forced on every FORCE_EVERY-th row until each
        # has appeared once, so that even a tiny sample has every defect type of every source
        self._owed = {source: [d for d, _ in rates if d not in _CONTEXTUAL] for source, rates in DEFECT_RATES.items()}
        self._calls: dict[str, int] = {}
        self.truth: list[tuple[str, str, str, str]] = []
        self.links: list[tuple[str, str, str]] = []
        self.address_links = None  # sample.generate_spatial.AddressLinks: the address key of each row

    def row_hook(self, source: str) -> Callable[[Sequence[str]], None] | None:
        """What the file of ``source`` reports its rows to (the address links), if anything."""
        if self.address_links is None:
            return None
        return self.address_links.hook(source, COLUMNS[source])

    def pick(self, source: str, phone: str, contextual: Iterable[str] = ()) -> str | None:
        """At most one defect among the generic ones and the ``contextual`` ones allowed here."""
        eligible = self._generic[source] | frozenset(contextual)
        if not phone:
            eligible -= {"phone_format"}
        key = (source, eligible)
        picker = self._pickers.get(key)
        if picker is None:
            picker = self._pickers[key] = _DefectPicker(
                [(d, r) for d, r in DEFECT_RATES[source] if d in eligible])
        defect = picker(self._rng)
        owed = self._owed[source]
        if owed:
            n = self._calls[source] = self._calls.get(source, 0) + 1
            if defect is None and n % self.FORCE_EVERY == 0:
                defect = next((d for d in owed if d in eligible), None)
            if defect in owed:
                owed.remove(defect)
        return defect

    def record(self, source: str, record_id: str, defect: str, field: str | None = None) -> None:
        self.truth.append((source, record_id, field or DEFECT_FIELDS[source][defect], defect))

    def apply(self, source: str, row: list[str], defect: str) -> None:
        """Corrupt ``row`` (record_id first) in place and record the defect."""
        columns = COLUMNS[source]
        if defect == "malformed_row":
            if self._rng.random() < 0.5:
                row.pop()
            else:
                row.append("x")
            field = "_row"
        else:
            field = DEFECT_FIELDS[source][defect]
            if isinstance(field, tuple):  # fullwidth: one of the columns that has a value
                candidates = [f for f in field if row[columns.index(f)]]
                field = self._rng.choice(candidates)
            i = columns.index(field)
            row[i] = _corrupt(self._rng, defect, field, row[i])
        self.record(source, row[0], defect, field)


class _Sink:
    """One source being written: record ids, delayed copies, defects and the file."""

    def __init__(self, out: Path, source: str, stamp: str, rng: random.Random,
                 defects: _Defects) -> None:
        self.source = source
        self.file = _SourceFile(out, source, stamp, defects.row_hook(source))
        self._rng = rng
        self._ids = _RecordIds(rng, _RECORD_PREFIX[source])
        self._defects = defects
        self._pending: list[tuple[int, int, list[str], str]] = []  # (due row, seq, values, defect)
        self._seq = 0

    def _write_copy(self, values: list[str], defect: str) -> None:
        record_id = self._ids()
        self.file.write([record_id, *values])
        self._defects.record(self.source, record_id, defect)

    def emit(self, values: list[str], defect: str | None = None,
             later: list[str] | None = None) -> str:
        """Write a row (``values`` without record_id) carrying ``defect``; returns its record_id.

        Contextual defects (name_mismatch, missing_id, ...) are already in ``values`` and only
        recorded; duplicate_record / id_name_conflict write ``values`` clean now and ``later``
        (default: the same values) as a later row that carries the defect.
        """
        while self._pending and self._pending[0][0] <= self.file.rows:
            _, _, copy, copy_defect = heapq.heappop(self._pending)
            self._write_copy(copy, copy_defect)
        record_id = self._ids()
        row = [record_id, *values]
        if defect in _DELAYED:
            self._seq += 1
            due = self.file.rows + 1 + self._rng.randrange(_DUPLICATE_WINDOW)
            heapq.heappush(self._pending,
                           (due, self._seq, list(values) if later is None else later, defect))
        elif defect in _CONTEXTUAL:
            self._defects.record(self.source, record_id, defect)
        elif defect == "malformed_row" and self.file.format == "jsonl":
            self._defects.record(self.source, record_id, defect)
            self.file.write_line(self._malformed_json(row))
            return record_id
        elif defect:
            self._defects.apply(self.source, row, defect)
        self.file.write(row)
        return record_id

    def _malformed_json(self, row: list[str]) -> str:
        """A truncated object or one with a key the contract does not know; the record_id pair
        stays intact at the start of the line."""
        rng = self._rng
        if rng.random() < 0.5:
            obj = dict(zip(self.file.columns, (v if v != "" else None for v in row)))
            obj["remark"] = "补录"
            return json.dumps(obj, ensure_ascii=False)
        line = self.file.json_line(row)
        head = len(json.dumps({"record_id": row[0]}, ensure_ascii=False)) - 1
        return line[:head + 1 + rng.randrange(len(line) - head - 2)]

    def close(self) -> dict:
        while self._pending:
            _, _, copy, copy_defect = heapq.heappop(self._pending)
            self._write_copy(copy, copy_defect)
        return self.file.close()


def _death_rate(age: int) -> float:
    return next(rate for below, rate in _DEATH_RATE_BY_AGE if age < below)


def _employment(rng: random.Random, age: int, male: bool) -> str:
    retire_age = 60 if male else 55
    if age >= retire_age:
        return "退休" if rng.random() < 0.85 else "灵活就业" if rng.random() < 0.7 else "在职"
    u = rng.random()
    return "在职" if u < 0.72 else "灵活就业" if u < 0.92 else "失业"


def _insurance(rng: random.Random, status: str) -> str:
    if status == "在职":
        chosen = [t for t in _INSURANCE_TYPES if t in ("养老", "医疗") or rng.random() < 0.9]
    elif status == "灵活就业":
        chosen = ["养老", "医疗"] if rng.random() < 0.8 else ["医疗"]
    elif status == "失业":
        chosen = ["医疗"] if rng.random() < 0.6 else ["养老", "医疗"]
    else:
        chosen = ["医疗"] if rng.random() < 0.7 else ["养老", "医疗"]
    return ";".join(chosen)


def _write_population(rng: random.Random, out: Path, stamp: str, n_people: int,
                      extract_date: datetime.date, defects: _Defects,
                      employers: Sequence[str], book, subjects=None) -> list[_Sink]:
    """Stream psb, mca, hrss and nhc in one pass over the people of the register (addresses from
    ``book``, a ``sample.generate_spatial.AddressBook``); every register row (with its defect) goes
    to ``subjects`` (``sample.generate_governance.Subjects``)."""
    names = _Names()
    residences = _Residences(rng, book)
    population = _Population(rng, extract_date, names, residences)
    extract = population.extract_ord
    psb, mca, hrss, nhc = (_Sink(out, s, stamp, rng, defects) for s in (PSB, MCA, HRSS, NHC))
    marital = [(age, _Weighted(weights)) for age, weights in _MARITAL_BY_AGE]
    birth_place = _Weighted(_BIRTH_INSTITUTIONS)
    death_place = _Weighted(_DEATH_INSTITUTIONS)
    mca_extra = _MCA_COVERAGE * _MCA_EXTRA_SHARE / (1 - _MCA_EXTRA_SHARE)
    hrss_extra = _HRSS_COVERAGE * _HRSS_EXTRA_SHARE / (1 - _HRSS_EXTRA_SHARE)
    linkable = ("name_mismatch", "address_mismatch", "missing_id")

    def without_id(sink: _Sink, values: list[str], id_pos: int, name_pos: int,
                   person: _Person) -> None:
        values[id_pos] = ""
        if rng.random() < _LINK_NAME_VARIANT:
            values[name_pos] = names.altered(rng, person.name)
        record_id = sink.emit(values, "missing_id")
        defects.links.append((sink.source, record_id, person.id_number))

    def write_mca(person: _Person, death: int, psb_clean: bool, forced_clean: bool) -> None:
        age = population.age(person)
        status = next(draw for below, draw in marital if age < below)(rng)
        allowance = "是" if rng.random() < 0.03 else "否"
        death_date = _iso(death) if death and rng.random() < _MCA_DEATH_DATE_SHARE else ""
        phone = person.phone if rng.random() < 0.7 else _phone(rng, empty=0.10, landline=0.05)
        values = [person.id_number, person.name, person.gender, _iso(person.birth), status,
                  allowance, death_date, phone, person.town, person.address]
        defect = None if forced_clean else defects.pick(MCA, phone, linkable if psb_clean else ())
        if defect == "missing_id":
            return without_id(mca, values, 0, 1, person)
        if defect == "name_mismatch":
            values[1] = names.altered(rng, person.name)
        elif defect == "address_mismatch":
            values[8], values[9] = residences.other(person.address)
        mca.emit(values, defect)

    def write_hrss(person: _Person, in_psb: bool, psb_clean: bool) -> None:
        status = _employment(rng, population.age(person), person.male)
        employer = rng.choice(employers) if status == "在职" and employers else ""
        phone = person.phone if rng.random() < 0.65 else _phone(rng, empty=0.05, landline=0.05)
        values = [person.id_number, person.name, person.gender, _iso(person.birth), status,
                  _insurance(rng, status), employer, phone, person.address]
        contextual = linkable if psb_clean else ("id_name_conflict",) if not in_psb else ()
        defect = defects.pick(HRSS, phone, contextual)
        later = None
        if defect == "missing_id":
            return without_id(hrss, values, 0, 1, person)
        if defect == "name_mismatch":
            values[1] = names.altered(rng, person.name)
        elif defect == "address_mismatch":
            values[8] = residences.other(person.address)[1]
        elif defect == "id_name_conflict":
            later = list(values)
            later[1] = names.other(rng, person.male, person.name)
        hrss.emit(values, defect, later)

    def write_nhc(event: str, person: _Person, event_ord: int, psb_clean: bool,
                  forced_clean: bool) -> None:
        place = birth_place(rng) if event == "出生" else death_place(rng)
        values = [event, person.id_number, person.name, person.gender, _iso(person.birth),
                  _iso(event_ord), place, person.town]
        contextual = ("missing_id",) if event == "出生" else ()
        if psb_clean:
            contextual += ("name_mismatch",)
        defect = None if forced_clean else defects.pick(NHC, "", contextual)
        if defect == "missing_id":
            return without_id(nhc, values, 1, 2, person)
        if defect == "name_mismatch":
            values[2] = names.altered(rng, person.name)
        nhc.emit(values, defect)

    for _ in range(n_people):
        person = population.new()
        age = population.age(person)
        newborn = person.birth >= extract - 365
        death = 0
        if rng.random() < _death_rate(age) and not newborn:  # one nhc event per ID number
            death = extract - 1 - rng.randrange(365)
        status = "死亡" if death else "迁出" if rng.random() < _MOVED_OUT_SHARE else "正常"
        values = [person.name, person.id_number, person.gender, _iso(person.birth),
                  person.ethnicity, person.phone, person.town, person.address,
                  _iso(person.registered), status]
        contextual = (("death_not_propagated",) if death else
                      ("id_name_conflict",) if status == "正常" and age >= 18 else ())
        defect = defects.pick(PSB, person.phone, contextual)
        later = None
        if defect == "death_not_propagated":
            values[-1] = "正常"
        elif defect == "id_name_conflict":
            later = list(values)
            later[0] = names.other(rng, person.male, person.name)
        psb.emit(values, defect, later)
        if subjects is not None:
            subjects.person(person.name, person.id_number, person.male, datetime.date.fromordinal(person.birth),
                            values[-1], defect)
        if defect == "id_name_conflict":
            continue  # the person with two names in psb appears in no other source
        psb_clean = defect is None
        forced_clean = defect == "death_not_propagated"  # keep the evidence of the death clean

        u = rng.random()
        if u < _MCA_COVERAGE:
            write_mca(person, death, psb_clean, forced_clean)
        elif u < _MCA_COVERAGE + mca_extra:
            write_mca(population.new(), 0, False, False)
        if not death and age >= _HRSS_MIN_AGE:
            u = rng.random()
            if u < _HRSS_COVERAGE:
                write_hrss(person, True, psb_clean)
            elif u < _HRSS_COVERAGE + hrss_extra:
                write_hrss(population.new(worker=True), False, False)
        if newborn and rng.random() < _BIRTH_EVENT_SHARE:
            write_nhc("出生", person, person.birth, psb_clean, forced_clean)
        if death:
            write_nhc("死亡", person, death, psb_clean, forced_clean)
    return [psb, mca, hrss, nhc]


class _Entities:
    """Creates legal entities with unique, valid credit codes (shared organisation-code space)."""

    _ORG_CODE_SPACE = 10**8
    _ORG_CODE_STEP = 5_483_521  # coprime with 10**8: index -> organisation code is a bijection

    def __init__(self, rng: random.Random, extract_date: datetime.date, names: _Names,
                 book) -> None:
        self._rng = rng
        self.names = names
        self.residence = _Residences(rng, book, entities=True)
        self._extract_ord = extract_date.toordinal()
        self._offset = rng.randrange(self._ORG_CODE_SPACE)
        self._index = 0
        self._credit_region = _Weighted(_CREDIT_REGIONS)
        self._industry = {"1": _Weighted(_ENTERPRISE_INDUSTRY), "2": _Weighted(_INDIVIDUAL_INDUSTRY)}
        self._form = _Weighted(_COMPANY_FORMS)
        self.samr_status = _Weighted(_ENTERPRISE_STATUS)
        self.soc_status = _Weighted(_SOC_STATUS)
        self.seo_status = _Weighted(_SEO_STATUS)
        self.soc_type = _Weighted((t, t[2]) for t in _SOC_TYPES)
        self.seo_kind = _Weighted((k, k[1]) for k in _SEO_KINDS)
        self._funding = {k[0]: _Weighted(k[3]) for k in _SEO_KINDS}
        years = range(1990, extract_date.year + 1)
        self._year = _Weighted((y, 1.09 ** (y - 1990)) for y in years)

    def credit_code(self, authority: str, org_type: str, region: str | None = None) -> str:
        index = self._index
        self._index += 1
        body = f"{(index * self._ORG_CODE_STEP + self._offset) % self._ORG_CODE_SPACE:08d}"
        check = 11 - sum(int(c) * w for c, w in zip(body, _ORG_CODE_WEIGHTS)) % 11
        org_code = body + {10: "X", 11: "0"}.get(check, str(check))
        return make_uscc(authority, org_type, region or self._credit_region(self._rng), org_code)

    def trade(self, other: str = "") -> str:
        """A trade (brand) word of 2-3 characters, different from ``other``."""
        rng = self._rng
        while True:
            trade = "".join(rng.sample(_TRADE_NAME_CHARS, 2 if rng.random() < 0.7 else 3))
            if trade != other:
                return trade

    def date(self) -> int:
        year = self._year(self._rng)
        first = datetime.date(year, 1, 1).toordinal()
        last = min(datetime.date(year, 12, 31).toordinal(), self._extract_ord)
        return first + self._rng.randrange(last - first + 1)

    def samr(self) -> tuple[list[str], str, str]:
        """(samr row without record_id, organisation type, the entity's former name)."""
        rng = self._rng
        u = rng.random()
        org_type = "1" if u < 0.89 else "2" if u < 0.99 else "3"
        trade = self.trade()
        old_trade = self.trade(trade)
        if org_type == "3":
            industry = "A"
            prefix, suffix = "北京市大兴区", rng.choice(_COOP_WORDS)
        else:
            industry = self._industry[org_type](rng)
            company_words, shop_words = _INDUSTRY_WORDS[industry]
            if org_type == "2" and shop_words:
                prefix, suffix = "北京市大兴区", rng.choice(shop_words)
            else:
                prefix, suffix = "北京", rng.choice(company_words) + self._form(rng)
        if org_type == "2":
            capital = float(rng.choice(_INDIVIDUAL_CAPITALS))
        elif rng.random() < 0.75:
            capital = float(rng.choice(_ROUND_CAPITALS))
        else:
            capital = 10 * 5000 ** rng.random()  # log-uniform 10 .. 50000
        town, address = self.residence()
        established, status = self.date(), self.samr_status(rng)
        row = [self.credit_code("9", org_type), prefix + trade + suffix,
               self.names(rng, rng.random() < 0.7), industry, f"{capital:.2f}",
               _iso(established), status, town, address,
               _phone(rng, empty=0.08, landline=0.35),
               _iso(self.after(established)) if status in _DEREGISTERED else ""]
        return row, org_type, prefix + old_trade + suffix

    def after(self, first: int) -> int:
        """A day from ``first`` to the extract date (a deregistration after the establishment)."""
        return first + self._rng.randrange(self._extract_ord - first + 1)

    def deregistration_defect(self, row: list[str], defect: str) -> None:
        """Put ``defect`` (a deregistration-date defect) into the samr ``row`` (without record id)."""
        established = datetime.date.fromisoformat(row[5]).toordinal()
        if defect == "deregistration_date_missing":
            row[10] = ""
        elif defect == "deregistration_before_establishment":
            row[10] = _iso(established - 1 - self._rng.randrange(3650))
        elif defect == "deregistration_date_future":
            row[10] = _iso(self._extract_ord + 1 + self._rng.randrange(365))
        else:  # a date on an active entity
            row[10] = _iso(self.after(established))

    def soc(self) -> tuple[list[str], str]:
        rng = self._rng
        org_type, type_digit, _, prefix, words = self.soc_type(rng)
        trade = self.trade()
        suffix = rng.choice(words)
        town, address = self.residence()
        row = [self.credit_code("5", type_digit, "110115"), prefix + trade + suffix, org_type,
               self.names(rng, rng.random() < 0.6), _iso(max(self.date(), _FIRST_SOC_DATE)),
               self.soc_status(rng), town, address, _phone(rng, empty=0.10, landline=0.5)]
        return row, prefix + self.trade(trade) + suffix

    def seo(self) -> tuple[list[str], str]:
        rng = self._rng
        kind, _, sponsor, _ = self.seo_kind(rng)
        town, address = self.residence()
        trade = self.trade()
        row = [self.credit_code("1", "2", "110115"), f"北京市大兴区{trade}{kind}",
               self.names(rng, rng.random() < 0.6), sponsor.format(town=f"北京市大兴区{town}"),
               self._funding[kind](rng), self.seo_status(rng), town, address]
        return row, f"北京市大兴区{self.trade(trade)}{kind}"


def _tax_status(rng: random.Random, register_status: str) -> str:
    u = rng.random()
    if register_status == "吊销":
        return "非正常" if u < 0.6 else "注销"
    if register_status in _DEREGISTERED:
        return "注销" if u < 0.85 else "非正常"
    return "非正常" if u < 0.03 else "正常"


def _drifted_name(name: str) -> str:
    """The legal-form variant a taxpayer register sometimes keeps."""
    if name.endswith("有限责任公司"):
        return name.replace("有限责任公司", "有限公司")
    return name.replace("有限公司", "有限责任公司")


def _write_entities(rng: random.Random, out: Path, stamp: str, n_entities: int,
                    extract_date: datetime.date, defects: _Defects,
                    employers: list[str], book,
                    registered: Callable[[str, str, str], None] | None = None,
                    subjects=None) -> list[_Sink]:
    """Stream the three registers and tax; collect active companies' codes into ``employers``,
    report every market-register entity's (credit code, town, address) to ``registered`` and every
    register row (with its defect) to ``subjects`` (``sample.generate_governance.Subjects``)."""
    entities = _Entities(rng, extract_date, _Names(), book)
    samr, soc, seo, tax = (_Sink(out, s, stamp, rng, defects) for s in (SAMR, SOC, SEO, TAX))
    tax_office = {town: _TAX_OFFICES[i % len(_TAX_OFFICES)] for i, town in enumerate(DAXING_TOWNS)}

    def write_tax(code: str, name: str, old_name: str, register_status: str | None,
                  register_clean: bool, town: str, phone: str, small: bool) -> None:
        if rng.random() >= 0.65 or not phone:
            phone = _phone(rng, empty=0.10, landline=0.35)
        status = _tax_status(rng, register_status or "正常")
        contextual: tuple[str, ...] = ()
        if register_clean:
            contextual = ("name_mismatch", "deregistered_active_in_tax") \
                if register_status in _DEREGISTERED else ("name_mismatch",)
        defect = defects.pick(TAX, phone, contextual)
        if defect == "name_mismatch":
            name = old_name
        elif rng.random() < _TAX_NAME_DRIFT:
            name = _drifted_name(name)
        if defect == "deregistered_active_in_tax":
            status = "正常"
        small = small or rng.random() < 0.75
        tax.emit([code, name, status, "小规模纳税人" if small else "一般纳税人", tax_office[town],
                  phone], defect)

    def write_unknown_taxpayer() -> None:
        row, org_type, _ = entities.samr()
        write_tax(row[0], row[1], row[1], None, False, row[7], row[9], org_type != "1")

    sizes = {SAMR: _SAMR_SHARE, SOC: _SOC_SHARE, SEO: _SEO_SHARE}
    for sink in (samr, soc, seo):
        source = sink.source
        n = max(round(n_entities * sizes[source]), _MIN_REGISTER_ROWS[source])
        coverage = _TAX_COVERAGE[source]
        extra = coverage * _TAX_EXTRA_SHARE / (1 - _TAX_EXTRA_SHARE)
        for _ in range(n):
            contextual: tuple[str, ...] = ()
            if source == SAMR:
                values, org_type, old_name = entities.samr()
                status_pos, phone = 6, values[9]
                contextual = _DEREGISTRATION_DEFECTS if values[6] in _DEREGISTERED else (_DATE_ON_ACTIVE,)
            elif source == SOC:
                values, old_name = entities.soc()
                org_type, status_pos, phone = "5", 5, values[8]
            else:
                values, old_name = entities.seo()
                org_type, status_pos, phone = "1", 5, ""
            defect = defects.pick(source, phone, contextual)
            if defect in contextual:
                entities.deregistration_defect(values, defect)
            sink.emit(values, defect)
            if subjects is not None:
                subjects.entity(source, values, defect)
            if registered is not None and source == SAMR:
                registered(values[0], values[7], values[8])
            clean = defect is None
            status = values[status_pos]
            if clean and source == SAMR and org_type == "1" and status in ("存续", "在业"):
                employers.append(values[0])
            u = rng.random()
            if u < coverage:
                town = values[7] if source == SAMR else values[6] if source == SOC else values[6]
                write_tax(values[0], values[1], old_name, status, clean, town, phone,
                          org_type != "1")
            elif u < coverage + extra:
                write_unknown_taxpayer()
    return [samr, soc, seo, tax]


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate(scale: float, seed: int, out: Path,
             extract_date: datetime.date = DEFAULT_EXTRACT_DATE,
             progress: Callable[[str, int], None] | None = None, iot_days: int = 1) -> dict:
    """Write the eight synthetic department extracts, the spatial sources, the truth files and
    the manifest; unless ``iot_days`` is 0, also the sensing ledger and ``iot_days`` days of sensor
    readings ending on the extract date (``sample.generate_iot``, with its own ``iot_manifest.json``).

    ``scale`` 1.0 gives the district's real size (1.81 M people, 144 k registered
    legal entities).  Files go to ``out/<source>/<source>_<YYYYMMDD>.<csv|jsonl>``
    (the extract date), ``out/truth/defects.csv``, ``out/truth/links.csv`` and
    ``out/manifest.json``; ``progress(source, rows)`` is called as each source is
    finished (the legal entities are written first: employers need their codes).
    Every address is a door plate of the address book (``sample.generate_spatial``), which
    then writes the five spatial sources (``ghzrzy_boundaries``, ``psb_doorplates``,
    ``zjw_buildings``, ``samr_geocoded`` for a sample of the market register,
    ``ghzrzy_poi``), ``out/truth/locations.csv`` and ``out/truth/address_links.csv``
    (every spatial row and every population / legal-entity row with an address); their
    defects join ``truth/defects.csv``.
    The social-credit, e-licence and macro-economy files (``sample.generate_governance``: their
    subjects and holders are the entities and people written here) come next, then the topic
    databases' sources (``sample.generate_hotline``: 12345 work orders at the book's door plates;
    ``sample.generate_emergency``: shelters, hazard sources and rescue teams;
    ``sample.generate_services``: medical institutions and bus lines at the stop POIs; listed under
    ``topic_files``); their defects join ``truth/defects.csv``.
    Returns the manifest, whose ``files`` are listed in ``SOURCES`` order, whose
    ``spatial_files`` (same entries) in ``sample.generate_spatial.SPATIAL_SOURCES`` order and whose
    ``governance_files`` in ``sample.generate_governance.GOVERNANCE_SOURCES`` order (two releases
    for each macro-economy source).
    """
    if not scale > 0:
        raise ValueError("scale must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from sample.generate_spatial import AddressBook, AddressLinks, RegisteredAddresses, generate_spatial

    rng = random.Random(seed)
    stamp = extract_date.strftime("%Y%m%d")
    book = AddressBook(seed, scale)
    defects = _Defects(rng)
    defects.address_links = AddressLinks(book)
    registered = RegisteredAddresses(seed)
    employers: list[str] = []
    entries: dict[str, dict] = {}
    from sample.generate_governance import Subjects, generate_governance

    subjects = Subjects(seed)  # what the registers hold, for the credit, e-licence and macro files

    def finish(sinks: list[_Sink]) -> None:
        for sink in sinks:
            entries[sink.source] = sink.close()
            if progress is not None:
                progress(sink.source, entries[sink.source]["rows"])

    finish(_write_entities(rng, out, stamp, round(BASE_ENTITIES * scale), extract_date, defects,
                           employers, book, registered.add, subjects))
    finish(_write_population(rng, out, stamp, max(round(BASE_PEOPLE * scale), _MIN_PEOPLE),
                             extract_date, defects, employers, book, subjects))
    spatial = generate_spatial(scale, seed, out, extract_date, book=book, entities=registered.rows,
                               links=defects.address_links, defects=defects.truth)
    governance = generate_governance(scale, seed, out, subjects, extract_date)
    defects.truth.extend(governance["truth"])
    from sample.generate_hotline import generate_hotline  # 12345 work orders (city-management topic)

    hotline = generate_hotline(scale, seed, out, book, extract_date)
    defects.truth.extend(hotline["truth"])
    from sample.generate_emergency import generate_emergency  # shelters, hazard sources, rescue teams
    from sample.governance import ACTIVE

    emergency = generate_emergency(scale, seed, out, book, extract_date,
                                   sorted(e.code for e in subjects.entities if e.status in ACTIVE))
    defects.truth.extend(emergency["truth"])
    from sample.generate_services import generate_services  # medical institutions, bus lines (issue 18 item 6)

    services = generate_services(scale, seed, out, book, extract_date, spatial["files"], defects.truth)
    defects.truth.extend(services["truth"])
    _write_csv(out / "truth" / "defects.csv", ("source", "record_key", "field", "defect_type"),
               sorted(defects.truth, key=lambda t: (t[0], t[1])))
    _write_csv(out / "truth" / "links.csv", ("source", "record_key", "id_number"),
               sorted(defects.links))
    manifest = {
        "generator": {"scale": scale, "seed": seed, "extract_date": extract_date.isoformat()},
        "files": [entries[source] for source in SOURCES],
        "spatial_files": spatial["files"],
        "governance_files": governance["files"],
        "topic_files": hotline["files"] + emergency["files"] + services["files"],
    }
    (out / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if iot_days > 0:
        from sample.generate_iot import generate_iot

        days = [extract_date - datetime.timedelta(days=i) for i in range(iot_days - 1, -1, -1)]
        generate_iot(scale, seed, out, days=days, extract_date=extract_date)
    return manifest
