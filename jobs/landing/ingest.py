"""Land department files: landing (as received, checksummed) -> raw (typed) + quarantine (with reason).

Invariant: for every file, rows read = rows in ``raw/<source>`` + rows in ``quarantine/<source>``
with that file's sha256. Ingesting a file whose sha256 is already in ``landing/_manifest`` adds
nothing; a crash half-way is repaired by re-running, because every write replaces exactly the rows
of its batch (``replaceWhere _file_sha256 = ...``) and the manifest row is written last.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake import hostile, io, landing, locks, rules
from lake.contracts import SourceContract
from lake.files import InputError, parse_file, sha256_of
from lake.log import log
from lake.reference import LEGAL_ENTITY
from lake.settings import Settings
from lake.spark import get_spark
from quality import findings

MANIFEST = ("landing", "_manifest")
MANIFEST_SCHEMA = ("source string, file_name string, landing_path string, sha256 string, bytes long, "
                   "declared_encoding string, detected_encoding string, rows_read long, rows_raw long, "
                   "rows_quarantined long, findings long, batch_id string, ingested_at timestamp")
# Files of different sources are landed by concurrent threads (``run_many``); the tables they all
# write (findings, manifest) take one commit at a time, so that two replaceWhere commits on one
# unpartitioned table never race (Delta would fail the second with ConcurrentAppendException).
_shared_writes = threading.Lock()
META_COLUMNS = ["_source", "_file_sha256", "_row", "_batch_id", "_ingested_at", "_as_of", "_op"]
# ``_as_of``: the business date of the delivery (the day's manifest.json ``as_of``, else the run's
# --as-of); ``_op``: I, U or D from a change file's operation column, null for a file without one
# (every row an insert, or a snapshot row). The golden records order deliveries by ``_as_of``.
OPS = ("I", "U", "D")


@dataclass
class IngestResult:
    source: str
    file: str
    sha256: str
    batch_id: str
    rows_read: int
    rows_raw: int
    rows_quarantined: int
    findings: int
    skipped: bool
    detected_encoding: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------ pure transforms

def check_rows(parsed: DataFrame, sc: SourceContract) -> DataFrame:
    """Normalise values, type them and attach ``_issues`` (array of issue structs). Pure.

    Columns with checks (identifiers, phones) or ``normalize: true`` lose every stray space (ASCII
    whitespace or U+3000, anywhere) and get full-width ASCII converted to half-width, each reported
    as a warning whose value is the value as received; identifiers are then upper-cased. Every other
    column is only trimmed, without a finding.

    Every check is a plain expression (no lambdas: ``rules.issue_array``), so the whole projection
    is compiled by whole-stage code generation.
    """
    wellformed = F.col("_field_count") == len(sc.columns)
    # NUL and other C0 controls: issues on the values as delivered, then cleaned if the contract says so
    parsed = hostile.with_control_checks(parsed, sc.column_names, sc.control_characters)
    # a change file's deletion names only the record and the entity: other required columns may be empty
    op_col = sc.op_column if sc.op_column and sc.op_column in sc.column_names else ""
    not_deleted = (F.coalesce(F.col(op_col), F.lit("")) != F.lit(sc.delivery.get("delete", "D"))) if op_col else F.lit(True)
    normalised = [col for col in sc.columns if col.checks or col.normalize]
    # findings on the values as received, before they are replaced below
    norm_checks = [i for col in normalised for i in rules.normalize_issues(F.col(col.name), col.name)]
    df = parsed.withColumn("_norm_issues", rules.issue_array(norm_checks))
    cleaned = {}
    for col in sc.columns:
        c = F.col(col.name)
        if col in normalised:
            cleaned[col.name] = rules.normalized(c, identifier=bool(rules.IDENTIFIER_CHECKS & set(col.checks)))
        else:
            cleaned[col.name] = rules.trimmed(c)
    df = df.withColumns(cleaned)  # one projection (and one analysis) instead of one per column
    id_cols = [col.name for col in sc.columns if "cn_id" in col.checks]
    df = rules.with_region_flags(df, id_cols)
    checks = [
        F.when(F.col("_field_count") != len(sc.columns), F.struct(
            F.lit("parse.field_count").alias("rule"), F.lit("_row").alias("field"),
            F.lit("malformed_row").alias("defect_type"), F.lit(rules.ERROR).alias("severity"),
            F.coalesce(F.col("_parse_error") if "_parse_error" in parsed.columns else F.lit(None).cast("string"),
                       F.concat(F.lit(f"expected {len(sc.columns)} fields, found "),
                                F.col("_field_count").cast("string"))).alias("message"),
            F.col("_raw_line").alias("value"),
        )),
        rules.issue(F.col("_raw_line").contains("\ufffd") & (F.col("_field_count") == len(sc.columns)),
                    "parse.encoding", "_row", "contains undecodable characters (U+FFFD)", F.col("_raw_line")),
    ]
    typed = {}
    id_issues: dict[str, list[Column]] = {}
    for col in sc.columns:
        c = F.col(col.name)
        if col.required:
            cond = wellformed & c.isNull()
            if col.name not in (sc.record_key, sc.entity_key):
                cond = cond & not_deleted
            checks.append(rules.issue(cond, "required", col.name, f"{col.name} is required"))
        elif col.name == sc.entity_key:
            checks.append(rules.issue(wellformed & c.isNull(), "missing.entity_key", col.name,
                                      f"{col.name} is empty; the row is linked by name, birth date and address"))
        if col.type == "date":
            typed[col.name] = F.try_to_date(c, "yyyy-MM-dd")
            checks.append(rules.issue(c.isNotNull() & typed[col.name].isNull(), "type.date", col.name,
                                      "not a real date in YYYY-MM-DD form", c))
        elif col.type != "string":
            typed[col.name] = F.expr(f"try_cast(`{col.name}` as {col.type})")
            checks.append(rules.issue(c.isNotNull() & typed[col.name].isNull(), "type.number", col.name,
                                      f"not a {col.type}", c))
        if col.allowed:
            checks.append(rules.issue(c.isNotNull() & ~c.isin(list(col.allowed)), "allowed_values", col.name,
                                      f"must be one of {'/'.join(col.allowed)}", c))
        for chk in col.checks:
            if chk == "cn_id":
                found = id_issues[col.name] = rules.cn_id_issues(col.name, F.col(rules.region_flag_column(col.name)))
            else:
                found = {"cn_uscc": rules.cn_uscc_issues, "cn_phone": rules.cn_phone_issues,
                         "city_code": rules.city_code_issues}[chk](col.name)
            checks.extend(found)
    cross = _cross_checks(sc, typed, id_issues) + _deregistration_checks(sc, typed, wellformed & not_deleted,
                                                                         "_as_of" in parsed.columns)
    issues = F.concat(F.col(hostile.ISSUE_COLUMN), F.col("_norm_issues"), rules.issue_array(checks + cross))
    if typed:
        df = df.withColumns({f"_typed_{name}": expr for name, expr in typed.items()})
    df = df.withColumn("_issues", issues).drop("_norm_issues", hostile.ISSUE_COLUMN,
                                               *[rules.region_flag_column(c) for c in id_cols])
    # computed once here, so that splitting the (cached) rows reads a flag, not the issue structs
    return df.withColumn("_is_error", rules.has_severity(F.col("_issues"), rules.ERROR))


def _cross_checks(sc: SourceContract, typed: dict, id_issues: dict[str, list[Column]]) -> list:
    """The row's own ID number against its ``birth_date`` and ``gender`` columns, only when the ID
    passes all its own checks (``id_issues``: the ID column's check expressions) and the other value
    is itself valid."""
    if not id_issues:
        return []
    id_col = sc.entity_key if sc.entity_key in id_issues else next(iter(id_issues))
    id_ok = F.col(id_col).isNotNull()
    for i in id_issues[id_col]:
        id_ok = id_ok & i.isNull()
    ident = F.col(id_col)
    out = []
    if "birth_date" in sc.column_names:
        recorded = typed.get("birth_date", F.try_to_date(F.col("birth_date"), "yyyy-MM-dd"))
        from_id = rules.birth_date_from_id(ident)
        out.append(rules.issue(
            id_ok & recorded.isNotNull() & (recorded != from_id), "cross.id_birth_date", "birth_date",
            F.concat(F.lit(f"differs from the birth date in {id_col} "), from_id.cast("string")), F.col("birth_date")))
    if "gender" in sc.column_names:
        recorded = F.col("gender")
        from_id = rules.gender_from_id(ident)
        out.append(rules.issue(
            id_ok & recorded.isin("男", "女") & (recorded != from_id), "cross.id_gender", "gender",
            F.concat(F.lit(f"differs from the gender in {id_col} "), from_id), recorded))
    return out


def _deregistration_checks(sc: SourceContract, typed: dict, applies: Column, has_as_of: bool) -> list:
    """The contract's ``deregistration`` date against the row's status, establishment date and the
    delivery's business date (``_as_of``; not known to ``lake check``): at most one issue per row, on
    the date column. Rows with the wrong field count or a deletion are not checked; a status outside
    the dead and active statuses (itself an error) is neither."""
    spec = sc.deregistration
    if not spec:
        return []
    date_col, status = spec["date"], F.col(spec["status"])
    delivered, date = F.col(date_col), typed[date_col]
    dead, active = status.isin(*LEGAL_ENTITY.deregistered_statuses), status.isin(*LEGAL_ENTITY.active_statuses)
    est = typed.get(spec["established"]) if spec.get("established") else None
    out = [
        rules.issue(applies & dead & delivered.isNull(), "cross.deregistration_date_missing", date_col,
                    F.concat(F.lit("status is "), status, F.lit(f" but {date_col} is empty"))),
        rules.issue(applies & active & date.isNotNull(), "cross.deregistration_date_on_active", date_col,
                    F.concat(F.lit("a deregistration date on an entity whose status is "), status), delivered),
    ]
    if est is not None:
        out.append(rules.issue(applies & dead & date.isNotNull() & est.isNotNull() & (date < est),
                               "cross.deregistration_order", date_col,
                               F.concat(F.lit(f"before {spec['established']} "), est.cast("string")), delivered))
        not_before = est.isNull() | (date >= est)
    else:
        not_before = F.lit(True)
    if has_as_of:
        out.append(rules.issue(applies & dead & date.isNotNull() & not_before & (date > F.col("_as_of")),
                               "cross.deregistration_future", date_col,
                               F.concat(F.lit("after the delivery's business date "), F.col("_as_of").cast("string")),
                               delivered))
    return out


def split(checked: DataFrame, sc: SourceContract) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(raw, quarantine, findings) from a checked frame. Pure."""
    for c, t in (("_as_of", "date"), ("_op", "string")):  # frames built without a delivery (lake check)
        if c not in checked.columns:
            checked = checked.withColumn(c, F.lit(None).cast(t))
    is_error = F.col("_is_error")
    typed_cols = [
        (F.col(f"_typed_{c.name}") if f"_typed_{c.name}" in checked.columns else F.col(c.name)).alias(c.name)
        for c in sc.columns
    ]
    raw = checked.where(~is_error).select(*typed_cols, *META_COLUMNS)
    errors = F.filter("_issues", lambda x: x["severity"] == rules.ERROR)
    quarantine = checked.where(is_error).select(
        *[F.col(c) for c in sc.column_names], "_raw_line", *META_COLUMNS,
        errors[0]["rule"].alias("_rule"),
        hostile.cut_col(F.array_join(F.transform(errors, lambda x: F.concat_ws(": ", x["field"], x["message"])), "; "),
                        limit=500).alias("_reason"),
    )
    found = checked.where(F.size("_issues") > 0).select(
        F.col("_batch_id").alias("run_id"), F.lit("ingest").alias("stage"), F.col("_source").alias("source"),
        F.lit(sc.department).alias("department"), F.col(sc.record_key).alias("record_key"),
        F.explode("_issues").alias("i"), "_file_sha256", "_row", "_batch_id",
    ).select("*", "i.*").drop("i")
    return raw, quarantine, findings.conform(found)


def counts(checked: DataFrame) -> tuple[int, int, int]:
    """(raw rows, quarantined rows, findings) of a checked frame, in one pass instead of three."""
    row = checked.agg(
        F.count("*").alias("n"), F.count(F.when(F.col("_is_error"), 1)).alias("q"),
        F.sum(F.size("_issues")).alias("f"),
    ).collect()[0]
    return row["n"] - row["q"], row["q"], int(row["f"] or 0)


# ------------------------------------------------------------------ job

def manifest_row(settings: Settings, source: str, sha: str) -> dict | None:
    """The manifest row of ``(source, sha)``, or None when that file has not landed. Read with
    deltalake (no Spark job: it is asked once per file, and a Spark read of this small table cost
    more than a second each time)."""
    return next((r for r in landing.manifest_rows(settings, source) if r["sha256"] == sha), None)


@dataclass
class Parsed:
    """A file decoded and parsed to a staging Parquet file (pure Python, no Spark)."""
    file: Path
    sha: str
    batch_id: str
    staging: str
    result: object = None
    error: Exception | None = None


def has_op_column(file: Path, sc: SourceContract) -> bool:
    """True when ``file`` is a change file: its header (CSV) or first object (JSON lines) has the
    contract's operation column."""
    if not sc.op_column:
        return False
    import json as _json

    enc = "gb18030" if sc.encoding in ("gbk", "gb2312") else (sc.encoding if sc.encoding != "auto" else "utf-8-sig")
    try:
        with open(file, encoding=enc, errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
    except OSError:
        return False
    first = first.lstrip("\ufeff").strip()
    if sc.format == "csv":
        import csv as _csv

        return sc.op_column in [h.strip() for h in next(_csv.reader([first]), [])]
    try:
        obj = _json.loads(first)
    except ValueError:
        return False
    return isinstance(obj, dict) and sc.op_column in obj


def with_op_column(sc: SourceContract) -> SourceContract:
    """The contract of a change file: the operation column first, required, one of I/U/D (as the
    contract spells them)."""
    from dataclasses import replace

    from lake.contracts import SourceColumn

    d = sc.delivery
    op = SourceColumn(name=sc.op_column, type="string", required=True, title="变更类型",
                      allowed=(d.get("insert", "I"), d.get("update", "U"), d.get("delete", "D")))
    return replace(sc, columns=(op, *sc.columns))


def canonical_op(sc: SourceContract) -> Column:
    """I/U/D from the contract's spelling of the operation column."""
    d = sc.delivery
    op = F.col(sc.op_column)
    return (F.when(op == d.get("insert", "I"), F.lit("I")).when(op == d.get("update", "U"), F.lit("U"))
            .when(op == d.get("delete", "D"), F.lit("D")))


def delivery_as_of(file: Path, default: str | None = None) -> str:
    """The business date of a delivered file: ``as_of`` (or the generator's extract date) of the
    manifest.json of the inbox the file sits in, else ``default`` (the run's --as-of), else today."""
    import json as _json
    from datetime import date

    m = Path(file).resolve().parent.parent / "manifest.json"
    if m.is_file():
        try:
            data = _json.loads(m.read_text(encoding="utf-8"))
            v = data.get("as_of") or (data.get("generator") or {}).get("extract_date")
            if v:
                return date.fromisoformat(str(v)).isoformat()
        except (ValueError, OSError, AttributeError):
            pass
    return default or datetime.now(timezone.utc).date().isoformat()


def parse(settings: Settings, sc: SourceContract, file: Path, sha: str | None = None) -> Parsed:
    sha = sha or sha256_of(file)
    if sc.op_column not in sc.column_names and has_op_column(file, sc):
        sc = with_op_column(sc)
    batch_id = f"{sc.source}-{sha[:16]}"
    # a name of its own: another process may be parsing the same file (it waits for the table's lease later)
    staging = settings.path("_staging", "ingest", f"{batch_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet")
    fs, staging_fs_path = io.filesystem(staging)
    io.make_parent(fs, staging_fs_path)
    try:
        result = parse_file(file, sc.format, sc.column_names, sc.encoding, staging_fs_path, sc.record_key, filesystem=fs)
    except BaseException:
        _remove(staging)  # a failed parse leaves no staging file behind
        raise
    return Parsed(file, sha, batch_id, staging, result)


def ingest_file(settings: Settings, source: str, file: str | Path, spark: SparkSession | None = None,
                parsed_ahead: Parsed | None = None, as_of: str | None = None) -> IngestResult:
    """Land one file. ``parsed_ahead`` is the same file already parsed (by ``run``'s read-ahead);
    ``as_of`` the business date of the delivery when its inbox has no manifest.json saying it.
    The source's lease (``lake.locks``, on ``raw/<source>``) is held from the manifest look-up to the
    manifest row: a second process landing the same source waits, then finds the file landed."""
    with locks.table_lock(io.table_path(settings, "raw", source)):
        return _ingest_file(settings, source, file, spark, parsed_ahead, as_of)


def _ingest_file(settings: Settings, source: str, file: str | Path, spark: SparkSession | None = None,
                 parsed_ahead: Parsed | None = None, as_of: str | None = None) -> IngestResult:
    t0 = time.time()
    file = Path(file)
    sc = contracts_mod.load(settings.contracts_dir).source(source)
    base_sc = sc
    if file.is_file() and sc.op_column not in sc.column_names and has_op_column(file, sc):
        sc = with_op_column(sc)
    delivered = delivery_as_of(file, as_of)
    if not file.is_file():
        raise InputError(f"{file}: no such file")
    if parsed_ahead is not None and parsed_ahead.error is not None:
        raise parsed_ahead.error
    sha = parsed_ahead.sha if parsed_ahead is not None else sha256_of(file)
    batch_id = f"{source}-{sha[:16]}"
    spark = spark or get_spark(settings)
    done = manifest_row(settings, source, sha)
    if done is not None:
        if parsed_ahead is not None:
            _remove(parsed_ahead.staging)
        log.info("%s: already ingested as batch %s (%d rows); nothing added", file.name, done["batch_id"], done["rows_read"])
        landing.verify(settings, source, sha, done["file_name"], done["bytes"], inbox_file=file)  # repairs the copy
        return IngestResult(source, file.name, sha, done["batch_id"], done["rows_read"], 0, 0, 0, True,
                            done["detected_encoding"], time.time() - t0)

    landed = landing.landed_uri(settings, source, sha, file.name)
    landing.land(file, landed, sha)  # copied to a temporary name, sha256 checked, renamed

    pre = parsed_ahead if parsed_ahead is not None else parse(settings, sc, file, sha)
    staging, parsed = pre.staging, pre.result
    if parsed.detected_encoding.replace("-sig", "") != sc.encoding.replace("-sig", "").replace("gbk", "gb18030"):
        log.warning("%s: contract declares %s, file is %s", file.name, sc.encoding, parsed.detected_encoding)

    ingested_at = datetime.now(timezone.utc).replace(microsecond=0)
    df = (
        spark.read.parquet(staging)
        .withColumn("_source", F.lit(source))
        .withColumn("_file_sha256", F.lit(sha))
        .withColumn("_batch_id", F.lit(batch_id))
        .withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp"))
        .withColumn("_as_of", F.lit(delivered).cast("date"))
    )
    change_file = sc is not base_sc
    df = df.withColumn("_op", canonical_op(sc) if change_file else F.lit(None).cast("string"))
    checked = check_rows(df, sc).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        raw, quarantine, found = split(checked, sc)
        if change_file:  # the operation column is metadata (_op) in raw and quarantine
            raw = raw.drop(sc.op_column)
            quarantine = quarantine.drop(sc.op_column)
        n_raw, n_q, n_f = counts(checked)
        from quality import history_checks

        kind = "snapshot" if base_sc.snapshot else ("changes" if change_file else "full")
        history_found = history_checks.profile_and_check(spark, settings, base_sc, checked, batch_id, sha,
                                                         delivered, kind, parsed.rows, _shared_writes)
        if history_found is not None:
            found = found.unionByName(findings.conform(history_found))
        if parsed.rows == 0:  # a file with no data rows: a finding for its department
            found = found.unionByName(findings.delivered_empty_finding(
                spark, source, sc.department, sha, batch_id, file.name, parsed.empty))
            n_f += 1
            log.warning("%s: delivered empty (%s); reported to %s", file.name, parsed.empty, sc.department)
        cond = f"_file_sha256 = '{sha}'"
        # a day's change file is a few thousand rows: committed by delta-rs; a full delivery by Spark
        io.replace_where_sized(raw, io.table_path(settings, "raw", source), cond, n_raw)
        io.replace_where_sized(quarantine, io.table_path(settings, "quarantine", source), cond, n_q)
        with _shared_writes:
            findings.write(settings, found, run_id=batch_id, rows=n_f)
    finally:
        checked.unpersist()
    if n_raw + n_q != parsed.rows:
        raise RuntimeError(f"{file.name}: reconciliation failed: read {parsed.rows}, raw {n_raw} + quarantine {n_q}")
    result = IngestResult(source, file.name, sha, batch_id, parsed.rows, n_raw, n_q, n_f, False,
                          parsed.detected_encoding, 0.0)
    record = io.arrow_rows([{
        "source": source, "file_name": file.name, "landing_path": landed, "sha256": sha,
        "bytes": os.path.getsize(file), "declared_encoding": sc.encoding, "detected_encoding": parsed.detected_encoding,
        "rows_read": parsed.rows, "rows_raw": n_raw, "rows_quarantined": n_q, "findings": n_f,
        "batch_id": batch_id, "ingested_at": ingested_at,
    }], MANIFEST_SCHEMA)
    with _shared_writes:  # replaceWhere, not append: one manifest row per (source, sha256) whatever happens
        io.replace_where_rows(spark, record, io.table_path(settings, *MANIFEST), f"source = '{source}' AND sha256 = '{sha}'")
    _remove(staging)
    result.seconds = round(time.time() - t0, 2)
    log.info("%s: read %d, landed %d, quarantined %d, findings %d (%.1fs)",
             file.name, parsed.rows, n_raw, n_q, n_f, result.seconds)
    return result


def _remove(uri: str) -> None:
    fs, path = io.filesystem(uri)
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def inbox_files(settings: Settings, source: str) -> list[Path]:
    folder = Path(settings.inbox) / source
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def new_files(settings: Settings, source: str) -> list[Path] | None:
    """The files in ``<inbox>/<source>/`` not landed yet (their sha256 is not in ``landing/_manifest``),
    found without a JVM (delta-rs, on a local or an object-store root). The scheduler's daily run uses
    it to skip a quiet day without starting Spark."""
    files = inbox_files(settings, source)
    if not files:
        return []
    path = io.table_path(settings, *MANIFEST)
    landed: set[str] = set()
    if io.has_commit(path):
        t = io.delta_table(path).to_pyarrow_table(columns=["source", "sha256"])
        landed = {sha for src, sha in zip(t.column("source").to_pylist(), t.column("sha256").to_pylist())
                  if src == source}
    return [f for f in files if sha256_of(f) not in landed]


def run(settings: Settings, source: str, files: list[str] | None = None, as_of: str | None = None) -> list[dict]:
    """Ingest ``files`` (default: every file in ``<inbox>/<source>/``) for one source."""
    contracts_mod.load(settings.contracts_dir).source(source)  # unknown source -> clear error
    paths = [Path(f) for f in files] if files else inbox_files(settings, source)
    return run_many(settings, [(source, p) for p in paths], as_of=as_of)


def run_many(settings: Settings, items: list[tuple[str, Path]], workers: int | None = None,
             as_of: str | None = None) -> list[dict]:
    """Ingest ``(source, file)`` pairs; results come back in the order given.

    Files of different sources are landed concurrently by ``workers`` threads (default
    ``settings.ingest_workers``) sharing the one Spark session: while one file is parsed (pure Python
    and pyarrow) or waits on its Delta commits (driver-side, one core idle), another keeps the cores
    busy. A source's own files are always landed one after the other, in the order given, so its raw
    and quarantine tables have a single writer and its batches keep their order; the tables all sources
    share (findings, manifest) are written one at a time (``_shared_writes``). Sources start biggest
    first (by bytes) so that the small ones fill in around the big one.

    When a file fails, files not yet started are not started; the ones running finish, and the
    failure of the earliest file (in the order given) is raised."""
    from concurrent.futures import ThreadPoolExecutor

    # files already in the manifest are answered without Spark (their landed copies verified and, if
    # need be, repaired from these very files): a quiet day starts no JVM (lake.landing)
    shas, known = landing.already_landed(settings, items)
    results: dict[int, dict] = {i: asdict(IngestResult(
        items[i][0], Path(items[i][1]).name, shas[i], r["batch_id"], r["rows_read"], 0, 0, 0, True,
        r["detected_encoding"] or "", 0.0)) for i, r in known.items()}
    if len(results) == len(items):
        return [results[i] for i in range(len(items))]
    workers = max(1, workers or settings.ingest_workers)
    lanes: dict[str, list[int]] = {}
    for i, (source, _) in enumerate(items):
        if i not in known:
            lanes.setdefault(source, []).append(i)

    def size(i: int) -> int:
        p = Path(items[i][1])
        return p.stat().st_size if p.is_file() else 0

    order = sorted(lanes, key=lambda s: -sum(size(i) for i in lanes[s])) if workers > 1 else list(lanes)
    errors: dict[int, BaseException] = {}
    stop = threading.Event()

    contracts = contracts_mod.load(settings.contracts_dir)

    def ahead(source: str, path: Path, sha: str | None = None) -> Parsed | None:
        if not Path(path).is_file():
            return None
        try:
            return parse(settings, contracts.source(source), Path(path), sha)
        except InputError as e:  # reported when the file's turn comes
            return Parsed(Path(path), "", "", "", error=e)

    def lane(source: str) -> None:
        """A source's files in order; the next one is parsed in the background meanwhile."""
        idx = lanes[source]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"read-ahead-{source}") as reader:
            upcoming = reader.submit(ahead, source, items[idx[0]][1], shas.get(idx[0]))
            for k, i in enumerate(idx):
                pre = upcoming.result()
                upcoming = (reader.submit(ahead, source, items[idx[k + 1]][1], shas.get(idx[k + 1]))
                            if k + 1 < len(idx) else None)
                if stop.is_set():
                    break
                try:
                    results[i] = asdict(ingest_file(settings, source, items[i][1], parsed_ahead=pre, as_of=as_of))
                    pre = None
                except BaseException as e:  # re-raised below, in the order of the items
                    errors[i] = e
                    stop.set()
                    break
            for left in (pre, upcoming.result() if upcoming is not None else None):
                if left is not None and left.staging:
                    _remove(left.staging)  # parsed, never landed

    if workers == 1 or len(lanes) <= 1:  # no lane at all: an empty inbox is a quiet day
        for s in order:
            lane(s)
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(lanes)), thread_name_prefix="ingest") as pool:
            for f in [pool.submit(lane, s) for s in order]:
                f.result()
    if errors:
        raise errors[min(errors)]
    return [results[i] for i in range(len(items))]
