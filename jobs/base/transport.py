"""Bus lines (公交线网) on the base map: ``base.bus_line`` from the transport bureau's network
(``jtj_bus_lines``, one row per line and direction, a monthly snapshot).

Only the newest snapshot counts (``jobs.base.golden.as_of_rows``); in it a line and direction is a
record (``jobs.base.records``: a later row of it in the same file is a ``duplicate_record``). A district
has a few hundred lines, so their geometry is worked out on the driver with shapely (``line_facts``,
pure Python): the WKT route is converted from the contract's system to WGS-84 (``lake.geo.to_wgs84``),
measured (``lake.geo.line_length_km``, great-circle), intersected with the towns of
``base.admin_boundary`` (the towns it runs through, in code order) and with the district (the length
outside every town), and its stops are looked up in the stop register: the names of the facilities of
the service ``bus_lines.stop_service`` (bus and metro stop POIs of ``base.poi``,
``jobs.topic.services.facilities``). Cross rules (``CROSS_RULES``, warnings for the bureau, the row
still published):

- ``invalid_geometry``: the route is not a WKT LINESTRING of at least two distinct finite points
  (published without geometry, length and towns);
- ``line_outside_district``: more than ``bus_lines.outside_tolerance_km`` of the route lies outside
  every town and street;
- ``implausible_length``: the route is shorter than ``bus_lines.min_km`` or longer than ``max_km``;
- ``stop_unknown``: stops whose names are not in the stop register (the finding lists them).
"""
from __future__ import annotations

import json

import numpy as np
import shapely
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import golden, records
from jobs.base.admin_boundary import load_boundaries
from jobs.base.records import Rule
from lake import geo
from lake.log import log
from lake.reference import BUS_LINES
from lake.settings import Settings

TABLE, SOURCE = "base.bus_line", "jtj_bus_lines"
TABLES = (TABLE,)
KEY = ("line_id", "direction")

DERIVATIONS = {
    "stops_of_line": f"the number of stops of the line (names separated by {BUS_LINES.stop_delimiter!r})",
    "stops_in_register": "the stops whose name is a stop of the register (bus_lines.stop_service of base.poi)",
    "route_length": "great-circle length of the WGS-84 route in km (lake.geo.line_length_km)",
    "route_in_admin_boundary": "the towns and streets of base.admin_boundary the WGS-84 route runs through",
}

FACTS_SCHEMA = ("line_id string, direction string, _geom_ok boolean, _geometry string, _length_km double, "
                "_towns string, _outside_km double, _stop_count long, _stops_matched long, _unknown_stops string")


# ------------------------------------------------------------------ geometry (pure Python)

def parse_route(text: str | None, crs: str):
    """The WGS-84 LineString of a WKT route in ``crs``, or None when the text is not a LINESTRING of at
    least two distinct finite points."""
    try:
        g = shapely.from_wkt(text) if text else None
    except shapely.errors.GEOSException:
        return None
    if g is None or g.geom_type != "LineString" or g.is_empty:
        return None
    xy = np.asarray(g.coords)[:, :2]
    if not np.isfinite(xy).all() or len({tuple(p) for p in xy.tolist()}) < 2:
        return None
    x, y = geo.to_wgs84(xy[:, 0], xy[:, 1], crs)
    return shapely.LineString(np.column_stack([np.round(x, 7), np.round(y, 7)]))


def km_inside(line, polygon) -> float:
    """Great-circle km of ``line`` inside ``polygon``."""
    return geo.line_length_km(shapely.intersection(line, polygon))


def split_stops(stops: str | None) -> list[str]:
    return [s.strip() for s in (stops or "").split(BUS_LINES.stop_delimiter) if s.strip()]


def line_facts(rows: list[dict], boundaries: list[dict], stop_names: set[str], crs: str) -> list[tuple]:
    """Per row (``line_id``, ``direction``, ``route_wkt``, ``stops``): the tuple of ``FACTS_SCHEMA``."""
    district = shapely.union_all([b["geometry"] for b in boundaries])
    out = []
    for r in rows:
        stops = split_stops(r["stops"])
        unknown = [s for s in stops if s not in stop_names]
        line = parse_route(r["route_wkt"], crs)
        if line is None:
            geo_facts = (False, None, None, None, None)
        else:
            towns = [b["name"] for b in sorted(boundaries, key=lambda b: b["code"]) if km_inside(line, b["geometry"]) > 0]
            geo_facts = (True, json.dumps(shapely.geometry.mapping(line), separators=(",", ":")),
                         round(geo.line_length_km(line), 3), "|".join(towns),
                         round(geo.line_length_km(shapely.difference(line, district)), 3))
        out.append((r["line_id"], r["direction"], *geo_facts, len(stops), len(stops) - len(unknown),
                    BUS_LINES.stop_delimiter.join(dict.fromkeys(unknown))))
    return out


