"""scripts/bench_reference.py, the DuckDB reference for the Spark golden-record stage (issue 17 item 6): on
the tiny lake, base.population's golden rows (with ``_lineage``), conflicts and findings computed by the
independent DuckDB SQL equal Spark's row for row. Without this test a SQL the pinned DuckDB refuses (it
once used the deprecated ``x -> ...`` lambda) was found only by a full-scale benchmark run."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_reference", REPO / "scripts" / "bench_reference.py")
bench_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_reference)


def test_duckdb_reference_equals_spark_on_the_tiny_lake(tiny_lake, tmp_path):
    from jobs.base.golden import sources_used
    from lake import contracts as contracts_mod
    from lake import io

    settings = tiny_lake["settings"]
    contracts = contracts_mod.load(settings.contracts_dir)
    tc = contracts.table(bench_reference.TABLE)
    sources = [s for s in sources_used(tc) if (Path(io.table_path(settings, "raw", s)) / "_delta_log").is_dir()]
    assert len(sources) >= 3, sources  # the population sources were landed
    bench_reference.run_spark(settings, tc, contracts, sources, tmp_path)
    bench_reference.run_duckdb(settings, tc, contracts, sources, tmp_path)
    res = bench_reference.compare(tmp_path)
    assert set(res) == {"golden", "conflicts", "findings"}
    for name, r in res.items():
        assert r["columns_equal"] and r["equal"], (name, r)
    assert res["golden"]["spark_rows"] > 1000 and res["findings"]["spark_rows"] > 0
