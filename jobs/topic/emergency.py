"""The emergency-management topic (应急管理主题库): ``topic.shelter_reach`` and ``topic.emergency_by_town``.

Residents are the people of ``base.population`` with register status 正常 whose address is linked to a
standard address (``quality/address_links`` of the library's current run, ``jobs.base.standard_address.
current_links``) that has a point; they are counted per standard address, and every standard address is
paired with each shelter in use within ``emergency.shelter_reach_metres`` (great-circle distance,
``lake.geo.distance_m``) in ``mapInPandas`` against the broadcast shelters (a few hundred at Daxing's
size; thousands of POIs for the service topics: vectorised distance matrices of at most ``CHUNK_CELLS``). The town of a resident is the town of the standard
address; the town of a shelter, hazard source, team or flood point is the one its point lies in.
"""
from __future__ import annotations

import time

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import standard_address
from lake import contracts as contracts_mod
from lake import geo, io
from lake.log import log
from lake.reference import DISTRICT, EMERGENCY
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

REACH, BY_TOWN = "topic.shelter_reach", "topic.emergency_by_town"
TABLES = (REACH, BY_TOWN)
PAIRS_SCHEMA = "address_code string, shelter_id string, distance_m double"
CHUNK_CELLS = 2_000_000   # at most this many distances in one matrix (16 MB of doubles)


def residents_per_address(population: DataFrame, links: DataFrame, library: DataFrame) -> DataFrame:
    """(address_code, town, lon, lat, residents): registered residents per standard address with a point. Pure."""
    people = population.where(F.coalesce(F.col("register_status"), F.lit("正常")) == "正常").select("id_number")
    lk = links.where((F.col("source") == "base.population") & F.col("address_code").isNotNull()).select(
        F.col("record_key").alias("id_number"), "address_code")
    lib = library.where(F.col("lon").isNotNull() & F.col("lat").isNotNull()).select("address_code", "town", "lon", "lat")
    return (people.join(lk, "id_number").join(lib, "address_code")
            .groupBy("address_code", "town", "lon", "lat").agg(F.count("*").alias("residents")))


