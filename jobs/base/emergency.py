"""Emergency management (应急管理) on the base map: ``base.emergency_shelter``, ``base.hazard_source`` and
``base.rescue_team`` from the emergency-management bureau's registers (``mem_shelters``,
``mem_hazard_sources``, ``mem_rescue_teams``).

Each register row is a record of the bureau (``jobs.base.records``: the newest delivery of an id, a
later row of the id in the same file a ``duplicate_record``). Its point is converted to WGS-84 from the
system its contract declares (``lake.geo.wgs84_columns``) and placed in its town by point in polygon
against ``base.admin_boundary`` (``lake.geo.assign_units``): the published town is the point's, never
the declared one. Cross rules (``CROSS_RULES``, warnings for the bureau, the row still published):

- ``point_outside_district``: the point is in no town or street (published without a town);
- ``unknown_town``: the declared town is not one of the 22 towns and streets;
- ``town_mismatch``: the declared town is a town of the district but the point lies in another one;
- ``capacity_missing``: a shelter in use (在用) without a capacity.
"""
from __future__ import annotations

import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import records
from jobs.base.admin_boundary import load_boundaries
from jobs.base.records import Rule
from lake import contracts as contracts_mod
from lake import geo, io
from lake.log import log
from lake.reference import DISTRICT
from lake.settings import Settings
from lake.spark import get_spark

SHELTER, HAZARD, TEAM = "base.emergency_shelter", "base.hazard_source", "base.rescue_team"
TABLES = (SHELTER, HAZARD, TEAM)
SOURCES = {SHELTER: "mem_shelters", HAZARD: "mem_hazard_sources", TEAM: "mem_rescue_teams"}
IN_USE = "在用"

DERIVATIONS = {
    "point_in_admin_boundary": "the town or street of base.admin_boundary containing the WGS-84 point",
}


def _outside(ctx: dict) -> Rule:
    return Rule("point_outside_district", "geometry.outside_district", F.lit("lon"),
                F.col("_wgs_lon").isNotNull() & F.col("_town_code").isNull(),
                F.concat(F.lit("WGS-84 "), F.col("_wgs_lon").cast("string"), F.lit(","), F.col("_wgs_lat").cast("string"),
                         F.lit(" is outside every unit of base.admin_boundary; kept without a town")),
                F.concat_ws(",", F.col("lon").cast("string"), F.col("lat").cast("string")))


def _unknown_town(ctx: dict) -> Rule:
    return Rule("unknown_town", "cross.unknown_town", F.lit("town"), ~F.col("town").isin(*DISTRICT.towns),
                F.lit("the declared town is not one of the towns and streets of the district (district.towns); "
                      "the town is taken from the point"), F.col("town"))


def _town_mismatch(ctx: dict) -> Rule:
    return Rule("town_mismatch", "cross.town_mismatch", F.lit("town"),
                F.col("town").isin(*DISTRICT.towns) & F.col("_town").isNotNull() & (F.col("town") != F.col("_town")),
                F.concat(F.lit("the point lies in "), F.col("_town"), F.lit(", not in the declared town")), F.col("town"))


def _capacity_missing(ctx: dict) -> Rule:
    return Rule("capacity_missing", "cross.capacity_missing", F.lit("capacity"),
                (F.col("status") == IN_USE) & F.col("capacity").isNull(),
                F.lit("a shelter in use without a capacity (可容纳人数)"), F.lit(None))


CROSS_RULES = {
    "point_outside_district": _outside,
    "unknown_town": _unknown_town,
    "town_mismatch": _town_mismatch,
    "capacity_missing": _capacity_missing,
}


def located(current: DataFrame, sc, boundaries: list[dict]) -> DataFrame:
    """Current rows (``records.with_meta``) with ``_wgs_lon``/``_wgs_lat`` and ``_town_code``/``_town``."""
    return geo.assign_units(geo.wgs84_columns(current, sc.geometry, "_wgs_lon", "_wgs_lat", decimals=7),
                            "_wgs_lon", "_wgs_lat", boundaries, code_col="_town_code", name_col="_town")


def candidate(df: DataFrame, tc) -> DataFrame:
    values = {"lon": F.col("_wgs_lon"), "lat": F.col("_wgs_lat"), "town_code": F.col("_town_code"),
              "town": F.col("_town")}
    cols = [values.get(c.name, F.col(c.name)).cast(c.type).alias(c.name) for c in tc.columns]
    return df.select(*cols, records.lineage(tc))


def build_table(df_raw: DataFrame, sc, tc, boundaries: list[dict]) -> tuple[DataFrame, DataFrame]:
    """(candidate rows, findings) of one register. Pure (given the boundaries)."""
    current, dups = records.current_rows(df_raw, sc.unique_key)
    loc = located(records.with_meta(current, sc), sc, boundaries)
    found = records.findings_of(loc, [CROSS_RULES[n]({}) for n in tc.cross_rules])
    return candidate(loc, tc), found.unionByName(records.duplicate_findings(dups, sc))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    spark = get_spark(settings)
    contracts = contracts_mod.load(settings.contracts_dir)
    boundaries = load_boundaries(spark, settings)
    out = []
    for table in TABLES:
        t0 = time.time()
        source = SOURCES[table]
        if not io.is_table(spark, io.table_path(settings, "raw", source)):
            out.append(records.skipped(table, f"no raw data yet from {source}"))
            continue
        tc, sc = contracts.table(table), contracts.source(source)
        cand, found = build_table(records.read_raw(spark, settings, source), sc, tc, boundaries)
        cand = cand.persist()
        rid = records.run_id(spark, settings, tc)
        found = found.persist()
        records.write_findings(settings, found, rid)
        res = records.publish(spark, settings, tc, cand, as_of, rid)
        res.update({"findings": records.counts_by_defect(found), "seconds": round(time.time() - t0, 2)})
        out.append(res)
        cand.unpersist()
        found.unpersist()
    log.info("emergency: %s", ", ".join(f"{r['table']} {r['status']}" for r in out))
    return out
