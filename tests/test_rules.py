"""Native Spark identifier checks (lake.rules) cross-checked against python-stdnum (stdnum.cn.ric,
stdnum.cn.uscc) and the Python references (sample.identifiers) on 100,000 generated ID numbers and
100,000 generated credit codes, valid and corrupted, in one Spark job; then the normalisation,
missing-ID and cross-field rules of ingest.check_rows on tiny inline frames.

Every intentional difference from stdnum is named in ``expected_id_rule_from_stdnum`` /
``expected_uscc_rule_from_stdnum`` and asserted to occur (and only where the comment says) in
``test_intentional_differences_from_stdnum_occur_and_only_there``.
"""
from __future__ import annotations

from pathlib import Path

import datetime
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from pyspark.sql import functions as F
from stdnum import numdb
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

from jobs.landing import ingest
from sample import identifiers as ref
from lake import rules
from lake.contracts import SourceColumn, SourceContract

N_IDS = 100_000
N_USCC = 100_000
SEED = 20261101

ID_RE = re.compile(r"[0-9]{17}[0-9X]")
USCC_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")
USCC_RULE_RE = re.compile(rules.USCC_REGEX.replace(r"\z", "$"))  # used with fullmatch
IMPOSSIBLE_DATES = ["19900230", "20010229", "19000229", "19991301", "19990001", "19990431",
                    "19990100", "20231131", "00000101", "19990632"]
NOT_IN_USCC_ALPHABET = "IOSVZ"
REGIONS = sorted(rules.region_codes())
PROVINCES = sorted({c[:2] for c in REGIONS})
# codes stdnum only accepts for some birth years ([2001-]大兴区, [-2010]崇文区 ...): (code, first, last)
YEAR_BOUND_REGIONS = [("110115", 2001, None), ("110116", 2001, None), ("110118", 2015, None),
                      ("110112", 1997, None), ("110103", None, 2010), ("110104", None, 2010)]
WS_CHARS = " \t\n\x0b\x0c\r\u3000"  # what the rules call stray whitespace (Java \s, plus U+3000)
TO_HALFWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
TO_FULLWIDTH = {c - 0xFEE0: c for c in range(0xFF01, 0xFF5F)}


# ----------------------------------------------------------------------------- generation

def _random_date(rng: random.Random) -> datetime.date:
    lo, hi = datetime.date(1900, 1, 1).toordinal(), datetime.date(2026, 11, 1).toordinal()
    return datetime.date.fromordinal(rng.randint(lo, hi))


def _valid_id(rng: random.Random, region: str | None = None, birth: datetime.date | None = None) -> str:
    seq = rng.randrange(1000)
    return ref.make_cn_id(region or rng.choice(REGIONS), birth or _random_date(rng), seq, male=seq % 2 == 1)


def _valid_id_ending_in_x(rng: random.Random) -> str:
    while True:
        v = _valid_id(rng)
        if v.endswith("X"):
            return v


def _with_check(first17: str) -> str:
    return first17 + ref.cn_id_check_char(first17)


def _unknown_region(rng: random.Random) -> str:
    """A code in no known province (see _unknown_county for known provinces)."""
    while True:
        code = f"{rng.randrange(1_000_000):06d}"
        if code[:2] not in PROVINCES:
            return code


def _unknown_county(rng: random.Random) -> str:
    """A known province with an unknown county (stdnum's lookup raises KeyError on these)."""
    while True:
        code = rng.choice(PROVINCES) + f"{rng.randrange(10_000):04d}"
        if code not in rules.region_codes():
            return code


def _sprinkle(rng: random.Random, v: str, chars: str, k: int) -> str:
    for _ in range(k):
        pos = rng.randrange(len(v) + 1)
        v = v[:pos] + rng.choice(chars) + v[pos:]
    return v


def _to_fullwidth(rng: random.Random, v: str) -> str:
    positions = rng.sample(range(len(v)), k=rng.randint(1, len(v)))
    return "".join(chr(TO_FULLWIDTH[ord(c)]) if i in positions and ord(c) in TO_FULLWIDTH else c
                   for i, c in enumerate(v))


def make_id(rng: random.Random, kind: str) -> str:
    v = _valid_id(rng)
    if kind == "valid":
        return v
    if kind == "valid_x":
        return _valid_id_ending_in_x(rng)
    if kind == "check":
        return v[:17] + rng.choice([c for c in "0123456789X" if c != v[17]])
    if kind == "short":
        pos = rng.randrange(18)
        return v[:pos] + v[pos + 1:]
    if kind == "long":
        pos = rng.randrange(19)
        return v[:pos] + str(rng.randrange(10)) + v[pos:]
    if kind == "letter":
        pos = rng.randrange(17)
        return v[:pos] + rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcz") + v[pos + 1:]
    if kind == "bad_date":
        return _with_check(v[:6] + rng.choice(IMPOSSIBLE_DATES) + v[14:17])
    if kind == "bad_date_bad_check":
        good = _with_check(v[:6] + rng.choice(IMPOSSIBLE_DATES) + v[14:17])
        return good[:17] + rng.choice([c for c in "0123456789X" if c != good[17]])
    if kind == "lower_x":
        return _valid_id_ending_in_x(rng)[:17] + "x"
    if kind == "lower_x_wrong":  # lowercase x where the check character is not X
        return v[:17] + "x" if v[17] != "X" else v[:17] + "0"
    if kind == "region_unknown":
        return _with_check(_unknown_region(rng) + v[6:17])
    if kind == "region_unknown_bad_check":
        good = _with_check(_unknown_region(rng) + v[6:17])
        return good[:17] + rng.choice([c for c in "0123456789X" if c != good[17]])
    if kind == "province_only":
        return _with_check(_unknown_county(rng) + v[6:17])
    if kind == "region_year":  # a real code, used outside the years stdnum's data gives it
        code, first, last = rng.choice(YEAR_BOUND_REGIONS)
        year = rng.randint(1930, first - 1) if first else rng.randint(last + 1, 2025)
        return _valid_id(rng, code, datetime.date(year, rng.randint(1, 12), rng.randint(1, 28)))
    if kind == "pre_1880":
        return _valid_id(rng, birth=datetime.date(rng.randint(1000, 1879), 6, 15))
    if kind == "fullwidth":
        x_id = _valid_id_ending_in_x(rng)
        return _to_fullwidth(rng, rng.choice([v, x_id, x_id[:17] + "x"]))
    if kind == "whitespace":
        x_id = _valid_id_ending_in_x(rng)
        return _sprinkle(rng, rng.choice([v, x_id[:17] + "x"]), WS_CHARS, rng.randint(1, 3))
    if kind == "bad_last":  # 17 digits and a last character that is neither a digit nor X
        return v[:17] + rng.choice("ABCDEFGHJKYZ*-/")
    if kind == "fullwidth_whitespace":
        return _sprinkle(rng, _to_fullwidth(rng, v), WS_CHARS, rng.randint(1, 2))
    if kind == "nbsp":  # a Unicode space that is not "stray whitespace" in the rules' sense
        return rng.choice(["\u00a0" + v, v + "\u2009", v[:6] + "\u00a0" + v[6:]])
    if kind == "noise":
        return "".join(rng.choice("0123456789X") for _ in range(18))
    if kind == "odd":
        return rng.choice(["", " ", "\u3000", "X" * 18, v + " ", " " + v[1:], v.replace(v[3], "-", 1), "１" + v[1:]])
    raise AssertionError(kind)