def pairs_within(addresses: DataFrame, shelters: list[tuple[str, float, float]], metres: float) -> DataFrame:
    """Every (address, shelter) pair closer than ``metres``. ``shelters``: (id, lon, lat) in WGS-84."""
    spark = addresses.sparkSession
    if not shelters:
        return spark.createDataFrame([], PAIRS_SCHEMA)
    shared = spark.sparkContext.broadcast(shelters)

    def pairs(batches):
        import pandas as pd

        ids = np.array([s[0] for s in shared.value], dtype=object)
        slon = np.array([s[1] for s in shared.value])
        slat = np.array([s[2] for s in shared.value])
        step = max(1, CHUNK_CELLS // max(1, len(ids)))   # addresses per distance matrix (bounded memory)
        for pdf in batches:
            codes = pdf["address_code"].to_numpy(dtype=object)
            lons, lats = pdf["lon"].to_numpy(dtype=np.float64), pdf["lat"].to_numpy(dtype=np.float64)
            for i in range(0, len(codes), step):
                d = geo.distance_m(lons[i:i + step, None], lats[i:i + step, None], slon[None, :], slat[None, :])
                a, s = np.nonzero(d < metres)
                yield pd.DataFrame({"address_code": codes[i:i + step][a], "shelter_id": ids[s], "distance_m": d[a, s]})

    return addresses.select("address_code", "lon", "lat").mapInPandas(pairs, PAIRS_SCHEMA)


def reach(shelters: DataFrame, addresses: DataFrame, pairs: DataFrame) -> DataFrame:
    """``topic.shelter_reach``. ``shelters``: the shelters in use with a town. Pure."""
    per = pairs.join(addresses.select("address_code", "residents"), "address_code").groupBy("shelter_id").agg(
        F.sum("residents").alias("residents_within_reach"))
    df = shelters.select("shelter_id", "name", "town", "capacity").join(per, "shelter_id", "left")
    n = F.coalesce(F.col("residents_within_reach"), F.lit(0)).cast("long")
    return df.select("shelter_id", "name", "town", "capacity", n.alias("residents_within_reach"),
                     F.when(n > 0, F.round(F.col("capacity") / n, 4)).alias("capacity_per_resident"))


def by_town(towns: list[str], addresses: DataFrame, pairs: DataFrame, shelters: DataFrame, hazards: DataFrame,
            teams: DataFrame, floods: DataFrame) -> DataFrame:
    """``topic.emergency_by_town``: one row per town of ``towns``. Pure."""
    spark = addresses.sparkSession
    base = spark.createDataFrame([(t,) for t in towns], "town string")
    in_reach = addresses.join(pairs.select("address_code").distinct(), "address_code", "left_semi")
    parts = [
        addresses.groupBy("town").agg(F.sum("residents").alias("residents")),
        in_reach.groupBy("town").agg(F.sum("residents").alias("residents_in_reach")),
        shelters.groupBy("town").agg(F.count("*").alias("shelters"), F.sum("capacity").alias("capacity")),
        hazards.groupBy("town").agg(F.count("*").alias("hazard_sources")),
        teams.groupBy("town").agg(F.count("*").alias("rescue_teams"), F.sum("members").alias("team_members")),
        floods.groupBy("town").agg(F.countDistinct("point_code").alias("flood_points"),
                                   F.count("*").alias("flood_point_days")),
    ]
    df = base
    for p in parts:
        df = df.join(p, "town", "left")
    longs = ["residents", "residents_in_reach", "shelters", "capacity", "hazard_sources", "rescue_teams",
             "team_members", "flood_points", "flood_point_days"]
    df = df.withColumns({c: F.coalesce(F.col(c), F.lit(0)).cast("long") for c in longs})
    return df.select(
        "town", "residents", "residents_in_reach",
        F.when(F.col("residents") > 0, F.round(F.col("residents_in_reach") / F.col("residents"), 4)).alias("reach_share"),
        "shelters", "capacity",
        F.when(F.col("residents") > 0, F.round(F.col("capacity") / F.col("residents"), 4)).alias("capacity_per_resident"),
        "hazard_sources", "rescue_teams", "team_members", "flood_points", "flood_point_days")


def _table(spark, settings, table_id: str, schema: str) -> DataFrame:
    path = io.path_of(settings, table_id)
    return io.read(spark, path) if io.is_table(spark, path) else spark.createDataFrame([], schema)


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    links = standard_address.current_links(spark, settings)
    if links is None:
        return standard_address.skipped_without_links(TABLES)
    population = io.read(spark, io.path_of(settings, "base.population"))
    library = io.read(spark, io.path_of(settings, "base.standard_address"))
    addresses = residents_per_address(population, links, library).persist()
    shelters = (io.read(spark, io.path_of(settings, "base.emergency_shelter"))
                .where((F.col("status") == "在用") & F.col("town").isNotNull()).persist())
    pts = [(r["shelter_id"], r["lon"], r["lat"]) for r in shelters.select("shelter_id", "lon", "lat").collect()]
    pairs = pairs_within(addresses, pts, EMERGENCY.shelter_reach_metres).persist()
    hazards = _table(spark, settings, "base.hazard_source", "hazard_id string, town string").where(F.col("town").isNotNull())
    teams = _table(spark, settings, "base.rescue_team", "team_id string, town string, members long").where(F.col("town").isNotNull())
    floods = _table(spark, settings, "topic.flood_points", "point_code string, town string, day date").where(
        F.col("town").isNotNull())
    inputs = ",".join(str(io.version(spark, io.path_of(settings, t))) for t in
                      ("base.emergency_shelter", "base.population", "base.standard_address"))
    out = []
    try:
        for table, df in ((REACH, reach(shelters, addresses, pairs)),
                          (BY_TOWN, by_town(list(DISTRICT.towns), addresses, pairs, shelters, hazards, teams, floods))):
            t1 = time.time()
            tc = contracts.table(table)
            res = gates.publish(spark, settings, tc, df.select(*tc.column_names), {"as_of": as_of, "inputs": inputs})
            out.append({"table": table, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t1, 2)})
    finally:
        spark.catalog.clearCache()
    log.info("emergency topics: %s in %.1fs", ", ".join(f"{r['table']} {r['status']}" for r in out), time.time() - t0)
    return out
