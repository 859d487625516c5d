"""scripts/compare_lakes.py, the proof that a code change leaves the lake unchanged: it must see every
difference that matters and none that does not (row order, a run's wall clock)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare_lakes", REPO / "scripts" / "compare_lakes.py")
compare_lakes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_lakes)


def _lake(root: Path, rows: list[dict], open_text: str = "a,b\n") -> Path:
    write_deltalake(str(root / "base" / "t"), pa.Table.from_pylist(rows))
    (root / "open" / "d").mkdir(parents=True)
    (root / "open" / "d" / "data.csv").write_text(open_text, encoding="utf-8")
    return root


ROWS = [{"k": 1, "v": "x", "_ingested_at": "2026-12-01"}, {"k": 2, "v": "y", "_ingested_at": "2026-12-01"}]


def test_same_content_in_another_order_and_time_is_the_same(tmp_path, capsys):
    a = _lake(tmp_path / "a", ROWS)
    b = _lake(tmp_path / "b", [dict(r, _ingested_at="2026-12-06") for r in reversed(ROWS)])
    assert compare_lakes.main([str(a), str(b)]) == 0
    assert "base/t" in capsys.readouterr().out


def test_a_changed_value_a_missing_table_and_a_changed_file_are_differences(tmp_path, capsys):
    a = _lake(tmp_path / "a", ROWS)
    b = _lake(tmp_path / "b", [ROWS[0], dict(ROWS[1], v="z")], open_text="a,b\n1,2\n")
    write_deltalake(str(a / "quality" / "extra"), pa.Table.from_pylist([{"x": 1}]))
    assert compare_lakes.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "base/t" in out and "DIFFERENT: content" in out
    assert "quality/extra" in out and "only in A" in out
    assert "open/d/data.csv" in out
    # a column left out on purpose no longer counts
    assert compare_lakes.main([str(a), str(b), "--ignore-columns", "v", "--ignore-tables", "quality/extra"]) == 1  # the file still differs


def test_the_catalogues_wall_clocks_are_left_out_but_its_content_is_not(tmp_path, capsys):
    """catalog/resources' last_updated and the chain's block time (with the hashes that cover it) differ
    between two runs of the same lake; a resource's content or a block's content_hash does not."""
    a, b = _lake(tmp_path / "a", ROWS), _lake(tmp_path / "b", ROWS)
    res = {"resource_id": "r1", "abstract": "x", "last_updated": "2026-12-07T04:23:51"}
    block = {"index": 1, "at": "2026-12-07 04:44:16", "content_hash": "c1", "prev_hash": "p1", "hash": "h1"}
    for root, when, h in ((a, "04:23:51", "h1"), (b, "04:25:31", "h2")):
        write_deltalake(str(root / "catalog" / "resources"), pa.Table.from_pylist([dict(res, last_updated=when)]))
        write_deltalake(str(root / "catalog" / "chain"), pa.Table.from_pylist([dict(block, at=when, hash=h, prev_hash=h)]))
    assert compare_lakes.main([str(a), str(b)]) == 0
    write_deltalake(str(b / "catalog" / "chain"), pa.Table.from_pylist([dict(block, content_hash="c2")]), mode="overwrite")
    assert compare_lakes.main([str(a), str(b)]) == 1
    assert "catalog/chain" in capsys.readouterr().out