ID_KINDS = [("valid", 26), ("valid_x", 3), ("check", 12), ("short", 4), ("long", 4), ("letter", 5),
            ("bad_date", 7), ("bad_date_bad_check", 3), ("lower_x", 3), ("lower_x_wrong", 2),
            ("region_unknown", 5), ("region_unknown_bad_check", 2), ("province_only", 2), ("region_year", 3),
            ("pre_1880", 1), ("bad_last", 1), ("fullwidth", 4), ("whitespace", 4), ("fullwidth_whitespace", 2), ("nbsp", 1),
            ("noise", 6), ("odd", 2)]


def _valid_uscc(rng: random.Random, digit_prefix: bool | None = None) -> str:
    alpha = ref.USCC_ALPHABET
    if digit_prefix is None:
        digit_prefix = rng.random() < 0.7
    pair = rng.choice([p for p in rules.USCC_PAIRS if p[0].isdigit() == digit_prefix])
    region = f"{rng.randrange(1_000_000):06d}"
    org = "".join(rng.choice(alpha) for _ in range(9))
    return ref.make_uscc(pair[0], pair[1], region, org)


def _invalid_pair(rng: random.Random) -> str:
    while True:
        p = rng.choice(ref.USCC_ALPHABET) + rng.choice(ref.USCC_ALPHABET)
        if p not in rules.USCC_PAIRS:
            return p


def _uscc_with_check(first17: str) -> str:
    return first17 + ref.uscc_check_char(first17)


def make_uscc_value(rng: random.Random, kind: str) -> str:
    v = _valid_uscc(rng)
    if kind == "valid":
        return v
    if kind == "letter_authority":  # A / N / Y authorities: valid per GB 32100, stdnum says format
        return _valid_uscc(rng, digit_prefix=False)
    if kind == "check":
        return v[:17] + rng.choice([c for c in ref.USCC_ALPHABET if c != v[17]])
    if kind == "bad_pair":
        return _uscc_with_check(_invalid_pair(rng) + v[2:17])
    if kind == "bad_pair_bad_check":
        good = _uscc_with_check(_invalid_pair(rng) + v[2:17])
        return good[:17] + rng.choice([c for c in ref.USCC_ALPHABET if c != good[17]])
    if kind == "region_letter":
        pos = rng.randrange(2, 8)
        return _uscc_with_check(v[:pos] + rng.choice("ABCDEFGHJKLMNPQRTUWXY") + v[pos + 1:17])
    if kind == "short":
        pos = rng.randrange(18)
        return v[:pos] + v[pos + 1:]
    if kind == "long":
        pos = rng.randrange(19)
        return v[:pos] + rng.choice(ref.USCC_ALPHABET) + v[pos:]
    if kind == "bad_char":
        pos = rng.randrange(18)
        return v[:pos] + rng.choice(NOT_IN_USCC_ALPHABET) + v[pos + 1:]
    if kind == "lower":
        while v.lower() == v:  # a code with at least one letter
            v = _valid_uscc(rng)
        return v.lower()
    if kind == "hyphen":  # stdnum removes hyphens, the rules do not
        pos = rng.randrange(1, 18)
        return v[:pos] + "-" + v[pos:]
    if kind == "fullwidth":
        return _to_fullwidth(rng, rng.choice([v, v.lower()]))
    if kind == "whitespace":
        return _sprinkle(rng, v, WS_CHARS, rng.randint(1, 3))
    if kind == "noise":
        return "".join(rng.choice(ref.USCC_ALPHABET) for _ in range(18))
    if kind == "odd":
        return rng.choice(["", " ", v + " ", v[:8] + "-" + v[9:], "９" + v[1:]])
    raise AssertionError(kind)


USCC_KINDS = [("valid", 28), ("letter_authority", 4), ("check", 15), ("bad_pair", 6), ("bad_pair_bad_check", 2),
              ("region_letter", 3), ("short", 4), ("long", 4), ("bad_char", 7), ("lower", 4), ("hyphen", 2),
              ("fullwidth", 4), ("whitespace", 4), ("noise", 10), ("odd", 3)]


def _draw(rng: random.Random, kinds, n: int) -> list[str]:
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    return rng.choices(names, weights=weights, k=n)


# ----------------------------------------------------------------------------- Python oracles

def py_normalize(v: str, identifier: bool = True) -> str | None:
    """What rules.normalized does, in plain Python."""
    t = "".join(c for c in v.translate(TO_HALFWIDTH) if c not in WS_CHARS)
    if identifier:
        t = t.upper()
    return t or None


def py_normalize_rules(v: str) -> str:
    """The normalisation findings rules.normalize_issues reports, in plain Python."""
    found = []
    if any(c in WS_CHARS for c in v) and any(c not in WS_CHARS for c in v):
        found.append("normalize.whitespace")
    if any("\uff01" <= c <= "\uff5e" for c in v):
        found.append("normalize.fullwidth")
    return ",".join(found)


def _py_date_ok(v: str) -> bool:
    try:
        datetime.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return True


def _pre_1880(v: str) -> bool:
    """A well-formed ID whose birth year is before 1880: rules reject it, the references accept it
    (see test_birth_year_before_1880_is_rejected_although_reference_accepts)."""
    return bool(ID_RE.fullmatch(v.upper())) and int(v[6:10]) < 1880


_LOC = numdb.get("cn/loc")


def _stdnum_county_known(code: str) -> bool:
    """Whether stdnum's cn/loc lookup finds a county for the code, whatever the year."""
    return any("county" in props for _, props in _LOC.info(code))


def stdnum_id_outcome(u: str) -> str:
    """stdnum.cn.ric.validate's verdict: valid / length / format / checksum / birth_date /
    birth_place / keyerror."""
    try:
        ric.validate(u)
        return "valid"
    except InvalidLength:
        return "length"
    except InvalidFormat:
        return "format"
    except InvalidChecksum:
        return "checksum"
    except InvalidComponent:
        try:
            ric.get_birth_date(u)
        except InvalidComponent:
            return "birth_date"
        return "birth_place"
    except KeyError:  # stdnum bug: a known province with an unknown county raises KeyError('county')
        return "keyerror"


