"""Pure transforms of issue 17 on hand-written frames: validity periods from states on dates, the age
bands that move with the reference date, deletions and business-date order in latest_per_entity."""
from __future__ import annotations

import datetime

import pytest
from pyspark.sql import functions as F

from lake import contracts as contracts_mod
from lake.settings import REPO

D = datetime.date


@pytest.fixture(scope="module")
def pop_contract():
    return contracts_mod.load(str(REPO / "contracts")).table("base.legal_entity")


def test_collapse_periods(spark, pop_contract):
    from jobs.base.incremental import collapse

    tc = pop_contract
    cols = tc.column_names

    def ev(code, d, status, absent=False):
        row = {c: None for c in cols}
        row.update({"credit_code": code, "status": None if absent else status, "name": None if absent else "甲"})
        return (*[row[c] for c in cols], absent, d)

    schema = ", ".join(f"`{c.name}` {c.type}" for c in tc.columns) + ", _absent boolean, _d date"
    rows = [
        ev("A", D(2026, 11, 1), "存续"), ev("A", D(2026, 11, 2), "存续"), ev("A", D(2026, 11, 3), "注销"),
        ev("B", D(2026, 11, 1), "存续"), ev("B", D(2026, 11, 2), None, absent=True), ev("B", D(2026, 11, 4), "存续"),
        ev("C", D(2026, 11, 2), None, absent=True), ev("C", D(2026, 11, 3), "存续"),
    ]
    got = sorted((r["credit_code"], r["status"], r["valid_from"], r["valid_to"])
                 for r in collapse(spark.createDataFrame(rows, schema), tc).collect())
    assert got == [
        ("A", "存续", D(2026, 11, 1), D(2026, 11, 3)),   # unchanged on the 2nd: one period
        ("A", "注销", D(2026, 11, 3), None),             # a deregistration closes it, nothing erased
        ("B", "存续", D(2026, 11, 1), D(2026, 11, 2)),   # deleted on the 2nd: closed
        ("B", "存续", D(2026, 11, 4), None),             # back on the 4th: a new period
        ("C", "存续", D(2026, 11, 3), None),             # absent first: no period
    ]


def test_moved_age_bands_equal_the_join(spark):
    from jobs.topic import population as t

    people = spark.createDataFrame([
        ("1", "黄村镇", "男", D(2008, 11, 2), "正常", None),   # 18 on 2026-11-02
        ("2", "黄村镇", "女", D(1991, 11, 3), "正常", None),   # 35 on 2026-11-03
        ("3", "旧宫镇", "男", D(1966, 11, 1), "正常", None),   # 60 already on 2026-11-01
        ("4", "旧宫镇", "女", D(1946, 11, 2), "死亡", None),   # 80, but dead
        ("5", None, None, D(2000, 1, 1), "正常", None),
    ], "id_number string, town string, gender string, birth_date date, register_status string, death_date date")
    one_pass = sorted(tuple(r) for r in t.moved(people, "2026-11-01", "2026-11-03").collect())
    assert one_pass == [("黄村镇", "0-17", "男", "黄村镇", "18-34", "男"), ("黄村镇", "18-34", "女", "黄村镇", "35-59", "女")]
    old = t.project(people, "2026-11-01").select("id_number", *[F.col(g).alias(f"_o_{g}") for g in t.GROUPS])
    new = t.project(people, "2026-11-03").select("id_number", *[F.col(g).alias(f"_n_{g}") for g in t.GROUPS])
    joined = old.join(new, "id_number").where(F.col("_o_age_band") != F.col("_n_age_band")).drop("id_number")
    assert sorted(tuple(r[c] for c in ("_o_town", "_o_age_band", "_o_gender", "_n_town", "_n_age_band", "_n_gender"))
                  for r in joined.collect()) == one_pass


def test_latest_per_entity_by_business_date_and_deletions(spark):
    from jobs.base.golden import latest_per_entity

    rows = [  # (id, record, batch, as_of, op, town, row); landed in another order than delivered
        ("110115199001010011", "R1", "b-day3", D(2026, 11, 3), "U", "旧宫镇", 2),
        ("110115199001010011", "R1", "b-day1", D(2026, 11, 1), None, "黄村镇", 2),
        ("110115199001010011", "R1", "b-day2", D(2026, 11, 2), "U", "西红门镇", 2),
        ("110115199001010022", "R2", "b-day1", D(2026, 11, 1), None, "黄村镇", 3),
        ("110115199001010022", "R2", "b-day2", D(2026, 11, 2), "D", None, 3),
    ]
    df = spark.createDataFrame(rows, "id_number string, record_id string, _batch_id string, _as_of date, _op string, "
                                     "town string, _row long").withColumn("_ingested_at", F.current_timestamp())
    latest, dups = latest_per_entity(df, "id_number", "record_id")
    assert sorted((r["id_number"], r["town"]) for r in latest.collect()) == [("110115199001010011", "旧宫镇")]
    assert dups.count() == 0
