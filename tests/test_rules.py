"""Native Spark identifier checks (lake.rules) cross-checked against the Python references
(lake.identifiers) and python-stdnum on >100,000 generated values, in one Spark job."""
from __future__ import annotations

import datetime
import random
import re

import pandas as pd
import pytest
from pyspark.sql import functions as F
from stdnum.cn import ric, uscc

from lake import identifiers as ref
from lake import rules

N_IDS = 60_000
N_USCC = 60_000
SEED = 20261101

ID_RE = re.compile(r"[0-9]{17}[0-9X]")
USCC_RE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{18}")
IMPOSSIBLE_DATES = ["19900230", "20010229", "19000229", "19991301", "19990001", "19990431",
                    "19990100", "20231131", "00000101", "19990632"]
NOT_IN_USCC_ALPHABET = "IOSVZ"


# ----------------------------------------------------------------------------- generation

def _random_date(rng: random.Random) -> datetime.date:
    lo, hi = datetime.date(1900, 1, 1).toordinal(), datetime.date(2026, 11, 1).toordinal()
    return datetime.date.fromordinal(rng.randint(lo, hi))


def _valid_id(rng: random.Random) -> str:
    region = f"{rng.randint(110000, 659999)}"
    seq = rng.randrange(1000)
    return ref.make_cn_id(region, _random_date(rng), seq, male=seq % 2 == 1)


def _valid_id_ending_in_x(rng: random.Random) -> str:
    while True:
        v = _valid_id(rng)
        if v.endswith("X"):
            return v


def _with_check(first17: str) -> str:
    return first17 + ref.cn_id_check_char(first17)


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
    if kind == "noise":
        return "".join(rng.choice("0123456789X") for _ in range(18))
    if kind == "odd":
        return rng.choice(["", " ", "X" * 18, v + " ", " " + v[1:], v.replace(v[3], "-", 1), "１" + v[1:]])
    raise AssertionError(kind)


ID_KINDS = [("valid", 30), ("valid_x", 3), ("check", 20), ("short", 5), ("long", 5), ("letter", 8),
            ("bad_date", 10), ("bad_date_bad_check", 3), ("lower_x", 3), ("lower_x_wrong", 2),
            ("noise", 8), ("odd", 3)]


def _valid_uscc(rng: random.Random, digit_prefix: bool) -> str:
    alpha = ref.USCC_ALPHABET
    if digit_prefix:
        authority, org_type = rng.choice("123456789"), rng.choice("123459")
    else:
        authority, org_type = rng.choice(alpha), rng.choice(alpha)
    region = f"{rng.randint(110000, 659999)}"
    org = "".join(rng.choice(alpha) for _ in range(9))
    return ref.make_uscc(authority, org_type, region, org)


def make_uscc_value(rng: random.Random, kind: str) -> str:
    v = _valid_uscc(rng, digit_prefix=rng.random() < 0.7)
    if kind == "valid":
        return v
    if kind == "check":
        return v[:17] + rng.choice([c for c in ref.USCC_ALPHABET if c != v[17]])
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
        lowered = v.lower()
        return lowered if lowered != v else v[:17] + "a"
    if kind == "noise":
        return "".join(rng.choice(ref.USCC_ALPHABET) for _ in range(18))
    if kind == "odd":
        return rng.choice(["", " ", v + " ", v[:8] + "-" + v[9:], "９" + v[1:]])
    raise AssertionError(kind)


USCC_KINDS = [("valid", 35), ("check", 25), ("short", 5), ("long", 5), ("bad_char", 10),
              ("lower", 5), ("noise", 12), ("odd", 3)]


def _draw(rng: random.Random, kinds, n: int) -> list[str]:
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    return rng.choices(names, weights=weights, k=n)


# ----------------------------------------------------------------------------- Python oracles

def _py_date_ok(v: str) -> bool:
    try:
        datetime.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return True


def _pre_1880(v: str) -> bool:
    """A well-formed ID whose birth year is before 1880: rules reject it, the reference accepts it
    (see test_birth_year_before_1880_is_rejected_although_reference_accepts)."""
    return bool(ID_RE.fullmatch(v.upper())) and int(v[6:10]) < 1880


def expected_id_rule(v: str) -> str | None:
    """The rule the Spark check should report, per the reference implementation plus the rules'
    documented birth-year floor of 1880. Spark compares on the upper-cased value, so the oracle does
    too (see test_lowercase_values_are_judged_on_their_upper_case_form)."""
    u = v.upper()
    if not ID_RE.fullmatch(u):
        return "cn_id.format"
    if not _py_date_ok(u) or _pre_1880(u):
        return "cn_id.birth_date"
    if ref.cn_id_check_char(u[:17]) != u[17]:
        return "cn_id.checksum"
    return None


def expected_uscc_rule(v: str) -> str | None:
    u = v.upper()
    if not USCC_RE.fullmatch(u):
        return "cn_uscc.format"
    if ref.uscc_check_char(u[:17]) != u[17]:
        return "cn_uscc.checksum"
    return None