def expected_id_rule_from_stdnum(u: str | None, outcome: str) -> tuple[str | None, str]:
    """(the rule lake.rules must report for the normalised value ``u``, why), from stdnum's outcome.

    ``why`` is "same" when the verdicts agree one to one, else the name of the intentional difference.
    """
    if u is None:
        return None, "empty"  # a value that normalises to nothing is the required/missing rules' business
    if not u.isascii():
        # [nbsp] stdnum maps Unicode spaces/dashes/digits to ASCII and strips surrounding spaces; the
        # rules only remove ASCII whitespace and U+3000 (after full-width conversion): anything else
        # non-ASCII is a format error.
        return "cn_id.format", "same" if outcome in ("length", "format") else "non_ascii"
    if outcome in ("length", "format"):
        return "cn_id.format", "same"
    pre_1880 = bool(ID_RE.fullmatch(u)) and _py_date_ok(u) and int(u[6:10]) < 1880
    if outcome == "checksum":
        if u[17] not in "0123456789X":
            return "cn_id.format", "check_char_not_digit_or_x"  # [a] stdnum: checksum; rules: format
        if not _py_date_ok(u) or pre_1880:
            return "cn_id.birth_date", "date_before_checksum"   # [b] rules report the date first
        return "cn_id.checksum", "same"
    if pre_1880:
        return "cn_id.birth_date", "pre_1880"                   # [e] rules require birth year >= 1880
    if outcome == "valid":
        return None, "same"
    if outcome == "birth_date":
        return "cn_id.birth_date", "same"
    if outcome == "keyerror":
        return "cn_id.region", "stdnum_keyerror"                # [d] stdnum crashes, rules: unknown region
    assert outcome == "birth_place"
    if not _stdnum_county_known(u[:6]):
        return "cn_id.region", "same"
    # [c] the code is a real (current or historical) code, but stdnum's data says it was not in use
    # in the birth year. The rules accept it: an ID keeps the code it was issued with (people born
    # in Daxing before 2001 hold 110115 numbers).
    return None, "region_year"


def stdnum_uscc_outcome(u: str) -> str:
    try:
        uscc.validate(u)
        return "valid"
    except InvalidLength:
        return "length"
    except InvalidFormat:
        return "format"
    except InvalidChecksum:
        return "checksum"


def expected_uscc_rule_from_stdnum(u: str | None, outcome: str) -> tuple[str | None, str]:
    if u is None:
        return None, "empty"
    if not u.isascii():
        return "cn_uscc.format", "same" if outcome in ("length", "format") else "non_ascii"
    if "-" in u:
        # [i] stdnum.cn.uscc.compact removes hyphens; a hyphen is not stray whitespace for the rules
        return "cn_uscc.format", "same" if outcome in ("length", "format") else "hyphen"
    pair_ok = u[:2] in rules.USCC_PAIRS
    if outcome in ("length", "format"):
        if outcome == "format" and USCC_RULE_RE.fullmatch(u):
            # [g] stdnum wants characters 1-8 to be digits; GB 32100 also allows letter authorities
            # (A 中央军委改革和编制办公室, N 农业, Y 其他) and the rules accept them when the pair is valid
            if not pair_ok:
                return "cn_uscc.authority", "letter_in_first_two"
            return (None if uscc.calc_check_digit(u) == u[17] else "cn_uscc.checksum"), "letter_in_first_two"
        return "cn_uscc.format", "same"
    if not pair_ok:
        # [f] stdnum does not check the authority / organisation-type pair at all; [h] the rules report
        # an impossible pair before (instead of) a wrong check character
        return "cn_uscc.authority", "pair_not_checked" if outcome == "valid" else "pair_before_checksum"
    if outcome == "checksum":
        return "cn_uscc.checksum", "same"
    return None, "same"


def expected_id_rule(v: str) -> str | None:
    """The rule the Spark check on the *raw* value should report, per the reference implementation
    plus the rules' birth-year floor of 1880 and the region list. Spark compares on the upper-cased
    value, so the oracle does too (see test_lowercase_values_are_judged_on_their_upper_case_form)."""
    u = v.upper()
    if not ID_RE.fullmatch(u):
        return "cn_id.format"
    if not _py_date_ok(u) or _pre_1880(u):
        return "cn_id.birth_date"
    if ref.cn_id_check_char(u[:17]) != u[17]:
        return "cn_id.checksum"
    if u[:6] not in rules.region_codes():
        return "cn_id.region"
    return None


def expected_uscc_rule(v: str) -> str | None:
    u = v.upper()
    if not USCC_RE.fullmatch(u) or not u[2:8].isdigit():
        return "cn_uscc.format"
    if u[:2] not in rules.USCC_PAIRS:
        return "cn_uscc.authority"
    if ref.uscc_check_char(u[:17]) != u[17]:
        return "cn_uscc.checksum"
    return None


# ----------------------------------------------------------------------------- the one Spark job

def _first(col: str):
    first = F.get(col, 0)
    return first["rule"], first["message"], first["severity"], first["defect_type"]


