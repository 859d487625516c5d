"""Deterministic synthetic department extracts for the Daxing data lake.

The real department extracts contain personal data and cannot leave the
district network, so the pipeline is developed and tested against synthetic
files that look like them: same columns (``contracts/sources/*.yaml``), same
encodings and line endings, plausible Chinese names, addresses, identity
numbers and credit codes, and overlapping populations so that records can be
linked across departments:

* ``psb_household`` (公安户籍, GB18030): one row per registered person.
* ``mca_residents`` (民政, UTF-8 with BOM): about 30% of those people, with the
  same identity number and name, plus about 3% of rows for people the police
  register does not know.
* ``samr_enterprises`` (市场监管, UTF-8): one row per market entity.
* ``tax_taxpayers`` (税务, GB18030): about 80% of those entities with the same
  credit code, plus about 2% of rows for entities absent from the register.

A small, known share of rows (about 2-3%) carries exactly one injected defect
(see ``DEFECT_RATES``); each is recorded in ``truth/defects.csv`` so the
quality checks downstream can be measured against ground truth.  Apart from
those, taxpayer names occasionally differ from the register in their legal
form (有限公司 vs 有限责任公司), as they do in real extracts; that drift is not
a recorded defect.

Output is a pure function of ``(scale, seed, extract_date)``: one
``random.Random(seed)`` drives everything, nothing reads the clock or Faker's
global state, so the same arguments give byte-identical files.  Rows are
streamed to disk; memory stays bounded (a fixed-size table of used identity
number sequences, a small window of pending duplicate rows and the defect
truth list).
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

from faker.providers.person.zh_CN import Provider as _ZhPersonProvider

from lake.identifiers import USCC_ALPHABET, cn_id_check_char, make_uscc

__all__ = [
    "BASE_ENTERPRISES",
    "BASE_PEOPLE",
    "COLUMNS",
    "DAXING_TOWNS",
    "DEFAULT_EXTRACT_DATE",
    "DEFECT_FIELDS",
    "DEFECT_RATES",
    "ENCODINGS",
    "generate",
]

DEFAULT_EXTRACT_DATE = datetime.date(2026, 11, 1)
BASE_PEOPLE = 1_810_000  # registered population of Daxing at scale 1.0
BASE_ENTERPRISES = 144_000  # market entities at scale 1.0

PSB, MCA, SAMR, TAX = "psb_household", "mca_residents", "samr_enterprises", "tax_taxpayers"

ENCODINGS = {PSB: "gb18030", MCA: "utf-8-sig", SAMR: "utf-8", TAX: "gb18030"}

COLUMNS = {
    PSB: ("record_id", "name", "id_number", "gender", "birth_date", "ethnicity",
          "phone", "town", "address", "registered_date"),
    MCA: ("record_id", "id_number", "name", "marital_status", "subsistence_allowance",
          "phone", "town", "address"),
    SAMR: ("record_id", "credit_code", "name", "legal_rep", "industry", "registered_capital",
           "established_date", "status", "town", "address", "phone"),
    TAX: ("record_id", "credit_code", "taxpayer_name", "tax_status", "taxpayer_type",
          "tax_authority", "phone"),
}

_RECORD_PREFIX = {PSB: "HJ", MCA: "MZ", SAMR: "SC", TAX: "SW"}

# Per-row probability of each defect; a row gets at most one.  phone_format
# only hits rows that have a phone, name_mismatch only mca rows of people whose
# psb row is clean, duplicate_record only clean psb rows (the copy is the
# defective row).
DEFECT_RATES: dict[str, tuple[tuple[str, float], ...]] = {
    PSB: (("malformed_row", 0.002), ("missing_value", 0.003), ("id_checksum", 0.005),
          ("id_format", 0.002), ("invalid_date", 0.002), ("phone_format", 0.005),
          ("invalid_value", 0.002), ("duplicate_record", 0.005)),
    MCA: (("malformed_row", 0.002), ("missing_value", 0.003), ("id_checksum", 0.003),
          ("phone_format", 0.005), ("name_mismatch", 0.005)),
    SAMR: (("malformed_row", 0.002), ("missing_value", 0.003), ("invalid_date", 0.002),
           ("credit_code_checksum", 0.005), ("phone_format", 0.005), ("invalid_value", 0.002)),
    TAX: (("malformed_row", 0.002), ("missing_value", 0.003), ("credit_code_checksum", 0.003),
          ("phone_format", 0.005)),
}

# The field named in the truth file for each (source, defect).
DEFECT_FIELDS: dict[str, dict[str, str]] = {
    PSB: {"malformed_row": "_row", "missing_value": "name", "id_checksum": "id_number",
          "id_format": "id_number", "invalid_date": "birth_date", "phone_format": "phone",
          "invalid_value": "gender", "duplicate_record": "id_number"},
    MCA: {"malformed_row": "_row", "missing_value": "name", "id_checksum": "id_number",
          "phone_format": "phone", "name_mismatch": "name"},
    SAMR: {"malformed_row": "_row", "missing_value": "name", "invalid_date": "established_date",
           "credit_code_checksum": "credit_code", "phone_format": "phone",
           "invalid_value": "status"},
    TAX: {"malformed_row": "_row", "missing_value": "taxpayer_name",
          "credit_code_checksum": "credit_code", "phone_format": "phone"},
}

_MCA_COVERAGE = 0.30  # share of psb people known to civil affairs
_MCA_EXTRA_SHARE = 0.03  # share of mca rows for people not in psb
_TAX_COVERAGE = 0.80  # share of samr entities registered for tax
_TAX_EXTRA_SHARE = 0.02  # share of tax rows for entities not in samr
_DUPLICATE_WINDOW = 50_000  # a duplicate appears up to this many people later

DAXING_TOWNS = [
    "青云店镇", "采育镇", "安定镇", "礼贤镇", "榆垡镇", "庞各庄镇", "北臧村镇", "魏善庄镇",
    "长子营镇", "西红门镇", "旧宫镇", "黄村镇", "瀛海镇", "亦庄镇", "兴丰街道", "林校路街道",
    "清源街道", "观音寺街道", "天宫院街道", "高米店街道", "荣华街道", "博兴街道",
]
_TOWN_WEIGHTS = (3, 2.5, 2, 2.5, 3, 3, 2.5, 3, 2.5, 6, 7, 5, 5, 4,
                 7, 7, 8, 6, 8, 7, 6, 6)
_ROADS = ("兴华大街", "黄村东大街", "金星西路", "兴业大街", "兴政街", "清源路", "林校北路",
          "康庄路", "永华南路", "双河北路", "欣宁街", "红星路", "旧宫东路", "德茂路", "宏业路",
          "兴丰大街", "天华街", "磁各庄路", "京开路", "育英路")
_VILLAGES = ("东村", "西村", "南村", "北村", "前街村", "后街村", "大营村", "小营村", "新庄村",
             "王庄村", "李家村", "张各庄村", "孙村", "马村", "刘家庄村")

_DAXING = "110115"
_REGIONS = (
    (_DAXING, 65.0),
    *((code, 15.0 / 8) for code in
      ("110101", "110102", "110105", "110106", "110108", "110111", "110112", "110114")),
    *((code, 20.0 / 10) for code in
      ("130602", "130102", "370102", "410105", "410102", "230102", "340102", "510104",
       "420102", "120101")),
)
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
_TRADE_NAME_CHARS = "华兴德瑞鑫泰隆恒盛达宏远博创嘉信诚安康顺通力海天金源佳丰凯明亿新百富永祥和中科润亚星辰"
_COMPANY_FORMS = (("有限公司", 78), ("有限责任公司", 12), ("中心", 5), ("股份有限公司", 2),
                  ("中心（有限合伙）", 3))
_ENTERPRISE_STATUS = (("存续", 80), ("在业", 8), ("注销", 8), ("吊销", 4))
_CREDIT_REGIONS = (("110115", 85), ("110100", 9), ("110000", 6))
_ROUND_CAPITALS = (10, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 50000)
_INDIVIDUAL_CAPITALS = (10, 20, 30, 50)
_TAX_OFFICES = tuple(f"国家税务总局北京市大兴区税务局第{n}税务所" for n in "一二三四五")
_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code check

_INVALID_VALUES = {"gender": ("未知", "男性", "女性", "1", "2", "M"),
                   "status": ("正常", "营业", "迁出", "停业")}
_ID_LETTERS = "ABCDEFGHJKLMNPQRSTUVWYZ"


class _Weighted:
    """Draws one of a fixed set of values with fixed relative weights."""

    __slots__ = ("_values", "_cum", "_total", "_last")

    def __init__(self, pairs: Iterable[tuple[object, float]]) -> None:
        values, weights = zip(*pairs)
        self._values = values
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]
        self._last = len(values) - 1

    def __call__(self, rng: random.Random):
        return self._values[bisect.bisect_right(self._cum, rng.random() * self._total,
                                                hi=self._last)]


class _DefectPicker:
    """Draws at most one defect per row according to a source's DEFECT_RATES."""

    def __init__(self, rates: Sequence[tuple[str, float]]) -> None:
        self._names = [name for name, _ in rates]
        self._cum = list(itertools.accumulate(rate for _, rate in rates))

    def __call__(self, rng: random.Random) -> str | None:
        u = rng.random()
        if u >= self._cum[-1]:
            return None
        return self._names[bisect.bisect_right(self._cum, u)]


