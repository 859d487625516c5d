"""Benchmark: native Spark identifier checks (lake.rules) vs equivalent Python UDFs (python-stdnum).

    .venv/bin/python scripts/bench_identifiers.py [--n 1000000] [--seed 7] [--array-n 200000]

Generates N GB 11643 ID numbers and N GB 32100 credit codes inside Spark (seeded; ~80% valid, the
rest with a wrong check character, an unknown region / impossible authority pair, or a wrong
length), caches them, then times one full pass (``write.format("noop")``) of

* the native expressions: the first rule of ``rules.cn_id_issues`` / ``rules.cn_uscc_issues``;
* a row-at-a-time Python UDF computing the same verdict with stdnum.cn.ric / stdnum.cn.uscc
  (and, for reference, the same function as an Arrow-batched UDF);
* the region lookup alone, as an ``IN`` list (optimised to ``INSET``, a hash set) and as a
  broadcast array with ``array_contains`` (a linear scan), on ``--array-n`` values.

Prints rows/second for each and the native/UDF ratio, and checks that native and UDF agree on
every value. Each variant is run once untimed on a small slice first (JIT, codegen, Python workers).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyspark.sql import Column, DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from lake import rules  # noqa: E402
from lake.settings import Settings  # noqa: E402
from lake.spark import get_spark  # noqa: E402


# ----------------------------------------------------------------------------- generation (in Spark)

def _pick(chars: str, r: Column) -> Column:
    return F.substring(F.lit(chars), (F.floor(r * len(chars)) + 1).cast("int"), 1)


def _wrong(chars: str, right: Column, r: Column) -> Column:
    """A character of ``chars`` other than ``right``."""
    pos = F.instr(F.lit(chars), right) - 1
    return F.substring(F.lit(chars + chars), (pos + 1 + F.floor(r * (len(chars) - 1)) + 1).cast("int"), 1)


def generate(spark, n: int, seed: int) -> DataFrame:
    codes = "array(" + ", ".join(f"'{c}'" for c in sorted(rules.region_codes())) + ")"
    n_codes = len(rules.region_codes())
    r = [F.rand(seed + i) for i in range(20)]
    df = spark.range(n).select(
        "id", r[0].alias("id_kind"), r[1].alias("us_kind"),
        F.expr(f"element_at({codes}, cast(floor(rand({seed + 100}) * {n_codes}) as int) + 1)").alias("region"),
    )
    # ID numbers
    id_region = F.when(F.col("id_kind") < 0.85, F.col("region")).otherwise(F.concat(F.lit("99"), F.substring("region", 3, 4)))
    birth = F.date_add(F.lit("1930-01-01").cast("date"), F.floor(r[2] * 35000).cast("int"))
    first17 = F.concat(id_region, F.date_format(birth, "yyyyMMdd"), F.lpad((F.col("id") % 1000).cast("string"), 3, "0"))
    df = df.withColumn("first17", first17)
    check = rules.cn_id_check_char(F.concat(F.col("first17"), F.lit("0")))
    df = df.withColumn("id_v", F.when(F.col("id_kind") < 0.80, F.concat("first17", check))
                       .when(F.col("id_kind") < 0.85, F.concat(F.col("first17"), _wrong(rules.ID_CHECK, check, r[3])))
                       .when(F.col("id_kind") < 0.95, F.concat("first17", check))  # unknown region '99....'
                       .otherwise(F.col("first17")))                                # 17 characters
    # credit codes
    pairs = rules.USCC_PAIRS
    pair = F.when(F.col("us_kind") < 0.90,
                  F.element_at(F.array(*[F.lit(p) for p in pairs]), (F.floor(r[4] * len(pairs)) + 1).cast("int"))
                  ).otherwise(F.lit("99"))
    org = F.concat(*[_pick(rules.USCC_ALPHABET, r[5 + i]) for i in range(9)])
    df = df.withColumn("us17", F.concat(pair, F.col("region"), org))
    us_check = rules.uscc_check_char(F.concat(F.col("us17"), F.lit("0")))
    df = df.withColumn("uscc_v", F.when(F.col("us_kind") < 0.80, F.concat("us17", us_check))
                       .when(F.col("us_kind") < 0.85, F.concat(F.col("us17"), _wrong(rules.USCC_ALPHABET, us_check, r[14])))
                       .when(F.col("us_kind") < 0.90, F.col("us17"))                   # 17 characters
                       .otherwise(F.concat("us17", us_check)))                         # impossible pair '99'
    return df.select("id", "id_v", "uscc_v")


# ----------------------------------------------------------------------------- Python UDF verdicts

def id_rule_stdnum(v):
    """The rule lake.rules reports, computed with stdnum.cn.ric (see tests/test_rules.py for the
    intentional differences this maps)."""
    from stdnum import numdb
    from stdnum.cn import ric
    from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

    if v is None:
        return None
    u = v.upper()
    if not u.isascii():
        return "cn_id.format"

    def birth_rule():
        try:
            d = ric.get_birth_date(u)
        except InvalidComponent:
            return "cn_id.birth_date"
        return "cn_id.birth_date" if d.year < 1880 else None

    try:
        ric.validate(u)
        return birth_rule()
    except (InvalidLength, InvalidFormat):
        return "cn_id.format"
    except InvalidChecksum:
        if u[17] not in "0123456789X":
            return "cn_id.format"
        return birth_rule() or "cn_id.checksum"
    except InvalidComponent:
        b = birth_rule()
        if b:
            return b
        known = any("county" in props for _, props in numdb.get("cn/loc").info(u[:6]))
        return None if known else "cn_id.region"
    except KeyError:
        return "cn_id.region"


_USCC_RE = re.compile(rules.USCC_REGEX.replace(r"\z", "$"))


def uscc_rule_stdnum(v):
    from stdnum.cn import uscc
    from stdnum.exceptions import InvalidChecksum, InvalidFormat, InvalidLength

    if v is None:
        return None
    u = v.upper()
    if not u.isascii() or "-" in u or " " in u:
        return "cn_uscc.format"
    pair_ok = u[:2] in rules.USCC_PAIRS
    try:
        uscc.validate(u)
        return None if pair_ok else "cn_uscc.authority"
    except InvalidLength:
        return "cn_uscc.format"
    except InvalidFormat:
        if not _USCC_RE.fullmatch(u):
            return "cn_uscc.format"
        if not pair_ok:
            return "cn_uscc.authority"
        return None if uscc.calc_check_digit(u) == u[17] else "cn_uscc.checksum"
    except InvalidChecksum:
        return "cn_uscc.checksum" if pair_ok else "cn_uscc.authority"


# ----------------------------------------------------------------------------- timing

def first_rule(issues: list[Column]) -> Column:
    return F.get(F.filter(F.array(*issues), lambda x: x.isNotNull()), 0)["rule"]


def timed(df: DataFrame, col: Column, n: int, label: str, warm: DataFrame) -> float:
    warm.select(col.alias("r")).write.format("noop").mode("overwrite").save()
    t0 = time.perf_counter()
    df.select(col.alias("r")).write.format("noop").mode("overwrite").save()
    secs = time.perf_counter() - t0
    print(f"  {label:<44} {secs:8.2f} s  {n / secs:>12,.0f} rows/s", flush=True)
    return n / secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--array-n", type=int, default=200_000, help="values for the region-lookup variants (0: skip)")
    ap.add_argument("--no-arrow-udf", action="store_true", help="skip the Arrow-batched UDF runs")
    args = ap.parse_args(argv)

    spark = get_spark(Settings.from_env())
    print(f"spark {spark.version}, {spark.sparkContext.defaultParallelism} cores, "
          f"{len(rules.region_codes())} region codes, {len(rules.USCC_PAIRS)} authority pairs", flush=True)
    t0 = time.perf_counter()
    data = generate(spark, args.n, args.seed).cache()
    assert data.count() == args.n
    print(f"generated and cached {args.n:,} IDs and {args.n:,} credit codes in {time.perf_counter() - t0:.1f} s", flush=True)
    warm = data.limit(2000)

    id_udf = F.udf(id_rule_stdnum, "string")
    us_udf = F.udf(uscc_rule_stdnum, "string")
    id_arrow = F.udf(id_rule_stdnum, "string", useArrow=True)
    us_arrow = F.udf(uscc_rule_stdnum, "string", useArrow=True)
    native_id = first_rule(rules.cn_id_issues("id_v"))
    native_us = first_rule(rules.cn_uscc_issues("uscc_v"))

    results = {}
    for what, native, udf, arrow, col in (("ID numbers (GB 11643)", native_id, id_udf, id_arrow, "id_v"),
                                          ("credit codes (GB 32100)", native_us, us_udf, us_arrow, "uscc_v")):
        print(f"\n{what}, {args.n:,} values:", flush=True)
        nat = timed(data, native, args.n, "native Spark expressions", warm)
        py = timed(data, udf(F.col(col)), args.n, "Python UDF (stdnum), row at a time", warm)
        arr = None if args.no_arrow_udf else timed(data, arrow(F.col(col)), args.n, "Python UDF (stdnum), Arrow batches", warm)
        print(f"  native / Python UDF = {nat / py:.1f}x" + ("" if arr is None else f"; native / Arrow UDF = {nat / arr:.1f}x"))
        verdicts = data.select(native.alias("a"), udf(F.col(col)).alias("b"))
        disagree = verdicts.where(~F.col("a").eqNullSafe(F.col("b"))).count()
        dist = {r["a"]: r["count"] for r in verdicts.groupBy("a").count().collect()}
        print(f"  verdicts: {dict(sorted(dist.items(), key=lambda kv: str(kv[0])))}; native vs UDF disagree on {disagree}")
        results[what] = (nat, py, arr, disagree)

    if args.array_n:
        m = min(args.array_n, args.n)
        sub = data.limit(m).cache()
        sub.count()
        print(f"\nregion lookup alone, {m:,} values:", flush=True)
        code = "substr(id_v, 1, 6)"
        inset = timed(sub, rules.region_known(code), m, "IN list -> INSET (hash set)", sub.limit(2000))
        arr_lit = F.expr("array(" + ", ".join(f"'{c}'" for c in sorted(rules.region_codes())) + ")")
        scan = timed(sub, F.array_contains(arr_lit, F.expr(code)), m, "array literal + array_contains", sub.limit(2000))
        bc = spark.sparkContext.broadcast(frozenset(rules.region_codes()))
        bc_udf = F.udf(lambda c: c in bc.value, "boolean")
        pyset = timed(sub, bc_udf(F.expr(code)), m, "broadcast Python set + UDF", sub.limit(2000))
        print(f"  INSET / array_contains = {inset / scan:.0f}x; INSET / broadcast-set UDF = {inset / pyset:.0f}x")
        sub.unpersist()
    data.unpersist()
    return 1 if any(d for *_, d in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