@pytest.fixture(scope="module")
def checked(spark) -> pd.DataFrame:
    rng = random.Random(SEED)
    id_kinds = _draw(rng, ID_KINDS, N_IDS)
    uscc_kinds = _draw(rng, USCC_KINDS, N_USCC)
    pdf = pd.DataFrame({
        "n": range(N_IDS),
        "id_kind": id_kinds,
        "id_v": [make_id(rng, k) for k in id_kinds],
        "uscc_kind": uscc_kinds,
        "uscc_v": [make_uscc_value(rng, k) for k in uscc_kinds],
    })
    df = spark.createDataFrame(pdf, "n long, id_kind string, id_v string, uscc_kind string, uscc_v string")
    # what check_rows does to an identifier column: normalise, then check the normalised value
    df = (df.withColumn("id_nv", rules.normalized(F.col("id_v"), identifier=True))
            .withColumn("us_nv", rules.normalized(F.col("uscc_v"), identifier=True)))

    def rule_list(issues):
        return F.array_join(F.transform(F.filter(F.array(*issues), lambda x: x.isNotNull()), lambda x: x["rule"]), ",")

    id_up, us_up = F.upper(F.col("id_v")), F.upper(F.col("uscc_v"))
    issues = df.select(
        "n", "id_kind", "id_v", "uscc_kind", "uscc_v", "id_nv", "us_nv",
        # the checks on the raw value (as the existing callers use them)
        F.filter(F.array(*rules.cn_id_issues("id_v")), lambda x: x.isNotNull()).alias("id_issues"),
        F.filter(F.array(*rules.cn_uscc_issues("uscc_v")), lambda x: x.isNotNull()).alias("us_issues"),
        # the check_rows path: normalisation findings on the raw value, checks on the normalised one
        rule_list(rules.normalize_issues(F.col("id_v"), "id_v")).alias("id_norm_rules"),
        rule_list(rules.normalize_issues(F.col("uscc_v"), "uscc_v")).alias("us_norm_rules"),
        F.filter(F.array(*rules.cn_id_issues("id_nv")), lambda x: x.isNotNull()).alias("idn_issues"),
        F.filter(F.array(*rules.cn_uscc_issues("us_nv")), lambda x: x.isNotNull()).alias("usn_issues"),
        # the native check characters, only where the format allows computing them
        F.when(id_up.rlike(r"^[0-9]{17}"), rules.cn_id_check_char(id_up)).alias("id_check"),
        F.when(us_up.rlike(r"^[0-9A-HJ-NPQRTUWXY]{17}"), rules.uscc_check_char(us_up)).alias("us_check"),
        rules.gender_from_id(F.col("id_v")).alias("gender"),
        rules.birth_date_from_id(F.col("id_v")).cast("string").alias("birth"),
    )
    # cached so the select below reads each issue array instead of recomputing it once per field
    issues = issues.cache()
    id_rule, id_msg, id_sev, id_defect = _first("id_issues")
    us_rule, us_msg, us_sev, us_defect = _first("us_issues")
    out = issues.select(
        "n", "id_kind", "id_v", "uscc_kind", "uscc_v", "id_nv", "us_nv", "id_check", "us_check", "gender", "birth",
        F.size("id_issues").alias("id_n"), id_rule.alias("id_rule"), id_msg.alias("id_msg"),
        id_sev.alias("id_sev"), id_defect.alias("id_defect"),
        F.size("us_issues").alias("us_n"), us_rule.alias("us_rule"), us_msg.alias("us_msg"),
        us_sev.alias("us_sev"), us_defect.alias("us_defect"),
        "id_norm_rules", "us_norm_rules",
        F.size("idn_issues").alias("idn_n"), _first("idn_issues")[0].alias("idn_rule"),
        _first("idn_issues")[2].alias("idn_sev"), _first("idn_issues")[3].alias("idn_defect"),
        F.size("usn_issues").alias("usn_n"), _first("usn_issues")[0].alias("usn_rule"),
        _first("usn_issues")[2].alias("usn_sev"), _first("usn_issues")[3].alias("usn_defect"),
    )
    # the Spark job runs (in the JVM) while this thread computes the Python side
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(out.toPandas)
        py = pdf[["n"]].copy()
        py["py_id_nv"] = [py_normalize(v) for v in pdf["id_v"]]
        py["py_us_nv"] = [py_normalize(v) for v in pdf["uscc_v"]]
        py["py_id_norm_rules"] = [py_normalize_rules(v) for v in pdf["id_v"]]
        py["py_us_norm_rules"] = [py_normalize_rules(v) for v in pdf["uscc_v"]]
        # stdnum's verdicts on the normalised values, in the rules' vocabulary
        py["stdnum_id"] = [stdnum_id_outcome(u) if u else "empty" for u in py["py_id_nv"]]
        py["stdnum_us"] = [stdnum_uscc_outcome(u) if u else "empty" for u in py["py_us_nv"]]
        exp_id = [expected_id_rule_from_stdnum(u, o) for u, o in zip(py["py_id_nv"], py["stdnum_id"])]
        exp_us = [expected_uscc_rule_from_stdnum(u, o) for u, o in zip(py["py_us_nv"], py["stdnum_us"])]
        py["exp_id_rule"], py["id_why"] = [e for e, _ in exp_id], [w for _, w in exp_id]
        py["exp_us_rule"], py["us_why"] = [e for e, _ in exp_us], [w for _, w in exp_us]
        spark_side = job.result()
    issues.unpersist()
    assert len(spark_side) == N_IDS
    return spark_side.merge(py, on="n").sort_values("n").reset_index(drop=True)


def _mismatches(rows, pred) -> list:
    bad = [r for r in rows if not pred(r)]
    return bad[:10]


def _none(v):
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else v


# ----------------------------------------------------------------------------- against python-stdnum

def test_generated_enough_values_of_every_kind(checked):
    assert checked["id_v"].notna().sum() >= 100_000 and checked["uscc_v"].notna().sum() >= 100_000
    assert set(checked["id_kind"]) == {k for k, _ in ID_KINDS}
    assert set(checked["uscc_kind"]) == {k for k, _ in USCC_KINDS}
    assert (checked["id_kind"].value_counts() >= 500).all()
    assert (checked["uscc_kind"].value_counts() >= 1000).all()


def test_normalisation_matches_python(checked):
    rows = list(checked.itertuples(index=False))
    assert _mismatches(rows, lambda r: _none(r.id_nv) == r.py_id_nv and _none(r.us_nv) == r.py_us_nv) == []
    assert _mismatches(rows, lambda r: r.id_norm_rules == r.py_id_norm_rules) == []
    assert _mismatches(rows, lambda r: r.us_norm_rules == r.py_us_norm_rules) == []
    counts = Counter(checked["id_norm_rules"]) + Counter(checked["us_norm_rules"])
    assert min(counts["normalize.whitespace"], counts["normalize.fullwidth"],
               counts["normalize.whitespace,normalize.fullwidth"]) > 1000


def test_cn_id_verdict_matches_stdnum(checked):
    """Every normalised ID gets the same verdict from the Spark rules as from stdnum.cn.ric (birth
    date and birth place included), up to the intentional differences named in
    expected_id_rule_from_stdnum."""
    rows = list(checked.itertuples(index=False))
    assert _mismatches(rows, lambda r: r.idn_n <= 1) == []
    assert _mismatches(rows, lambda r: _none(r.idn_rule) == r.exp_id_rule) == []
    verdicts = Counter(r.idn_rule for r in rows)
    assert min(verdicts[k] for k in ("cn_id.format", "cn_id.birth_date", "cn_id.checksum", "cn_id.region")) > 2000
    assert verdicts[None] > 40_000
    # stdnum itself agrees with most values outright, and calls many of them valid
    assert sum(r.id_why == "same" for r in rows) > 55_000  # ~1 in 4 valid IDs use a code stdnum dates away
    assert sum(r.stdnum_id == "valid" for r in rows) > 15_000


def test_uscc_verdict_matches_stdnum(checked):
    rows = list(checked.itertuples(index=False))
    assert _mismatches(rows, lambda r: r.usn_n <= 1) == []
    assert _mismatches(rows, lambda r: _none(r.usn_rule) == r.exp_us_rule) == []
    verdicts = Counter(r.usn_rule for r in rows)
    assert min(verdicts[k] for k in ("cn_uscc.format", "cn_uscc.authority", "cn_uscc.checksum")) > 5000
    assert verdicts[None] > 30_000
    assert sum(r.us_why == "same" for r in rows) > 60_000