def _weighted_items(tokens: Mapping[str, float] | Sequence[str]) -> list[tuple[str, float]]:
    """Faker lists are plain sequences or (Ordered)dicts of weights; accept both."""
    if isinstance(tokens, Mapping):
        return list(tokens.items())
    return [(token, 1.0) for token in tokens]


class _Names:
    """Chinese personal names from Faker's zh_CN lists, drawn with our own RNG."""

    def __init__(self) -> None:
        p = _ZhPersonProvider
        self._surname = _Weighted(_weighted_items(p.last_names))
        given = {True: _weighted_items(p.first_names_male),
                 False: _weighted_items(p.first_names_female)}
        self._given = {male: _Weighted(items) for male, items in given.items()}
        self._single = {male: [t for t, _ in items if len(t) == 1] for male, items in given.items()}
        self._all_single = sorted(set(self._single[True]) | set(self._single[False]))

    def __call__(self, rng: random.Random, male: bool) -> str:
        given = self._given[male](rng)
        if len(given) == 1 and rng.random() < 0.4:
            given += rng.choice(self._single[male])
        return self._surname(rng) + given

    def altered(self, rng: random.Random, name: str) -> str:
        """The same name with its last character swapped for another given-name character."""
        last = name[-1]
        replacement = last
        while replacement == last:
            replacement = rng.choice(self._all_single)
        return name[:-1] + replacement


