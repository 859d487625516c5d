"""A reference for the Spark stage: base.population's golden records built with DuckDB SQL over the
same raw Delta/Parquet files, checked row for row against Spark's, with the Spark/DuckDB time ratio.

    .venv/bin/python scripts/bench_reference.py --scale 0.1     # generate, land, then compare
    .venv/bin/python scripts/bench_reference.py --root LAKE     # an existing lake (raw tables landed)

What both sides compute, from the contract (contracts/tables/base_population.yaml) and the same
inputs (the raw tables of the four population sources and the record-linkage decisions in
quality/record_links, which Splink already computes with DuckDB):

* per source, duplicates within a file (same unique key, later row): findings ``duplicate_record`` /
  ``id_name_conflict``; the newest delivery's best row per entity (business date, batch, own key
  before linked, the contract's order, row), dropped when it is a deletion; an entity whose current
  rows are all linked ones (no source's row carries its key itself any more) has no golden record;
* per column, the authority's value, else the first fallback's, else the derivation (gender and birth
  date from the ID number, the surrogate id from its hash), with ``_lineage`` (source, batch, file,
  row of the value);
* conflicts and findings: every cross-checked copy that differs from the chosen value (legal-form
  spellings and full-width brackets compared equal), and the cross rule death_not_propagated.

Spark's side is ``jobs.base.golden.golden_records`` (the code the pipeline runs); DuckDB's is the SQL
below, written independently from the contract. Both write their three results to Parquet (so both
pay for materialising them); the script compares golden rows (every column, ``_lineage`` included),
conflicts and findings as multisets and prints the two times and their ratio.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABLE = "base.population"


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def comparable(expr: str) -> str:
    return f"replace(translate(CAST({expr} AS VARCHAR), '（）', '()'), '有限责任公司', '有限公司')"


def duckdb_sql(tc, contracts, sources: list[str], has_links: bool) -> dict[str, str]:
    """The SQL statements (views, then three SELECTs) of the DuckDB reference."""
    from jobs.base.golden import _name_column, sources_used

    stmts: list[str] = []
    used = [s for s in sources_used(tc) if s in sources]
    for s in used:
        sc = contracts.source(s)
        derived = "".join(f", {expr} AS {q(name)}" for name, expr in sc.derived_columns.items())
        key = f"upper({q(sc.entity_key)})"
        if has_links and sc.entity_key_optional:
            key = (f"coalesce({key}, (SELECT l.linked_key FROM links l WHERE l.source = '{s}' AND "
                   f"l.decision = 'linked' AND l.record_key = r.{q(sc.record_key)} AND l._batch_id = r._batch_id))")
            linked = f"({q(sc.entity_key)} IS NULL)"
        else:
            linked = "false"
        stmts.append(f"CREATE VIEW p_{s} AS SELECT *, {key} AS _key, {linked} AS _linked FROM "
                     f"(SELECT *{derived} FROM raw_{s}) r")
        others = [c for c in sc.unique_key if c != sc.entity_key]
        part = ", ".join(["_key", *[q(c) for c in others], "_batch_id", "_linked"])
        name_col = _name_column(tc, s)
        stmts.append(f"""CREATE VIEW n_{s} AS SELECT *,
            CASE WHEN _linked THEN 1 ELSE row_number() OVER (PARTITION BY {part} ORDER BY _row) END AS _n_uk,
            {f"first({comparable(q(name_col))}) OVER (PARTITION BY {part} ORDER BY _row ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)" if name_col else "NULL"} AS _first_name
            FROM p_{s} WHERE _key IS NOT NULL""")
        order = f"({sc.entity_order}) ASC NULLS LAST, " if sc.entity_order else ""
        stmts.append(f"""CREATE VIEW l_{s} AS SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY _key ORDER BY
            _as_of DESC, _batch_id DESC, _linked ASC, {order}_row ASC) AS _best FROM n_{s} WHERE _n_uk = 1)
            WHERE _best = 1 AND coalesce(_op, 'I') <> 'D'""")
    # the joined sources: one row per entity
    cols_per = {}
    for s in used:
        sc = contracts.source(s)
        sel = ["_key"]
        for c in tc.columns:
            if s == c.authority or s in c.fallback:
                sel.append(f"{q(c.sources.get(s, c.name))} AS {q(c.name + '__' + s)}")
        sel += [f"_batch_id AS _batch__{s}", f"{q(sc.record_key)} AS _rk__{s}", f"_file_sha256 AS _sha__{s}",
                f"_row AS _row__{s}", f"_linked AS _linked__{s}"]
        cols_per[s] = sel
    joined = f"SELECT * FROM (SELECT DISTINCT _key FROM ({' UNION ALL '.join(f'SELECT _key FROM l_{s}' for s in used)})) k"
    for s in used:
        joined += f" LEFT JOIN (SELECT {', '.join(cols_per[s])} FROM l_{s}) j_{s} USING (_key)"
    joined += " WHERE " + " OR ".join(f"coalesce(NOT _linked__{s}, false)" for s in used)  # own key somewhere
    stmts.append(f"CREATE VIEW joined AS {joined}")

    derive = {
        "gender_from_id": "CASE WHEN regexp_matches(_key, '^[0-9]{17}') THEN CASE WHEN CAST(substr(_key, 17, 1) AS INT) % 2 = 1 THEN '男' ELSE '女' END END",
        "birth_date_from_id": "CASE WHEN regexp_matches(_key, '^[0-9]{17}') THEN try_strptime(substr(_key, 7, 8), '%Y%m%d')::DATE END",
    }
    golden_cols, lineage_k, lineage_v, conflicts, found = [], [], [], [], []
    for c in tc.columns:
        if c.authority == "derived":
            expr = "'P' || substr(sha256(_key), 1, 16)" if c.derive == "surrogate_id" else derive[c.derive]
            golden_cols.append(f"CAST({expr} AS {duck_type(c.type)}) AS {q(c.name)}")
            continue
        chain = [s for s in (c.authority, *c.fallback) if s in used]
        values = [q(f"{c.name}__{s}") for s in chain]
        origins = [f"CASE WHEN {v} IS NOT NULL THEN {{'source': '{s}', 'batch_id': _batch__{s}, 'file_sha256': _sha__{s}, "
                   f"'row': CAST(_row__{s} AS BIGINT)}} END" for v, s in zip(values, chain)]
        if c.derive:
            values.append(derive[c.derive])
            origins.append(f"CASE WHEN {derive[c.derive]} IS NOT NULL THEN {{'source': 'derived:{c.derive}', "
                           "'batch_id': NULL::VARCHAR, 'file_sha256': NULL::VARCHAR, 'row': NULL::BIGINT} END")
        chosen = f"CAST(coalesce({', '.join(values)}) AS {duck_type(c.type)})" if values else "NULL"
        golden_cols.append(f"{chosen} AS {q(c.name)}")
        lineage_k.append(f"'{c.name}'")
        lineage_v.append(f"coalesce({', '.join(origins)})" if origins else "NULL")
        if c.cross_check and len(chain) > 1:
            origin = "coalesce(" + ", ".join(f"CASE WHEN {v} IS NOT NULL THEN '{s}' END" for v, s in zip(values, chain)) + ")"
            differs = {s: (f"({q(c.name + '__' + s)} IS NOT NULL AND {origin} <> '{s}' AND NOT _linked__{s} AND "
                           f"{comparable(q(c.name + '__' + s))} <> {comparable(chosen)})") for s in chain}
            copies = "map_from_entries(list_filter([" + ", ".join(
                f"CASE WHEN {q(c.name + '__' + s)} IS NOT NULL THEN {{'key': '{s}', 'value': CAST({q(c.name + '__' + s)} AS VARCHAR)}} END"
                for s in chain) + "], lambda x: x IS NOT NULL))"
            conflicts.append(f"SELECT '{tc.domain}' AS domain, _key AS entity_key, '{c.name}' AS attribute, "
                             f"'consistency.authority' AS rule, {origin} AS authority_source, CAST({chosen} AS VARCHAR) "
                             f"AS authority_value, {copies} AS \"values\" FROM joined WHERE "
                             + " OR ".join(f"coalesce({d}, false)" for d in differs.values()))
            for s in chain:
                sc = contracts.source(s)
                found.append(f"SELECT '{s}' AS source, _rk__{s} AS record_key, '{c.sources.get(s, c.name)}' AS field, "
                             f"'consistency.authority' AS rule, '{c.name}_mismatch' AS defect_type, _key AS entity_key, "
                             f"_batch__{s} AS _batch_id, CAST(_row__{s} AS BIGINT) AS _row FROM joined "
                             f"WHERE coalesce({differs[s]}, false)")
    if "death_not_propagated" in tc.cross_rules:
        st = tc.column("register_status").authority
        death = tc.column("death_date")
        srcs = [s for s in (death.authority, *death.fallback) if s in used]
        if st in used and srcs:
            reported = f"coalesce({', '.join(q('death_date__' + s) for s in srcs)})"
            cond = f"register_status__{st} = '正常' AND {reported} IS NOT NULL"
            reporter = "coalesce(" + ", ".join(f"CASE WHEN {q('death_date__' + s)} IS NOT NULL THEN '{s}' END" for s in srcs) + ")"
            vals = "map_from_entries(list_filter([" + ", ".join(
                [f"CASE WHEN register_status__{st} IS NOT NULL THEN {{'key': '{st}', 'value': CAST(register_status__{st} AS VARCHAR)}} END"]
                + [f"CASE WHEN {q('death_date__' + s)} IS NOT NULL THEN {{'key': '{s}', 'value': CAST({q('death_date__' + s)} AS VARCHAR)}} END" for s in srcs]) + "], lambda x: x IS NOT NULL))"
            conflicts.append(f"SELECT '{tc.domain}' AS domain, _key AS entity_key, 'register_status' AS attribute, "
                             f"'cross.death_not_propagated' AS rule, {reporter} AS authority_source, '死亡 ' || "
                             f"CAST({reported} AS VARCHAR) AS authority_value, {vals} AS \"values\" FROM joined WHERE {cond}")
            found.append(f"SELECT '{st}' AS source, _rk__{st} AS record_key, 'register_status' AS field, "
                         f"'cross.death_not_propagated' AS rule, 'death_not_propagated' AS defect_type, _key AS entity_key, "
                         f"_batch__{st} AS _batch_id, CAST(_row__{st} AS BIGINT) AS _row FROM joined WHERE {cond}")
    for s in used:
        sc = contracts.source(s)
        name_col = _name_column(tc, s)
        kind = (f"CASE WHEN {comparable(q(name_col))} <> _first_name THEN 'id_name_conflict' ELSE 'duplicate_record' END"
                if name_col else "'duplicate_record'")
        found.append(f"SELECT '{s}' AS source, {q(sc.record_key)} AS record_key, CASE WHEN {kind} = 'id_name_conflict' "
                     f"THEN '{name_col}' ELSE '{sc.entity_key}' END AS field, CASE WHEN {kind} = 'id_name_conflict' THEN "
                     f"'duplicate.name_conflict' ELSE 'duplicate.entity_key' END AS rule, {kind} AS defect_type, "
                     f"_key AS entity_key, _batch_id, CAST(_row AS BIGINT) AS _row FROM n_{s} WHERE _n_uk > 1")
    golden = (f"SELECT {', '.join(golden_cols)}, map([{', '.join(lineage_k)}], [{', '.join(lineage_v)}]) AS _lineage "
              "FROM joined")
    return {"views": stmts, "golden": golden, "conflicts": " UNION ALL ".join(conflicts),
            "findings": " UNION ALL ".join(found)}


def duck_type(t: str) -> str:
    return {"string": "VARCHAR", "date": "DATE", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE"}.get(t, t)


def run_duckdb(settings, tc, contracts, sources: list[str], out: Path) -> float:
    import duckdb
    from deltalake import DeltaTable

    from lake import io

    t0 = time.time()
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    for s in sources:
        con.register(f"raw_{s}", DeltaTable(io.table_path(settings, "raw", s)).to_pyarrow_dataset())
    lpath = io.path_of(settings, "quality.record_links")
    has_links = os.path.isdir(os.path.join(lpath, "_delta_log"))
    if has_links:
        con.register("links_all", DeltaTable(lpath).to_pyarrow_dataset())
        con.execute(f"CREATE VIEW links AS SELECT * FROM links_all WHERE run_id = 'links-{tc.table}'")
    sql = duckdb_sql(tc, contracts, sources, has_links)
    for v in sql["views"]:
        con.execute(v)
    con.execute("CREATE TABLE joined_t AS SELECT * FROM joined")  # materialised once, read three times
    con.execute("DROP VIEW joined")
    con.execute("ALTER TABLE joined_t RENAME TO joined")
    for name in ("golden", "conflicts", "findings"):
        con.execute(f"COPY ({sql[name]}) TO '{out / (name + '_duckdb.parquet')}' (FORMAT parquet)")
    con.close()
    return time.time() - t0


def run_spark(settings, tc, contracts, sources: list[str], out: Path) -> float:
    from pyspark.sql import functions as F

    from jobs.base import golden
    from lake import io
    from lake.spark import get_spark

    spark = get_spark(settings)
    t0 = time.time()
    raw = {s: io.read(spark, io.table_path(settings, "raw", s)) for s in sources}
    lpath = io.path_of(settings, "quality.record_links")
    links = io.read(spark, lpath).where(F.col("run_id") == f"links-{tc.table}") if io.is_table(spark, lpath) else None
    g, found, conflicts = golden.golden_records(tc, contracts, raw, links, persist=True)
    g.drop(golden.KEY).write.mode("overwrite").parquet(str(out / "golden_spark.parquet"))
    conflicts.drop("run_id").write.mode("overwrite").parquet(str(out / "conflicts_spark.parquet"))
    found.select("source", "record_key", "field", "rule", "defect_type", "entity_key", "_batch_id", "_row").write.mode(
        "overwrite").parquet(str(out / "findings_spark.parquet"))
    seconds = time.time() - t0
    spark.catalog.clearCache()
    return seconds


def _norm(v):
    if isinstance(v, list) and v and isinstance(v[0], tuple):  # a map as pyarrow gives it
        return tuple(sorted((k, _norm(x)) for k, x in v))
    if isinstance(v, dict):
        return tuple(sorted((k, _norm(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v


def _rows(con, path: str, columns: list[str]):
    """The rows of a Parquet file or folder as normalised tuples of ``columns``, streamed in batches."""
    reader = con.sql(f"SELECT {', '.join(q(c) for c in columns)} FROM read_parquet('{path}')").to_arrow_reader(50_000)
    for batch in reader:
        for r in batch.to_pylist():
            yield tuple(_norm(r[c]) for c in columns)


def _digest(row: tuple) -> bytes:
    return hashlib.blake2b(repr(row).encode(), digest_size=16).digest()


def compare(out: Path) -> dict:
    """Spark's and DuckDB's results as multisets of rows, compared through a digest per row (streamed:
    at scale 1.0 the golden rows with their lineage do not fit in memory as Python tuples)."""
    import duckdb

    res = {}
    con = duckdb.connect()
    for name in ("golden", "conflicts", "findings"):
        pa_, pb = f"{out / (name + '_spark.parquet')}/*.parquet", str(out / (name + '_duckdb.parquet'))
        ca = [d[0] for d in con.sql(f"SELECT * FROM read_parquet('{pa_}') LIMIT 0").description]
        cb = [d[0] for d in con.sql(f"SELECT * FROM read_parquet('{pb}') LIMIT 0").description]
        same_columns = sorted(ca) == sorted(cb)
        na = con.sql(f"SELECT count(*) FROM read_parquet('{pa_}')").fetchall()[0][0]
        nb = con.sql(f"SELECT count(*) FROM read_parquet('{pb}')").fetchall()[0][0]
        res[name] = {"spark_rows": na, "duckdb_rows": nb, "columns_equal": same_columns, "equal": False}
        if not same_columns:
            continue
        counts = Counter(_digest(r) for r in _rows(con, pa_, ca))
        counts.subtract(Counter(_digest(r) for r in _rows(con, pb, ca)))
        diff = {k: v for k, v in counts.items() if v}
        res[name]["equal"] = not diff
        if diff:
            def examples(path: str, sign: int) -> list[str]:
                found = []
                for r in _rows(con, path, ca):
                    if diff.get(_digest(r), 0) * sign > 0:
                        found.append(str(r)[:300])
                        if len(found) == 2:
                            break
                return found

            res[name]["only_spark"] = examples(pa_, 1)
            res[name]["only_duckdb"] = examples(pb, -1)
    con.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--root", help="an existing lake whose raw population tables are landed")
    args = ap.parse_args()
    from lake import contracts as contracts_mod
    from lake.settings import Settings
    from scripts.yardstick import announce

    announce()
    if args.root:
        settings = Settings.from_env(root=args.root)
    else:
        from jobs.base import golden, incremental
        from jobs.landing import ingest
        from sample.generate import generate

        work = Path(tempfile.mkdtemp(prefix="bench_reference_"))
        settings = Settings.from_env(root=str(work / "lake"))
        t = time.time()
        generate(args.scale, args.seed, work / "inbox", iot_days=0)
        print(f"generated scale {args.scale} in {time.time() - t:.0f}s")
        contracts = contracts_mod.load(settings.contracts_dir)
        srcs = golden.sources_used(contracts.table(TABLE))
        t = time.time()
        ingest.run_many(settings, [(s, p) for s in srcs for p in sorted((work / "inbox" / s).iterdir())])
        print(f"landed {len(srcs)} sources in {time.time() - t:.0f}s")
        t = time.time()
        r = incremental.build_table(settings, TABLE, "2026-11-01")
        print(f"lake build of {TABLE} (links, golden records, findings, gate, history): {time.time() - t:.0f}s, "
              f"{r['rows']:,} rows")
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(TABLE)
    from jobs.base.golden import sources_used
    from lake import io

    sources = [s for s in sources_used(tc) if os.path.isdir(os.path.join(io.table_path(settings, "raw", s), "_delta_log"))]
    out = Path(tempfile.mkdtemp(prefix="bench_reference_out_"))
    t_spark = run_spark(settings, tc, contracts, sources, out)
    t_duck = run_duckdb(settings, tc, contracts, sources, out)
    res = compare(out)
    rows = res["golden"]["spark_rows"]
    print(json.dumps(res, ensure_ascii=False, indent=2))
    print(f"golden records of {TABLE}: {rows:,} rows; Spark {t_spark:.1f}s ({rows / t_spark:,.0f} rows/s), "
          f"DuckDB {t_duck:.1f}s ({rows / t_duck:,.0f} rows/s); Spark/DuckDB = {t_spark / t_duck:.2f}")
    ok = all(v["equal"] for v in res.values())
    print("equal row for row: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
