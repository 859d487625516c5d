"""Health and transport topics (健康、交通主题库): ``topic.service_coverage_by_town``.

The facilities of a service (contracts/reference.yaml ``services``) are either the rows of a base table
in service (health: the medical institutions of ``base.health_facility`` whose status is 执业) or POIs
of ``base.poi`` (transport: POIs of 交通设施服务 named 公交/地铁 stops). They and the registered residents
per standard address (as the emergency topic counts them: ``jobs.topic.emergency.residents_per_address``)
are paired by ``jobs.topic.emergency.pairs_within`` (great-circle distance under the service's
``reach_metres``). Bus lines per town are ``topic.bus_lines_by_town`` (``jobs.topic.transport``).
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import standard_address
from jobs.topic import emergency
from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.reference import DISTRICT, SERVICES
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

TABLE = "topic.service_coverage_by_town"
TABLES = (TABLE,)


def source_table(service: str) -> str:
    """The base table the facilities of ``service`` come from."""
    return SERVICES[service].table or "base.poi"


def id_column(service: str) -> str:
    return SERVICES[service].id_column or "poi_id"


def facilities(df: DataFrame, service: str) -> DataFrame:
    """The facilities of ``service`` with a point, from the rows of its ``source_table``: those whose
    status is one of the service's ``statuses``, or the POIs of its category (and name pattern). Pure."""
    sv = SERVICES[service]
    df = df.where(F.col("lon").isNotNull() & F.col("lat").isNotNull())
    if sv.table:
        return df.where(F.col(sv.status_column).isin(*sv.statuses))
    df = df.where(F.col("category") == sv.poi_category)
    if sv.name_pattern:
        df = df.where(F.col("name").rlike(sv.name_pattern))
    return df


def coverage(towns: list[str], addresses: DataFrame, per_service: dict[str, tuple[DataFrame, DataFrame]]) -> DataFrame:
    """One row per service and town. ``per_service``: service -> (facilities, address-facility pairs). Pure."""
    spark = addresses.sparkSession
    res = addresses.groupBy("town").agg(F.sum("residents").alias("residents"))
    parts = []
    for service, (fac, pairs) in per_service.items():
        base = spark.createDataFrame([(service, t) for t in towns], "service string, town string")
        inr = (addresses.join(pairs.select("address_code").distinct(), "address_code", "left_semi")
               .groupBy("town").agg(F.sum("residents").alias("residents_in_reach")))
        n = fac.where(F.col("town").isNotNull()).groupBy("town").agg(F.count("*").alias("facilities"))
        parts.append(base.join(n, "town", "left").join(res, "town", "left").join(inr, "town", "left"))
    df = parts[0]
    for p in parts[1:]:
        df = df.unionByName(p)
    df = df.withColumns({c: F.coalesce(F.col(c), F.lit(0)).cast("long") for c in ("facilities", "residents", "residents_in_reach")})
    return df.select("service", "town", "facilities", "residents", "residents_in_reach",
                     F.when(F.col("residents") > 0, F.round(F.col("residents_in_reach") / F.col("residents"), 4))
                     .alias("reach_share"))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    links = standard_address.current_links(spark, settings)
    if links is None:
        return standard_address.skipped_without_links([TABLE])
    tables = sorted({source_table(s) for s in SERVICES})
    missing = [t for t in tables if not io.is_table(spark, io.path_of(settings, t))]
    if missing:
        return [{"table": TABLE, "status": "skipped", "rows": 0, "reason": f"{', '.join(missing)} not built yet"}]
    addresses = emergency.residents_per_address(io.read(spark, io.path_of(settings, "base.population")), links,
                                                io.read(spark, io.path_of(settings, "base.standard_address"))).persist()
    frames = {t: io.read(spark, io.path_of(settings, t)) for t in tables}
    per = {}
    for service, sv in SERVICES.items():
        fac = (facilities(frames[source_table(service)], service)
               .select(F.col(id_column(service)).alias("facility_id"), "town", "lon", "lat").persist())
        pts = [(r["facility_id"], r["lon"], r["lat"]) for r in fac.collect()]
        per[service] = (fac, emergency.pairs_within(addresses, pts, sv.reach_metres))
    try:
        tc = contracts.table(TABLE)
        inputs = ",".join(str(io.version(spark, io.path_of(settings, t))) for t in
                          (*tables, "base.population", "base.standard_address"))
        res = gates.publish(spark, settings, tc, coverage(list(DISTRICT.towns), addresses, per).select(*tc.column_names),
                            {"as_of": as_of, "inputs": inputs})
    finally:
        spark.catalog.clearCache()
    log.info("%s: %s in %.1fs", TABLE, res.status, time.time() - t0)
    return [{"table": TABLE, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}]
