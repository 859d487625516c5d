"""Reference implementations of the Chinese identifiers used by the lake.

These are small, dependency-free functions that the synthetic data generator
uses to build identifiers and that the tests use as an oracle:

* 公民身份号码 (resident identity number, GB 11643-1999): 6-digit region code,
  8-digit birth date, 3-digit sequence (odd for men, even for women) and an
  ISO 7064 MOD 11-2 check character.
* 统一社会信用代码 (unified social credit code, GB 32100-2015): registering
  authority, organisation type, 6-digit region code, 9-character organisation
  code and a MOD 31 check character over the alphabet ``USCC_ALPHABET``.
* Phone numbers: mainland mobile numbers and Beijing (010) landlines.

Region codes are deliberately *not* checked by ``is_valid_cn_id``: the
administrative division list changes over time and a register must not reject
a person because their code was retired.  Use ``stdnum.cn.ric`` when the region
must be checked too.
"""

from __future__ import annotations

import datetime
import re

__all__ = [
    "USCC_ALPHABET",
    "USCC_AUTHORITY_TYPES",
    "is_valid_uscc_authority",
    "to_fullwidth",
    "cn_id_check_char",
    "is_valid_cn_id",
    "is_valid_cn_mobile",
    "is_valid_cn_phone",
    "is_valid_uscc",
    "make_cn_id",
    "make_uscc",
    "uscc_check_char",
]

_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"
_CN_ID_RE = re.compile(r"[0-9]{17}[0-9X]")

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 3^(i-1) mod 31, i = 1..17

# GB 32100-2015 table 1: registration-authority code -> the organisation-type codes it may use.
USCC_AUTHORITY_TYPES: dict[str, str] = {
    "1": "1239",  # 机构编制: 机关, 事业单位, 中央编办直接管理机构编制的群众团体, 其他
    "2": "19",  # 外交
    "3": "123459",  # 司法行政
    "4": "19",  # 文化
    "5": "1239",  # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": "129",  # 旅游
    "7": "129",  # 宗教
    "8": "19",  # 工会
    "9": "123",  # 工商: 企业, 个体工商户, 农民专业合作社
    "A": "19",  # 中央军委改革和编制办公室
    "N": "12349",  # 农业
    "Y": "1",  # 其他
}

_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")
_BEIJING_LANDLINE_RE = re.compile(r"010-?[0-9]{8}")


def cn_id_check_char(first17: str) -> str:
    """Return the GB 11643 check character for the first 17 digits of an ID."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    total = sum(int(d) * w for d, w in zip(first17, _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11]


def make_cn_id(region: str, birth: datetime.date, seq: int, male: bool) -> str:
    """Build a valid 18-character resident identity number.

    ``seq`` is the 3-digit sequence number (0..999); its parity must match the
    sex (odd for men, even for women), otherwise ``ValueError`` is raised.
    """
    if len(region) != 6 or not region.isdigit():
        raise ValueError(f"region code must be 6 digits, got {region!r}")
    if not 0 <= seq <= 999:
        raise ValueError(f"sequence must be in 0..999, got {seq}")
    if (seq % 2 == 1) != male:
        raise ValueError("sequence parity must be odd for men and even for women")
    first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
    return first17 + cn_id_check_char(first17)


def is_valid_cn_id(s: object) -> bool:
    """True if ``s`` is a well-formed ID with a real birth date and right check char."""
    if not isinstance(s, str) or not _CN_ID_RE.fullmatch(s):
        return False
    try:
        datetime.date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return cn_id_check_char(s[:17]) == s[17]


def uscc_check_char(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters of a USCC."""
    if len(first17) != 17:
        raise ValueError(f"expected 17 characters, got {first17!r}")
    try:
        total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS))
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the USCC alphabet") from None
    return USCC_ALPHABET[(31 - total % 31) % 31]


def make_uscc(authority: str, org_type: str, region: str, org_code9: str) -> str:
    """Build a valid unified social credit code from its parts.

    ``authority`` and ``org_type`` are one character each, ``region`` is the
    6-digit registering region and ``org_code9`` the 9-character organisation
    code.
    """
    if len(authority) != 1 or len(org_type) != 1:
        raise ValueError("authority and org_type must be one character each")
    if len(region) != 6 or not region.isdigit():
        raise ValueError(f"region code must be 6 digits, got {region!r}")
    if len(org_code9) != 9:
        raise ValueError(f"organisation code must be 9 characters, got {org_code9!r}")
    first17 = authority + org_type + region + org_code9
    return first17 + uscc_check_char(first17)


def is_valid_uscc(s: object) -> bool:
    """True if ``s`` is 18 characters of ``USCC_ALPHABET`` with the right check char."""
    if not isinstance(s, str) or len(s) != 18 or any(c not in _USCC_VALUE for c in s):
        return False
    return uscc_check_char(s[:17]) == s[17]


def is_valid_uscc_authority(s: object) -> bool:
    """True if the first two characters of ``s`` are a GB 32100 authority/type pair."""
    return isinstance(s, str) and len(s) >= 2 and s[1] in USCC_AUTHORITY_TYPES.get(s[0], "")


def to_fullwidth(s: str) -> str:
    """``s`` with printable ASCII (U+0021-U+007E) replaced by its full-width form (U+FF01-U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def is_valid_cn_mobile(s: object) -> bool:
    """True for a mainland mobile number: 11 digits starting with 13..19."""
    return isinstance(s, str) and _MOBILE_RE.fullmatch(s) is not None


def is_valid_cn_phone(s: object) -> bool:
    """True for a mobile number or a Beijing landline (010-12345678 / 01012345678)."""
    return is_valid_cn_mobile(s) or (
        isinstance(s, str) and _BEIJING_LANDLINE_RE.fullmatch(s) is not None
    )
