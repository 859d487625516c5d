"""Benchmark: point in polygon for the 22 units of Daxing, ``lake.geo.assign_units`` (shapely STRtree
inside ``mapInPandas``) against naive per-polygon approaches.

    .venv/bin/python scripts/bench_geo.py [--n 500000] [--udf-n 50000] [--seed 7] [--partitions 2] [--repeat 3]

Generates N random WGS-84 points over the district's extent (about 55 % of them outside) inside
Spark, caches them, then times (best of ``--repeat``) one full pass (``write.format("noop")``) of

* ``assign_units``: the polygons broadcast as WKB, one STRtree per partition, one vectorised
  ``tree.query(points, predicate="intersects")`` per Arrow batch;
* per-polygon, vectorised: the same ``mapInPandas`` plumbing, but every point tested against every
  polygon with ``shapely.covers`` (``lake.geo.assign_units_pandas``, the tests' oracle);
* per-polygon, row at a time: a Python UDF looping over the 22 polygons for each point (the way
  it is often first written), on ``--udf-n`` points (it is slow), reported per second;

and, without Spark, the STRtree lookup and the per-polygon test on numpy arrays of the same points.
Prints rows/second, the ratios, and checks that every variant assigns the same unit to every point.
Each Spark variant runs once untimed on a small slice first (Python workers, codegen).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import shapely  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql.types import StringType, StructField, StructType  # noqa: E402

from lake import geo  # noqa: E402
from sample import basemap
from lake.settings import Settings  # noqa: E402
from lake.spark import get_spark  # noqa: E402

BOX = geo.EXTENT  # the district fills ~45 % of its extent


def points(spark, n: int, seed: int, partitions: int) -> DataFrame:
    x0, y0, x1, y1 = BOX
    return spark.range(0, n, numPartitions=partitions).select(
        "id", (F.lit(x0) + F.rand(seed) * (x1 - x0)).alias("lon"), (F.lit(y0) + F.rand(seed + 1) * (y1 - y0)).alias("lat"))


def per_polygon_vectorised(df: DataFrame, units: list[dict]) -> DataFrame:
    payload = [(u["code"], u["name"], shapely.to_wkb(u["geometry"])) for u in units]
    shared = df.sparkSession.sparkContext.broadcast(payload)
    schema = StructType(df.schema.fields + [StructField("town_code", StringType()), StructField("town", StringType())])

    def assign(batches):
        bs = [{"code": c, "name": n, "geometry": shapely.from_wkb(w)} for c, n, w in shared.value]
        for pdf in batches:
            out = geo.assign_units_pandas(pdf["lon"].to_numpy(), pdf["lat"].to_numpy(), bs)
            pdf["town_code"], pdf["town"] = out["town_code"].to_numpy(), out["town"].to_numpy()
            yield pdf

    return df.mapInPandas(assign, schema)


def per_polygon_udf(df: DataFrame, units: list[dict]) -> DataFrame:
    payload = [(u["code"], shapely.to_wkb(u["geometry"])) for u in units]
    shared = df.sparkSession.sparkContext.broadcast(payload)
    cache: dict = {}

    def town_code(lon, lat):
        if "polys" not in cache:
            cache["polys"] = [(c, shapely.from_wkb(w)) for c, w in shared.value]
            for _, p in cache["polys"]:
                shapely.prepare(p)
        if lon is None or lat is None:
            return None
        pt = shapely.Point(lon, lat)
        for code, poly in cache["polys"]:
            if poly.covers(pt):
                return code
        return None

    return df.withColumn("town_code", F.udf(town_code, "string")("lon", "lat"))


def timed(df: DataFrame) -> float:
    t0 = time.time()
    df.write.format("noop").mode("overwrite").save()
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--udf-n", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    spark = get_spark(Settings.from_env(shuffle_partitions=args.partitions, driver_memory="2g"))
    units = basemap.district_boundaries()
    df = points(spark, args.n, args.seed, args.partitions).cache()
    df.count()
    small = df.limit(2000)
    udf_df = df.where(F.col("id") < args.udf_n).cache()
    udf_df.count()

    variants = {
        "assign_units (STRtree, mapInPandas)": (lambda d: geo.assign_units(d, "lon", "lat", units), df, args.n),
        "per polygon, vectorised (mapInPandas)": (lambda d: per_polygon_vectorised(d, units), df, args.n),
        "per polygon, row-at-a-time Python UDF": (lambda d: per_polygon_udf(d, units), udf_df, args.udf_n),
    }
    results = {}
    for name, (fn, data, n) in variants.items():
        timed(fn(small))  # warm up: Python workers, broadcast, codegen
        s = min(timed(fn(data)) for _ in range(args.repeat))
        results[name] = n / s
        print(f"{name:42s} {n:>9,d} points in {s:7.2f}s  {n / s:>12,.0f} points/s", flush=True)

    # agreement on every point (the UDF on its slice)
    a = geo.assign_units(df, "lon", "lat", units).select("id", F.col("town_code").alias("a"))
    b = per_polygon_vectorised(df, units).select("id", F.col("town_code").alias("b"))
    c = per_polygon_udf(udf_df, units).select("id", F.col("town_code").alias("c"))
    j = a.join(b, "id").join(c, "id", "left")
    differ = j.where(~F.col("a").eqNullSafe(F.col("b"))
                     | ((F.col("id") < args.udf_n) & ~F.col("a").eqNullSafe(F.col("c")))).count()
    outside = a.where(F.col("a").isNull()).count()
    print(f"agreement: {args.n - differ:,d} of {args.n:,d} points identical across variants; {outside:,d} outside the district")

    # the core lookups without Spark, on the same points
    pdf = df.toPandas()
    lon, lat = pdf["lon"].to_numpy(), pdf["lat"].to_numpy()
    tree = shapely.STRtree([u["geometry"] for u in units])
    t_tree = t_brute = float("inf")
    for _ in range(args.repeat):
        t0 = time.time()
        idx = geo._lookup(tree, lon, lat)
        t_tree = min(t_tree, time.time() - t0)
        t0 = time.time()
        oracle = geo.assign_units_pandas(lon, lat, units)
        t_brute = min(t_brute, time.time() - t0)
    codes = np.array([u["code"] for u in units] + [None], dtype=object)
    same = (codes[idx] == oracle["town_code"].to_numpy()).sum()
    print(f"{'numpy only: STRtree query':42s} {args.n:>9,d} points in {t_tree:7.2f}s  {args.n / t_tree:>12,.0f} points/s")
    print(f"{'numpy only: per-polygon covers':42s} {args.n:>9,d} points in {t_brute:7.2f}s  {args.n / t_brute:>12,.0f} points/s"
          f"  (same unit for {same:,d})")

    fast = results["assign_units (STRtree, mapInPandas)"]
    print(f"ratio assign_units / per-polygon vectorised: {fast / results['per polygon, vectorised (mapInPandas)']:.1f}x")
    print(f"ratio assign_units / row-at-a-time UDF:      {fast / results['per polygon, row-at-a-time Python UDF']:.1f}x")
    print(f"ratio STRtree / per-polygon (numpy only):    {t_brute / t_tree:.1f}x")
    if differ:
        raise SystemExit(f"{differ} points differ between the variants")


if __name__ == "__main__":
    main()