# ----------------------------------------------------------------------------- the one Spark job

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

    id_up, us_up = F.upper(F.col("id_v")), F.upper(F.col("uscc_v"))
    issues = df.select(
        "n", "id_kind", "id_v", "uscc_kind", "uscc_v",
        F.filter(F.array(*rules.cn_id_issues("id_v")), lambda x: x.isNotNull()).alias("id_issues"),
        F.filter(F.array(*rules.cn_uscc_issues("uscc_v")), lambda x: x.isNotNull()).alias("us_issues"),
        # the native check characters, only where the format allows computing them
        F.when(id_up.rlike(r"^[0-9]{17}"), rules.cn_id_check_char(id_up)).alias("id_check"),
        F.when(us_up.rlike(r"^[0-9A-HJ-NPQRTUWXY]{17}"), rules.uscc_check_char(us_up)).alias("us_check"),
        rules.gender_from_id(F.col("id_v")).alias("gender"),
        rules.birth_date_from_id(F.col("id_v")).cast("string").alias("birth"),
    )
    first_id, first_us = F.get("id_issues", 0), F.get("us_issues", 0)
    out = issues.select(
        "n", "id_kind", "id_v", "uscc_kind", "uscc_v", "id_check", "us_check", "gender", "birth",
        F.size("id_issues").alias("id_n"), first_id["rule"].alias("id_rule"), first_id["message"].alias("id_msg"),
        first_id["severity"].alias("id_sev"), first_id["defect_type"].alias("id_defect"),
        F.size("us_issues").alias("us_n"), first_us["rule"].alias("us_rule"), first_us["message"].alias("us_msg"),
        first_us["severity"].alias("us_sev"), first_us["defect_type"].alias("us_defect"),
    )
    result = out.toPandas().sort_values("n").reset_index(drop=True)
    assert len(result) == N_IDS
    return result


def _mismatches(rows, pred) -> list:
    bad = [r for r in rows if not pred(r)]
    return bad[:10]


def test_generated_enough_values_of_every_kind(checked):
    assert checked["id_v"].notna().sum() + checked["uscc_v"].notna().sum() >= 100_000
    assert set(checked["id_kind"]) == {k for k, _ in ID_KINDS}
    assert set(checked["uscc_kind"]) == {k for k, _ in USCC_KINDS}
    assert (checked["id_kind"].value_counts() >= 500).all()
    assert (checked["uscc_kind"].value_counts() >= 1000).all()


def test_cn_id_verdict_matches_reference(checked):
    rows = list(checked.itertuples(index=False))
    # valid in Python <=> no issue in Spark, for every value that has no lowercase letter
    cased = [r for r in rows if r.id_v == r.id_v.upper() and not _pre_1880(r.id_v)]
    assert len(cased) > 50_000
    assert _mismatches(cased, lambda r: ref.is_valid_cn_id(r.id_v) == (r.id_n == 0)) == []
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
    by_kind = checked.groupby("id_kind")["id_rule"].agg(lambda s: set(s.fillna("none")))
    assert by_kind["valid"] == {"none"}
    assert by_kind["valid_x"] == {"none"}
    assert by_kind["check"] == {"cn_id.checksum"}
    assert by_kind["short"] == {"cn_id.format"}
    assert by_kind["long"] == {"cn_id.format"}
    assert by_kind["letter"] == {"cn_id.format"}
    assert by_kind["bad_date"] == {"cn_id.birth_date"}
    assert by_kind["bad_date_bad_check"] == {"cn_id.birth_date"}  # the date is reported first
    assert by_kind["lower_x_wrong"] == {"cn_id.checksum"}


def test_cn_id_check_char_matches_stdnum(checked):
    rows = [r for r in checked.itertuples(index=False) if r.id_check is not None]
    assert len(rows) > 40_000
    # stdnum's calc_check_digit takes the number with its check digit and ignores the last character
    assert _mismatches(rows, lambda r: r.id_check == ric.calc_check_digit(r.id_v.upper()[:17] + "0")) == []
    assert _mismatches(rows, lambda r: r.id_check == ref.cn_id_check_char(r.id_v.upper()[:17])) == []


def test_gender_and_birth_date_from_generated_ids(checked):
    rows = [r for r in checked.itertuples(index=False) if r.id_kind in ("valid", "valid_x")]
    assert len(rows) > 10_000
    assert _mismatches(rows, lambda r: r.gender == ("男" if int(r.id_v[16]) % 2 else "女")) == []
    assert _mismatches(rows, lambda r: r.birth == f"{r.id_v[6:10]}-{r.id_v[10:12]}-{r.id_v[12:14]}") == []
    bad = [r for r in checked.itertuples(index=False) if r.id_kind == "bad_date" and r.id_v[6:10] != "0000"]
    assert bad and all(r.birth is None for r in bad)


def test_uscc_verdict_matches_reference(checked):
    rows = list(checked.itertuples(index=False))
    cased = [r for r in rows if r.uscc_v == r.uscc_v.upper()]
    assert len(cased) > 50_000
    assert _mismatches(cased, lambda r: ref.is_valid_uscc(r.uscc_v) == (r.us_n == 0)) == []
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
    """Documents current behaviour: the native checks upper-case the value first, so a lowercase x
    (or a lowercase credit code) with the right check character has no issue, while the reference
    implementations reject it. The value itself is not normalised (see test_transforms for the
    consequence downstream)."""
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
]


def test_cn_phone_issues(spark):
    rows = _issues(spark, rules.cn_phone_issues, [p for p, _ in PHONES])
    got = [(r.issues[0].rule if r.issues else None) for r in rows]
    assert got == [e for _, e in PHONES]
    bad = next(r for r in rows if r.issues)
    assert (bad.issues[0].severity, bad.issues[0].defect_type, bad.issues[0].field) == ("warning", "phone_format", "v")
    # the reference agrees on every example it covers (mobiles and Beijing landlines)
    assert [ref.is_valid_cn_phone(p) for p, _ in PHONES] == [e is None for _, e in PHONES]


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
