"""Normative checks as native Spark expressions (no Python UDFs on the hot path).

Each check returns a Column holding an *issue* struct (rule, field, defect_type, severity, message,
value) or null. ``sample.identifiers`` holds the pure-Python reference implementations and
``tests/test_rules.py`` cross-checks these expressions against them and against python-stdnum.

Rule ids are stable strings that appear in quarantine (``_rule``) and ``quality/findings`` (``rule``);
``defect_type`` uses the same words as the generator's truth file (``docs/defects.md``).

Every identifier check is a cascade: a value gets at most one issue, the first that applies in
the order the functions list them (format, then the parts, then the check character, then the
warnings), so one wrong value is one finding.
"""
from __future__ import annotations

from functools import lru_cache, reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

from lake.reference import DISTRICT, REF, SENSING

ERROR = "error"      # the row cannot be used: quarantined
WARNING = "warning"  # the row is kept, the problem is reported to the department

ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]

# GB 32100-2015, table 1 (登记管理部门代码) x table 2 (机构类别代码): the organisation-type codes each
# registration authority may use. python-stdnum's ``stdnum.cn.uscc`` does NOT check this pair (it only
# checks length, "first 8 characters are digits", alphabet and check character).
USCC_AUTHORITY_TYPES = {
    "1": "1239",    # 机构编制: 机关, 事业单位, 编办直接管理机构编制的群众团体, 其他
    "2": "19",      # 外交: 外国常驻新闻机构, 其他
    "3": "123459",  # 司法行政: 律师执业机构, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    "4": "19",      # 文化: 外国在华文化中心, 其他
    "5": "1239",    # 民政: 社会团体, 民办非企业单位, 基金会, 其他
    "6": "129",     # 旅游: 外国旅游部门常驻代表机构, 港澳台地区旅游部门常驻内地代表机构, 其他
    "7": "129",     # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": "19",      # 工会: 基层工会, 其他
    "9": "123",     # 工商: 企业, 个体工商户, 农民专业合作社
    "A": "19",      # 中央军委改革和编制办公室: 军队事业单位, 其他
    "N": "1239",    # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": "1",       # 其他
}
USCC_PAIRS = sorted(a + t for a, types in USCC_AUTHORITY_TYPES.items() for t in types)

FULLWIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F))   # ！ .. ～
HALFWIDTH = "".join(chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F))  # ! .. ~
WS_CHARS = " \t\n\x0b\x0c\r\u3000"  # stray whitespace: ASCII whitespace (Java regex \s) and U+3000
IDENTIFIER_CHECKS = frozenset({"cn_id", "cn_uscc", "city_code"})

RULES = {
    # rule id: (defect_type, severity)
    "parse.field_count": ("malformed_row", ERROR),
    "parse.encoding": ("encoding_error", ERROR),
    "required": ("missing_value", ERROR),
    "type.date": ("invalid_date", ERROR),
    "type.number": ("invalid_number", ERROR),
    "allowed_values": ("invalid_value", ERROR),
    "cn_id.format": ("id_format", ERROR),
    "cn_id.birth_date": ("id_format", ERROR),
    "cn_id.checksum": ("id_checksum", ERROR),
    "cn_id.region": ("id_region_unknown", WARNING),
    "cn_uscc.format": ("credit_code_format", ERROR),
    "cn_uscc.authority": ("credit_code_authority", ERROR),
    "cn_uscc.checksum": ("credit_code_checksum", ERROR),
    "cn_phone.format": ("phone_format", WARNING),
    "city_code.format": ("city_code_format", ERROR),
    "city_code.checksum": ("city_code_checksum", ERROR),
    "normalize.whitespace": ("whitespace", WARNING),
    "normalize.fullwidth": ("fullwidth", WARNING),
    "missing.entity_key": ("missing_id", WARNING),
    "cross.id_birth_date": ("id_birth_mismatch", WARNING),
    "cross.id_gender": ("id_gender_mismatch", WARNING),
    "cross.deregistration_date_missing": ("deregistration_date_missing", WARNING),
    "cross.deregistration_date_on_active": ("deregistration_date_on_active", WARNING),
    "cross.deregistration_order": ("deregistration_before_establishment", WARNING),
    "cross.deregistration_future": ("deregistration_date_future", WARNING),
    "duplicate.entity_key": ("duplicate_record", WARNING),
    "consistency.authority": ("name_mismatch", WARNING),  # defect_type is set per column, see consistency_defect
}

