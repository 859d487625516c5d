"""Synthetic department files of the social-credit, e-licence and macro-economy base databases (the
model they share is ``sample.governance``, which explains the defects and the truth): writes the files
of ``sample.generate_credit``, ``sample.generate_licence`` and ``sample.generate_macro``."""
from __future__ import annotations

import datetime
from pathlib import Path

from sample import generate_credit, generate_licence, generate_macro
from sample.common import DEFAULT_EXTRACT_DATE
from sample.governance import SourceFile, Subjects  # noqa: F401 (Subjects: sample.generate collects into it)


# ------------------------------------------------------------------ orchestration

def generate_governance(scale: float, seed: int, out: Path, subjects: Subjects,
                        extract_date: datetime.date = DEFAULT_EXTRACT_DATE) -> dict:
    """Write the credit, e-licence and macro-economy files into ``out``; return ``{"files": [...],
    "truth": [...]}`` (manifest entries in source order, truth rows)."""
    files: list[SourceFile] = []
    files += generate_credit.generate(scale, seed, subjects, extract_date)
    files += generate_licence.generate(scale, seed, subjects, extract_date)
    files += generate_macro.generate(scale, seed, subjects, extract_date)
    entries = [f.write(Path(out)) for f in files]
    truth = [t for f in files for t in f.truth]
    return {"files": entries, "truth": truth}


GOVERNANCE_SOURCES = (
    "samr_licences", "mem_licences", "samr_penalties", "mee_penalties", "tax_penalties", "mem_penalties",
    "ndrc_credit_lists", "tax_credit_ratings",
    "samr_elicences", "zjw_elicences", "psb_elicences", "mca_elicences",
    "nbs_indicators", "tax_revenue", "mof_budget", "ndrc_investment",
)
