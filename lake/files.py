"""Reading department files as received: checksum, encoding detection, CSV parsing with row numbers.

Spark's CSV reader turns short rows into nulls and silently drops extra fields, and reads a GBK file
as UTF-8 garbage without an error, so files are decoded and split here, where every record keeps its
row number and every field-count problem is seen. Values stay strings; typing and checks happen in
Spark (``lake.rules``). The result is written as Parquet in chunks, so memory stays bounded.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

GB_FAMILY = {"gbk", "gb2312", "gb18030", "cp936"}
CHUNK_ROWS = 200_000


class InputError(ValueError):
    """A problem with a user's file or arguments; the message names the file and what is wrong."""


@dataclass(frozen=True)
class ParseResult:
    rows: int
    malformed: int
    declared_encoding: str
    detected_encoding: str
    header: list[str]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def detect_encoding(data: bytes, declared: str, name: str) -> str:
    """The encoding to decode with. A BOM wins; valid UTF-8 with non-ASCII text is UTF-8 whatever was
    declared (GBK text is practically never valid UTF-8); otherwise the GB family is read as GB18030,
    its superset, so that rare name characters survive."""
    declared = (declared or "auto").lower()
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        utf8_error = e
    if declared in GB_FAMILY or declared == "auto":
        try:
            data.decode("gb18030")
            return "gb18030"
        except UnicodeDecodeError as e:
            raise InputError(f"{name}: cannot be decoded as GB18030 at byte {e.start}") from None
    raise InputError(
        f"{name}: declared {declared} but byte {utf8_error.start} is not valid UTF-8 "
        "(is the file GBK? fix the contract's encoding or re-export the file)"
    )


def parse_csv(path: Path, columns: list[str], declared_encoding: str, out_parquet: str,
              record_key: str, filesystem=None) -> ParseResult:
    """Decode and split ``path`` into a Parquet file of string columns plus ``_row`` (the line number
    of the record in the file, header = line 1), ``_field_count`` and ``_raw_line`` (kept for rows
    whose field count is wrong or that contain undecodable characters)."""
    name = path.name
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{name}: the file is empty")
    encoding = detect_encoding(data, declared_encoding, name)
    text = data.decode(encoding)
    del data
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{name}: the file has no header row") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(
            f"{name}: header is missing column(s) {missing}; expected {columns}, found {header}"
        )
    extra = [h for h in header if h not in columns]
    if extra:
        raise InputError(f"{name}: header has unexpected column(s) {extra}; expected {columns}")
    idx = [header.index(c) for c in columns]
    n_expected = len(header)
    schema = pa.schema([(c, pa.string()) for c in columns]
                       + [("_row", pa.int64()), ("_field_count", pa.int32()), ("_raw_line", pa.string())])
    key_pos = header.index(record_key)

    rows = malformed = 0
    buf: list[list] = [[] for _ in range(len(columns) + 3)]
    writer = pq.ParquetWriter(out_parquet, schema, filesystem=filesystem, compression="snappy")
    prev_line = reader.line_num

    def flush():
        writer.write_batch(pa.record_batch([pa.array(b, type=t.type) for b, t in zip(buf, schema)], schema=schema))
        for b in buf:
            b.clear()

    try:
        for rec in reader:
            start_line = prev_line + 1
            prev_line = reader.line_num
            if not rec or (len(rec) == 1 and rec[0] == ""):
                continue  # blank line: not a record
            rows += 1
            n = len(rec)
            bad = n != n_expected or any("\ufffd" in v for v in rec)
            if n == n_expected:
                for j, i in enumerate(idx):
                    buf[j].append(rec[i])
            else:
                malformed += 1
                for j, i in enumerate(idx):
                    # keep the record key when it is there, so the department can find the row
                    buf[j].append(rec[i] if (i == key_pos and i < n) else None)
            buf[-3].append(start_line)
            buf[-2].append(n)
            buf[-1].append(",".join(rec) if bad else None)
            if len(buf[-3]) >= CHUNK_ROWS:
                flush()
        if buf[-3] or rows == 0:
            flush()
    except csv.Error as e:
        raise InputError(f"{name}: line {reader.line_num}: {e}") from None
    finally:
        writer.close()
    return ParseResult(rows=rows, malformed=malformed, declared_encoding=declared_encoding,
                       detected_encoding=encoding, header=header)