ISSUE_TYPE = "struct<rule:string,field:string,defect_type:string,severity:string,message:string,value:string>"


def non_null_array(items: list[Column], element_type: str) -> Column:
    """The non-null values of ``items`` as an ``array<element_type>``, in order.

    Built from ``concat`` of zero- or one-element arrays instead of ``filter(array(...), x -> ...)``:
    a projection holding a lambda (``filter``, ``exists``, ``transform``) is not compiled by Spark's
    whole-stage code generation, so every expression under it would be evaluated row by row in the
    interpreter (several times slower on the ingest's identifier checks)."""
    empty = F.array().cast(f"array<{element_type}>")
    if not items:
        return empty
    return F.concat(*[F.when(i.isNotNull(), F.array(i)).otherwise(empty) for i in items])


def issue_array(issues: list[Column]) -> Column:
    """The non-null issues of ``issues`` (each an issue struct or null) as an array, in order."""
    return non_null_array(issues, ISSUE_TYPE)


def has_severity(issues: Column, severity: str) -> Column:
    """``issues`` (an issue array) holds an issue of ``severity`` (codegen-friendly, no lambda)."""
    return F.array_contains(issues.getField("severity"), severity)


def issue(cond: Column, rule: str, field: str, message: str | Column, value: Column | None = None) -> Column:
    """An issue struct when ``cond`` is true, else null."""
    defect, severity = RULES[rule]
    msg = message if isinstance(message, Column) else F.lit(message)
    return F.when(
        cond,
        F.struct(
            F.lit(rule).alias("rule"), F.lit(field).alias("field"), F.lit(defect).alias("defect_type"),
            F.lit(severity).alias("severity"), msg.alias("message"),
            (value if value is not None else F.lit(None)).cast("string").alias("value"),
        ),
    )


def _digit(s: Column, pos: int) -> Column:
    # pos is 1-based. ascii() - 48 is the digit's value and, unlike a cast, cannot fail under ANSI mode
    # for a non-digit; the callers only use it where the format is already known to be digits.
    return F.ascii(F.substring(s, pos, 1)) - 48


# ----------------------------------------------------------------------------- region codes

@lru_cache(maxsize=1)
def region_codes() -> frozenset[str]:
    """Every 6-digit administrative division code python-stdnum knows, current or historical.

    Read from ``stdnum/cn/loc.dat`` through ``stdnum.numdb``, the way ``stdnum.cn.ric.get_birth_place``
    looks a code up: a code is known when its lookup yields a ``county`` entry. The year ranges in the
    data (``[2001-]大兴区``) are deliberately ignored: an ID keeps the code it was issued with, and
    people born before 2001 in Daxing hold 110115 numbers, which stdnum (checking the code against the
    birth year) would reject.
    """
    from stdnum import numdb

    codes: set[str] = set()

    def walk(prefix: str, entries, has_county: bool) -> None:
        for length, low, high, props, children in entries:
            county = has_county or "county" in props
            for n in range(int(low), int(high) + 1):
                code = prefix + f"{n:0{length}d}"
                if len(code) >= 6:
                    if len(code) == 6 and county:
                        codes.add(code)
                else:
                    walk(code, children, county)

    walk("", numdb.get("cn/loc").prefixes, False)
    return frozenset(codes)


@lru_cache(maxsize=1)
def _region_codes_sql() -> str:
    return ", ".join(f"'{c}'" for c in sorted(region_codes()))


