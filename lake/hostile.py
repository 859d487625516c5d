"""Hostile bytes in department files: control characters, empty deliveries, huge values, wrong encodings.

- **Control characters** (``control_characters``): NUL and the other C0 control characters except
  tab (U+0000-U+0008, U+000A-U+001F: a line break inside a quoted CSV field counts too) in any field.
  What happens is a source-contract setting, ``control_characters:``
  - ``quarantine`` (the default): the row is quarantined (severity error, rule ``control_characters``):
    a NUL or an escape sequence in a name or an ID is far more often a broken export or an injection
    attempt than data, and a quarantined row goes back to the department with its row number;
  - ``clean``: the characters are removed and the row is kept (severity warning, rule
    ``control_characters.cleaned``), for sources known to pad fields with them.
  Either way the finding's value shows the characters as Unicode control pictures (U+2400-U+241F,
  NUL is ␀), so reports and CSV files stay readable.
- **Delivered empty** (``delivered_empty``): a file with no data rows (empty, header only, blank
  lines only, a GeoJSON FeatureCollection without features) is landed and counted, and is a finding
  for its department (severity error, rule ``file.empty``): a department that sends an empty file
  has not delivered, and the report says so.
- **Echoed values** are cut to ``MAX_ECHO`` characters with a marker ``…[cut: N characters]``:
  ``quality/findings.value`` and ``record_key``, ``_reason`` of quarantined rows, ``lake check``'s
  output and the messages that quote a file's content. The rows themselves (raw, quarantine,
  ``_raw_line``) keep every byte as delivered.
- **Encodings**: ``encoding_problem`` names the encoding that was tried and the one the bytes look
  like (UTF-16 with or without a byte-order mark, UTF-8, GB18030/GBK).
"""
from __future__ import annotations

import codecs

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

MAX_ECHO = 200
CONTROL_REGEX = r"[\x00-\x08\x0a-\x1f]"  # Java regex: C0 controls except tab (U+0009)
CONTROL_CHARS = "".join(chr(c) for c in range(0x20) if c != 9)
CONTROL_PICTURES = "".join(chr(0x2400 + c) for c in range(0x20) if c != 9)
MODES = ("quarantine", "clean")
DEFAULT_MODE = "quarantine"
DEFECT_CONTROL = "control_characters"
DEFECT_EMPTY = "delivered_empty"
RULE_EMPTY = "file.empty"
ISSUE_COLUMN = "_control_issues"


# ------------------------------------------------------------------ cutting echoed values

def cut(text, limit: int = MAX_ECHO):
    """``text`` if it has at most ``limit`` characters, else its first ``limit`` and a marker."""
    if text is None:
        return None
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[cut: {len(text):,} characters]"


def cut_col(c: Column, limit: int = MAX_ECHO) -> Column:
    """``cut`` as a Spark expression."""
    return F.when(F.length(c) > limit, F.concat(
        F.substring(c, 1, limit), F.lit("…[cut: "), F.format_number(F.length(c), 0), F.lit(" characters]"),
    )).otherwise(c)


def visible(c: Column) -> Column:
    """Control characters shown as control pictures (NUL -> ␀), for findings and reports."""
    return F.translate(c, CONTROL_CHARS, CONTROL_PICTURES)


# ------------------------------------------------------------------ control characters (Spark)

def with_control_checks(df: DataFrame, columns: list[str], mode: str) -> DataFrame:
    """``df`` with ``ISSUE_COLUMN`` (an array of issue structs, as ``lake.rules.issue`` makes them)
    for every field holding a control character; in ``clean`` mode those characters are then removed
    from the fields. The issues are computed on the values as delivered, before cleaning. One regular
    expression scans the whole row (its fields joined by a tab, which is not a control character
    here); the fields are looked at one by one only in the rare rows where it matched."""
    if mode not in MODES:
        raise ValueError(f"control_characters must be one of {MODES}, got '{mode}'")
    from lake import rules

    rule, severity = (("control_characters", rules.ERROR) if mode == "quarantine"
                      else ("control_characters.cleaned", rules.WARNING))
    action = "row quarantined" if mode == "quarantine" else "characters removed"
    issues = []
    for name in columns:
        c = F.col(name)
        issues.append(F.when(c.rlike(CONTROL_REGEX), F.struct(
            F.lit(rule).alias("rule"), F.lit(name).alias("field"), F.lit(DEFECT_CONTROL).alias("defect_type"),
            F.lit(severity).alias("severity"),
            F.lit(f"contains control characters (NUL or other C0 controls except tab; shown as ␀…); {action}")
            .alias("message"),
            cut_col(visible(c)).alias("value"),
        )))
    flag = "_control_any"
    out = df.withColumn(flag, F.concat_ws("\t", *[F.col(n) for n in columns]).rlike(CONTROL_REGEX))
    empty = F.array().cast(f"array<{rules.ISSUE_TYPE}>")
    out = out.withColumn(ISSUE_COLUMN, F.when(F.col(flag), rules.issue_array(issues)).otherwise(empty))
    if mode == "clean":
        out = out.withColumns({name: F.when(F.col(flag), F.regexp_replace(F.col(name), CONTROL_REGEX, ""))
                               .otherwise(F.col(name)) for name in columns})
    return out.drop(flag)


# ------------------------------------------------------------------ delivered empty

def delivered_empty_finding(spark, source: str, department: str, sha: str, batch_id: str, file_name: str,
                            how: str) -> DataFrame:
    """The ``delivered_empty`` finding of one file, in the columns of ``quality.findings``."""
    from quality import findings

    row = {"run_id": batch_id, "stage": "ingest", "source": source, "department": department, "record_key": None,
           "field": "_file", "rule": RULE_EMPTY, "severity": "error", "defect_type": DEFECT_EMPTY,
           "message": f"the file has no data rows ({how}): nothing was delivered", "value": cut(file_name),
           "_file_sha256": sha, "_row": None, "_batch_id": batch_id}
    return spark.createDataFrame([row], ", ".join(f"{c} {t}" for c, t in findings.COLUMNS))


def empty_how(data: bytes) -> str | None:
    """Why a file with no data rows is empty, for the message (None: it has text)."""
    if not data:
        return "an empty file, 0 bytes"
    if data.isspace():
        return "only blank lines"
    return None


# ------------------------------------------------------------------ encodings

UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def utf16_guess(data: bytes) -> tuple[str, str] | None:
    """(encoding, why) when ``data`` looks like UTF-16: a byte-order mark, or (without one) NUL in
    most odd or most even positions of the first 4 KB (the high bytes of ASCII characters)."""
    for bom, enc in UTF16_BOMS:
        if data.startswith(bom):
            return enc, f"byte-order mark {bom.hex(' ').upper()}"
    sample = data[:4096]
    if len(sample) < 16:  # too little to tell
        return None
    even, odd = sample[0::2], sample[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / max(1, len(odd))
    if zeros_odd > 0.3 and zeros_even < 0.05:
        return "utf-16-le", "no byte-order mark; every second byte is NUL"
    if zeros_even > 0.3 and zeros_odd < 0.05:
        return "utf-16-be", "no byte-order mark; every second byte is NUL"
    return None


def guess(data: bytes) -> str:
    """What the bytes look like, for messages."""
    u16 = utf16_guess(data)
    if u16:
        return f"{u16[0].upper()} ({u16[1]})"
    try:
        data.decode("utf-8")
        return "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("gb18030")
        return "GB18030/GBK (the bytes decode as GB18030)"
    except UnicodeDecodeError:
        return "none of UTF-8, UTF-16 or GB18030 (a binary file, or a different encoding)"
