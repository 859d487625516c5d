"""What every topic built from one base table does: read the base table, apply the module's pure
transform, publish the result through its gate with the base table's version as the input."""
from __future__ import annotations

import time
from typing import Callable

from pyspark.sql import DataFrame

from lake import contracts as contracts_mod
from lake import io
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

UNKNOWN = "unknown"


def publish_from(settings: Settings, table: str, base_table: str, transform: Callable[[DataFrame], DataFrame],
                 as_of: str) -> dict:
    """Publish ``table`` = ``transform(base_table)`` through its gate."""
    t0 = time.time()
    spark = get_spark(settings)
    tc = contracts_mod.load(settings.contracts_dir).table(table)
    path = io.path_of(settings, base_table)
    if not io.is_table(spark, path):
        raise contracts_mod.ContractError(f"{table}: {base_table} has not been built yet; build it first (`lake build`)")
    candidate = transform(io.read(spark, path))
    res = gates.publish(spark, settings, tc, candidate, {"as_of": as_of, "inputs": f"{base_table}@v{io.version(spark, path)}"})
    return {"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}
