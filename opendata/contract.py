"""The keys of a table contract's ``open_dataset:`` mapping that the open-data side reads, checked.

- ``theme``: a list of EU data-theme codes (``vocab.THEMES``), e.g. ``[SOCI]`` (DCAT-AP dcat:theme).
- ``contact_point``: ``{name: …, email: …}`` (DCAT-AP dcat:contactPoint, a vcard:Organization).
- ``chart``: the portal's chart of the dataset's main measure by its main dimension:
  ``{x: <column>, y: <column>, agg: sum|mean|max|min|count, type: bar|line, where: {<column>: <value>}}``;
  ``x`` is required, ``y`` unless ``agg`` is ``count``; ``agg`` defaults to ``sum``, ``type`` to ``bar``;
  ``where`` keeps only the rows with those values (e.g. one pollutant of several).

A missing or misspelt key is an error naming the contract file and the key, never a silent default.
"""
from __future__ import annotations

import re

from lake.contracts import ContractError, TableContract
from opendata.vocab import THEMES

CONTACT_KEYS = {"name", "email"}
CHART_KEYS = {"x", "y", "agg", "type", "where"}
CHART_AGGS = ("sum", "mean", "max", "min", "count")
CHART_TYPES = ("bar", "line")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class OpenDataError(ContractError):
    """The open zone or an ``open_dataset`` mapping cannot be described or shown (one-line message)."""


def check(tc: TableContract) -> None:
    """Raise OpenDataError unless ``tc.open_dataset`` has valid ``theme``, ``contact_point`` and ``chart``."""
    od = tc.open_dataset
    where = f"{tc.path or tc.table}: open_dataset"
    themes = od.get("theme")
    if not isinstance(themes, list) or not themes:
        raise OpenDataError(f"{where} needs 'theme': a list of EU data themes, e.g. [SOCI] (known: {', '.join(THEMES)})")
    bad = [t for t in themes if t not in THEMES]
    if bad:
        raise OpenDataError(f"{where}.theme has unknown EU data theme(s) {bad}; known: {', '.join(THEMES)}")
    cp = od.get("contact_point")
    if not isinstance(cp, dict):
        raise OpenDataError(f"{where} needs 'contact_point': {{name: …, email: …}}")
    if set(cp) != CONTACT_KEYS:
        raise OpenDataError(f"{where}.contact_point has keys {sorted(cp)}; expected exactly {sorted(CONTACT_KEYS)}")
    if not str(cp["name"]).strip():
        raise OpenDataError(f"{where}.contact_point.name is empty")
    if not EMAIL.match(str(cp["email"])):
        raise OpenDataError(f"{where}.contact_point.email '{cp['email']}' is not an e-mail address")
    chart(tc)


def chart(tc: TableContract) -> dict:
    """The checked ``chart`` mapping with its defaults filled in."""
    where = f"{tc.path or tc.table}: open_dataset.chart"
    spec = tc.open_dataset.get("chart")
    if not isinstance(spec, dict):
        raise OpenDataError(f"{where} is missing: the portal draws every dataset's main measure, "
                            "declare it as {x: <column>, y: <column>}")
    unknown = set(spec) - CHART_KEYS
    if unknown:
        raise OpenDataError(f"{where} has unknown key(s) {sorted(unknown)}; known: {sorted(CHART_KEYS)}")
    out = {"x": spec.get("x"), "y": spec.get("y"), "agg": spec.get("agg", "sum"), "type": spec.get("type", "bar"),
           "where": dict(spec.get("where") or {})}
    if out["agg"] not in CHART_AGGS:
        raise OpenDataError(f"{where}.agg '{out['agg']}' is not one of {', '.join(CHART_AGGS)}")
    if out["type"] not in CHART_TYPES:
        raise OpenDataError(f"{where}.type '{out['type']}' is not one of {', '.join(CHART_TYPES)}")
    if not out["x"]:
        raise OpenDataError(f"{where} needs 'x', the column along the axis")
    if not out["y"] and out["agg"] != "count":
        raise OpenDataError(f"{where} needs 'y', the measured column (or agg: count)")
    cols = tc.column_names
    for key, col in [("x", out["x"]), ("y", out["y"]), *[(f"where.{c}", c) for c in out["where"]]]:
        if col and col not in cols:
            raise OpenDataError(f"{where}.{key} names column '{col}', which is not among the columns {cols}")
    return out