def region_known(sql_expr: str) -> Column:
    """``sql_expr`` (6 characters) IN the known region codes.

    Built as SQL text on purpose: ``Column.isin(list)`` makes one py4j call per literal (~3.5 s for the
    ~6,900 codes, every time a plan is built), the parser takes ~5 ms. Either way the optimizer turns
    the IN list into an ``INSET`` (hash-set lookup); a broadcast array with ``array_contains`` is a
    linear scan and was 10-75x slower in our runs (see scripts/bench_identifiers.py).
    """
    return F.expr(f"({sql_expr}) IN ({_region_codes_sql()})")


REGION_FLAG = "_region_known__{}"


def region_flag_column(col: str) -> str:
    return REGION_FLAG.format(col)


def with_region_flags(df, cols: list[str]):
    """``df`` with a boolean ``_region_known__<col>`` per column in ``cols``: its first six characters
    (upper-cased) are a known region code. A left join with the ~6,900 codes, broadcast.

    Why not the ``IN`` list of ``region_known``: a plan holding 6,900 literals is walked by every
    analyser and optimiser rule and canonicalised for every cache lookup; on the ingest that cost
    several seconds of planning per file and per write, more than checking a million rows."""
    spark = df.sparkSession
    codes = spark.createDataFrame([(c,) for c in sorted(region_codes())], "_region_code string")
    for col in cols:
        flag = region_flag_column(col)
        lookup = F.broadcast(codes.select(F.col("_region_code").alias(f"_rc__{col}"), F.lit(True).alias(flag)))
        df = (df.join(lookup, F.substring(F.upper(F.col(col)), 1, 6) == F.col(f"_rc__{col}"), "left")
              .drop(f"_rc__{col}"))
    return df


def _sql_name(col: str) -> str:
    return "`" + col.replace("`", "``") + "`"


# ----------------------------------------------------------------------------- GB 11643 ID numbers

def _int(s: Column, first: int, length: int) -> Column:
    """The number the (digit) characters ``first``..``first+length-1`` of ``s`` spell: one substring
    and one cast instead of one substring per digit. ``try_cast``: null, never an ANSI error, where
    they are not digits (callers use it only where the format is already known to be digits)."""
    return F.substring(s, first, length).try_cast("bigint")


def _digit_of(n: Column, k: int) -> Column:
    """Digit ``k`` (0 = units) of the non-negative integer ``n``."""
    return (F.call_function("div", n, F.lit(10 ** k)) if k else n) % 10


def cn_id_check_char(s: Column) -> Column:
    """Expected GB 11643 check character for an 18-character ID (ISO 7064 MOD 11-2), from the first
    17 characters read as two integers (digits 1-9 and 10-17). Only meaningful where they are digits."""
    a, b = _int(s, 1, 9), _int(s, 10, 8)
    terms = [_digit_of(a, 8 - i) * w for i, w in enumerate(ID_WEIGHTS[:9])]
    terms += [_digit_of(b, 7 - i) * w for i, w in enumerate(ID_WEIGHTS[9:])]
    total = reduce(lambda x, y: x + y, terms)
    return F.substring(F.lit(ID_CHECK), (total % 11 + 1).cast("int"), 1)


def cn_id_birth_date(s: Column) -> Column:
    return F.try_to_date(F.substring(s, 7, 8), "yyyyMMdd")


def cn_id_birth_ok(s: Column) -> Column:
    """The 8 digits at 7-14 are a real date with year >= 1880, in plain arithmetic (the same verdict
    as ``cn_id_birth_date(s).isNotNull()`` on 17-digit values, several times faster). Only meaningful
    where the format is already checked."""
    n = _int(s, 7, 8)
    y, m, d = F.call_function("div", n, F.lit(10000)), F.call_function("div", n, F.lit(100)) % 100, n % 100
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    days = (F.when(m == 2, F.when(leap, 29).otherwise(28))
            .when(m.isin(4, 6, 9, 11), 30).otherwise(31))
    return (y >= 1880) & (m >= 1) & (m <= 12) & (d >= 1) & (d <= days)