def test_intentional_differences_from_stdnum_occur_and_only_there(checked):
    id_why = checked.groupby("id_why")["id_kind"].agg(set).to_dict()
    assert set(id_why) == {"same", "empty", "non_ascii", "check_char_not_digit_or_x", "date_before_checksum",
                           "pre_1880", "stdnum_keyerror", "region_year"}
    assert id_why["region_year"] <= {"region_year", "valid", "valid_x", "fullwidth", "whitespace",
                                     "fullwidth_whitespace", "lower_x", "odd"}
    assert id_why["check_char_not_digit_or_x"] == {"bad_last"}
    assert {"bad_date_bad_check"} <= id_why["date_before_checksum"] <= {"bad_date_bad_check", "noise"}
    assert "region_year" in id_why["region_year"]
    assert id_why["stdnum_keyerror"] == {"province_only"}
    assert "pre_1880" in id_why["pre_1880"] and id_why["pre_1880"] <= {"pre_1880", "noise"}
    assert id_why["non_ascii"] == {"nbsp"}
    # the year-bound codes are real codes, and stdnum accepts the very same IDs for another birth year
    year_rows = checked[checked["id_why"] == "region_year"]
    assert (year_rows["idn_n"] == 0).all()
    assert all(u[:6] in rules.region_codes() for u in year_rows["py_id_nv"])
    moved = [u[:6] + ("2020" if u[6:10] < "2001" else "1995") + u[10:17] for u in year_rows["py_id_nv"].head(200)]
    assert sum(ric.is_valid(_with_check(m)) for m in moved) > 100

    us_why = checked.groupby("us_why")["uscc_kind"].agg(set).to_dict()
    assert set(us_why) == {"same", "empty", "hyphen", "letter_in_first_two", "pair_not_checked",
                           "pair_before_checksum"}
    assert us_why["hyphen"] == {"hyphen"}
    assert "bad_pair" in us_why["pair_not_checked"]
    assert "bad_pair_bad_check" in us_why["pair_before_checksum"]
    assert {"letter_authority", "bad_pair", "valid"} <= us_why["letter_in_first_two"]
    letters = checked[checked["uscc_kind"] == "letter_authority"]
    assert (letters["usn_n"] == 0).all() and (letters["stdnum_us"] == "format").all()


def test_region_codes_are_stdnums_codes():
    """rules.region_codes() is exactly the set of codes stdnum's cn/loc lookup knows (any year):
    every listed code, and a sample of 40,000 other 6-digit strings weighted to known provinces."""
    codes = rules.region_codes()
    assert len(codes) > 6000 and "110115" in codes and "110224" in codes  # 大兴区 and the old 大兴县
    assert "110103" in codes  # 崇文区, merged away in 2010: historical codes count
    assert all(_stdnum_county_known(c) for c in codes)
    rng = random.Random(SEED)
    others = {rng.choice(PROVINCES) + f"{rng.randrange(10_000):04d}" for _ in range(30_000)}
    others |= {f"{rng.randrange(1_000_000):06d}" for _ in range(10_000)}
    assert [c for c in others if (c in codes) != _stdnum_county_known(c)] == []


def test_region_flags_join_agrees_with_the_in_list(spark):
    """The ingest looks region codes up with a broadcast join (``with_region_flags``), the other
    callers with the ``IN`` list of ``region_known``: on the 100,000 generated IDs (raw values, any
    case, corrupted ones included) both give every value the same ID verdict and message."""
    rng = random.Random(SEED + 1)
    values = [make_id(rng, k) for k in _draw(rng, ID_KINDS, N_IDS)]
    df = rules.with_region_flags(spark.createDataFrame([(i, v) for i, v in enumerate(values)], "n long, v string"), ["v"])
    joined = rules.cn_id_issues("v", F.col(rules.region_flag_column("v")))[0]
    listed = rules.cn_id_issues("v")[0]
    out = df.select("n", joined["rule"].alias("j"), joined["message"].alias("jm"),
                    listed["rule"].alias("l"), listed["message"].alias("lm"))
    agg = out.agg(F.count("*").alias("rows"),
                  F.sum((~F.col("j").eqNullSafe(F.col("l")) | ~F.col("jm").eqNullSafe(F.col("lm"))).cast("int")).alias("differ"),
                  F.sum((F.col("j") == "cn_id.region").cast("int")).alias("region"),
                  F.sum(F.col("j").isNull().cast("int")).alias("valid")).first()
    assert agg["rows"] == N_IDS  # the left join neither drops nor duplicates a row
    assert agg["differ"] == 0
    assert agg["region"] > 100 and agg["valid"] > 10_000  # both verdicts occur, so the comparison means something


def test_uscc_pairs_follow_gb32100():
    assert rules.USCC_AUTHORITY_TYPES["9"] == "123"
    assert {"91", "92", "93", "12", "51", "52", "53", "Y1", "N2", "A1"} <= set(rules.USCC_PAIRS)
    assert not {"99", "94", "14", "Y2", "54", "A2", "B1", "01"} & set(rules.USCC_PAIRS)
    assert len(rules.USCC_PAIRS) == 36
    # stdnum does not check the pair: an impossible pair with the right check character is valid there
    bad = _uscc_with_check("99" + "110115" + "MA01ABCD2")
    assert uscc.is_valid(bad) and expected_uscc_rule(bad) == "cn_uscc.authority"


# ----------------------------------------------------------------------------- against sample.identifiers

def test_cn_id_verdict_matches_reference(checked):
    rows = list(checked.itertuples(index=False))
    # valid in Python (and a known region) <=> no issue in Spark, for every value without lowercase
    cased = [r for r in rows if r.id_v == r.id_v.upper() and not _pre_1880(r.id_v)]
    assert len(cased) > 50_000
    assert _mismatches(cased, lambda r: (ref.is_valid_cn_id(r.id_v) and r.id_v[:6] in rules.region_codes())
                       == (r.id_n == 0)) == []
    # at most one issue per value, and the rule is exactly the one the reference implies
    assert _mismatches(rows, lambda r: r.id_n <= 1) == []
    assert _mismatches(rows, lambda r: (None if r.id_n == 0 else r.id_rule) == expected_id_rule(r.id_v)) == []


def test_cn_id_checksum_rule_exactly_when_only_check_char_is_wrong(checked):
    rows = list(checked.itertuples(index=False))

    def only_check_wrong(v):
        return (len(v) == 18 and v[:17].isascii() and v[:17].isdigit() and v[17] in "0123456789X"
                and _py_date_ok(v) and not _pre_1880(v) and ref.cn_id_check_char(v[:17]) != v[17])

    assert _mismatches(rows, lambda r: (r.id_rule == "cn_id.checksum") == only_check_wrong(r.id_v.upper())) == []
    # every corrupted check char is caught as a checksum error, with the right expected char
    wrong = [r for r in rows if r.id_kind == "check"]
    assert wrong and all(r.id_rule == "cn_id.checksum" for r in wrong)
    assert _mismatches(wrong, lambda r: r.id_msg == f"check character should be {ref.cn_id_check_char(r.id_v[:17])}") == []
    assert {(r.id_sev, r.id_defect) for r in wrong} == {("error", "id_checksum")}


def test_cn_id_kinds_get_the_expected_rule(checked):
    by_kind = checked.groupby("id_kind")["idn_rule"].agg(lambda s: set(s.fillna("none")))
    assert by_kind["valid"] == {"none"}
    assert by_kind["valid_x"] == {"none"}
    assert by_kind["lower_x"] == {"none"}
    assert by_kind["region_year"] == {"none"}
    assert by_kind["fullwidth"] == {"none"}
    assert by_kind["whitespace"] == {"none"}
    assert by_kind["fullwidth_whitespace"] == {"none"}
    assert by_kind["check"] == {"cn_id.checksum"}
    assert by_kind["short"] == {"cn_id.format"}
    assert by_kind["long"] == {"cn_id.format"}
    assert by_kind["letter"] == {"cn_id.format"}
    assert by_kind["nbsp"] == {"cn_id.format"}
    assert by_kind["bad_date"] == {"cn_id.birth_date"}
    assert by_kind["bad_date_bad_check"] == {"cn_id.birth_date"}  # the date is reported first
    assert by_kind["pre_1880"] == {"cn_id.birth_date"}
    assert by_kind["lower_x_wrong"] == {"cn_id.checksum"}
    assert by_kind["region_unknown"] == {"cn_id.region"}
    assert by_kind["province_only"] == {"cn_id.region"}
    assert by_kind["region_unknown_bad_check"] == {"cn_id.checksum"}  # one finding: the error
    region = checked[checked["idn_rule"] == "cn_id.region"]
    assert set(zip(region["idn_sev"], region["idn_defect"])) == {("warning", "id_region_unknown")}


