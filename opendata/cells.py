"""Small-cell suppression with complementary suppression for aggregate open datasets (counts of people
or entities), and the audit that tries to recompute every suppressed cell.

An aggregate is a table of counts over its dimensions (the key columns of its contract). It is
published with all its margins: ``data.csv`` holds the cells, ``totals.csv`` every total (a
dimension's value replaced by ``合计``: per town over all ages and genders, ..., the grand total), so
that a user gets true totals although cells are blank. What an attacker has is then every published
cell and total and the additivity of the table (each total is the sum of the cells it covers), and
that every count published as a row is at least 1.

``protect``: 1. primary suppression: every cell or total with 0 < count < threshold is blanked;
2. complementary suppression: in every additivity equation (a total and the cells it sums) holding
exactly one blank, the smallest other non-zero value is blanked too (cells before totals), until no
equation has a single blank; 3. the audit (``exposed``): for each blank, the smallest and the largest
value it can take given everything published (two linear programmes, scipy's HiGHS); a blank whose
range holds a single whole number can be recomputed, so the smallest other value in one of its
equations is blanked as well, and 2-3 repeat until no blank can be recomputed.

The linear programmes are the attacker's relaxation: a range of width >= 1 in the relaxation can, in
three or more dimensions, still hold only one integer solution; ``tests/test_opendata_cells.py``
checks the result against an exact brute-force enumeration of the integer tables on small inputs.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

TOTAL = "合计"
EPS = 1e-6


@dataclass
class Table:
    """The full table: interior cells and margins, keyed by tuples of dimension values (``TOTAL``
    for a summed dimension); only non-zero counts are stored (an absent key is a known 0)."""
    dims: list[str]
    values: list[list[str]]           # each dimension's values, sorted
    counts: dict[tuple, int]          # every non-zero cell and margin

    def equations(self) -> list[tuple[tuple, list[tuple]]]:
        """(total, [cells it sums]) for every total and every dimension it sums over (non-zero cells only)."""
        out = []
        for key in sorted(self.counts, key=_sort_key):
            for d, v in enumerate(key):
                if v != TOTAL:
                    continue
                parts = [key[:d] + (x,) + key[d + 1:] for x in self.values[d]]
                out.append((key, [p for p in parts if p in self.counts]))
        return out


def _sort_key(key: tuple) -> tuple:
    return tuple((v == TOTAL, v) for v in key)


def build_table(rows: list[dict], dims: list[str], count: str) -> Table:
    """The full table (cells + every margin) from interior rows (a row per non-zero cell)."""
    values = [sorted({str(r[d]) for r in rows}) for d in dims]
    for d, vs in zip(dims, values):
        if TOTAL in vs:
            raise ValueError(f"dimension '{d}' has a value '{TOTAL}', which marks totals")
    counts: dict[tuple, int] = {}
    for r in rows:
        n = int(r[count])
        if n == 0:
            continue
        cell = tuple(str(r[d]) for d in dims)
        if cell in counts:
            raise ValueError(f"cell {cell} appears twice")
        for mask in itertools.product((False, True), repeat=len(dims)):
            key = tuple(TOTAL if m else v for m, v in zip(mask, cell))
            counts[key] = counts.get(key, 0) + n
    return Table(list(dims), values, counts)


# ----------------------------------------------------------------------------------- the attacker

def _system(table: Table, var: list[tuple]):
    """The additivity equations restricted to the blank cells ``var``: A x = b."""
    import numpy as np
    from scipy.sparse import csr_matrix

    index = {c: i for i, c in enumerate(var)}
    data, rows, cols, b = [], [], [], []
    for total, parts in table.equations():
        if total not in index and not any(p in index for p in parts):
            continue
        rhs = 0.0
        for p in parts:
            if p in index:
                data.append(1.0), rows.append(len(b)), cols.append(index[p])
            else:
                rhs -= table.counts[p]
        if total in index:
            data.append(-1.0), rows.append(len(b)), cols.append(index[total])
        else:
            rhs += table.counts[total]
        b.append(rhs)
    return csr_matrix((data, (rows, cols)), shape=(len(b), len(var))), np.array(b), index


def ranges(table: Table, blank: set[tuple], cells: list[tuple] | None = None) -> dict[tuple, tuple[float, float]]:
    """For each blank cell (or those in ``cells``), the smallest and largest value consistent with every
    published count, the additivity of the table and counts >= 1 (linear relaxation; max may be inf):
    what an attacker can work out. Two linear programmes per cell (scipy's HiGHS)."""
    import numpy as np
    from scipy.optimize import linprog

    var = sorted(blank, key=_sort_key)
    if not var:
        return {}
    a_eq, b_eq, index = _system(table, var)
    kw = {"A_eq": a_eq, "b_eq": b_eq} if len(b_eq) else {}
    out = {}
    for c in (cells if cells is not None else var):
        obj = np.zeros(len(var))
        obj[index[c]] = 1.0
        lo = linprog(obj, bounds=[(1, None)] * len(var), method="highs", **kw)
        hi = linprog(-obj, bounds=[(1, None)] * len(var), method="highs", **kw)
        if lo.status != 0:
            raise RuntimeError(f"the published table is inconsistent ({lo.message})")
        out[c] = (lo.fun, math.inf if hi.status == 3 else -hi.fun)
    return out


def _pinned(lo: float, hi: float) -> bool:
    """True when [lo, hi] holds a single whole number (or none)."""
    return math.floor(hi + EPS) - math.ceil(lo - EPS) < 1


def exposed(table: Table, blank: set[tuple], samples: int = 12, free: set[tuple] | None = None) -> list[tuple]:
    """Blank cells whose value the published table pins to a single whole number. ``table`` holds the
    true counts (the publisher's side). To spare two linear programmes per cell, a few feasible tables
    are found first (the true one, and the optima of random positive objectives, minimised and
    maximised under a cap): a cell whose values across them already span two whole numbers cannot be
    pinned; only the others get their own two programmes (``ranges``).

    ``free`` (updated in place): blanks already shown not to be pinned under fewer blanks. Blanking more
    cells only widens what the published table allows (an earlier feasible table, with the newly blank
    cells at their true values, is still feasible), so they stay free and are not looked at again; when
    ``free`` is given and not empty, the random samples are skipped. The cells returned are the same as
    without it: only ``ranges`` decides that a cell is pinned."""
    import numpy as np
    from scipy.optimize import linprog

    var = sorted(blank, key=_sort_key)
    free = free if free is not None else set()
    if not var or all(c in free for c in var):
        return []
    a_eq, b_eq, index = _system(table, var)
    kw = {"A_eq": a_eq, "b_eq": b_eq} if len(b_eq) else {}
    points = [np.array([float(table.counts[c]) for c in var])]
    cap = 2.0 * max(table.counts.values()) + 1
    rng = np.random.default_rng(0)
    for j in range(samples if not free else 0):
        w = rng.uniform(0.5, 1.5, size=len(var)) * (1 if j % 2 == 0 else -1)
        r = linprog(w, bounds=[(1, cap)] * len(var), method="highs", **kw)
        if r.status == 0:
            points.append(r.x)
    pts = np.array(points)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    unsure = [c for c in var if c not in free and _pinned(lo[index[c]], hi[index[c]])]
    while unsure:  # push the cells not shown to move yet, all at once, down and up
        ix = np.array([index[c] for c in unsure])
        for sign in (1, -1):
            w = np.zeros(len(var))
            w[ix] = sign * rng.uniform(0.5, 1.5, size=len(ix))
            r = linprog(w, bounds=[(1, cap)] * len(var), method="highs", **kw)
            if r.status == 0:
                lo, hi = np.minimum(lo, r.x), np.maximum(hi, r.x)
        still = [c for c in unsure if _pinned(lo[index[c]], hi[index[c]])]
        if len(still) == len(unsure):
            break
        unsure = still
    free.update(c for c in var if not _pinned(lo[index[c]], hi[index[c]]))
    if not unsure:
        return []
    bad = [c for c, (a, b) in ranges(table, blank, unsure).items() if _pinned(a, b)]
    free.update(set(unsure) - set(bad))
    return bad


# ----------------------------------------------------------------------------------- protecting

@dataclass
class Protection:
    table: Table
    blank: set[tuple]
    primary: set[tuple]
    rounds: int

    @property
    def complementary(self) -> set[tuple]:
        return self.blank - self.primary


def _complete(table: Table, blank: set[tuple], eqs) -> None:
    """Blank one more value in every equation with exactly one blank, until there is none."""
    changed = True
    while changed:
        changed = False
        for total, parts in eqs:
            members = [total, *parts]
            if sum(m in blank for m in members) != 1:
                continue
            pick = _partner(table, blank, members)
            if pick is not None:
                blank.add(pick)
                changed = True


def _partner(table: Table, blank: set[tuple], members: list[tuple]) -> tuple | None:
    candidates = [m for m in members if m not in blank and table.counts.get(m, 0) > 0]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (m.count(TOTAL), table.counts[m], _sort_key(m)))


def _nearest_partner(table: Table, blank: set[tuple], eqs, c: tuple) -> tuple | None:
    """The value to blank for a recomputable blank ``c``: the smallest one in an equation of ``c``; when
    all of those are blank already, in an equation of the blanks linked to ``c``, nearest first."""
    seen, frontier = {c}, [c]
    while frontier:
        best = None
        nxt = []
        for total, parts in eqs:
            members = [total, *parts]
            if not any(m in frontier for m in members):
                continue
            p = _partner(table, blank, members)
            if p is not None and (best is None or (p.count(TOTAL), table.counts[p], _sort_key(p))
                                  < (best.count(TOTAL), table.counts[best], _sort_key(best))):
                best = p
            nxt += [m for m in members if m in blank and m not in seen]
        if best is not None:
            return best
        seen.update(nxt)
        frontier = list(dict.fromkeys(nxt))
    return None


def protect(rows: list[dict], dims: list[str], count: str, threshold: int = 5) -> Protection:
    """Primary and complementary suppression of ``count`` over ``dims`` (with every margin)."""
    table = build_table(rows, dims, count)
    primary = {k for k, v in table.counts.items() if 0 < v < threshold}
    blank = set(primary)
    eqs = table.equations()
    rounds = 0
    free: set[tuple] = set()  # blanks shown not recomputable: they stay so as more cells are blanked
    while True:
        rounds += 1
        _complete(table, blank, eqs)
        bad = exposed(table, blank, free=free)
        if not bad:
            return Protection(table, blank, primary, rounds)
        added = 0
        for c in bad:  # a partner blanked for an earlier cell may already protect a later one: look again
            best = _nearest_partner(table, blank, eqs, c)
            if best is not None:
                blank.add(best)
                added += 1
        if not added:  # every value linked to these cells is blank already
            raise RuntimeError(f"cell(s) {bad[:3]} cannot be protected")


def published(p: Protection) -> tuple[list[tuple], list[tuple]]:
    """(interior cells, margins) as (key, count or None for blank), sorted."""
    cells, margins = [], []
    for key in sorted(p.table.counts, key=_sort_key):
        v = None if key in p.blank else p.table.counts[key]
        (margins if TOTAL in key else cells).append((key, v))
    return cells, margins


def read_published(cells: list[dict], totals: list[dict], dims: list[str], count: str) -> tuple[Table, set[tuple]]:
    """The table an attacker reads back from data.csv and totals.csv rows: known counts, and the blanks
    (their true value unknown: stored as 0 in ``counts`` only to mark the key as present)."""
    values = [sorted({str(r[d]) for r in cells}) for d in dims]
    counts, blank = {}, set()
    for r in [*cells, *totals]:
        key = tuple(str(r[d]) for d in dims)
        v = r[count]
        if v in (None, ""):
            blank.add(key)
            counts[key] = 0
        else:
            counts[key] = int(v)
    return Table(list(dims), values, counts), blank
