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
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

GB_FAMILY = {"gbk", "gb2312", "gb18030", "cp936"}
CHUNK_ROWS = 100_000  # one Parquet row group: Spark splits the staging file at these


class InputError(ValueError):
    """A problem with a user's file or arguments; the message names the file and what is wrong."""


class EmptyFile(InputError):
    """The file holds no text at all (0 bytes, or only whitespace)."""


@dataclass(frozen=True)
class ParseResult:
    rows: int
    malformed: int
    declared_encoding: str
    detected_encoding: str
    header: list[str]
    empty: str = ""  # why a file with no data rows is empty (lake.hostile: delivered_empty)


def _cut(value) -> str:
    from lake.hostile import cut

    return cut(str(value))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def decode(data: bytes, declared: str, name: str) -> tuple[str, str]:
    """``data`` as text, and the encoding it was decoded with. A BOM wins; valid UTF-8 with non-ASCII
    text is UTF-8 whatever was declared (GBK text is practically never valid UTF-8); otherwise the GB
    family is read as GB18030, its superset, so that rare name characters survive. UTF-16 (with or
    without a byte-order mark) is read only when the contract declares it. Each candidate is decoded
    once, and the successful attempt is the text (a 240 MB file is not decoded twice). Every error
    names the encoding tried and the one the bytes look like (``lake.hostile``)."""
    from lake import hostile

    declared = (declared or "auto").lower()
    u16 = hostile.utf16_guess(data)
    if declared.replace("_", "-") in ("utf-16", "utf-16-le", "utf-16-be"):
        enc = u16[0] if u16 else ("utf-16-le" if declared == "utf-16" else declared.replace("_", "-"))
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as e:
            raise InputError(f"{name}: declared {declared}; tried {enc.upper()}: byte {e.start} is not valid "
                             f"{enc.upper()}; the bytes look like {hostile.guess(data)}") from None
        return text.removeprefix("\ufeff"), enc
    if u16 is not None:  # valid UTF-8 (ASCII with NULs) and decodable as GB18030: stop before either
        tried = "UTF-8 or GB18030" if declared in GB_FAMILY or declared == "auto" else "UTF-8"
        raise InputError(f"{name}: declared {declared}; not read as {tried}: the bytes look like {u16[0].upper()} "
                         f"({u16[1]}); re-export the file as {declared if declared != 'auto' else 'UTF-8'} or "
                         f"declare encoding: {u16[0]} in the source's contract")
    if data.startswith(codecs.BOM_UTF8):
        return data.decode("utf-8-sig"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        utf8_error = e
    if declared in GB_FAMILY or declared == "auto":
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as e:
            raise InputError(f"{name}: declared {declared}; tried UTF-8 (byte {utf8_error.start} is not valid UTF-8) "
                             f"and GB18030 (byte {e.start} is not valid GB18030); the bytes look like "
                             f"{hostile.guess(data)}") from None
    raise InputError(
        f"{name}: declared {declared}; tried UTF-8: byte {utf8_error.start} is not valid UTF-8; the bytes look like "
        f"{hostile.guess(data)}: fix the contract's encoding or re-export the file as {declared}"
    )


def read_text(path: Path, declared_encoding: str) -> tuple[str, str]:
    """The file's text and the encoding it was decoded with; an empty file is an InputError."""
    data = path.read_bytes()
    if not data or data.isspace():  # (not data.strip(): without copying the whole file)
        raise EmptyFile(f"{path.name}: the file is empty")
    return decode(data, declared_encoding, path.name)


def parse_file(path: Path, fmt: str, columns: list[str], declared_encoding: str, out_parquet: str,
               record_key: str, filesystem=None) -> ParseResult:
    """Parse a department file of format ``fmt`` ("csv", "jsonl" or "geojson") into the staging Parquet file.
    A file with no data rows (empty, blank lines only, a header only, no features) gives 0 rows and an
    empty staging file, with ``empty`` saying why (ingest reports it as ``delivered_empty``)."""
    parsers = {"geojson": parse_geojson, "jsonl": parse_jsonl, "csv": parse_csv}
    if fmt not in parsers:
        raise InputError(f"{path.name}: unsupported file format '{fmt}' (csv, jsonl or geojson)")
    try:
        result = parsers[fmt](path, columns, declared_encoding, out_parquet, record_key, filesystem)
    except EmptyFile:
        from lake import hostile

        _Buffer(columns, out_parquet, filesystem).close()
        return ParseResult(rows=0, malformed=0, declared_encoding=declared_encoding,
                           detected_encoding=declared_encoding, header=list(columns),
                           empty=hostile.empty_how(path.read_bytes()) or "no text")
    if result.rows == 0:
        how = {"csv": "a header and no data rows", "jsonl": "no records", "geojson": "no features"}[fmt]
        result = ParseResult(result.rows, result.malformed, result.declared_encoding, result.detected_encoding,
                             result.header, empty=how)
    return result


class _Buffer:
    """Column buffers flushed to a Parquet writer every CHUNK_ROWS rows."""

    def __init__(self, columns: list[str], out_parquet: str, filesystem) -> None:
        # _parse_error: why a record is malformed (JSON lines, GeoJSON), for the finding's message
        self.schema = pa.schema([(c, pa.string()) for c in columns]
                                + [("_row", pa.int64()), ("_field_count", pa.int32()), ("_raw_line", pa.string()),
                                   ("_parse_error", pa.string())])
        self.cols: list[list] = [[] for _ in range(len(columns) + 4)]
        self.writer = pq.ParquetWriter(out_parquet, self.schema, filesystem=filesystem, compression="snappy")
        self.rows = 0

    def add(self, values: list, row: int, field_count: int, raw: str | None, error: str | None = None) -> None:
        for b, v in zip(self.cols, values):
            b.append(v)
        self.cols[-4].append(row)
        self.cols[-3].append(field_count)
        self.cols[-2].append(raw)
        self.cols[-1].append(error)
        self.rows += 1
        if len(self.cols[-4]) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        self.writer.write_batch(pa.record_batch(
            [pa.array(b, type=t.type) for b, t in zip(self.cols, self.schema)], schema=self.schema))
        for b in self.cols:
            b.clear()

    def close(self) -> None:
        if self.cols[-4] or self.rows == 0:
            self.flush()
        self.writer.close()


def parse_jsonl(path: Path, columns: list[str], declared_encoding: str, out_parquet: str,
                record_key: str, filesystem=None) -> ParseResult:
    """JSON lines: one object per line whose keys are the contract's columns. ``_row`` is the line
    number (1-based, there is no header). A line that is not a JSON object, or has keys the contract
    does not know, is malformed (``_field_count`` -1) and keeps its raw text; a
    missing key is a null value, which the required-column check reports."""
    text, encoding = read_text(path, declared_encoding)
    known = set(columns)
    key_pattern = re.compile(r'"' + re.escape(record_key) + r'"\s*:\s*"((?:[^"\\]|\\.)*)"')
    buf = _Buffer(columns, out_parquet, filesystem)
    malformed = 0
    try:
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                error = None
            except json.JSONDecodeError as e:
                obj, error = None, f"not valid JSON: {e.msg} at column {e.colno}"
            except RecursionError:
                obj, error = None, "not valid JSON: nested too deeply"
            if not isinstance(obj, dict) or set(obj) - known or "\ufffd" in line:
                malformed += 1
                key = obj.get(record_key) if isinstance(obj, dict) else None
                if key is None:  # a truncated line: keep the record key if its pair is intact
                    m = key_pattern.search(line)
                    key = json.loads(f'"{m.group(1)}"') if m else None
                values = [str(key) if (c == record_key and key is not None) else None for c in columns]
                count = -1  # never equal to the column count: the row is malformed
                if isinstance(obj, dict) and "\ufffd" in line and not set(obj) - known:
                    values = [None if obj.get(c) is None else str(obj[c]) for c in columns]
                    count = len(columns)
                if error is None and not isinstance(obj, dict):
                    error = f"not a JSON object but a JSON {type(obj).__name__.replace('NoneType', 'null')}"
                elif error is None and set(obj) - known:
                    error = _cut(f"unknown key(s) {sorted(set(obj) - known)}; the contract's keys are {columns}")
                buf.add(values, line_no, count, line, error)
                continue
            buf.add([None if obj.get(c) is None else str(obj[c]) for c in columns], line_no, len(columns), None)
    finally:
        buf.close()
    return ParseResult(rows=buf.rows, malformed=malformed, declared_encoding=declared_encoding,
                       detected_encoding=encoding, header=list(columns))


def parse_geojson(path: Path, columns: list[str], declared_encoding: str, out_parquet: str,
                  record_key: str, filesystem=None) -> ParseResult:
    """A GeoJSON FeatureCollection: one row per feature, ``_row`` = the feature's number (1-based),
    its ``properties`` as the contract's columns and its ``geometry`` as compact GeoJSON text in the
    ``geometry`` column. A feature that is not an object, has no geometry object, or has properties
    the contract does not know is malformed (``_field_count`` -1, the feature's text in
    ``_raw_line``), as a bad line of JSON lines is. A file that is not a FeatureCollection is an
    InputError."""
    name = path.name
    text, encoding = read_text(path, declared_encoding)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{name}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InputError(f"{name}: not a GeoJSON FeatureCollection (expected an object with "
                         "\"type\": \"FeatureCollection\" and a \"features\" list)")
    known = set(columns) - {"geometry"}
    buf = _Buffer(columns, out_parquet, filesystem)
    malformed = 0
    try:
        for number, feature in enumerate(doc["features"], start=1):
            raw = json.dumps(feature, ensure_ascii=False, separators=(",", ":"))
            props = feature.get("properties") if isinstance(feature, dict) else None
            props = props if isinstance(props, dict) else {}
            geometry = feature.get("geometry") if isinstance(feature, dict) else None
            values = [None if props.get(c) is None else str(props[c]) for c in columns]
            if "geometry" in columns and isinstance(geometry, dict):
                values[columns.index("geometry")] = json.dumps(geometry, ensure_ascii=False, separators=(",", ":"))
            if not isinstance(feature, dict) or not isinstance(geometry, dict) or set(props) - known:
                malformed += 1
                key = props.get(record_key)
                values = [str(key) if (c == record_key and key is not None) else None for c in columns]
                error = ("the feature is not a JSON object" if not isinstance(feature, dict) else
                         "the feature has no geometry object" if not isinstance(geometry, dict) else
                         _cut(f"unknown properties {sorted(set(props) - known)}; the contract's are {sorted(known)}"))
                buf.add(values, number, -1, raw, error)
                continue
            buf.add(values, number, len(columns), raw if "\ufffd" in raw else None)
    finally:
        buf.close()
    return ParseResult(rows=buf.rows, malformed=malformed, declared_encoding=declared_encoding,
                       detected_encoding=encoding, header=list(columns))


def parse_csv(path: Path, columns: list[str], declared_encoding: str, out_parquet: str,
              record_key: str, filesystem=None) -> ParseResult:
    """Decode and split ``path`` into a Parquet file of string columns plus ``_row`` (the line number
    of the record in the file, header = line 1), ``_field_count`` and ``_raw_line`` (kept for rows
    whose field count is wrong or that contain undecodable characters)."""
    name = path.name
    text, encoding = read_text(path, declared_encoding)
    plain = _plain(text)
    # a plain text's header is its first line; only the general path needs the whole text as a stream
    reader = csv.reader(io.StringIO(text[:text.find("\n") + 1] if plain and "\n" in text else text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError(f"{name}: the file has no header row") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(
            f"{name}: header is missing column(s) {missing}; expected {columns}, found {_cut(header)}"
        )
    extra = [h for h in header if h not in columns]
    if extra:
        raise InputError(f"{name}: header has unexpected column(s) {_cut(extra)}; expected {columns}")
    idx = [header.index(c) for c in columns]
    n_expected = len(header)
    schema = pa.schema([(c, pa.string()) for c in columns]
                       + [("_row", pa.int64()), ("_field_count", pa.int32()), ("_raw_line", pa.string())])
    key_pos = header.index(record_key)
    if plain:
        return _parse_plain_csv(text, schema, idx, n_expected, key_pos, out_parquet, filesystem, declared_encoding,
                                encoding, header)

    rows = malformed = 0
    # Well-formed records are collected as they come and turned into columns per chunk (zip), which
    # keeps the per-record Python work to one append; odd records take the slow path.
    good: list[list[str]] = []
    good_lines: list[int] = []
    odd: list[list] = [[] for _ in range(len(columns) + 3)]
    check_fffd = "\ufffd" in text
    writer = pq.ParquetWriter(out_parquet, schema, filesystem=filesystem, compression="snappy")
    prev_line = reader.line_num
    n_cols = len(columns)

    def flush():
        if good:
            cols = list(zip(*good))
            arrays = [pa.array(cols[i], type=pa.string()) for i in idx]
            arrays += [pa.array(good_lines, type=pa.int64()), pa.array([n_expected] * len(good), type=pa.int32()),
                       pa.nulls(len(good), type=pa.string())]
            writer.write_batch(pa.record_batch(arrays, schema=schema))
            good.clear()
            good_lines.clear()
        if odd[-3]:
            writer.write_batch(pa.record_batch([pa.array(b, type=t.type) for b, t in zip(odd, schema)], schema=schema))
            for b in odd:
                b.clear()

    try:
        for rec in reader:
            start_line = prev_line + 1
            prev_line = reader.line_num
            n = len(rec)
            if n == n_expected and not (check_fffd and any("\ufffd" in v for v in rec)):
                good.append(rec)
                good_lines.append(start_line)
                rows += 1
                if len(good) >= CHUNK_ROWS:
                    flush()
                continue
            if not rec or (n == 1 and rec[0] == ""):
                continue  # blank line: not a record
            rows += 1
            if n == n_expected:  # undecodable characters: kept whole, reported by the encoding rule
                for j, i in enumerate(idx):
                    odd[j].append(rec[i])
            else:
                malformed += 1
                for j, i in enumerate(idx):
                    # keep the record key when it is there, so the department can find the row
                    odd[j].append(rec[i] if (i == key_pos and i < n) else None)
            odd[n_cols].append(start_line)
            odd[n_cols + 1].append(n)
            odd[n_cols + 2].append(",".join(rec))
        flush()
        if rows == 0:
            writer.write_batch(pa.record_batch([pa.array([], type=t.type) for t in schema], schema=schema))
    except csv.Error as e:
        raise InputError(f"{name}: line {reader.line_num}: {_cut(e)}") from None
    finally:
        writer.close()
    return ParseResult(rows=rows, malformed=malformed, declared_encoding=declared_encoding,
                       detected_encoding=encoding, header=header)


# ------------------------------------------------------------------ CSV without quotes: native split

def _plain(text: str) -> bool:
    """True when every physical line of ``text`` is exactly one record: no quote character (so no
    quoted field, no field with a line break), no NUL, no lone carriage return and no undecodable
    character. Department exports nearly always look like this; their records are then split by
    pyarrow's C++ CSV reader instead of Python's csv module (5-10x faster, and it releases the GIL)."""
    return ('"' not in text and "\x00" not in text and "\ufffd" not in text
            and text.count("\r") == text.count("\r\n"))


def _parse_plain_csv(text: str, schema: pa.Schema, idx: list[int], n_expected: int, key_pos: int, out_parquet: str,
                     filesystem, declared_encoding: str, encoding: str, header: list[str]) -> ParseResult:
    """``parse_csv`` for a ``_plain`` text, row for row the same result: the field count of each line is
    its commas plus one, so the lines with the header's field count are handed to pyarrow in one piece
    and the others (blank lines skipped, malformed ones kept with their raw text and record key) are
    built here, as the general path builds them. ``_row`` is the physical line number (header = 1)."""
    import numpy as np
    import pyarrow.csv as pacsv

    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")  # lines[0] is the header; lines[i] is line i + 1
    commas = n_expected - 1
    # a line is handed to pyarrow when it has the header's field count and is not empty (not a record)
    odd_at = [i for i, line in enumerate(lines) if i and (line.count(",") != commas or not line)]
    odd_lines = [i for i in odd_at if lines[i]]
    writer = pq.ParquetWriter(out_parquet, schema, filesystem=filesystem, compression="snappy")
    rows = 0
    try:
        mask = np.ones(len(lines), dtype=bool)
        mask[0] = False
        mask[odd_at] = False
        numbers = np.flatnonzero(mask) + 1
        body = "\n".join(line for line, keep in zip(lines, mask) if keep)
        if len(numbers):
            names = [f"f{i}" for i in range(n_expected)]
            table = pacsv.read_csv(
                pa.BufferReader(body.encode("utf-8")),
                read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
                parse_options=pacsv.ParseOptions(delimiter=",", quote_char=False, double_quote=False,
                                                 escape_char=False, newlines_in_values=False, ignore_empty_lines=False),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                     include_columns=[names[i] for i in idx]))
            if table.num_rows != len(numbers):  # cannot happen for a _plain text; never write shifted row numbers
                raise RuntimeError(f"CSV fast path read {table.num_rows} records from {len(numbers)} lines")
            good = pa.table([*(table.column(names[i]) for i in idx), pa.array(numbers, type=pa.int64()),
                             pa.array(np.full(len(numbers), n_expected, dtype=np.int32)),
                             pa.nulls(len(numbers), type=pa.string())], schema=schema)
            writer.write_table(good, row_group_size=CHUNK_ROWS)
            rows += good.num_rows
        if odd_lines or rows == 0:
            cols: list[list] = [[] for _ in schema]
            for i in odd_lines:
                rec = lines[i].split(",")
                for j, k in enumerate(idx):
                    cols[j].append(rec[k] if (k == key_pos and k < len(rec)) else None)
                cols[-3].append(i + 1)
                cols[-2].append(len(rec))
                cols[-1].append(lines[i])
            writer.write_batch(pa.record_batch([pa.array(b, type=t.type) for b, t in zip(cols, schema)], schema=schema))
            rows += len(odd_lines)
    finally:
        writer.close()
    return ParseResult(rows=rows, malformed=len(odd_lines), declared_encoding=declared_encoding,
                       detected_encoding=encoding, header=header)