class _RecordIds:
    """Increasing department record numbers: prefix + 9 digits, with small gaps."""

    def __init__(self, rng: random.Random, prefix: str) -> None:
        self._rng = rng
        self._prefix = prefix
        self._next = 100_000_000 + rng.randrange(50_000_000)

    def __call__(self) -> str:
        value = self._next
        self._next += 1 if self._rng.random() < 0.9 else 2 + self._rng.randrange(5)
        return f"{self._prefix}{value:09d}"


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


class _Residences:
    """Daxing towns/streets (population weighted) and addresses in them."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._town = _Weighted(zip(DAXING_TOWNS, _TOWN_WEIGHTS))

    def __call__(self) -> tuple[str, str]:
        rng = self._rng
        town = self._town(rng)
        if town.endswith("镇") and rng.random() < 0.5:
            place = f"{rng.choice(_VILLAGES)}{rng.randint(1, 300)}号"
        else:
            place = f"{rng.choice(_ROADS)}{rng.randint(1, 200)}号"
            if rng.random() < 0.6:
                place += (f"{rng.randint(1, 30)}号楼{rng.randint(1, 6)}单元"
                          f"{rng.randint(1, 28)}0{rng.randint(1, 4)}室")
        return town, f"北京市大兴区{town}{place}"


class _Population:
    """Creates people with unique, valid identity numbers.

    Uniqueness is guaranteed without remembering every number: for each
    (region, birth date, sex) cell a 16-bit counter k says how many sequence
    numbers were handed out, and the k-th one is a fixed permutation of the
    499 odd (men) or even (women) sequences 1..998 starting at a per-cell offset.
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
        self._region_codes = [code for code, _ in _REGIONS]
        self._region = _Weighted((i, w) for i, (_, w) in enumerate(_REGIONS))
        self._band = _Weighted(self._age_band_ranges())
        self._ethnicity = _Weighted(_ETHNICITIES)
        self._issued = array("H", bytes(2 * len(_REGIONS) * self._days * 2))
        self._salt = rng.randrange(self._SEQS_PER_CELL)

    def _age_band_ranges(self) -> list[tuple[tuple[int, int], float]]:
        """Birth ordinal ranges [lo, hi) per age band, clipped to 1930..extract-1."""
        ranges = []
        for min_age, max_age, weight in _AGE_BANDS:
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
        first17 = (self._region_codes[region]
                   + datetime.date.fromordinal(birth).strftime("%Y%m%d") + f"{seq:03d}")
        return first17 + cn_id_check_char(first17)

    def new(self) -> _Person:
        rng = self._rng
        male = rng.random() < 0.51
        while True:
            region = self._region(rng)
            lo, hi = self._band(rng)
            birth = lo + int(rng.random() * (hi - lo))
            id_number = self._id_number(region, birth, male)
            if id_number is not None:
                break
        span = self.extract_ord - birth
        if self._region_codes[region] == _DAXING and rng.random() < 0.7:
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
    if defect == "invalid_date":
        year = int(value[:4])
        choices = [f"{year}-02-30", f"{year}-02-31", f"{year}-04-31", f"{year}-06-31",
                   f"{year}-09-31", f"{year}-11-31", f"{year}-13-{rng.randint(1, 28):02d}",
                   f"{year}-00-{rng.randint(1, 28):02d}"]
        if year % 4 != 0 or (year % 100 == 0 and year % 400 != 0):
            choices.append(f"{year}-02-29")
        return rng.choice(choices)
    if defect == "credit_code_checksum":
        return value[:17] + rng.choice([c for c in USCC_ALPHABET if c != value[17]])
    if defect == "phone_format":
        variant = rng.randrange(3)
        if variant == 0:
            return value[:-1 - rng.randrange(3)]  # too few digits
        return ("12" if variant == 1 else "10") + value.replace("-", "")[-9:]
    if defect == "invalid_value":
        return rng.choice(_INVALID_VALUES[field])
    raise ValueError(f"unknown defect {defect!r}")


