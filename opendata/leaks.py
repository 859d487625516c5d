"""The leak scan of an open candidate: the exact bytes of every data file that would be published
(data.csv, data.json, data.geojson, totals.csv) are read back and searched for

- anything that looks like a citizen ID number (GB 11643 layout: region, a real-looking birth date,
  sequence, check character) standing as a token of its own (not inside a longer run of letters and
  digits: an 18-character credit code is one token, and a valid credit code whose ID check character
  is wrong is not taken for an ID);
- anything that looks like a mainland mobile number (11 digits from 13-19, also written
  ``138-1234-5678``, ``138 1234 5678`` or after +86), again as a token of its own;
- a person's name from the population base: a cell (or a part of a cell between separators) equal
  to a name in ``base.population``.

Every hit names the file, the row (line of data.csv, index in data.json), the column and the rule.
"""
from __future__ import annotations

import csv
import io as pyio
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from lake import rules

BOUND_L = r"(?<![0-9A-Za-z])"
BOUND_R = r"(?![0-9A-Za-z])"
ID_TOKEN = re.compile(BOUND_L + "(" + rules.ID_NUMBER_REGEX + ")" + BOUND_R)
MOBILE_TOKEN = re.compile(BOUND_L + r"(?:\+?86[-\s]?)?(1[3-9][0-9][-\s]?[0-9]{4}[-\s]?[0-9]{4})" + BOUND_R)
# the same shapes for Spark's (Java) regular expressions in the GX gate (jobs/publish/open.py)
ID_TOKEN_JAVA = BOUND_L + rules.ID_NUMBER_REGEX + BOUND_R
MOBILE_TOKEN_JAVA = BOUND_L + r"(\+?86[-\s]?)?1[3-9][0-9][-\s]?[0-9]{4}[-\s]?[0-9]{4}" + BOUND_R
SEPARATORS = re.compile(r"[\s,，、;；/|:：()（）]+")
NAME = re.compile(r"^[\u3400-\u9fff·]{2,6}$")
DATA_FILES = ("data.csv", "data.json", "data.geojson", "totals.csv")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


@dataclass(frozen=True)
class Leak:
    file: str
    row: int | str
    column: str
    rule: str  # id_number | mobile | person_name
    value: str

    def __str__(self) -> str:
        shown = self.value if self.rule == "person_name" else self.value[:4] + "…" + self.value[-2:]
        return f"{self.file} row {self.row} column {self.column}: {self.rule} ({shown})"


def id_check_ok(s: str) -> bool:
    s = s.upper()
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS))
    return "10X98765432"[total % 11] == s[17]


def uscc_ok(s: str) -> bool:
    if len(s) != 18 or any(c not in _USCC_ALPHABET for c in s):
        return False
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(s[:17], _USCC_WEIGHTS))
    return _USCC_ALPHABET[(31 - total % 31) % 31] == s[17]


def _cells(name: str, data: bytes) -> Iterable[tuple[int | str, str, str]]:
    """(row, column, text) of every value in a data file."""
    text = data.decode("utf-8")
    if name.endswith(".csv"):
        reader = csv.reader(pyio.StringIO(text))
        header = next(reader, [])
        for line, row in enumerate(reader, start=2):
            for col, v in zip(header, row):
                yield line, col, v
        return
    doc = json.loads(text)
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items = [f.get("properties") or {} for f in doc.get("features", [])]
    elif isinstance(doc, list):
        items = doc
    else:
        items = [doc]
    for i, item in enumerate(items):
        if isinstance(item, dict):
            for col, v in item.items():
                if v is not None and not isinstance(v, (dict, list)):
                    yield i, col, str(v)


def scan(files: dict[str, bytes], dataset: str, known_names: Callable[[set[str]], set[str]] | None = None) -> list[Leak]:
    """Every leak in the data files of ``files`` (name -> bytes). ``known_names(candidates)`` returns
    those of the candidate strings that are names of people in the population base."""
    leaks: list[Leak] = []
    candidates: dict[str, list[tuple[str, int | str, str]]] = {}
    for name in DATA_FILES:
        if name not in files:
            continue
        where = f"open/{dataset}/{name}"
        for row, col, v in _cells(name, files[name]):
            if not v:
                continue
            for m in ID_TOKEN.finditer(v):
                tok = m.group(1)
                if uscc_ok(tok.upper()) and not id_check_ok(tok):
                    continue  # a credit code, not an ID number
                leaks.append(Leak(where, row, col, "id_number", tok))
            for m in MOBILE_TOKEN.finditer(v):
                leaks.append(Leak(where, row, col, "mobile", m.group(1)))
            for part in {v.strip(), *SEPARATORS.split(v)}:
                if NAME.match(part):
                    candidates.setdefault(part, []).append((where, row, col))
    if known_names is not None and candidates:
        for n in sorted(known_names(set(candidates))):
            for where, row, col in candidates[n]:
                leaks.append(Leak(where, row, col, "person_name", n))
    return leaks


def population_names(settings) -> Callable[[set[str]], set[str]]:
    """``known_names`` backed by ``base.population`` (read without a JVM; no names when not built)."""
    def lookup(cands: set[str]) -> set[str]:
        import pyarrow.compute as pc
        from lake import io

        path = settings.path("base", "population")
        if not io.has_commit(path):
            return set()
        dataset = io.delta_table(path).to_pyarrow_dataset()
        t = dataset.to_table(columns=["name"], filter=pc.field("name").isin(sorted(cands)))
        return set(t.column("name").to_pylist())
    return lookup