def test_uscc_kinds_get_the_expected_rule(checked):
    by_kind = checked.groupby("uscc_kind")["usn_rule"].agg(lambda s: set(s.fillna("none")))
    for kind in ("valid", "letter_authority", "lower", "fullwidth", "whitespace"):
        assert by_kind[kind] == {"none"}, kind
    assert by_kind["check"] == {"cn_uscc.checksum"}
    assert by_kind["bad_pair"] == {"cn_uscc.authority"}
    assert by_kind["bad_pair_bad_check"] == {"cn_uscc.authority"}
    for kind in ("region_letter", "short", "long", "bad_char", "hyphen"):
        assert by_kind[kind] == {"cn_uscc.format"}, kind
    auth = checked[checked["usn_rule"] == "cn_uscc.authority"]
    assert set(zip(auth["usn_sev"], auth["usn_defect"])) == {("error", "credit_code_authority")}


def test_cn_id_check_char_matches_stdnum(checked):
    rows = [r for r in checked.itertuples(index=False) if r.id_check is not None]
    assert len(rows) > 60_000
    # stdnum's calc_check_digit takes the number with its check digit and ignores the last character
    assert _mismatches(rows, lambda r: r.id_check == ric.calc_check_digit(r.id_v.upper()[:17] + "0")) == []
    assert _mismatches(rows, lambda r: r.id_check == ref.cn_id_check_char(r.id_v.upper()[:17])) == []


def test_gender_and_birth_date_from_generated_ids(checked):
    rows = [r for r in checked.itertuples(index=False) if r.id_kind in ("valid", "valid_x")]
    assert len(rows) > 10_000
    assert _mismatches(rows, lambda r: r.gender == ("男" if int(r.id_v[16]) % 2 else "女")) == []
    assert _mismatches(rows, lambda r: r.birth == f"{r.id_v[6:10]}-{r.id_v[10:12]}-{r.id_v[12:14]}") == []
    # and stdnum derives the same birth date
    assert _mismatches(rows, lambda r: r.birth == ric.get_birth_date(r.id_v).isoformat()) == []
    bad = [r for r in checked.itertuples(index=False) if r.id_kind == "bad_date" and r.id_v[6:10] != "0000"]
    assert bad and all(r.birth is None for r in bad)


def test_uscc_verdict_matches_reference(checked):
    rows = list(checked.itertuples(index=False))
    cased = [r for r in rows if r.uscc_v == r.uscc_v.upper()]
    assert len(cased) > 50_000
    # the reference checks alphabet and check character only; it accepts nothing the rules accept
    # without also accepting it
    assert _mismatches(cased, lambda r: r.us_n > 0 or ref.is_valid_uscc(r.uscc_v)) == []
    assert _mismatches(rows, lambda r: r.us_n <= 1) == []
    assert _mismatches(rows, lambda r: (None if r.us_n == 0 else r.us_rule) == expected_uscc_rule(r.uscc_v)) == []
    wrong = [r for r in rows if r.uscc_kind == "check"]
    assert wrong and all(r.us_rule == "cn_uscc.checksum" for r in wrong)
    assert _mismatches(wrong, lambda r: r.us_msg == f"check character should be {ref.uscc_check_char(r.uscc_v[:17])}") == []
    assert {(r.us_sev, r.us_defect) for r in wrong} == {("error", "credit_code_checksum")}
    assert {r.us_rule for r in rows if r.uscc_kind == "bad_char"} == {"cn_uscc.format"}


def test_uscc_check_char_matches_stdnum(checked):
    rows = [r for r in checked.itertuples(index=False)
            if r.us_check is not None and r.uscc_v[:8].isascii() and r.uscc_v[:8].isdigit()]
    assert len(rows) > 30_000
    assert _mismatches(rows, lambda r: r.us_check == uscc.calc_check_digit(r.uscc_v.upper()[:17])) == []
    # and stdnum agrees that the valid generated codes are valid
    valid = [r for r in rows if r.uscc_kind == "valid"]
    assert len(valid) > 10_000
    assert _mismatches(valid, lambda r: uscc.is_valid(r.uscc_v) and r.us_n == 0) == []


def test_lowercase_values_are_judged_on_their_upper_case_form(checked):
    """The native checks upper-case the value first, so a lowercase x (or a lowercase credit code)
    with the right check character has no issue, while the reference implementations reject it;
    check_rows stores the upper-cased value (see test_check_rows_normalises_identifiers)."""
    lower_x = checked[checked["id_kind"] == "lower_x"]
    assert len(lower_x) > 500
    assert (lower_x["id_n"] == 0).all()
    assert not any(ref.is_valid_cn_id(v) for v in lower_x["id_v"])
    lower = checked[(checked["uscc_kind"] == "lower") & (checked["uscc_v"] != checked["uscc_v"].str.upper())]
    assert len(lower) > 500
    assert set(lower["us_rule"].fillna("none")) <= {"none", "cn_uscc.checksum"}
    assert not any(ref.is_valid_uscc(v) for v in lower["uscc_v"])


# ----------------------------------------------------------------------------- small examples

def _issues(spark, fn, values, extra=None):
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    cols = [F.filter(F.array(*fn("v")), lambda x: x.isNotNull()).alias("issues")]
    rows = df.select("i", *cols, *(extra or [])).orderBy("i").collect()
    return rows


def test_null_identifiers_have_no_issue(spark):
    # nulls are the "required" rule's business, not the format checks'
    df = spark.createDataFrame([(None,)], "v string")
    row = df.select(
        F.size(F.filter(F.array(*rules.cn_id_issues("v")), lambda x: x.isNotNull())).alias("a"),
        F.size(F.filter(F.array(*rules.cn_uscc_issues("v")), lambda x: x.isNotNull())).alias("b"),
        F.size(F.filter(F.array(*rules.cn_phone_issues("v")), lambda x: x.isNotNull())).alias("c"),
    ).collect()[0]
    assert (row.a, row.b, row.c) == (0, 0, 0)


def test_birth_year_before_1880_is_rejected_although_reference_accepts(spark):
    """Documents a deliberate(?) divergence: rules require birth year >= 1880, the reference does not."""
    old = _with_check("110115187912310012"[:17])
    new = _with_check("110115188001010012"[:17])
    assert ref.is_valid_cn_id(old) and ref.is_valid_cn_id(new)
    rows = _issues(spark, rules.cn_id_issues, [old, new])
    assert [[x.rule for x in r.issues] for r in rows] == [["cn_id.birth_date"], []]


