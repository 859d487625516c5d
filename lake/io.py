"""All lake I/O in one place: Delta tables through delta-spark, plain files through pyarrow.fs.

Transforms elsewhere are pure ``DataFrame -> DataFrame`` functions; only this module knows paths,
write modes and how a write is made idempotent.

Every zone table lives at ``<root>/<zone>/<name>`` (see lake_layout.md). Writes are one of:
- ``replace_where``: replace exactly the rows of one batch/run (idempotent re-runs);
- ``publish``: overwrite the whole table, but only when the content fingerprint changed, so that a
  re-run with the same inputs adds no Delta version.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lake import locks, tables
from lake.settings import Settings


# ``_lineage`` of a base or topic row: column -> the exact source row its value came from
LINEAGE_TYPE = "struct<source:string,batch_id:string,file_sha256:string,row:long>"


def table_path(settings: Settings, zone: str, name: str) -> str:
    return settings.path(zone, name)


def path_of(settings: Settings, table_id: str) -> str:
    """The path of a table id ``<zone>.<name>`` (``base.population`` -> ``<root>/base/population``)."""
    zone, name = table_id.split(".", 1)
    return settings.path(zone, name)


def is_table(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table with at least one commit. A local folder is looked at
    directly (``lake.tables``): a table whose first commit was interrupted is not a table yet, and
    its next write creates it."""
    if "://" not in path or path.startswith("file://"):
        return tables.state(path).kind in ("table", "damaged")
    from delta.tables import DeltaTable

    try:
        return DeltaTable.isDeltaTable(spark, path)
    except Exception:  # a missing parent folder on some filesystems
        return False


def has_commit(uri: str) -> bool:
    """True when ``uri`` is a Delta table with at least one commit, checked without a JVM (local
    folder or object store): its ``_delta_log`` holds a commit file."""
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(pafs.FileSelector(f"{path}/_delta_log", allow_not_found=True))
    except (OSError, ValueError):
        return False
    return any(i.type == pafs.FileType.File and i.path.endswith(".json") and i.base_name[:20].isdigit() for i in info)


