"""Transport topic (交通主题库): ``topic.bus_lines_by_town``, the bus network per town or street.

From the published ``base.bus_line`` (a few hundred rows: worked out on the driver with shapely), the
stop register (the facilities of ``bus_lines.stop_service``: bus and metro stop POIs of ``base.poi``,
``jobs.topic.services.facilities``) and the towns of ``base.admin_boundary``. Per town: the lines (either
direction) whose route runs through it (``towns`` of ``base.bus_line``), the route km inside it (every
line and direction, ``jobs.base.transport.km_inside``), the register's stops in the town and how many
of them a line serves (their name is among some line's stops). Routes without a geometry (an
``invalid_geometry`` finding) count for no town.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict

import shapely
from pyspark.sql import DataFrame

from jobs.base.admin_boundary import load_boundaries
from jobs.base.transport import km_inside, split_stops
from jobs.topic import services
from lake import contracts as contracts_mod
from lake import io
from lake.log import log
from lake.reference import BUS_LINES
from lake.settings import Settings
from lake.spark import get_spark
from quality import gates

TABLE = "topic.bus_lines_by_town"
TABLES = (TABLE,)
SCHEMA = "town string, town_code string, lines long, route_km double, stops_served long, stops long"


def by_town(lines: list[dict], stops: list[dict], boundaries: list[dict]) -> list[tuple]:
    """Rows of ``SCHEMA`` (one per boundary, code order). ``lines``: rows of base.bus_line; ``stops``:
    the register's stops (``poi_id``, ``name``, ``town``). Pure."""
    served_names = {s for ln in lines for s in split_stops(ln["stops"])}
    routes = [(ln["line_id"], shapely.geometry.shape(json.loads(ln["geometry"]))) for ln in lines if ln["geometry"]]
    register = defaultdict(set)
    served = defaultdict(set)
    for s in stops:
        if s["town"]:
            register[s["town"]].add(s["poi_id"])
            if s["name"] in served_names:
                served[s["town"]].add(s["poi_id"])
    out = []
    for b in sorted(boundaries, key=lambda b: b["code"]):
        shapely.prepare(b["geometry"])
        km = {}
        for i, (line_id, route) in enumerate(routes):
            if shapely.intersects(b["geometry"], route):
                km[i] = km_inside(route, b["geometry"])
        ids = {routes[i][0] for i, k in km.items() if k > 0}
        out.append((b["name"], b["code"], len(ids), round(sum(km.values(), 0.0), 3), len(served[b["name"]]),
                    len(register[b["name"]])))
    return out


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    t0 = time.time()
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(TABLE)
    lines = [r.asDict() for r in io.read(spark, io.path_of(settings, "base.bus_line"))
             .select("line_id", "stops", "geometry").collect()]
    poi: DataFrame = io.read(spark, io.path_of(settings, "base.poi"))
    stops = [r.asDict() for r in services.facilities(poi, BUS_LINES.stop_service).select("poi_id", "name", "town").collect()]
    df = spark.createDataFrame(by_town(lines, stops, load_boundaries(spark, settings)), SCHEMA)
    inputs = ",".join(str(io.version(spark, io.path_of(settings, t))) for t in tc.upstream)
    res = gates.publish(spark, settings, tc, df.select(*tc.column_names), {"as_of": as_of, "inputs": inputs})
    log.info("%s: %s in %.1fs", TABLE, res.status, time.time() - t0)
    return [{"table": TABLE, "status": res.status, "rows": res.rows, "seconds": round(time.time() - t0, 2)}]