PHONES = [
    ("13812345678", None),          # mobile
    ("19912345678", None),          # mobile, 19x
    ("010-62345678", None),         # Beijing landline with dash
    ("01062345678", None),          # Beijing landline without dash
    ("1381234567", "cn_phone.format"),    # too short
    ("138123456789", "cn_phone.format"),  # too long
    ("12812345678", "cn_phone.format"),   # starts with 12
    ("10812345678", "cn_phone.format"),   # starts with 10
    ("138-1234-5678", "cn_phone.format"),
    ("+8613812345678", "cn_phone.format"),
    ("010-6234567a", "cn_phone.format"),
    ("0755-12345678", None),        # 3-digit area code, 8 digits
    ("0755-1234567", None),         # 3-digit area code, 7 digits
    ("07551234567", None),          # without the dash
    ("021-62345678", None),         # 2-digit area code
    ("010-623456", "cn_phone.format"),     # 6 digits
    ("010-6234567", "cn_phone.format"),    # Beijing numbers have 8 digits
    ("021-6234567", "cn_phone.format"),    # so do 02x cities
    ("0311-6234567", None),                # 4-digit area codes allow 7
    ("010-623456789", "cn_phone.format"),  # 9 digits
    ("00-62345678", "cn_phone.format"),    # area code cannot start with 0
    ("07555-1234567", "cn_phone.format"),  # 4-digit area code
    ("010--62345678", "cn_phone.format"),
    ("62345678", "cn_phone.format"),       # no area code
    ("13812345678\n", "cn_phone.format"),  # a Java "$" would accept the trailing newline; "\z" does not
]


def test_cn_phone_issues(spark):
    rows = _issues(spark, rules.cn_phone_issues, [p for p, _ in PHONES])
    got = [(r.issues[0].rule if r.issues else None) for r in rows]
    assert got == [e for _, e in PHONES]
    bad = next(r for r in rows if r.issues)
    assert (bad.issues[0].severity, bad.issues[0].defect_type, bad.issues[0].field) == ("warning", "phone_format", "v")
    # the reference agrees on every example it covers (mobiles and Beijing landlines)
    beijing = [(p, e) for p, e in PHONES if not p.startswith("0") or p.startswith("010")]
    assert [ref.is_valid_cn_phone(p) for p, _ in beijing] == [e is None for _, e in beijing]


def test_gender_and_birth_date_examples(spark):
    male = ref.make_cn_id("110115", datetime.date(1990, 2, 28), 123, True)
    female = ref.make_cn_id("110115", datetime.date(2000, 2, 29), 124, False)
    x_id = _valid_id_ending_in_x(random.Random(1))
    values = [male, female, x_id, "11011519900230001" + "5", "ABC", None, male[:17]]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    rows = df.select("i", rules.gender_from_id(F.col("v")).alias("g"),
                     rules.birth_date_from_id(F.col("v")).alias("b")).orderBy("i").collect()
    got = [(r.g, r.b) for r in rows]
    assert got == [
        ("男", datetime.date(1990, 2, 28)),
        ("女", datetime.date(2000, 2, 29)),
        ("男" if int(x_id[16]) % 2 else "女", datetime.date(int(x_id[6:10]), int(x_id[10:12]), int(x_id[12:14]))),
        ("男", None),           # 17th digit 1 -> male; 19900230 is not a date
        (None, None),
        (None, None),
        ("男", datetime.date(1990, 2, 28)),  # 17 digits are enough for both derivations
    ]


# ----------------------------------------------------------------------------- check_rows: normalisation,
# missing IDs and cross-field rules, on a contract built here

PEOPLE = SourceContract(
    source="test_people", title="测试人员", department="测试局", department_code="1", domain="population",
    format="csv", encoding="utf-8", update_cycle="daily", record_key="record_id", entity_key="id_number",
    columns=(
        SourceColumn("record_id", "string", required=True),
        SourceColumn("id_number", "string", checks=("cn_id",)),  # optional: missing -> missing_id
        SourceColumn("name", "string", required=True, normalize=True),
        SourceColumn("gender", "string", allowed=("男", "女")),
        SourceColumn("birth_date", "date"),
        SourceColumn("employer_credit_code", "string", checks=("cn_uscc",)),
        SourceColumn("phone", "string", checks=("cn_phone",)),
        SourceColumn("address", "string"),
    ),
)
REQUIRED_ID = SourceContract(**{**PEOPLE.__dict__, "source": "test_register", "columns": tuple(
    SourceColumn(c.name, c.type, required=True, checks=c.checks) if c.name == "id_number" else c
    for c in PEOPLE.columns)})

BIRTH = datetime.date(1990, 2, 28)
MALE_ID = ref.make_cn_id("110115", BIRTH, 123, True)
X_ID = next(v for v in (ref.make_cn_id("110115", BIRTH, s, s % 2 == 1) for s in range(1000)) if v.endswith("X"))
X_GENDER = "男" if int(X_ID[16]) % 2 else "女"
UNKNOWN_REGION_ID = ref.make_cn_id("990115", BIRTH, 123, True)
BAD_CHECK_ID = MALE_ID[:17] + ("0" if MALE_ID[17] != "0" else "1")
CODE = ref.make_uscc("9", "1", "110115", "MA01ABCD2")
BAD_PAIR_CODE = ref.make_uscc("9", "9", "110115", "MA01ABCD2")


def _fw(v: str) -> str:
    return v.translate(TO_FULLWIDTH)


def person(record_id, id_number=MALE_ID, name="张三", gender="男", birth="1990-02-28", code=CODE,
           phone="13812345678", address="兴华大街1号", field_count=8, raw_line=None):
    return [record_id, id_number, name, gender, birth, code, phone, address, field_count, raw_line]


ROWS = [
    person("P01"),                                                    # clean
    person("P02", name="张 三\u3000"),                                 # whitespace in a normalize column
    person("P03", id_number=_fw(MALE_ID)),                            # full-width digits in an ID
    person("P04", id_number=f"\u3000{X_ID[:17]}x ", gender=X_GENDER),   # spaces + lowercase x
    person("P05", id_number=None),                                    # optional ID missing
    person("P06", id_number=" \u3000"),                               # whitespace-only ID: missing too
    person("P07", birth="1990-03-01"),                                # birth date differs from the ID's
    person("P08", gender="女"),                                        # gender differs from the ID's
    person("P09", id_number=BAD_CHECK_ID, birth="1991-01-01", gender="女"),  # ID error: no cross findings
    person("P10", id_number=UNKNOWN_REGION_ID, gender="女"),          # region warning only, kept
    person("P11", code=BAD_PAIR_CODE),                                # impossible authority pair: error
    person("P12", code=_fw(CODE.lower())),                            # full-width lowercase credit code
    person("P13", address=" 兴华 大街\u30001号 "),                     # plain column: trimmed only
    person("P14", phone="138 1234\t5678"),                            # phone with spaces
    person("P15", name="\u3000ＡＢＣ 公司"),                            # full-width and whitespace
    person("P16", birth="1990-02-30"),                                # invalid date: type.date only
    person("P17", gender="未知"),                                      # invalid gender: allowed_values only
    ["P18", None, None, None, None, None, None, None, 5, "P18,x,y,z,w"],  # malformed row
]