def read(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.format("delta").load(path)


def version(spark: SparkSession, path: str) -> int | None:
    """The latest Delta version of ``path`` (None: no table), read from its log by delta-rs: a
    Spark ``history()`` job costs a second on two cores, and the builds ask this many times a run."""
    if not is_table(spark, path):
        return None
    return delta_table(path).version()


def last_metadata(spark: SparkSession, path: str) -> dict:
    """The JSON userMetadata of the latest commit ({} if none), read from the log by delta-rs."""
    if not is_table(spark, path):
        return {}
    history = delta_table(path).history(1)
    try:
        return json.loads((history[0].get("userMetadata") if history else None) or "{}")
    except ValueError:
        return {}


# Delta collects min/max statistics for the first 32 columns of every file it writes; on the wide raw
# tables that was a third of the ingest time. Tables are created with statistics only on the columns
# their writes and readers select by (the batch/run columns of a replaceWhere, the key of a published
# table), which is all the data skipping they use.
STATS_PROPERTY = "delta.dataSkippingStatsColumns"


def condition_columns(df: DataFrame, condition: str) -> list[str]:
    """The columns of ``df`` that ``condition`` mentions (as whole words, outside string literals)."""
    bare = re.sub(r"'(?:[^']|'')*'", "''", condition)
    return [c for c in df.columns if re.search(r"(?<![\w`])`?" + re.escape(c) + r"`?(?![\w`])", bare)]


def _with_stats(w, df: DataFrame, path: str, stats_columns) -> object:
    cols = [c for c in (stats_columns or []) if c in df.columns]
    if cols and not is_table(df.sparkSession, path):  # a property of the table, set when it is created
        w = w.option(STATS_PROPERTY, ",".join(f"`{c}`" for c in cols))
    return w


def replace_where(df: DataFrame, path: str, condition: str, meta: dict | None = None) -> None:
    """Replace the rows matching ``condition`` with ``df`` (creating the table if needed)."""
    with locks.table_lock(path):  # one writer per table (lake.locks); re-entrant
        tables.prepare_for_write(path)
        w = _with_stats(df.write.format("delta"), df, path, condition_columns(df, condition))
        if meta:
            w = w.option("userMetadata", json.dumps(meta, ensure_ascii=False, sort_keys=True))
        if is_table(df.sparkSession, path):
            w.mode("overwrite").option("replaceWhere", condition).save(path)
        else:
            w.mode("overwrite").save(path)


def arrow_rows(rows: list, ddl: str):
    """``rows`` (dicts or tuples in the order of ``ddl``) as an Arrow table with the Spark schema
    ``ddl`` ("a string, b long, ..."), built without a Spark job."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    schema = to_arrow_schema(_parse_datatype_string(ddl))
    names = schema.names
    dicts = [r if isinstance(r, dict) else dict(zip(names, r)) for r in rows]
    return pa.Table.from_pylist(dicts, schema=schema)


def _datafusion_predicate(condition: str) -> str:
    """A Spark SQL condition of this code base (``a = 'x' AND `b` IN ('y')``) for delta-rs, whose
    parser quotes identifiers with double quotes, not backticks (string literals left alone)."""
    return re.sub(r"('(?:[^']|'')*')|`([^`]+)`", lambda m: m.group(1) or f'"{m.group(2)}"', condition)


def replace_where_rows(spark: SparkSession, data, path: str, condition: str, meta: dict | None = None) -> None:
    """``replace_where`` for a few rows already in the driver (an Arrow table): written by delta-rs
    when the table exists (one commit in about 10 ms, where Spark's write of the same rows takes two
    to three seconds on two cores: the ingest writes three such tables per file, the builds a few
    more). The table's first write goes through Spark, so that it is created with the same
    properties (``_with_stats``) as every other table."""
    import pyarrow as pa
    from deltalake import CommitProperties

    target = pa.schema(delta_table(path).schema().to_arrow()) if has_commit(path) else None
    if target is None or sorted(target.names) != sorted(data.column_names):
        # a new table, or other columns than the table's: Spark's write, its checks and errors
        replace_where(spark.createDataFrame(data), path, condition, meta)
        return
    with locks.table_lock(path):
        tables.prepare_for_write(path)
        data = data.select(target.names).cast(target)
        props = CommitProperties(custom_metadata={"userMetadata": json.dumps(meta, ensure_ascii=False, sort_keys=True)}) \
            if meta else None
        write_delta_rs(path, data, mode="overwrite", predicate=_datafusion_predicate(condition), commit_properties=props)


def rows_where(path: str, condition: str, select: str = "*"):
    """``SELECT select`` over the rows of the table at ``path`` matching ``condition`` (a Spark SQL
    condition of this code base), read JVM-free (delta-rs's dataset, filtered by DuckDB), as an Arrow
    table; None when there is no table."""
    if not has_commit(path):
        return None
    import duckdb

    dataset = delta_table(path).to_pyarrow_dataset()  # noqa: F841 (DuckDB scans it by name)
    with duckdb.connect() as con:
        return con.sql(f"SELECT {select} FROM dataset WHERE {_datafusion_predicate(condition)}").to_arrow_table()


def _same_rows(a, b) -> bool:
    """Two Arrow tables hold the same rows (as a multiset), columns matched by name."""
    if a.num_rows != b.num_rows or sorted(a.column_names) != sorted(b.column_names):
        return False
    names = sorted(a.column_names)

    def rows(t):
        return sorted(map(repr, t.select(names).to_pylist()))

    return rows(a) == rows(b)


# a table part of up to this many rows is collected to the driver and committed by delta-rs
ROWS_IN_DRIVER = 200_000


def replace_where_sized(df: DataFrame, path: str, condition: str, rows: int, meta: dict | None = None) -> None:
    """``replace_where`` of ``df``, known to hold ``rows`` rows: up to ``ROWS_IN_DRIVER`` collected and
    committed by delta-rs (``replace_where_rows``), more written by Spark."""
    if rows <= ROWS_IN_DRIVER:
        replace_where_rows(df.sparkSession, df.toArrow(), path, condition, meta)
    else:
        replace_where(df, path, condition, meta)


def _collect_small(df: DataFrame):
    """``df`` as an Arrow table when it has at most ``ROWS_IN_DRIVER`` rows (one Spark job), else None."""
    data = df.limit(ROWS_IN_DRIVER + 1).toArrow()
    return None if data.num_rows > ROWS_IN_DRIVER else data


def replace_where_small(df: DataFrame, path: str, condition: str, meta: dict | None = None) -> None:
    """``replace_where`` of a ``df`` of unknown size: committed by delta-rs when it fits in the driver,
    else written by Spark."""
    data = _collect_small(df)
    if data is None:
        replace_where(df, path, condition, meta)
    else:
        replace_where_rows(df.sparkSession, data, path, condition, meta)


def replace_if_changed_rows(spark: SparkSession, data, path: str, condition: str, meta: dict | None = None,
                            create_empty: bool = True) -> bool:
    """``replace_if_changed`` for rows in the driver (an Arrow table): compared with the stored rows
    matching ``condition`` and, if different, committed by delta-rs (``replace_where_rows``)."""
    old = rows_where(path, condition)
    if old is not None:
        if _same_rows(old, data):
            return False
    elif not create_empty and data.num_rows == 0:
        return False
    replace_where_rows(spark, data, path, condition, meta)
    return True


def replace_if_changed_small(df: DataFrame, path: str, condition: str, meta: dict | None = None,
                             create_empty: bool = True) -> bool:
    """``replace_if_changed`` for a part of a table small enough for the driver (findings, conflicts):
    the rows are collected once (``replace_if_changed_rows``); a bigger ``df`` goes the Spark way."""
    data = _collect_small(df)
    if data is None:
        return replace_if_changed(df, path, condition, meta, create_empty)
    return replace_if_changed_rows(df.sparkSession, data, path, condition, meta, create_empty)


def append(df: DataFrame, path: str) -> None:
    with locks.table_lock(path):
        tables.prepare_for_write(path)
        df.write.format("delta").mode("append").save(path)


CDF_PROPERTY = "delta.enableChangeDataFeed"


def overwrite(df: DataFrame, path: str, meta: dict, stats_columns=None, properties: dict | None = None) -> None:
    """Overwrite the table at ``path``; a new table collects statistics only on ``stats_columns``
    (default: Delta's first 32 columns) and gets the table ``properties`` (e.g. Change Data Feed)."""
    with locks.table_lock(path):
        tables.prepare_for_write(path)
        w = _with_stats(df.write.format("delta"), df, path, stats_columns)
        if properties and not is_table(df.sparkSession, path):
            for k, v in properties.items():
                w = w.option(k, v)
        (
            w.mode("overwrite").option("overwriteSchema", "true")
            .option("userMetadata", json.dumps(meta, ensure_ascii=False, sort_keys=True)).save(path)
        )


def replace_if_changed(df: DataFrame, path: str, condition: str, meta: dict | None = None,
                       create_empty: bool = True) -> bool:
    """Replace the rows matching ``condition`` with ``df`` unless they already have exactly this
    content (then no Delta version is added); True if written. With ``create_empty`` False an empty
    ``df`` does not create a table that does not exist yet."""
    spark = df.sparkSession
    new_fp = fingerprint(df)
    if is_table(spark, path):
        old = read(spark, path)
        if sorted(old.columns) == sorted(df.columns) and \
                fingerprint(old.where(F.expr(condition)).select(*df.columns)) == new_fp:
            return False
    elif not create_empty and new_fp.startswith("0:"):
        return False
    replace_where(df, path, condition, meta)
    return True


def inputs_hash(parts: list[str], files: list[Path] = ()) -> str:
    """A deterministic id of a job's inputs (hex sha256): ``parts`` (table versions, file hashes,
    rule versions, as text) and the bytes of ``files`` (contracts, code)."""
    h = hashlib.sha256("|".join(parts).encode())
    for p in files:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def table_versions(spark: SparkSession, settings: Settings, table_ids: list[str]) -> list[str]:
    """``<table id>=<Delta version>`` (``None`` for a table not written yet), for ``inputs_hash``."""
    return [f"{t}={version(spark, path_of(settings, t))}" for t in table_ids]


def contract_files(contracts_dir: str) -> list[Path]:
    """Every contract file, in a fixed order (a contract change is an input change)."""
    return sorted(Path(contracts_dir).rglob("*.yaml"))


def row_hash(df: DataFrame):
    """The 64-bit hash of a row that ``fingerprint`` sums (over the columns sorted by name)."""
    cols = sorted(df.columns)
    types = dict(df.dtypes)
    # maps cannot be hashed directly; their entries (an array of key/value structs) can, and are
    # deterministic for maps built in a fixed order. Three times cheaper than their JSON form (8 s of
    # base.population's publication); a map holding maps still goes through JSON.
    exprs = [(F.map_entries(F.col(c)) if types[c].count("map<") == 1 else F.to_json(F.col(c)))
             if types[c].startswith("map") else F.col(c) for c in cols]
    # xxhash64 skips nulls, so (a, null) and (null, a) would collide: hash which columns are null too
    nulls = F.array(*[F.col(c).isNull() for c in cols])
    return F.xxhash64(nulls, *exprs)


def hash_sum(df: DataFrame) -> tuple[int, int]:
    """(rows, sum of ``row_hash``) of ``df``: a fingerprint's two numbers, additive over disjoint rows."""
    row = df.select(row_hash(df).alias("h")).agg(
        F.count("*").alias("n"), F.sum(F.col("h").cast("decimal(38,0)")).alias("s")).collect()[0]
    return int(row["n"]), int(row["s"] or 0)


def fingerprint(df: DataFrame) -> str:
    """Order-independent content hash: row count and the sum of per-row 64-bit hashes."""
    n, total = hash_sum(df)
    return f"{n}:{total}:{','.join(sorted(df.columns))}"


# ---------------------------------------------------------------- plain files (landing, open, reports)

def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a lake URI: a local path, or s3://, s3a:// (reached with the
    endpoint and keys of the settings that name the bucket: ``lake.settings.s3_settings``), gs://,
    hdfs://. Every plain file of the lake (landed copies, staging, open zone, reports, GX mirror)
    goes through it, so the same code runs on a folder and on an object store."""
    from lake.settings import is_s3, s3_settings

    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), parsed.path if parsed.scheme else uri
    if is_s3(uri):
        return s3_filesystem(s3_settings(uri)), uri.split("://", 1)[1]
    return pafs.FileSystem.from_uri(uri)


_S3FS: dict[tuple, pafs.S3FileSystem] = {}


def s3_filesystem(settings: Settings) -> pafs.S3FileSystem:
    """Arrow's S3 client (AWS SDK for C++) configured from ``settings``: endpoint, keys, region, path
    style; the AWS default credential chain when no keys are given. One per configuration."""
    path_style = settings.s3_path_style if settings.s3_path_style is not None else bool(settings.s3_endpoint)
    key = (settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_region, path_style)
    if key not in _S3FS:
        # the AWS SDK's default request timeout (3 s without a byte) fails PUTs on a loaded machine;
        # transient errors are retried
        kw = {"region": settings.s3_region, "force_virtual_addressing": not path_style,
              "connect_timeout": 10, "request_timeout": 120,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=6)}
        if settings.s3_endpoint:
            scheme, _, host = settings.s3_endpoint.partition("://")
            kw.update(endpoint_override=host.rstrip("/"), scheme=scheme)
        if settings.s3_access_key or settings.s3_secret_key:
            kw.update(access_key=settings.s3_access_key, secret_key=settings.s3_secret_key)
        _S3FS[key] = pafs.S3FileSystem(**kw)
    return _S3FS[key]


def delta_rs_uri(uri: str) -> str:
    """A lake URI as delta-rs (object_store) names it: s3a:// and s3n:// are s3://."""
    from lake.settings import is_s3

    return "s3://" + uri.split("://", 1)[1] if is_s3(uri) else uri


def storage_options(uri: str) -> dict | None:
    """delta-rs storage options for ``uri``: the S3 endpoint and keys of its bucket (None for a local
    path). Writes use S3's conditional PUT (If-None-Match) for the commit file, which SeaweedFS and
    AWS S3 honour, so two JVM-free writers cannot both take one version."""
    from lake.settings import is_s3, s3_settings

    if not is_s3(uri):
        return None
    return {**s3_settings(uri).s3_storage_options(), "conditional_put": "etag"}


@functools.cache
def _delta_class():
    """deltalake's DeltaTable, with its Parquet files read through Arrow's own filesystem (the S3
    client of ``s3_filesystem``, or the local one) instead of deltalake's default, a Python
    ``PyFileSystem`` over delta-rs's object store. Arrow's I/O threads calling back into Python
    through that default made a command that had read a table on S3 abort at exit now and then
    (exit 134, "terminate called without an active exception": 20 of 30 runs of a bare
    ``to_pyarrow_table()`` against SeaweedFS; 0 of 30 through Arrow's filesystem)."""
    from deltalake import DeltaTable

    class LakeDeltaTable(DeltaTable):
        _lake_uri = ""

        def to_pyarrow_dataset(self, *args, filesystem=None, **kw):
            return super().to_pyarrow_dataset(*args, filesystem=filesystem or _table_filesystem(self._lake_uri), **kw)

    return LakeDeltaTable


def _table_filesystem(uri: str) -> pafs.SubTreeFileSystem:
    """Arrow's filesystem rooted at the table ``uri`` (an absolute root for a local path)."""
    fs, path = filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        import os

        path = os.path.abspath(path)
    return pafs.SubTreeFileSystem(path, fs)


def delta_table(uri: str, **kw):
    """A deltalake (delta-rs) table, local or on S3: the JVM-free reader of every lake table. Its
    log is read by delta-rs; its data files (``to_pyarrow_dataset``, ``to_pyarrow_table``) by Arrow's
    own filesystem (see ``_delta_class``)."""
    dt = _delta_class()(delta_rs_uri(uri), storage_options=storage_options(uri), **kw)
    dt._lake_uri = uri
    return dt


def write_delta_rs(uri: str, data, **kw) -> None:
    """``deltalake.write_deltalake`` to a lake URI, local or on S3 (JVM-free writers: lake.ledger)."""
    from deltalake import write_deltalake

    write_deltalake(delta_rs_uri(uri), data, storage_options=storage_options(uri), **kw)


def make_parent(fs: pafs.FileSystem, path: str) -> None:
    """Create the folder of ``path`` on a local filesystem; nothing on an object store (no folders
    there: pyarrow would PUT an empty marker object per level)."""
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file. Local folders: to a temporary name, then renamed, so a reader (or a run
    killed half-way) never sees a truncated file; an object store's PUT is whole anyway."""
    fs, path = filesystem(uri)
    folder = path.rsplit("/", 1)[0]
    make_parent(fs, path)
    if isinstance(fs, pafs.LocalFileSystem):
        import os
        import time
        import uuid

        name = path.rsplit("/", 1)[1]
        for old in os.listdir(folder):  # left by a writer that was killed (not one writing now)
            if old.startswith(f".{name}.") and old.endswith(".part"):
                try:
                    if time.time() - os.path.getmtime(f"{folder}/{old}") > 600:
                        os.unlink(f"{folder}/{old}")
                except OSError:
                    pass
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:12]}.part"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    with fs.open_output_stream(path) as f:
        f.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def file_exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type == pafs.FileType.File


