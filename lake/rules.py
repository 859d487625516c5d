"""Normative checks as native Spark expressions (no Python UDFs on the hot path).

Each check returns a Column holding an *issue* struct (rule, field, defect_type, severity, message,
value) or null. ``lake.identifiers`` holds the pure-Python reference implementations the tests
compare these expressions against.

Rule ids are stable strings that appear in quarantine (``_rule``) and ``quality/findings`` (``rule``);
``defect_type`` uses the same words as the generator's truth file.
"""
from __future__ import annotations

from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F

ERROR = "error"      # the row cannot be used: quarantined
WARNING = "warning"  # the row is kept, the problem is reported to the department

ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]

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
    "cn_uscc.format": ("credit_code_format", ERROR),
    "cn_uscc.checksum": ("credit_code_checksum", ERROR),
    "cn_phone.format": ("phone_format", WARNING),
    "duplicate.entity_key": ("duplicate_record", WARNING),
    "consistency.authority": ("name_mismatch", WARNING),  # defect_type is set per column, see consistency_defect
}

ISSUE_TYPE = "struct<rule:string,field:string,defect_type:string,severity:string,message:string,value:string>"


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
    # pos is 1-based; the caller has already checked the format, so the cast cannot fail.
    return F.substring(s, pos, 1).cast("int")


def cn_id_check_char(s: Column) -> Column:
    """Expected GB 11643 check character for an 18-character ID (ISO 7064 MOD 11-2)."""
    total = reduce(lambda a, b: a + b, [_digit(s, i + 1) * w for i, w in enumerate(ID_WEIGHTS)])
    return F.substring(F.lit(ID_CHECK), (total % 11 + 1).cast("int"), 1)


def cn_id_birth_date(s: Column) -> Column:
    return F.try_to_date(F.substring(s, 7, 8), "yyyyMMdd")


def cn_id_issues(col: str) -> list[Column]:
    s = F.upper(F.col(col))
    fmt_ok = s.rlike(r"^[0-9]{17}[0-9X]$")
    birth = cn_id_birth_date(s)
    birth_ok = birth.isNotNull() & (F.year(birth) >= 1880)
    return [
        issue(s.isNotNull() & ~fmt_ok, "cn_id.format", col, "ID number must be 17 digits and a digit or X", s),
        issue(s.isNotNull() & fmt_ok & ~birth_ok, "cn_id.birth_date", col, "the birth date inside the ID number is not a real date", s),
        issue(
            s.isNotNull() & fmt_ok & birth_ok & (F.substring(s, 18, 1) != cn_id_check_char(s)),
            "cn_id.checksum", col,
            F.concat(F.lit("check character should be "), cn_id_check_char(s)), s,
        ),
    ]


def uscc_check_char(s: Column) -> Column:
    """Expected GB 32100 check character (weights 3^(i-1) mod 31; 31 - sum mod 31, 31 -> 0)."""
    alphabet = F.lit(USCC_ALPHABET)
    total = reduce(
        lambda a, b: a + b,
        [(F.instr(alphabet, F.substring(s, i + 1, 1)) - 1) * w for i, w in enumerate(USCC_WEIGHTS)],
    )
    r = (F.lit(31) - total % 31) % 31
    return F.substring(alphabet, (r + 1).cast("int"), 1)


def cn_uscc_issues(col: str) -> list[Column]:
    s = F.upper(F.col(col))
    fmt_ok = s.rlike(r"^[0-9A-HJ-NPQRTUWXY]{18}$")
    return [
        issue(s.isNotNull() & ~fmt_ok, "cn_uscc.format", col, "credit code must be 18 characters of 0-9A-HJ-NPQRTUWXY", s),
        issue(
            s.isNotNull() & fmt_ok & (F.substring(s, 18, 1) != uscc_check_char(s)),
            "cn_uscc.checksum", col, F.concat(F.lit("check character should be "), uscc_check_char(s)), s,
        ),
    ]


PHONE_REGEX = r"^(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[0-9]{7,8})$"
MOBILE_REGEX = r"1[3-9][0-9]{9}"
ID_NUMBER_REGEX = r"[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]"


def cn_phone_issues(col: str) -> list[Column]:
    s = F.col(col)
    return [issue(s.isNotNull() & ~s.rlike(PHONE_REGEX), "cn_phone.format", col, "not a mobile or landline number", s)]


def gender_from_id(id_col: Column) -> Column:
    return F.when(id_col.rlike(r"^[0-9]{17}"), F.when(_digit(id_col, 17) % 2 == 1, F.lit("男")).otherwise(F.lit("女")))


def birth_date_from_id(id_col: Column) -> Column:
    return F.when(id_col.rlike(r"^[0-9]{17}"), F.try_to_date(F.substring(id_col, 7, 8), "yyyyMMdd"))
