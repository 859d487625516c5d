"""The standard place-name/address library's parser (标准地名地址库): pure Python, no Spark.

A standard address in Daxing is::

    北京市大兴区{town}{road}{number}号[{building}号楼[{unit}单元][{room}室]]

or, in villages, ``北京市大兴区{town}{village}{number}号`` (a village takes the road's place). Department
copies vary; ``parse`` undoes the variations the departments are known to make:

- full-width digits, letters and signs (``１２号``, ``＃``) and stray spaces (ASCII and U+3000);
- Chinese numerals in front of a numbering word (``十二号``, ``三号楼``, ``五零一室``), converted with
  the maintained ``cn2an`` package; numerals inside names (``十里铺村``) are left alone;
- town aliases: a 镇 may be written ``X镇``, ``X地区``, ``X乡`` or plain ``X`` (``黄村地区`` is
  ``黄村镇``, ``亦庄地区`` is ``亦庄镇``); a 街道 as ``X街道``, ``X街道办事处``, ``X街道办``;
- ``大兴县`` (the name before 2001) is ``大兴区``; ``北京市`` / ``大兴区`` may be missing;
- buildings written ``3#``, ``3#楼``, ``3栋``, ``3幢``, ``3号栋``; ``12号院`` is door number 12;
- ``3-2-501`` after the door number is building 3, unit 2, room 501 (``3-501``: building 3, room 501;
  ``3号楼2-501``: unit 2, room 501).

Towns are the 22 towns and streets of ``lake.reference (district.towns)`` (the boundary registry; codes
``110115001``… in that order) and are rendered with those names. The **door key**
``town|road|number|building`` identifies a standard address (rooms and units are sub-addresses);
``address_code`` = ``110115`` + town sequence (3 digits) + the first 8 hex digits of sha1(key),
upper-case: the same key gives the same code in every run.

User data never raises: an address that cannot be read comes back with ``reason`` set (one of
``REASONS``) and the components that could be read.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

import cn2an

from lake.reference import DISTRICT as _DISTRICT

CITY = _DISTRICT.city
DISTRICT = _DISTRICT.short_name
DISTRICT_CODE = _DISTRICT.code
TOWNS: tuple[str, ...] = tuple(_DISTRICT.towns)
TOWN_SEQ: dict[str, int] = {t: i + 1 for i, t in enumerate(TOWNS)}

# why an address could not be resolved (also used by jobs.base.standard_address for 'not_in_library')
REASONS = {
    "empty": "the address is empty",
    "outside_district": "the address is outside 大兴区",
    "unknown_town": "the town/street is not one of the 22 towns and streets of 大兴区",
    "no_town": "no town or street of 大兴区 in the address",
    "no_road": "no road or village before the door number",
    "no_number": "no door number (…号)",
    "not_in_library": "no standard address (door plate) with this door key",
}

_OTHER_DISTRICTS = ("东城区", "西城区", "朝阳区", "丰台区", "石景山区", "海淀区", "门头沟区", "房山区",
                    "通州区", "顺义区", "昌平区", "怀柔区", "平谷区", "密云区", "延庆区", "崇文区", "宣武区")

# full-width ASCII -> half-width, dash look-alikes -> '-', every whitespace (incl. U+3000, NBSP) removed
_TRANS = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_TRANS.update({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uFE63\u30FC"})
_TRANS.update({ord(c): None for c in " \t\n\x0b\x0c\r\u3000\u00a0\u2002\u2003\u2009\u200b\ufeff"})

_NEEDS_TRANS = re.compile("[" + "".join(re.escape(chr(c)) for c in _TRANS) + "]")
_CN_DIGITS = "零〇一二三四五六七八九十百千两"
_CN_NUM = re.compile(f"[{_CN_DIGITS}]+(?=号|单元|室|栋|幢|座|层|楼|#)")
_HAS_CN = re.compile(f"[{_CN_DIGITS}]")

_REWRITES = [
    # buildings: 3#楼 / 3# / 3号栋 / 3栋 / 3幢 / 3号幢 -> 3号楼
    (re.compile(r"(\d+)(?:#楼?|号?栋|号?幢)"), r"\1号楼"),
    # 12号院 -> 12号 (the courtyard is the door plate)
    (re.compile(r"(\d+)号院"), r"\1号"),
    # dash forms after the door number: 号3-2-501 -> 号3号楼2单元501室, 号3-501 -> 号3号楼501室
    (re.compile(r"号(\d+)-(\d+)-(\d+)(?:室|号)?"), r"号\1号楼\2单元\3室"),
    (re.compile(r"号(\d+)-(\d+)(?:室|号)?(?=$|[^\d\-])"), r"号\1号楼\2室"),
    # inside a building: 号楼2-501 -> 号楼2单元501室
    (re.compile(r"号楼(\d+)-(\d+)(?:室|号)?"), r"号楼\1单元\2室"),
]


_NEEDS_REWRITE = re.compile(r"[#栋幢\-]|号院")


def _town_aliases() -> dict[str, tuple[str, bool]]:
    """alias -> (town, bare); a bare alias is the name without 镇/地区 (only for 镇: a street's bare
    name is often a road's too, 清源街道 / 清源路)."""
    out: dict[str, tuple[str, bool]] = {}
    for t in TOWNS:
        if t.endswith("镇"):
            stem = t[:-1]
            for a in (t, stem + "地区", stem + "地区办事处", stem + "乡", stem + "镇人民政府"):
                out[a] = (t, False)
            out.setdefault(stem, (t, True))
        elif t.endswith("街道"):
            stem = t[:-2]
            for a in (t, stem + "街道办事处", stem + "街道办"):
                out[a] = (t, False)
        else:
            out[t] = (t, False)
    return out


TOWN_ALIASES = _town_aliases()
_TOWN_RE = re.compile("|".join(re.escape(a) for a in sorted(TOWN_ALIASES, key=len, reverse=True)))
_PREFIX_CITY = re.compile(r"(?:中国)?(?:北京市|北京)(?:市辖区)?")
_PREFIX_DISTRICT = re.compile(r"大兴区|大兴县|大兴")
_OTHER_DISTRICT_RE = re.compile("|".join(_OTHER_DISTRICTS))
# another province, city or county (only looked for when no town of Daxing was found)
_ELSEWHERE = re.compile(r"[\u4e00-\u9fff]{2,6}?(?:省|自治区|特别行政区)|(?!北京)[\u4e00-\u9fff]{2,3}市(?![场政])|"
                        r"[\u4e00-\u9fff]{2,3}县(?!前|后|城)")
_UNKNOWN_TOWN = re.compile(r"[\u4e00-\u9fff]{2,5}?(?:镇|街道|地区|乡)")
# a road name that starts with a town's bare name: 黄村 + 东大街 is the road 黄村东大街, not the town
_ROAD_TAIL = re.compile(r"[东西南北中]?(?:大街|街|路|大道|道|巷|胡同|环路|一路|二路|三路)")
_BODY = re.compile(r"(?P<road>.*?\D)(?P<number>\d+)号(?![楼路街巷道])(?P<tail>.*)")
_BODY_BARE = re.compile(r"(?P<road>\D+?)(?P<number>\d+)")
_TAIL = re.compile(r"(?:(?P<building>\d+)号楼)?(?:(?P<unit>\d+)单元)?(?:(?P<room>\d+)(?:室|号|户)?)?(?P<rest>.*)")


@dataclass(frozen=True)
class Address:
    district: str | None = None
    town: str | None = None
    road: str | None = None      # road, street or village
    number: str | None = None    # door number, Arabic digits without leading zeros
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    rest: str | None = None      # what follows the last component read (kept, not part of the key)
    reason: str | None = None    # None when the address was read; else a key of REASONS

    @property
    def ok(self) -> bool:
        return self.reason is None


def clean(text: str | None) -> str:
    """Text-level normalisation: half-width, no spaces, Arabic numerals before numbering words,
    building/dash forms rewritten. Never raises."""
    if text is None:
        return ""
    s = str(text)
    if _NEEDS_TRANS.search(s):
        s = s.translate(_TRANS)
    if _HAS_CN.search(s):
        s = _CN_NUM.sub(_cn_to_arabic, s)
    if _NEEDS_REWRITE.search(s):
        for rx, rep in _REWRITES:
            s = rx.sub(rep, s)
    return s


def _cn_to_arabic(m: re.Match) -> str:
    try:
        return str(int(cn2an.cn2an(m.group(0), "smart")))
    except (ValueError, KeyError, TypeError, IndexError):
        return m.group(0)


def town_of(name: str | None) -> str | None:
    """The registry name of a town written in any known form (``黄村地区`` -> ``黄村镇``), else None."""
    if not name:
        return None
    s = clean(name)
    _, s = _strip_prefix(s)
    hit = TOWN_ALIASES.get(s)
    return hit[0] if hit else None


def _strip_prefix(s: str) -> tuple[bool, str]:
    """(district named, rest) after 北京市 / 大兴区 (大兴县)."""
    m = _PREFIX_CITY.match(s)
    if m:
        s = s[m.end():]
    m = _PREFIX_DISTRICT.match(s)
    named = False
    if m and not s.startswith("大兴机场"):
        # bare 大兴 only counts as the district when a town follows (大兴 + 黄村镇…)
        if m.group(0) != "大兴" or _TOWN_RE.match(s, m.end()):
            s = s[m.end():]
            named = True
    return named, s


def _num(s: str | None) -> str | None:
    return None if s is None or s == "" else str(int(s))


_FAST_BODY = re.compile(r"(?P<road>.*?\D)(?P<number>\d+)号(?![楼路街巷道])(?:(?P<building>\d+)号楼)?"
                        r"(?:(?P<unit>\d+)单元)?(?:(?P<room>\d+)室)?")
_DIGIT_HAO = re.compile(r"\d号")
_STANDARD_PREFIX = CITY + DISTRICT


def _parse_fast(s: str) -> Address | None:
    """The common case, a text already in the standard form, in one match; None when the text is
    anything else (then ``_parse_slow`` reads it, with the same result for every text read here)."""
    if not s.startswith(_STANDARD_PREFIX) or _NEEDS_TRANS.search(s) or _HAS_CN.search(s) or _NEEDS_REWRITE.search(s):
        return None
    tm = _TOWN_RE.match(s, 6)
    if tm is None or TOWN_ALIASES[tm.group(0)] != (tm.group(0), False):
        return None
    m = _FAST_BODY.fullmatch(s, tm.end())
    # a road containing "<digit>号" could be split earlier by the general reader: leave it to that one
    if m is None or _DIGIT_HAO.search(m.group("road")):
        return None
    b, u, r = m.group("building"), m.group("unit"), m.group("room")
    return Address(DISTRICT, tm.group(0), m.group("road"), str(int(m.group("number"))),
                   b and str(int(b)), u and str(int(u)), r and str(int(r)), None)


def parse(text: str | None, town: str | None = None) -> Address:
    """Read an address. ``town`` is a hint (a source's own town column) used only when the text
    names no town. Never raises; an address that cannot be read has ``reason`` set."""
    if isinstance(text, str):
        fast = _parse_fast(text)
        if fast is not None:
            return fast
    return _parse_slow(text, town)


def _parse_slow(text: str | None, town: str | None = None) -> Address:
    """``parse`` for every form (cleaning, prefixes, aliases, hints)."""
    s = clean(text)
    if not s:
        return Address(reason="empty")
    m = _PREFIX_CITY.match(s)
    if _OTHER_DISTRICT_RE.match(s, m.end() if m else 0):
        return Address(reason="outside_district", rest=s)
    district_named, r = _strip_prefix(s)
    found = None
    tm = _TOWN_RE.match(r)
    if tm:
        found, bare = TOWN_ALIASES[tm.group(0)]
        body = r[tm.end():]
        if bare:  # 黄村 + 东大街12号 is the road 黄村东大街, not the town 黄村
            bm = _BODY.fullmatch(body) or _BODY_BARE.fullmatch(body)
            if not body or (_ROAD_TAIL.fullmatch(bm.group("road")) if bm else _ROAD_TAIL.match(body)):
                found = None
        if found is not None:
            r = body
    if found is None:
        if not district_named and _ELSEWHERE.match(r):
            return Address(reason="outside_district", rest=s)
        found = town_of(town)
        if found is None:
            if _UNKNOWN_TOWN.match(r) and not _BODY.match(_UNKNOWN_TOWN.match(r).group(0)):
                return Address(district=DISTRICT, reason="unknown_town", rest=r)
            return Address(district=DISTRICT if district_named else None, reason="no_town", rest=r)
    bm = _BODY.fullmatch(r) or _BODY_BARE.fullmatch(r)
    if not bm:
        reason = "no_road" if r[:1].isdigit() else "no_number"
        return Address(district=DISTRICT, town=found, reason=reason, rest=r or None)
    t = _TAIL.fullmatch(bm.groupdict().get("tail") or "")
    return Address(
        district=DISTRICT, town=found, road=bm.group("road"), number=_num(bm.group("number")),
        building=_num(t.group("building")), unit=_num(t.group("unit")), room=_num(t.group("room")),
        rest=t.group("rest") or None,
    )


def canonical(addr: Address) -> str | None:
    """The standard text of an address read by ``parse`` (None for one that could not be read)."""
    if not addr.ok:
        return None
    return (f"{CITY}{DISTRICT}{addr.town}{addr.road}{addr.number}号"
            + (f"{addr.building}号楼" if addr.building else "")
            + (f"{addr.unit}单元" if addr.unit else "")
            + (f"{addr.room}室" if addr.room else ""))


def door_text(addr: Address) -> str | None:
    """The standard text of the door plate (and building) only: what a library row is."""
    if not addr.ok:
        return None
    return (f"{CITY}{DISTRICT}{addr.town}{addr.road}{addr.number}号"
            + (f"{addr.building}号楼" if addr.building else ""))


def normalise(text: str | None, town: str | None = None) -> str:
    """The standard text of ``text`` when it can be read, else the cleaned text (half-width, no
    spaces, Arabic numerals)."""
    a = parse(text, town)
    return canonical(a) if a.ok else clean(text)


def door_key(addr: Address) -> str | None:
    """``town|road|number|building`` (building empty when there is none); None when not read."""
    if not addr.ok:
        return None
    return f"{addr.town}|{addr.road}|{addr.number}|{addr.building or ''}"


def canonical_key(key: str) -> str | None:
    """A door key written by someone else (another town spelling, numerals) in this module's form,
    or None when it is not a door key."""
    parts = (key or "").split("|")
    if len(parts) != 4:
        return None
    town = town_of(parts[0])
    num = clean(parts[2] + "号") if parts[2] else ""
    bld = clean(parts[3] + "号楼") if parts[3] else ""
    m_num = re.fullmatch(r"(\d+)号", num)
    m_bld = re.fullmatch(r"(\d+)号楼", bld) if bld else None
    if town is None or not parts[1] or m_num is None or (bld and m_bld is None):
        return None
    return f"{town}|{clean(parts[1])}|{int(m_num.group(1))}|{int(m_bld.group(1)) if m_bld else ''}"


def town_code(town: str) -> str:
    """``110115`` + the town's 3-digit sequence (ValueError for a name not in the registry)."""
    name = town_of(town)
    if name is None:
        raise ValueError(f"'{town}' is not a town or street of 大兴区 (known: {', '.join(TOWNS)})")
    return f"{DISTRICT_CODE}{TOWN_SEQ[name]:03d}"


def address_code(key: str) -> str:
    """``110115`` + town sequence (3 digits) + first 8 hex of sha1(key), upper-case (17 characters).
    ValueError when the key's town is not a town of 大兴区."""
    town = key.split("|", 1)[0]
    if town not in TOWN_SEQ:
        raise ValueError(f"door key '{key}': '{town}' is not a town or street of 大兴区")
    return f"{DISTRICT_CODE}{TOWN_SEQ[town]:03d}{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8].upper()}"


# ------------------------------------------------------------------ batch form (used in mapInPandas)

PARSED_FIELDS = ("town", "road", "number", "building", "unit", "room", "rest", "reason",
                 "canonical", "door_text", "door_key", "address_code", "exact")


def parse_many(texts: Iterable[str | None], towns: Iterable[str | None] | None = None) -> dict[str, list]:
    """Column lists (``PARSED_FIELDS``) for many addresses; ``exact`` is True when the text already
    is the standard text."""
    out: dict[str, list] = {f: [] for f in PARSED_FIELDS}
    cols = [out[f] for f in PARSED_FIELDS]
    towns = towns if towns is not None else _nones()
    for text, hint in zip(texts, towns):
        a = parse(text, hint)
        c, key = canonical(a), door_key(a)
        row = (a.town, a.road, a.number, a.building, a.unit, a.room, a.rest, a.reason, c, door_text(a), key,
               address_code(key) if key else None, c is not None and text == c)
        for col, v in zip(cols, row):
            col.append(v)
    return out


def _nones():
    while True:
        yield None