def cn_id_issues(col: str, region_known_flag: Column | None = None) -> list[Column]:
    """At most one issue per value: format, birth date, check character (errors), region (warning).

    ``region_known_flag``: whether the first six characters are a known region code, already looked
    up (``with_region_flags``, a broadcast join: what the ingest uses); without it the lookup is the
    ``IN`` list of ``region_known``."""
    s = F.upper(F.col(col))
    known = region_known_flag if region_known_flag is not None else region_known(f"substr(upper({_sql_name(col)}), 1, 6)")
    return [
        F.when(s.isNull(), F.lit(None))
        .when(~s.rlike(r"^[0-9]{17}[0-9X]\z"),
              issue(F.lit(True), "cn_id.format", col, "ID number must be 17 digits and a digit or X", s))
        .when(~cn_id_birth_ok(s),
              issue(F.lit(True), "cn_id.birth_date", col, "the birth date inside the ID number is not a real date", s))
        .when(F.substring(s, 18, 1) != cn_id_check_char(s),
              issue(F.lit(True), "cn_id.checksum", col, F.concat(F.lit("check character should be "), cn_id_check_char(s)), s))
        .when(~F.coalesce(known, F.lit(False)),
              issue(F.lit(True), "cn_id.region", col,
                    F.concat(F.lit("region code "), F.substring(s, 1, 6), F.lit(" is not a known administrative division code")), s))
    ]


# ----------------------------------------------------------------------------- GB 32100 credit codes

def uscc_check_char(s: Column) -> Column:
    """Expected GB 32100 check character (weights 3^(i-1) mod 31; 31 - sum mod 31, 31 -> 0)."""
    alphabet = F.lit(USCC_ALPHABET)
    total = reduce(
        lambda a, b: a + b,
        [(F.instr(alphabet, F.substring(s, i + 1, 1)) - 1) * w for i, w in enumerate(USCC_WEIGHTS)],
    )
    r = (F.lit(31) - total % 31) % 31
    return F.substring(alphabet, (r + 1).cast("int"), 1)


# Java regexes end in \z, not $: a Java $ also matches before a final line terminator ("...\n")
USCC_REGEX = r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}\z"


def cn_uscc_issues(col: str) -> list[Column]:
    """At most one issue per value: format, authority/type pair, check character (all errors).

    The pair is checked before the check character: a code whose pair is impossible is reported as
    such whether or not its check character was recomputed."""
    s = F.upper(F.col(col))
    return [
        F.when(s.isNull(), F.lit(None))
        .when(~s.rlike(USCC_REGEX),
              issue(F.lit(True), "cn_uscc.format", col,
                    "credit code must be 18 characters of 0-9A-HJ-NPQRTUWXY, characters 3-8 digits", s))
        .when(~F.substring(s, 1, 2).isin(USCC_PAIRS),
              issue(F.lit(True), "cn_uscc.authority", col,
                    F.concat(F.lit("registration authority "), F.substring(s, 1, 1), F.lit(" and organisation type "),
                             F.substring(s, 2, 1), F.lit(" are not a GB 32100 pair")), s))
        .when(F.substring(s, 18, 1) != uscc_check_char(s),
              issue(F.lit(True), "cn_uscc.checksum", col,
                    F.concat(F.lit("check character should be "), uscc_check_char(s)), s))
    ]


# ----------------------------------------------------------------------------- city codes (城市码)

# 110115 (Daxing) + a device type of sensing.device_types + owner department (2 digits) + serial (7 digits)
# + check character
DEVICE_TYPE_GROUP = REF.substitutions["device_types"]
CITY_CODE_REGEX = r"^" + DISTRICT.code + DEVICE_TYPE_GROUP + r"[0-9]{2}[0-9]{7}[0-9X]\z"


def city_code_check_char(s: Column) -> Column:
    """Expected check character of an 18-character city code: ISO 7064 MOD 11-2 over the first 17
    digits, the same algorithm (and weights) as the GB 11643 ID number."""
    return cn_id_check_char(s)