# ------------------------------------------------------------------ rules (Spark)

def _invalid_geometry(ctx: dict) -> Rule:
    return Rule("invalid_geometry", "geometry.invalid", F.lit("route_wkt"), ~F.col("_geom_ok"),
                F.lit("the route is not a WKT LINESTRING of at least two distinct points; published without geometry"),
                F.substring(F.col("route_wkt"), 1, 80))


def _outside(ctx: dict) -> Rule:
    return Rule("line_outside_district", "geometry.line_outside_district", F.lit("route_wkt"),
                F.col("_geom_ok") & (F.col("_outside_km") > BUS_LINES.outside_tolerance_km),
                F.concat(F.col("_outside_km").cast("string"), F.lit(" km of the route lie outside every town and street "
                                                                   "of base.admin_boundary")),
                F.col("_outside_km"))


def _implausible_length(ctx: dict) -> Rule:
    return Rule("implausible_length", "geometry.line_length", F.lit("route_wkt"),
                F.col("_geom_ok") & ((F.col("_length_km") < BUS_LINES.min_km) | (F.col("_length_km") > BUS_LINES.max_km)),
                F.concat(F.lit("the route is "), F.col("_length_km").cast("string"),
                         F.lit(f" km long, outside {BUS_LINES.min_km:g}-{BUS_LINES.max_km:g} km (bus_lines)")),
                F.col("_length_km"))


def _stop_unknown(ctx: dict) -> Rule:
    return Rule("stop_unknown", "cross.stop_unknown", F.lit("stops"), F.col("_unknown_stops") != "",
                F.concat(F.lit("stops not in the stop register (bus and metro stop POIs of base.poi): "),
                         F.col("_unknown_stops")), F.col("_unknown_stops"))


CROSS_RULES = {
    "invalid_geometry": _invalid_geometry,
    "line_outside_district": _outside,
    "implausible_length": _implausible_length,
    "stop_unknown": _stop_unknown,
}


def stop_register(poi: DataFrame) -> set[str]:
    """The names of the stop register (the facilities of ``bus_lines.stop_service``)."""
    from jobs.topic import services

    return {r["name"] for r in services.facilities(poi, BUS_LINES.stop_service).select("name").distinct().collect()}


def candidate(df: DataFrame, tc) -> DataFrame:
    values = {"geometry": F.col("_geometry"), "length_km": F.col("_length_km"), "towns": F.col("_towns"),
              "stop_count": F.col("_stop_count"), "stops_matched": F.col("_stops_matched")}
    cols = [values.get(c.name, F.col(c.name)).cast(c.type).alias(c.name) for c in tc.columns]
    return df.select(*cols, records.lineage(tc))


def build_table(df_raw: DataFrame, sc, tc, boundaries: list[dict], stop_names: set[str]) -> tuple[DataFrame, DataFrame]:
    """(candidate rows, findings) of the newest snapshot. The routes are collected to the driver."""
    spark = df_raw.sparkSession
    current, dups = records.current_rows(golden.as_of_rows(df_raw, sc, None), sc.unique_key)
    current = records.with_meta(current, sc).persist()
    rows = [r.asDict() for r in current.select(*KEY, "route_wkt", "stops").collect()]
    facts = spark.createDataFrame(line_facts(rows, boundaries, stop_names, sc.geometry["crs"]), FACTS_SCHEMA)
    df = current.join(facts, list(KEY), "left")
    found = records.findings_of(df, [CROSS_RULES[n]({}) for n in tc.cross_rules])
    return candidate(df, tc), found.unionByName(records.duplicate_findings(dups, sc))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    def make(spark, raw, sc, tc):
        stop_names = stop_register(records.read_base(spark, settings, "poi"))
        return build_table(raw, sc, tc, load_boundaries(spark, settings), stop_names)

    res = records.build_one(settings, as_of, TABLE, SOURCE, make)
    log.info("transport: %s %s (%s s)", TABLE, res["status"], res.get("seconds"))
    return [res]
