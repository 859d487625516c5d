"""Publication: the share zone for departments (``jobs.publish.share``: the copies; ``sharing.views``:
the masked, filtered view of every grant and ``share/_grants``), the open zone for the open-data portal
(``jobs.publish.open``) and the resource catalogue with its hash chain (``catalog.resources``,
``catalog.chain``), refreshed together after every publication."""
from __future__ import annotations

import time

from lake.log import log
from lake.settings import Settings
from lake.spark import get_spark

TABLES = ()


def built_tables(settings: Settings, what: str = "publish") -> list[str]:
    """The shared or opened tables that exist so far (checked without a JVM). The others (for example
    the sensing tables before the first IoT delivery) are named in one line and published by the first
    publication after their build: a lake whose departments have not all delivered still publishes what
    it has."""
    from lake import contracts as contracts_mod
    from lake import io

    tables = contracts_mod.load(settings.contracts_dir).published_tables()
    built = [t for t in tables if io.has_commit(io.path_of(settings, t))]
    waiting = sorted(set(tables) - set(built))
    if waiting:
        log.info("%s: %d table(s) not built yet (no delivery from their sources), published when they are: %s",
                 what, len(waiting), ", ".join(waiting))
    return built


def run(settings: Settings, as_of: str | None = None) -> dict:
    """Publish the share zone and its grantee views, the open zone and the catalogue with its chain
    (each idempotent), for the tables built so far."""
    from catalog import resources
    from jobs.publish.open import PublicationRefused, publish_open
    from jobs.publish.share import publish_share
    from sharing.views import publish_views

    t0 = time.time()
    spark = get_spark(settings)
    built = built_tables(settings)
    share = publish_share(spark, settings, tables=built)
    views = publish_views(spark, settings)
    refused = None
    try:
        opened = publish_open(spark, settings, tables=built)
    except PublicationRefused as e:  # the other datasets are published; the catalogue still follows
        refused, opened = e, [{"dataset": ds, "status": "refused", "reason": why} for ds, why in e.refusals]
    cat = resources.publish(spark, settings, as_of)
    log.info("catalog/resources: %s (%d entries, %d chain blocks added, unconditional share rate %s)", cat["status"],
             cat["entries"], cat["chain_blocks_added"], cat["unconditional_share_rate"])
    if refused is not None:
        raise refused
    return {"share": share, "views": views, "open": opened, "catalog": cat, "seconds": round(time.time() - t0, 2)}
