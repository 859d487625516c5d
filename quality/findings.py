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


def write(settings: Settings, df: DataFrame, run_id: str) -> None:
    path = io.table_path(settings, *FINDINGS)
    io.replace_where(conform(df), path, f"run_id = '{run_id}'")


def write_if_changed(settings: Settings, df: DataFrame, run_id: str) -> bool:
    """Replace the findings of ``run_id`` unless they are already exactly these (no new Delta
    version then; an empty ``df`` does not create the table); True if written."""
    return io.replace_if_changed(conform(df), io.table_path(settings, *FINDINGS), f"run_id = '{run_id}'",
                                 create_empty=False)


def has_run(spark, settings: Settings, run_id: str) -> bool:
    path = io.table_path(settings, *FINDINGS)
    if not io.is_table(spark, path):
        return False
    return io.read(spark, path).where(F.col("run_id") == run_id).limit(1).count() > 0
