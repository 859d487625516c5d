"""Medical institutions (医疗机构) on the base map: ``base.health_facility`` from the health commission's
register of practising licences (``nhc_health_facilities``, 医疗机构执业登记, a monthly snapshot).

Only the newest snapshot counts (an institution missing from it is gone: ``jobs.base.golden.as_of_rows``);
in it each licence number is a record (``jobs.base.records``: a later row of the number in the same file
is a ``duplicate_record``). The point is converted to WGS-84 and placed in its town by point in polygon
against ``base.admin_boundary`` exactly as the emergency registers are (``jobs.base.emergency.located``:
the published town is the point's). An invalid credit code never gets here: the ingest check
``cn_uscc`` quarantines the row. Cross rules (``CROSS_RULES``, warnings for the commission, the row
still published): the emergency registers' ``point_outside_district``, ``unknown_town`` and
``town_mismatch``, and

- ``hospital_without_beds``: a hospital (``health_facilities.hospital_categories``) without approved beds
  (empty or 0);
- ``licence_expired_active``: the institution is 执业 but its licence ended before the build's reference
  date (the e-licences' defect type).
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.base import emergency, golden, records
from jobs.base.admin_boundary import load_boundaries
from jobs.base.records import Rule
from lake.log import log
from lake.reference import HEALTH_FACILITIES
from lake.settings import Settings

TABLE, SOURCE = "base.health_facility", "nhc_health_facilities"
TABLES = (TABLE,)

DERIVATIONS = dict(emergency.DERIVATIONS)


def _hospital_without_beds(ctx: dict) -> Rule:
    return Rule("hospital_without_beds", "cross.hospital_without_beds", F.lit("beds"),
                F.col("category").isin(*HEALTH_FACILITIES.hospital_categories)
                & (F.col("beds").isNull() | (F.col("beds") == 0)),
                F.concat(F.lit("a hospital ("), F.col("category"), F.lit(") without approved beds (核定床位数)")),
                F.col("beds"))


def _licence_expired_active(ctx: dict) -> Rule:
    day = F.lit(ctx["as_of"]).cast("date")
    return Rule("licence_expired_active", "cross.licence_expired_active", F.lit("status"),
                (F.col("status") == HEALTH_FACILITIES.active_status) & (F.col("valid_to") < day),
                F.concat(F.lit(f"status is {HEALTH_FACILITIES.active_status} but the practising licence ended on "),
                         F.col("valid_to").cast("string")), F.col("status"))


CROSS_RULES = {
    "point_outside_district": emergency.CROSS_RULES["point_outside_district"],
    "unknown_town": emergency.CROSS_RULES["unknown_town"],
    "town_mismatch": emergency.CROSS_RULES["town_mismatch"],
    "hospital_without_beds": _hospital_without_beds,
    "licence_expired_active": _licence_expired_active,
}


def build_table(df_raw: DataFrame, sc, tc, boundaries: list[dict], as_of: str) -> tuple[DataFrame, DataFrame]:
    """(candidate rows, findings) of the newest snapshot. Pure (given the boundaries)."""
    current, dups = records.current_rows(golden.as_of_rows(df_raw, sc, None), sc.unique_key)
    loc = emergency.located(records.with_meta(current, sc), sc, boundaries)
    found = records.findings_of(loc, [CROSS_RULES[n]({"as_of": as_of}) for n in tc.cross_rules])
    return emergency.candidate(loc, tc), found.unionByName(records.duplicate_findings(dups, sc))


def build(settings: Settings, as_of: str, **context) -> list[dict]:
    res = records.build_one(settings, as_of, TABLE, SOURCE, lambda spark, raw, sc, tc: build_table(
        raw, sc, tc, load_boundaries(spark, settings), as_of))
    log.info("health: %s %s", TABLE, res["status"])
    return [res]
