"""Health and transport topics (健康、交通主题库): ``topic.service_coverage_by_town``.

The facilities of a service (contracts/reference.yaml ``services``: a POI category of ``base.poi`` and,
for transport, names of 公交/地铁 stops) and the registered residents per standard address (as the
emergency topic counts them: ``jobs.topic.emergency.residents_per_address``) are paired by
``jobs.topic.emergency.pairs_within`` (great-circle distance under the service's ``reach_metres``).
Not covered here: bus lines and traffic counts (no source delivers them yet).
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


def facilities(poi: DataFrame, service: str) -> DataFrame:
    """The POIs of ``service`` with a point. Pure."""
    sv = SERVICES[service]
    df = poi.where((F.col("category") == sv.poi_category) & F.col("lon").isNotNull() & F.col("lat").isNotNull())
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
    addresses = emergency.residents_per_address(io.read(spark, io.path_of(settings, "base.population")), links,
                                                io.read(spark, io.path_of(settings, "base.standard_address"))).persist()
    poi = io.read(spark, io.path_of(settings, "base.poi"))
    per = {}
    for service, sv in SERVICES.items():
        fac = facilities(poi, service).select("poi_id", "town", "lon", "lat").persist()
        pts = [(r["poi_id"], r["lon"], r["lat"]) for r in fac.collect()]
        per[service] = (fac, emergency.pairs_within(addresses, pts, sv.reach_metres))
    try:
        tc = contracts.table(TABLE)
        inputs = ",".join(str(io.version(spark, io.path_of(settings, t))) for t in
                          ("base.poi", "base.population", "base.standard_address"))
        res = gates.publish(spark, settings, tc, coverage(list(DISTRICT.towns), addresses, per).select(*tc.column_names),
                            {"as_of": as_of, "inputs": inputs})
    finally:
        spark.catalog.clearCache()
    log.info("%s: %s in %.1fs", TABLE, res.status, time.time() - t0)
    return [{"table": TABLE, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}]
