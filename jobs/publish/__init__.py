"""Publication: the share zone for departments (``jobs.publish.share``), the open zone for the
open-data portal (``jobs.publish.open``) and the resource catalogue (``catalog.resources``), refreshed
together after every publication."""
from __future__ import annotations

import time

from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark

TABLES = ()


def run(settings: Settings) -> dict:
    """Publish the share zone, the open zone and the catalogue (each idempotent)."""
    from catalog import resources
    from jobs.publish.open import publish_open
    from jobs.publish.share import publish_share

    t0 = time.time()
    spark = get_spark(settings)
    share = publish_share(spark, settings)
    opened = publish_open(spark, settings)
    cat = resources.publish(spark, settings)
    log.info("catalog/resources: %s (%d entries, unconditional share rate %s)", cat["status"], cat["entries"],
             cat["unconditional_share_rate"])
    return {"share": share, "open": opened, "catalog": cat, "seconds": round(time.time() - t0, 2)}