def write_if_changed(uri: str, data: bytes) -> bool:
    """Write a file unless it already has exactly these bytes; True if written."""
    if file_exists(uri) and read_bytes(uri) == data:
        return False
    write_bytes(uri, data)
    return True


def upload(local_path: str, uri: str) -> None:
    fs, path = filesystem(uri)
    make_parent(fs, path)
    pafs.copy_files(local_path, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def delete_dir(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def list_files(uri: str) -> list[str]:
    fs, path = filesystem(uri)
    info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    return sorted(i.path for i in info if i.type == pafs.FileType.File)


def list_dirs(uri: str) -> list[str]:
    """The sub-folders of ``uri`` as lake URIs (same scheme as ``uri``), sorted; [] when it is missing."""
    fs, path = filesystem(uri)
    try:
        info = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    except (FileNotFoundError, NotADirectoryError):
        return []
    base = uri.rstrip("/")
    return sorted(f"{base}/{i.base_name}" for i in info if i.type == pafs.FileType.Directory)


def overwrite_if_changed(df: DataFrame, path: str, meta: dict, fp: str | None = None) -> bool:
    """Overwrite ``path`` with ``df`` unless its content fingerprint is unchanged; True if written."""
    fp = fp or fingerprint(df)
    with locks.table_lock(path):  # the comparison and the write under one lease
        if last_metadata(df.sparkSession, path).get("fingerprint") == fp:
            return False
        overwrite(df, path, {**meta, "fingerprint": fp})
    return True
