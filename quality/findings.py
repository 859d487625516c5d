"""The findings table ``quality/findings``: one row per detected problem at row level.

This is what goes back to the owning department (the 评 of 汇·管·用·评): which record (the
department's own record key), which field, which rule, how severe, and the ``defect_type`` in the
same words as the generator's truth file. Rows are written per run (``run_id``) with replaceWhere,
so re-running a run replaces its findings instead of adding duplicates.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from lake import io
from lake.settings import Settings

FINDINGS = ("quality", "findings")
COLUMNS = [
    ("run_id", "string"), ("stage", "string"), ("source", "string"), ("department", "string"),
    ("record_key", "string"), ("field", "string"), ("rule", "string"), ("severity", "string"),
    ("defect_type", "string"), ("message", "string"), ("value", "string"),
    ("_file_sha256", "string"), ("_row", "long"), ("_batch_id", "string"),
    ("entity_key", "string"),  # the entity a build finding is about (replaced per entity by incremental builds)
]


def conform(df: DataFrame) -> DataFrame:
    """Select the findings columns in order, with their types; echoed text (value, record key,
    message) cut to a readable length (``lake.hostile.cut_col``)."""
    from lake.hostile import cut_col

    limits = {"value": 200, "record_key": 200, "message": 500}
    cols = [(F.col(c) if c in df.columns else F.lit(None)).cast(t) for c, t in COLUMNS]
    return df.select(*[(cut_col(col, limits[c]) if c in limits else col).alias(c)
                       for col, (c, _t) in zip(cols, COLUMNS)])


def write(settings: Settings, df: DataFrame, run_id: str, rows: int | None = None) -> None:
    """Replace the findings of ``run_id`` with ``df`` (``rows``: about how many there are, if known)."""
    path = io.table_path(settings, *FINDINGS)
    if rows is None:
        io.replace_where(conform(df), path, f"run_id = '{run_id}'")
    else:  # up to io.ROWS_IN_DRIVER committed by delta-rs
        io.replace_where_sized(conform(df), path, f"run_id = '{run_id}'", rows)


def write_if_changed(settings: Settings, df: DataFrame, run_id: str) -> bool:
    """Replace the findings of ``run_id`` unless they are already exactly these (no new Delta
    version then; an empty ``df`` does not create the table); True if written."""
    return io.replace_if_changed_small(conform(df), io.table_path(settings, *FINDINGS), f"run_id = '{run_id}'",
                                       create_empty=False)


def has_run(spark, settings: Settings, run_id: str) -> bool:
    path = io.table_path(settings, *FINDINGS)
    if not io.is_table(spark, path):
        return False
    return io.read(spark, path).where(F.col("run_id") == run_id).limit(1).count() > 0


def delivered_empty_finding(spark, source: str, department: str, sha: str, batch_id: str, file_name: str,
                            how: str) -> DataFrame:
    """The ``delivered_empty`` finding of one file (``lake.hostile``'s rule), in the findings' columns."""
    from lake.hostile import DEFECT_EMPTY, RULE_EMPTY, cut

    row = {"run_id": batch_id, "stage": "ingest", "source": source, "department": department, "record_key": None,
           "field": "_file", "rule": RULE_EMPTY, "severity": "error", "defect_type": DEFECT_EMPTY,
           "message": f"the file has no data rows ({how}): nothing was delivered", "value": cut(file_name),
           "_file_sha256": sha, "_row": None, "_batch_id": batch_id}
    return spark.createDataFrame([row], ", ".join(f"{c} {t}" for c, t in COLUMNS))
