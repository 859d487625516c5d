"""Small-cell suppression with complementary suppression (opendata/cells.py, jobs/publish/open.aggregate_files),
proved by trying to recompute every blank cell from what is published: a brute-force enumeration of
every table of whole numbers that agrees with the published cells, row, column and grand totals."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from jobs.publish import open as publish
from lake import contracts as contracts_mod
from opendata import cells, deid

REPO = Path(__file__).resolve().parent.parent


def brute_force(table: cells.Table, blank: set[tuple], limit: int = 2_000_000) -> dict[tuple, set[int]]:
    """Every value each blank cell takes in some table of whole numbers >= 1 (a published row) that
    agrees with every published count and every total: an exhaustive depth-first search over the
    blanks, each in [1, its smallest published total]; a blank whose equation has no other unknown
    left is computed from it (and checked) instead of tried, and an equation whose unknowns cannot
    reach its total any more cuts the branch."""
    var = sorted(blank, key=cells._sort_key)
    known = {k: v for k, v in table.counts.items() if k not in blank}
    eqs = [(t, p) for t, p in table.equations() if t in blank or any(x in blank for x in p)]
    grand = tuple(cells.TOTAL for _ in table.dims)
    cap = known.get(grand) or sum(v for k, v in known.items() if cells.TOTAL not in k) * 2 + 10
    upper = {c: min([known[t] for t, p in eqs if c in p and t in known] + [cap]) for c in var}
    of = {c: [i for i, (t, p) in enumerate(eqs) if c == t or c in p] for c in var}
    seen: dict[tuple, set[int]] = {c: set() for c in var}
    value: dict[tuple, int] = {}
    steps = [0]

    def val(x):
        return value.get(x, known.get(x))

    def state(i):
        """(ok, forced cell, its value) for equation i."""
        t, p = eqs[i]
        open_ = [x for x in [t, *p] if val(x) is None]
        parts = sum(val(x) for x in p if val(x) is not None)
        if not open_:
            return val(t) == parts, None, None
        if len(open_) == 1:
            x = open_[0]
            v = parts if x == t else val(t) - parts
            return 1 <= v <= upper.get(x, cap), x, v
        if val(t) is not None and t not in open_:  # only parts open: each at least 1
            return parts + len(open_) <= val(t), None, None
        return True, None, None

    def propagate(assigned: list) -> bool:
        todo = set(i for c in assigned for i in of[c])
        while todo:
            i = todo.pop()
            ok, x, v = state(i)
            if not ok:
                return False
            if x is not None:
                value[x] = v
                assigned.append(x)
                todo.update(of[x])
        return True

    def go() -> None:
        steps[0] += 1
        assert steps[0] < limit, "brute force too large for this test table"
        free = [c for c in var if c not in value]
        if not free:
            for c in var:
                seen[c].add(value[c])
            return
        c = min(free, key=lambda c: upper[c])
        for v in range(1, upper[c] + 1):
            value[c] = v
            assigned = [c]
            if propagate(assigned):
                go()
            for x in assigned:
                del value[x]

    go()
    return seen


def random_rows(rng: random.Random, shape: tuple[int, ...], zero: float = 0.2, high: int = 14) -> list[dict]:
    dims = [f"d{i}" for i in range(len(shape))]
    rows = []
    for cell in itertools.product(*[range(n) for n in shape]):
        if rng.random() < zero:
            continue
        rows.append({**{d: f"v{x}" for d, x in zip(dims, cell)}, "n": rng.randint(1, high)})
    return rows


@pytest.mark.parametrize("seed", range(30))
def test_no_blank_cell_can_be_recomputed_2d(seed):
    rng = random.Random(seed)
    rows = random_rows(rng, (rng.randint(2, 4), rng.randint(2, 4)))
    if not rows:
        return
    p = cells.protect(rows, ["d0", "d1"], "n", 5)
    assert all(0 < p.table.counts[c] < 5 for c in p.primary)
    assert all(c in p.blank for c, v in p.table.counts.items() if 0 < v < 5)
    for c, values in brute_force(p.table, p.blank).items():
        assert p.table.counts[c] in values
        assert len(values) >= 2, f"seed {seed}: blank {c} can only be {values}"


@pytest.mark.parametrize("seed", range(12))
def test_no_blank_cell_can_be_recomputed_3d(seed):
    rng = random.Random(100 + seed)
    rows = random_rows(rng, (2, rng.randint(2, 3), 2), zero=0.15, high=16)
    if not rows:
        return
    p = cells.protect(rows, ["d0", "d1", "d2"], "n", 5)
    for c, values in brute_force(p.table, p.blank).items():
        assert len(values) >= 2, f"seed {seed}: blank {c} can only be {values}"


@pytest.mark.parametrize("seed, high", [(500, 6), (501, 9), (506, 9), (507, 9)])
def test_carrying_the_free_cells_over_rounds_gives_what_a_fresh_audit_gives(seed, high):
    """``protect`` keeps the blanks shown not recomputable from round to round (more blanks only widen
    what is published); the result is the same as auditing every round from scratch: no blank of
    the final table is pinned by a fresh audit, and the rounds and blanks equal a protect whose audit
    never reuses anything (a map-like grid x category table, which takes several rounds)."""
    rows = random_rows(random.Random(seed), (40, 6), zero=0.3, high=high)
    p = cells.protect(rows, ["d0", "d1"], "n", 5)
    assert cells.exposed(p.table, p.blank) == []
    original = cells.exposed  # the reference: every round audited from scratch
    try:
        cells.exposed = lambda table, blank, samples=12, free=None: original(table, blank, samples)
        q = cells.protect(rows, ["d0", "d1"], "n", 5)
    finally:
        cells.exposed = original
    assert (q.blank, q.rounds) == (p.blank, p.rounds) and p.rounds >= 2, (p.rounds, len(p.blank))


def test_a_sparse_3d_table_of_ones_is_protected():
    """Found on the tiny lake (entities by town, industry and status): a partner blanked for one
    exposed cell protects the next as well; protection goes on instead of giving up on the second."""
    rows = [{"town": "清源街道", "industry": "L", "status": "closed", "n": 1},
            {"town": "林校路街道", "industry": "M", "status": "active", "n": 1},
            {"town": "清源街道", "industry": "L", "status": "active", "n": 1},
            {"town": "礼贤镇", "industry": "E", "status": "active", "n": 1},
            {"town": "礼贤镇", "industry": "F", "status": "active", "n": 1}]
    p = cells.protect(rows, ["town", "industry", "status"], "n", 5)
    assert p.primary and not cells.exposed(p.table, p.blank)
    for c, values in brute_force(p.table, p.blank).items():
        assert len(values) >= 2, f"blank {c} can only be {values}"


def test_primary_suppression_alone_is_recomputed_by_the_oracle():
    """The oracle bites: blanking only the small cells of a table with its totals gives them away."""
    rows = [{"d0": "a", "d1": "x", "n": 3}, {"d0": "a", "d1": "y", "n": 12}, {"d0": "b", "d1": "x", "n": 9},
            {"d0": "b", "d1": "y", "n": 20}]
    table = cells.build_table(rows, ["d0", "d1"], "n")
    primary = {k for k, v in table.counts.items() if 0 < v < 5}
    assert primary == {("a", "x")}
    assert brute_force(table, primary) == {("a", "x"): {3}}
    p = cells.protect(rows, ["d0", "d1"], "n", 5)
    assert p.blank == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}  # a whole rectangle: each cell moves by one
    assert brute_force(p.table, p.blank)[("a", "x")] == set(range(1, 12))  # (a,y) = 15 - x and (b,x) = 12 - x stay >= 1
    assert cells.exposed(p.table, primary) == [("a", "x")]  # the linear programme finds it too


def test_ranges_of_the_linear_programme_bound_the_brute_force():
    rng = random.Random(7)
    for _ in range(10):
        rows = random_rows(rng, (3, 3))
        if not rows:
            continue
        p = cells.protect(rows, ["d0", "d1"], "n", 5)
        exact = brute_force(p.table, p.blank)
        for c, (lo, hi) in cells.ranges(p.table, p.blank).items():
            assert lo - 1e-6 <= min(exact[c]) and max(exact[c]) <= hi + 1e-6


def test_population_files_publish_totals_and_survive_the_attack():
    contracts = contracts_mod.load(str(REPO / "contracts"))
    tc = contracts.table("topic.population_by_town_age_band")
    rng = random.Random(5)
    rows = [(t, a, g, rng.choice([1, 2, 3, 4, 6, 9, 15, 30, 80]))
            for t in ("黄村镇", "旧宫镇", "西红门镇") for a in ("0-17", "18-34", "60-79") for g in ("男", "女") if rng.random() < 0.9]
    pdf = pd.DataFrame(rows, columns=tc.column_names).astype(object)
    files, _ = publish.candidate(None, None, tc, pdf, "2026-11-01", None)
    meta = json.loads(files["metadata.json"])
    assert "totals.csv" in [d["file"] for d in meta["distributions"]]
    assert meta["kind"] == "aggregate" and "互补" in meta["suppression"]
    assert meta["suppression_detail"]["method"] == "primary+complementary" and meta["suppression_detail"]["threshold"] == 5
    _, data_rows = deid.read_csv(files["data.csv"])
    header, total_rows = deid.read_csv(files["totals.csv"])
    assert header == ["town", "age_band", "gender", "persons"]
    published = [int(r["persons"]) for r in [*data_rows, *total_rows] if r["persons"] is not None]
    assert published and min(published) >= 5
    truth = {(t, a, g): n for t, a, g, n in rows}
    grand = [r for r in total_rows if r["town"] == r["age_band"] == r["gender"] == cells.TOTAL][0]
    assert int(grand["persons"]) == sum(truth.values())  # a user gets the true total
    table, blank = cells.read_published(data_rows, total_rows, ["town", "age_band", "gender"], "persons")
    assert blank and {k for k in blank if cells.TOTAL not in k} >= {k for k, v in truth.items() if v < 5}
    for key in blank:  # the attacker's knowledge holds the truth, but not only the truth
        if cells.TOTAL not in key:
            table.counts[key] = truth[key]
    full = cells.build_table([{"town": t, "age_band": a, "gender": g, "persons": n} for (t, a, g), n in truth.items()],
                             ["town", "age_band", "gender"], "persons")
    assert cells.exposed(full, blank) == []
    lp = cells.ranges(full, blank)
    assert all(hi - lo >= 1 for lo, hi in lp.values())


def test_a_total_label_in_the_data_is_an_error():
    with pytest.raises(ValueError, match="has a value '合计'"):
        cells.build_table([{"d": "合计", "n": 4}], ["d"], "n")


def test_the_validation_run_id_does_not_depend_on_the_order_of_the_rows():
    """check_files names the open gate's validation run by a digest of the frame: toPandas gives rows in
    the partitions' order, which differs between local[2] and a cluster (tests/test_cluster.py)."""
    df = pd.DataFrame({"town_code": ["110115001", "110115002", "110115003"], "n": [7, None, 12]})
    shuffled = df.iloc[[2, 0, 1]].reset_index(drop=True)
    assert publish.frame_digest(df) == publish.frame_digest(shuffled)
    assert publish.frame_digest(df) != publish.frame_digest(df.assign(n=[7, None, 13]))