class _SourceFile:
    """A department CSV being written: header, rows, then manifest entry."""

    def __init__(self, out: Path, source: str, stamp: str) -> None:
        self.source = source
        self.relpath = f"{source}/{source}_{stamp}.csv"
        self.path = out / self.relpath
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.encoding = ENCODINGS[source]
        self._fh = self.path.open("w", encoding=self.encoding, newline="")
        terminator = "\r\n" if self.encoding == "gb18030" else "\n"
        self._writer = csv.writer(self._fh, quoting=csv.QUOTE_MINIMAL, lineterminator=terminator)
        self._writer.writerow(COLUMNS[source])
        self.rows = 0

    def write(self, row: Sequence[str]) -> None:
        self._writer.writerow(row)
        self.rows += 1

    def close(self) -> dict:
        self._fh.close()
        digest = hashlib.sha256()
        with self.path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return {"source": self.source, "path": self.relpath, "encoding": self.encoding,
                "rows": self.rows, "sha256": digest.hexdigest()}


class _Defects:
    """Draws, applies and records the injected defects of every source."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._pickers = {source: _DefectPicker(rates) for source, rates in DEFECT_RATES.items()}
        self.truth: list[tuple[str, str, str, str]] = []

    def pick(self, source: str, phone: str) -> str | None:
        defect = self._pickers[source](self._rng)
        if defect == "phone_format" and not phone:
            return None
        return defect

    def record(self, source: str, record_id: str, defect: str) -> None:
        self.truth.append((source, record_id, DEFECT_FIELDS[source][defect], defect))

    def apply(self, source: str, row: list[str], defect: str) -> None:
        """Corrupt ``row`` (record_id first) in place and record the defect."""
        if defect == "malformed_row":
            if self._rng.random() < 0.5:
                row.pop()
            else:
                row.append("x")
        else:
            field = DEFECT_FIELDS[source][defect]
            i = COLUMNS[source].index(field)
            row[i] = _corrupt(self._rng, defect, field, row[i])
        self.record(source, row[0], defect)


def _write_population(rng: random.Random, out: Path, stamp: str, n_people: int,
                      extract_date: datetime.date, defects: _Defects) -> list[_SourceFile]:
    """Stream psb_household and mca_residents in one pass over the people."""
    names = _Names()
    residences = _Residences(rng)
    population = _Population(rng, extract_date, names, residences)
    psb, mca = _SourceFile(out, PSB, stamp), _SourceFile(out, MCA, stamp)
    psb_id, mca_id = _RecordIds(rng, _RECORD_PREFIX[PSB]), _RecordIds(rng, _RECORD_PREFIX[MCA])
    marital = [(age, _Weighted(weights)) for age, weights in _MARITAL_BY_AGE]
    mca_extra = _MCA_COVERAGE * _MCA_EXTRA_SHARE / (1 - _MCA_EXTRA_SHARE)
    pending: list[tuple[int, int, list[str]]] = []  # (due person index, tiebreak, row values)

    def write_duplicate(values: list[str]) -> None:
        record_id = psb_id()
        psb.write([record_id, *values])
        defects.record(PSB, record_id, "duplicate_record")

    def write_mca(person: _Person, in_psb: bool, psb_clean: bool) -> None:
        age = int((population.extract_ord - person.birth) / 365.25)
        status = next(draw for below, draw in marital if age < below)(rng)
        allowance = "是" if rng.random() < 0.03 else "否"
        phone, town, address = person.phone, person.town, person.address
        if in_psb:
            if rng.random() >= 0.7:
                phone = _phone(rng, empty=0.10, landline=0.05)
            if rng.random() >= 0.85:
                town, address = residences()
        row = [mca_id(), person.id_number, person.name, status, allowance, phone, town, address]
        defect = defects.pick(MCA, phone)
        if defect == "name_mismatch":
            if in_psb and psb_clean:
                row[2] = names.altered(rng, person.name)
                defects.record(MCA, row[0], defect)
        elif defect:
            defects.apply(MCA, row, defect)
        mca.write(row)

    for i in range(n_people):
        while pending and pending[0][0] <= i:
            write_duplicate(heapq.heappop(pending)[2])
        person = population.new()
        row = [psb_id(), person.name, person.id_number, "男" if person.male else "女",
               datetime.date.fromordinal(person.birth).isoformat(), person.ethnicity,
               person.phone, person.town, person.address,
               datetime.date.fromordinal(person.registered).isoformat()]
        defect = defects.pick(PSB, person.phone)
        if defect == "duplicate_record":
            heapq.heappush(pending, (i + rng.randint(1, _DUPLICATE_WINDOW), i, row[1:]))
        elif defect:
            defects.apply(PSB, row, defect)
        psb.write(row)

        u = rng.random()
        if u < _MCA_COVERAGE:
            write_mca(person, in_psb=True, psb_clean=defect is None)
        elif u < _MCA_COVERAGE + mca_extra:
            write_mca(population.new(), in_psb=False, psb_clean=False)
    while pending:
        write_duplicate(heapq.heappop(pending)[2])
    return [psb, mca]


class _Enterprises:
    """Creates market entities with unique, valid credit codes."""

    _ORG_CODE_SPACE = 10**8
    _ORG_CODE_STEP = 5_483_521  # coprime with 10**8: index -> organisation code is a bijection

    def __init__(self, rng: random.Random, extract_date: datetime.date, names: _Names) -> None:
        self._rng = rng
        self._names = names
        self._residence = _Residences(rng)
        self._extract_ord = extract_date.toordinal()
        self._offset = rng.randrange(self._ORG_CODE_SPACE)
        self._credit_region = _Weighted(_CREDIT_REGIONS)
        self._industry = {"1": _Weighted(_ENTERPRISE_INDUSTRY), "2": _Weighted(_INDIVIDUAL_INDUSTRY)}
        self._form = _Weighted(_COMPANY_FORMS)
        self._status = _Weighted(_ENTERPRISE_STATUS)
        years = range(1990, extract_date.year + 1)
        self._year = _Weighted((y, 1.09 ** (y - 1990)) for y in years)

    def credit_code(self, index: int, org_type: str) -> str:
        body = f"{(index * self._ORG_CODE_STEP + self._offset) % self._ORG_CODE_SPACE:08d}"
        check = 11 - sum(int(c) * w for c, w in zip(body, _ORG_CODE_WEIGHTS)) % 11
        org_code = body + {10: "X", 11: "0"}.get(check, str(check))
        return make_uscc("9", org_type, self._credit_region(self._rng), org_code)

    def name(self, org_type: str, industry: str) -> str:
        rng = self._rng
        trade = "".join(rng.sample(_TRADE_NAME_CHARS, 2 if rng.random() < 0.7 else 3))
        company_words, shop_words = _INDUSTRY_WORDS[industry]
        if org_type == "2" and shop_words:
            return f"北京市大兴区{trade}{rng.choice(shop_words)}"
        return f"北京{trade}{rng.choice(company_words)}{self._form(rng)}"

    def established(self) -> int:
        year = self._year(self._rng)
        first = datetime.date(year, 1, 1).toordinal()
        last = min(datetime.date(year, 12, 31).toordinal(), self._extract_ord)
        return first + self._rng.randrange(last - first + 1)

    def new(self, index: int) -> list[str]:
        """A samr row without its record_id."""
        rng = self._rng
        org_type = "1" if rng.random() < 0.9 else "2"
        industry = self._industry[org_type](rng)
        if org_type == "2":
            capital = float(rng.choice(_INDIVIDUAL_CAPITALS))
        elif rng.random() < 0.75:
            capital = float(rng.choice(_ROUND_CAPITALS))
        else:
            capital = 10 * 5000 ** rng.random()  # log-uniform 10 .. 50000
        town, address = self._residence()
        return [self.credit_code(index, org_type), self.name(org_type, industry),
                self._names(rng, rng.random() < 0.7), industry, f"{capital:.2f}",
                datetime.date.fromordinal(self.established()).isoformat(), self._status(rng),
                town, address, _phone(rng, empty=0.08, landline=0.35)]


def _tax_status(rng: random.Random, samr_status: str) -> str:
    u = rng.random()
    if samr_status == "注销":
        return "注销" if u < 0.9 else "正常"
    if samr_status == "吊销":
        return "非正常" if u < 0.6 else "注销" if u < 0.8 else "正常"
    return "非正常" if u < 0.03 else "正常"


def _drifted_name(name: str) -> str:
    """The legal-form variant a taxpayer register sometimes keeps."""
    if name.endswith("有限责任公司"):
        return name.replace("有限责任公司", "有限公司")
    return name.replace("有限公司", "有限责任公司")


def _write_enterprises(rng: random.Random, out: Path, stamp: str, n_entities: int,
                       extract_date: datetime.date, defects: _Defects) -> list[_SourceFile]:
    """Stream samr_enterprises and tax_taxpayers in one pass over the entities."""
    enterprises = _Enterprises(rng, extract_date, _Names())
    samr, tax = _SourceFile(out, SAMR, stamp), _SourceFile(out, TAX, stamp)
    samr_id, tax_id = _RecordIds(rng, _RECORD_PREFIX[SAMR]), _RecordIds(rng, _RECORD_PREFIX[TAX])
    tax_extra = _TAX_COVERAGE * _TAX_EXTRA_SHARE / (1 - _TAX_EXTRA_SHARE)
    tax_office = {town: _TAX_OFFICES[i % len(_TAX_OFFICES)] for i, town in enumerate(DAXING_TOWNS)}
    extra_index = n_entities  # credit codes for entities unknown to samr follow samr's

    def write_tax(entity: list[str], status: str) -> None:
        credit_code, name, town, phone = entity[0], entity[1], entity[7], entity[9]
        if rng.random() < 0.01:
            name = _drifted_name(name)
        if rng.random() >= 0.65:
            phone = _phone(rng, empty=0.10, landline=0.35)
        small = credit_code[1] == "2" or rng.random() < 0.75
        row = [tax_id(), credit_code, name, status, "小规模纳税人" if small else "一般纳税人",
               tax_office[town], phone]
        defect = defects.pick(TAX, phone)
        if defect:
            defects.apply(TAX, row, defect)
        tax.write(row)

    for i in range(n_entities):
        entity = enterprises.new(i)
        row = [samr_id(), *entity]
        defect = defects.pick(SAMR, entity[-1])
        if defect:
            defects.apply(SAMR, row, defect)
        samr.write(row)

        u = rng.random()
        if u < _TAX_COVERAGE:
            write_tax(entity, _tax_status(rng, entity[6]))
        elif u < _TAX_COVERAGE + tax_extra:
            write_tax(enterprises.new(extra_index), "非正常" if rng.random() < 0.03 else "正常")
            extra_index += 1
    return [samr, tax]


def _write_truth(out: Path, truth: list[tuple[str, str, str, str]]) -> None:
    path = out / "truth" / "defects.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(("source", "record_key", "field", "defect_type"))
        writer.writerows(sorted(truth, key=lambda t: (t[0], t[1])))


def generate(scale: float, seed: int, out: Path,
             extract_date: datetime.date = DEFAULT_EXTRACT_DATE,
             progress: Callable[[str, int], None] | None = None) -> dict:
    """Write the four synthetic department extracts, the defect truth and the manifest.

    ``scale`` 1.0 gives the district's real size (1.81 M people, 144 k market
    entities).  Files go to ``out/<source>/<source>_<YYYYMMDD>.csv`` (the
    extract date), ``out/truth/defects.csv`` and ``out/manifest.json``;
    ``progress(source, rows)`` is called as each source is finished.  Returns
    the manifest.
    """
    if not scale > 0:
        raise ValueError("scale must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    stamp = extract_date.strftime("%Y%m%d")
    defects = _Defects(rng)
    files: list[dict] = []
    for write, base in ((_write_population, BASE_PEOPLE), (_write_enterprises, BASE_ENTERPRISES)):
        for source_file in write(rng, out, stamp, round(base * scale), extract_date, defects):
            files.append(source_file.close())
            if progress is not None:
                progress(source_file.source, source_file.rows)
    _write_truth(out, defects.truth)
    manifest = {
        "generator": {"scale": scale, "seed": seed, "extract_date": extract_date.isoformat()},
        "files": files,
    }
    (out / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest
