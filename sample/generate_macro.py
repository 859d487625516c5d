"""Synthetic macro-economy files (宏观经济): two monthly releases from each of the statistics bureau
(``nbs_indicators``), tax (``tax_revenue``), finance (``mof_budget``) and development and reform
(``ndrc_investment``); see ``sample.generate_governance``.

The first release (the 15th of the month after the first month) has the first month's figures and,
from statistics, the quarter's (entity counts per town and industry, GDP and its growth); the second
(the extract date) has the second month's figures and revises the first month's: statistics revises
some indicators, the other departments their whole month (the revised parts and totals are
consistent, so a revision is not a defect). Figures are per town (and industry section where the
catalogue says so) with totals 全区 / 合计 that are exact sums of their parts; the statistics bureau's
entity counts are the active entities the registers give ``base.legal_entity`` per town and industry
(``Subjects.active_counts``), off by at most 1; tax's declared sales are within 4% of the turnover.

Defects (each recorded in the truth file), injected only into rows whose figure stays current unless
they are about the row itself:

* ``total_mismatch``: a total 3-10% (at least one unit) off the sum of its parts;
* ``turnover_mismatch``: tax's declared sales of a cell 30-60% off (the totals include it);
* ``entity_count_mismatch``: an entity count 50% (at least 5) above the registers';
* ``unit_mismatch``: money delivered in 亿元 or 元 (converted by the job), any row;
* ``indicator_not_authoritative``: the statistics bureau republishing tax, budget or investment figures;
* ``duplicate_record``: a cell delivered twice in a file;
* ``invalid_value`` (a period not in its frequency's form), and at ingest ``invalid_number``
  (``12,345.67``), ``invalid_date``, ``missing_value``, ``malformed_row`` - on total rows only, so that
  no part is lost.
"""
from __future__ import annotations

import datetime
import random

from lake.reference import DISTRICT, MACRO
from sample.governance import Plan, SourceFile, Subjects

TOWNS = list(DISTRICT.towns)
T, I = MACRO.total_town, MACRO.total_industry
DECIMALS = {"万元": 2, "亿元": 2, "个": 0, "%": 1}
PREFIX = {"nbs_indicators": "TJ", "tax_revenue": "SS", "mof_budget": "CZ", "ndrc_investment": "FG"}
VALUE_COLUMNS = {"nbs_indicators": ("value",), "tax_revenue": ("tax_revenue", "sales_revenue"),
                 "mof_budget": ("budget_revenue", "budget_expenditure"), "ndrc_investment": ("projects", "investment")}
RATES = {"total_mismatch": 0.03, "turnover_mismatch": 0.03, "entity_count_mismatch": 0.04, "unit_mismatch": 0.03,
         "duplicate_record": 0.02, "invalid_value": 0.01, "invalid_number": 0.01, "invalid_date": 0.01,
         "missing_value": 0.01, "malformed_row": 0.01}
CURRENT_ONLY = {"total_mismatch", "turnover_mismatch", "entity_count_mismatch"}
TOTALS_ONLY = {"total_mismatch", "invalid_value", "invalid_number", "invalid_date", "missing_value", "malformed_row"}
PARTS_ONLY = {"turnover_mismatch", "entity_count_mismatch", "duplicate_record"}


def _month(day: datetime.date, back: int) -> str:
    y, m = day.year, day.month - back
    while m <= 0:
        y, m = y - 1, m + 12
    return f"{y}-{m:02d}"


def _quarter(month: str) -> str:
    y, m = month.split("-")
    return f"{y}Q{(int(m) - 1) // 3 + 1}"


def _by(code: str) -> tuple[str, ...]:
    return MACRO.indicators[code].by


def _fmt(v: int, unit: str) -> str:
    d = DECIMALS[unit]
    return f"{v / 10**d:.{d}f}" if d else str(v)


class _Slice:
    """The figures of one indicator and period: finest parts (town, industry) -> integer in the
    unit's smallest step, then totals as exact sums."""

    def __init__(self, code: str, period: str, parts: dict[tuple[str, str], int]) -> None:
        self.code, self.period, self.parts = code, period, dict(parts)

    def cells(self) -> dict[tuple[str, str], int]:
        by = _by(self.code)
        out = dict(self.parts)
        if not by or not MACRO.indicators[self.code].additive:
            return out
        if "industry" in by:
            for (town, ind), v in self.parts.items():
                out[(T, ind)] = out.get((T, ind), 0) + v
                out[(town, I)] = out.get((town, I), 0) + v
        out[(T, I)] = sum(self.parts.values())
        return out

    def scaled(self, factor: float) -> "_Slice":
        return _Slice(self.code, self.period, {k: max(0, round(v * factor)) for k, v in self.parts.items()})


def _is_total(code: str, town: str, industry: str) -> bool:
    by = _by(code)
    if not by or not MACRO.indicators[code].additive:
        return False
    return town == T or ("industry" in by and industry == I)


def generate(scale: float, seed: int, subjects: Subjects, extract: datetime.date) -> list[SourceFile]:
    rng = random.Random(f"{seed}-macro")
    m1, m2 = _month(extract, 2), _month(extract, 1)
    q = _quarter(m1)
    y1, mo1 = (int(x) for x in m2.split("-"))
    release1, release2 = datetime.date(y1, mo1, 15), extract
    counts = {k: v for k, v in subjects.active_counts.items() if k[0] in TOWNS and k[1] in MACRO.industries}
    cells = sorted(counts)
    while len(cells) < 8:   # tiny scales: a few more town x industry cells
        cells = sorted(set(cells) | {(rng.choice(TOWNS), rng.choice(sorted(MACRO.industries)))})
    towns = [(t, I) for t in TOWNS]

    def money(lo: float, hi: float, weight: float = 1.0) -> int:
        return round(rng.uniform(lo, hi) * weight * 100)

    # ---- the true figures (finest parts), per period
    turnover = {m: _Slice("turnover", m, {c: money(30, 300, max(1, counts.get(c, 1))) for c in cells}) for m in (m1, m2)}
    output = {m: _Slice("industrial_output", m, {t: money(1000, 60000) for t in towns}) for m in (m1, m2)}
    retail = {m: _Slice("retail_sales", m, {t: money(2000, 20000) for t in towns}) for m in (m1, m2)}
    revise = {code: rng.random() < 0.5 for code in ("turnover", "industrial_output", "retail_sales")}
    if not any(revise.values()):
        revise["turnover"] = True
    factor = {code: rng.choice((rng.uniform(0.97, 0.995), rng.uniform(1.005, 1.03))) for code in revise}
    final_turnover = {m1: turnover[m1].scaled(factor["turnover"]) if revise["turnover"] else turnover[m1], m2: turnover[m2]}
    entity = _Slice("entity_count", q, {c: max(0, counts.get(c, 0) + (rng.choice((-1, 1)) if rng.random() < 0.3 else 0))
                                        for c in cells})
    taxes = {m: _Slice("tax_revenue", m, {c: round(v * rng.uniform(0.02, 0.08)) for c, v in final_turnover[m].parts.items()})
             for m in (m1, m2)}
    sales = {m: _Slice("taxable_sales", m, {c: round(v * rng.uniform(0.96, 1.04)) for c, v in final_turnover[m].parts.items()})
             for m in (m1, m2)}
    budget = {m: (_Slice("budget_revenue", m, {t: money(300, 8000) for t in towns}),
                  _Slice("budget_expenditure", m, {t: money(500, 12000) for t in towns})) for m in (m1, m2)}
    invest = {m: (_Slice("key_projects", m, {t: rng.randrange(0, 16) for t in towns}),
                  _Slice("fixed_asset_investment", m, {t: money(500, 80000) for t in towns})) for m in (m1, m2)}
    dept_factor = {s: rng.choice((rng.uniform(0.97, 0.995), rng.uniform(1.005, 1.03))) for s in ("tax", "mof", "ndrc")}

    # ---- the releases: (slices, role) per file; role: current / superseded / revision
    nbs1 = [(turnover[m1], "superseded" if revise["turnover"] else "current"),
            (output[m1], "superseded" if revise["industrial_output"] else "current"),
            (retail[m1], "superseded" if revise["retail_sales"] else "current"),
            (entity, "current"),
            (_Slice("gdp", q, {(T, I): money(280, 360)}), "current"),
            (_Slice("gdp_growth", q, {(T, I): round(rng.uniform(3.0, 7.5) * 10)}), "current")]
    nbs2 = [(turnover[m2], "current"), (output[m2], "current"), (retail[m2], "current")]
    nbs2 += [(s.scaled(factor[s.code]), "revision") for s in (turnover[m1], output[m1], retail[m1]) if revise[s.code]]
    wide = {
        "tax_revenue": ([((taxes[m1], sales[m1]), "superseded")],
                        [((taxes[m2], sales[m2]), "current"), ((taxes[m1].scaled(dept_factor["tax"]), sales[m1]), "revision")]),
        "mof_budget": ([(budget[m1], "superseded")],
                       [(budget[m2], "current"), (tuple(s.scaled(dept_factor["mof"]) for s in budget[m1]), "revision")]),
        "ndrc_investment": ([(invest[m1], "superseded")],
                            [(invest[m2], "current"), ((invest[m1][0], invest[m1][1].scaled(dept_factor["ndrc"])), "revision")]),
    }
    files = []
    plan = Plan(rng, {k: v for k, v in RATES.items() if k != "turnover_mismatch"})
    for n, (release, slices) in enumerate(((release1, nbs1), (release2, nbs2)), start=1):
        f = SourceFile("nbs_indicators", release.strftime("%Y%m%d"), rng, f"{PREFIX['nbs_indicators']}{n}")
        for sl, role in slices:
            _nbs_rows(rng, f, plan, sl, role, release)
        if n == 2:
            _not_authoritative(rng, f, (taxes[m2], budget[m2][0], invest[m2][1]), release)
        files.append(f)
    for source, releases in wide.items():
        plan = Plan(rng, {k: v for k, v in RATES.items()
                          if k not in ("entity_count_mismatch", "invalid_value")
                          and (k != "turnover_mismatch" or source == "tax_revenue")})
        for n, (release, items) in enumerate(zip((release1, release2), releases), start=1):
            f = SourceFile(source, release.strftime("%Y%m%d"), rng, f"{PREFIX[source]}{n}")
            for pair, role in items:
                _wide_rows(rng, f, plan, source, pair, role, release)
            files.append(f)
    return files


def _eligible(plan: Plan, role: str, total: bool, code: str) -> set[str]:
    out = set(plan.rates)
    if role == "revision":
        return set()
    if role != "current":
        out -= CURRENT_ONLY
    out -= PARTS_ONLY if total else TOTALS_ONLY
    if code != "entity_count":
        out.discard("entity_count_mismatch")
    if code != "taxable_sales":
        out.discard("turnover_mismatch")
    if MACRO.indicators[code].unit != "万元":
        out.discard("unit_mismatch")
    return out


def _distort_part(rng, defect: str, v: int) -> int:
    if defect == "turnover_mismatch":
        return round(v * (rng.uniform(1.3, 1.6) if rng.random() < 0.5 else rng.uniform(0.4, 0.7)))
    return v + max(5, -(-v // 2))   # entity_count_mismatch: half again, at least 5


def _distort_total(rng, v: int, unit: str) -> int:
    step = 10 ** DECIMALS[unit]
    delta = max(step if unit != "个" else 2, round(abs(v) * rng.uniform(0.03, 0.10)))
    return v + delta if rng.random() < 0.5 or v - delta < 0 else v - delta


def _unit_text(rng, v: int) -> tuple[str, str]:
    """A 万元 figure (in 0.01 万元) written in 亿元 or 元, exactly."""
    if rng.random() < 0.5:
        return f"{v / 10**6:.6f}", "亿元"
    return str(v * 100), "元"


def _nbs_rows(rng, f: SourceFile, plan: Plan, sl: _Slice, role: str, release: datetime.date) -> None:
    """One row per cell of the slice, defects applied (a part's value defect before the totals)."""
    unit = MACRO.indicators[sl.code].unit
    picks = {}
    for cell in sl.parts:
        picks[cell] = plan.pick(_eligible(plan, role, False, sl.code))
    parts = {c: (_distort_part(rng, d, v) if d in ("entity_count_mismatch",) else v) for c, v in sl.parts.items()
             for d in [picks[c]]}
    cells = _Slice(sl.code, sl.period, parts).cells()
    for (town, industry), v in cells.items():
        total = _is_total(sl.code, town, industry)
        defect = picks.get((town, industry)) if not total else plan.pick(_eligible(plan, role, True, sl.code))
        if defect == "total_mismatch":
            v = _distort_total(rng, v, unit)
        row = {"indicator": sl.code, "period": sl.period, "town": town, "industry": industry,
               "value": _fmt(v, unit), "unit": unit, "release_date": release.isoformat()}
        field = {"total_mismatch": "value", "entity_count_mismatch": "value", "unit_mismatch": "unit",
                 "invalid_value": "period"}.get(defect)
        if defect == "unit_mismatch":
            row["value"], row["unit"] = _unit_text(rng, v)
        elif defect == "invalid_value":   # 202609 for 2026-09, 2026-Q3 for 2026Q3
            row["period"] = sl.period.replace("-", "") if "-" in sl.period else sl.period.replace("Q", "-Q")
        _add(f, row, defect, field, "value")



def _add(f: SourceFile, row: dict, defect: str | None, field: str | None, value_col: str) -> None:
    """Write ``row`` with its defect: one the row already carries in ``field`` (its truth names it),
    or one applied to the written row (a duplicate, a corrupted value, date or row)."""
    if field:
        f.add(row, defect, field)
        return
    added = f.add(row)
    if defect == "duplicate_record":
        f.duplicate(added)
    elif defect in ("invalid_number", "missing_value"):
        f.corrupt(added, defect, value_col)
    elif defect == "invalid_date":
        f.corrupt(added, defect, "release_date")
    elif defect == "malformed_row":
        f.corrupt(added, defect, "_row")

def _not_authoritative(rng, f: SourceFile, slices: tuple[_Slice, ...], release: datetime.date) -> None:
    """The statistics bureau republishing a few figures other departments are the authority for."""
    for sl in slices:
        unit = MACRO.indicators[sl.code].unit
        cells = sl.cells()
        for (town, industry) in rng.sample(sorted(cells), min(len(cells), max(1, len(cells) // 40))):
            f.add({"indicator": sl.code, "period": sl.period, "town": town, "industry": industry,
                   "value": _fmt(cells[(town, industry)], unit), "unit": unit, "release_date": release.isoformat()},
                  "indicator_not_authoritative", "indicator")


def _wide_rows(rng, f: SourceFile, plan: Plan, source: str, pair: tuple[_Slice, _Slice], role: str,
               release: datetime.date) -> None:
    """One row per cell with the source's two figures. A row draws at most one defect among those
    either column allows, then the column it hits; a part's value defect goes into its column
    before the totals are summed."""
    cols = VALUE_COLUMNS[source]
    first = pair[0]
    units = [MACRO.indicators[s.code].unit for s in pair]

    def draw(total: bool) -> tuple[int, str | None]:
        allowed = [_eligible(plan, role, total, s.code) for s in pair]
        defect = plan.pick(allowed[0] | allowed[1])
        columns = [k for k in range(2) if defect in allowed[k]]
        return (rng.choice(columns) if columns else 0), defect

    picks, parts = {}, [dict(s.parts) for s in pair]
    for cell in first.parts:
        picks[cell] = i, d = draw(False)
        if d == "turnover_mismatch":
            parts[i][cell] = _distort_part(rng, d, parts[i][cell])
    sums = [_Slice(s.code, s.period, p).cells() for s, p in zip(pair, parts)]
    for cell in sums[0]:
        town, industry = cell
        i, defect = draw(True) if _is_total(first.code, town, industry) else picks[cell]
        values = [sums[k][cell] for k in range(2)]
        if defect == "total_mismatch":
            values[i] = _distort_total(rng, values[i], units[i])
        row = {"period": first.period, "town": town, "industry": industry, "release_date": release.isoformat(),
               "amount_unit": "万元", **{c: _fmt(v, u) for c, v, u in zip(cols, values, units)}}
        field = {"total_mismatch": cols[i], "turnover_mismatch": cols[i], "unit_mismatch": "amount_unit"}.get(defect)
        if defect == "unit_mismatch":
            target = rng.choice(("亿元", "元"))
            for c, v, u in zip(cols, values, units):
                if u == "万元":
                    row[c] = f"{v / 10**6:.6f}" if target == "亿元" else str(v * 100)
            row["amount_unit"] = target
        _add(f, row, defect, field, cols[i])