def city_code_issues(col: str) -> list[Column]:
    """At most one issue per value: format (district prefix, a known device type, department, serial),
    then the check character (both errors)."""
    s = F.upper(F.col(col))
    return [
        F.when(s.isNull(), F.lit(None))
        .when(~s.rlike(CITY_CODE_REGEX),
              issue(F.lit(True), "city_code.format", col,
                    f"city code must be 110115 + device type ({'/'.join(SENSING.device_types)}) + department "
                    "(2 digits) + serial (7 digits) + check character (digit or X)", s))
        .when(F.substring(s, 18, 1) != city_code_check_char(s),
              issue(F.lit(True), "city_code.checksum", col,
                    F.concat(F.lit("check character should be "), city_code_check_char(s)), s))
    ]


# ----------------------------------------------------------------------------- phones

# mobile; or a landline: the 3-digit area codes (010 Beijing, 02x) have 8-digit local numbers, the
# 4-digit ones 7 or 8 (YD/T 2375 numbering plan)
PHONE_REGEX = r"^(1[3-9][0-9]{9}|0(10|2[0-9])-?[0-9]{8}|0[3-9][0-9]{2}-?[0-9]{7,8})\z"
MOBILE_REGEX = r"1[3-9][0-9]{9}"
ID_NUMBER_REGEX = r"[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"


def cn_phone_issues(col: str) -> list[Column]:
    """Mobile 1[3-9] + 9 digits, or landline 0 + 2-3 digit area code (not starting with 0),
    optional '-', 7-8 digits."""
    s = F.col(col)
    return [issue(s.isNotNull() & ~s.rlike(PHONE_REGEX), "cn_phone.format", col, "not a mobile or landline number", s)]


# ----------------------------------------------------------------------------- normalisation

# a character that normalisation changes: ASCII whitespace (Java \\s), U+3000 or full-width ASCII
SUSPECT_REGEX = "[\\s\u3000\uff01-\uff5e]"
WS_REGEX = "[\\s\u3000]"
FULLWIDTH_REGEX = "[\uff01-\uff5e]"


def normalized(c: Column, identifier: bool = False) -> Column:
    """Full-width ASCII -> half-width, every ASCII whitespace / U+3000 removed (one ``translate``
    pass: characters without a replacement are deleted), empty -> null; identifiers upper-cased.
    ``translate`` looks every character up in a map, so it runs only on values that hold such a
    character (one regular-expression scan decides)."""
    v = F.when(c.rlike(SUSPECT_REGEX), F.translate(c, FULLWIDTH + WS_CHARS, HALFWIDTH)).otherwise(c)
    if identifier:
        v = F.upper(v)
    return F.when(v != "", v)


def normalize_issues(raw: Column, col: str) -> list[Column]:
    """Findings for ``normalized``: the value is the raw value. A value that is only whitespace is
    not reported here: it becomes null, which is the ``required`` / ``missing`` rules' business."""
    suspect = raw.rlike(SUSPECT_REGEX)
    return [
        issue(suspect & raw.rlike(WS_REGEX) & (F.translate(raw, WS_CHARS, "") != ""), "normalize.whitespace", col,
              "stray spaces removed", raw),
        issue(suspect & raw.rlike(FULLWIDTH_REGEX), "normalize.fullwidth", col,
              "full-width characters converted to half-width", raw),
    ]


def trimmed(c: Column) -> Column:
    """Leading and trailing ASCII whitespace / U+3000 removed (``btrim``: no regular expression),
    empty -> null."""
    v = F.btrim(c, F.lit(WS_CHARS))
    return F.when(v != "", v)


# ----------------------------------------------------------------------------- derived from an ID

def gender_from_id(id_col: Column) -> Column:
    return F.when(id_col.rlike(r"^[0-9]{17}"), F.when(_digit(id_col, 17) % 2 == 1, F.lit("男")).otherwise(F.lit("女")))


def birth_date_from_id(id_col: Column) -> Column:
    return F.when(id_col.rlike(r"^[0-9]{17}"), F.try_to_date(F.substring(id_col, 7, 8), "yyyyMMdd"))


def literal_map(d: dict) -> Column:
    """A map literal of ``d`` (a lookup table inside a native expression)."""
    return F.create_map(*[F.lit(x) for kv in d.items() for x in kv])


def sql_list(values) -> str:
    """``'a', 'b'``: values as SQL string literals for an ``IN (...)`` condition."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)