def _parsed(spark, sc, rows):
    schema = ", ".join([f"`{c}` string" for c in sc.column_names] + ["_field_count int", "_raw_line string"])
    df = spark.createDataFrame([tuple(r) for r in rows], schema)
    return (df.withColumn("_row", F.monotonically_increasing_id() + 2).withColumn("_source", F.lit(sc.source))
            .withColumn("_file_sha256", F.lit("b" * 64)).withColumn("_batch_id", F.lit(f"{sc.source}-bbbb"))
            .withColumn("_ingested_at", F.lit(datetime.datetime(2026, 10, 1)).cast("timestamp")))


@pytest.fixture(scope="module")
def people(spark):
    checked = ingest.check_rows(_parsed(spark, PEOPLE, ROWS), PEOPLE).cache()
    try:
        raw, quarantine, found = ingest.split(checked, PEOPLE)
        findings: dict[str, list] = {}
        for f in found.collect():
            findings.setdefault(f["record_key"], []).append(
                (f["rule"], f["field"], f["defect_type"], f["severity"], f["value"]))
        return {"raw": {r["record_id"]: r for r in raw.collect()},
                "quarantine": {r["record_id"]: r for r in quarantine.collect()},
                "findings": findings}
    finally:
        checked.unpersist()


def test_check_rows_rows_land_where_expected(people):
    assert sorted(people["raw"]) == ["P01", "P02", "P03", "P04", "P05", "P06", "P07", "P08", "P10", "P12",
                                     "P13", "P14", "P15"]
    assert {k: v["_rule"] for k, v in people["quarantine"].items()} == {
        "P09": "cn_id.checksum", "P11": "cn_uscc.authority", "P16": "type.date", "P17": "allowed_values",
        "P18": "parse.field_count"}
    assert "P01" not in people["findings"]


def test_check_rows_normalises_and_reports_whitespace_and_fullwidth(people):
    raw, found = people["raw"], people["findings"]
    assert raw["P02"]["name"] == "张三"
    assert found["P02"] == [("normalize.whitespace", "name", "whitespace", "warning", "张 三\u3000")]
    assert raw["P03"]["id_number"] == MALE_ID
    assert found["P03"] == [("normalize.fullwidth", "id_number", "fullwidth", "warning", _fw(MALE_ID))]
    assert raw["P12"]["employer_credit_code"] == CODE  # half-width, then upper-cased
    assert found["P12"] == [("normalize.fullwidth", "employer_credit_code", "fullwidth", "warning", _fw(CODE.lower()))]
    assert raw["P14"]["phone"] == "13812345678"
    assert found["P14"] == [("normalize.whitespace", "phone", "whitespace", "warning", "138 1234\t5678")]
    # both problems in one value: two findings, both with the value as received
    assert raw["P15"]["name"] == "ABC公司"
    assert found["P15"] == [("normalize.whitespace", "name", "whitespace", "warning", "\u3000ＡＢＣ 公司"),
                            ("normalize.fullwidth", "name", "fullwidth", "warning", "\u3000ＡＢＣ 公司")]


def test_check_rows_normalises_identifiers(people):
    """Surrounding U+3000/space and a lowercase x: one whitespace finding, the ID stored canonical."""
    assert people["raw"]["P04"]["id_number"] == X_ID
    assert people["findings"]["P04"] == [
        ("normalize.whitespace", "id_number", "whitespace", "warning", f"\u3000{X_ID[:17]}x ")]


def test_check_rows_plain_columns_are_only_trimmed(people):
    assert people["raw"]["P13"]["address"] == "兴华 大街\u30001号"
    assert "P13" not in people["findings"]


def test_check_rows_missing_optional_id(people):
    for key in ("P05", "P06"):
        assert people["raw"][key]["id_number"] is None
        assert people["findings"][key] == [("missing.entity_key", "id_number", "missing_id", "warning", None)]


def test_check_rows_missing_required_id_is_an_error(spark):
    rows = [person("R01", id_number=None), person("R02", id_number="\u3000")]
    _, _, found = ingest.split(ingest.check_rows(_parsed(spark, REQUIRED_ID, rows), REQUIRED_ID), REQUIRED_ID)
    got = sorted((f["record_key"], f["rule"], f["defect_type"], f["severity"]) for f in found.collect())
    assert got == [("R01", "required", "missing_value", "error"), ("R02", "required", "missing_value", "error")]


def test_check_rows_cross_field_mismatches(people):
    found = people["findings"]
    assert found["P07"] == [("cross.id_birth_date", "birth_date", "id_birth_mismatch", "warning", "1990-03-01")]
    assert found["P08"] == [("cross.id_gender", "gender", "id_gender_mismatch", "warning", "女")]
    assert people["raw"]["P07"]["birth_date"] == datetime.date(1990, 3, 1)  # kept as recorded


def test_check_rows_cross_field_only_when_the_id_passes_its_checks(people):
    # P09: wrong check character (error) and both fields differ: only the error
    assert [f[0] for f in people["findings"]["P09"]] == ["cn_id.checksum"]
    # P10: unknown region (a warning: kept) and a gender that differs: only the region warning
    assert people["findings"]["P10"] == [
        ("cn_id.region", "id_number", "id_region_unknown", "warning", UNKNOWN_REGION_ID)]
    assert people["raw"]["P10"]["id_number"] == UNKNOWN_REGION_ID


def test_check_rows_cross_field_only_when_the_other_value_is_valid(people):
    assert [f[0] for f in people["findings"]["P16"]] == ["type.date"]
    assert [f[0] for f in people["findings"]["P17"]] == ["allowed_values"]
    assert [f[0] for f in people["findings"]["P18"]] == ["parse.field_count"]


def test_check_rows_authority_pair(people):
    q = people["quarantine"]["P11"]
    assert q["_reason"] == ("employer_credit_code: registration authority 9 and organisation type 9 "
                            "are not a GB 32100 pair")
    assert people["findings"]["P11"] == [
        ("cn_uscc.authority", "employer_credit_code", "credit_code_authority", "error", BAD_PAIR_CODE)]


def test_check_rows_handles_every_real_source(spark):
    """check_rows + split analyse for every contract in contracts/ (one null row each)."""
    from lake import contracts as contracts_mod

    for sc in contracts_mod.load(str(Path(__file__).resolve().parent.parent / "contracts")).sources.values():
        row = [None] * len(sc.columns) + [len(sc.columns), None]
        raw, quarantine, found = ingest.split(ingest.check_rows(_parsed(spark, sc, [row]), sc), sc)
        assert [c for c, _ in found.dtypes][:5] == ["run_id", "stage", "source", "department", "record_key"]
        assert raw.columns[:len(sc.columns)] == sc.column_names
