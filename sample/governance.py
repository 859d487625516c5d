"""The shared model of the social-credit, e-licence and macro-economy generators (subjects, plans,
source files, unknown subjects); ``sample.generate_governance`` runs them. Synthetic department files
with their injected defects, consistent with the people and legal entities ``sample.generate`` writes.

``sample.generate.generate`` reports every legal-entity register row and every household-register
row it writes to a ``Subjects`` collector (with the defect it injected, if any) and then calls
``generate_governance``, which writes:

* social credit (``sample.generate_credit``): licences and penalties published under 双公示 by market
  regulation, emergency management, ecology and environment and tax, the credit office's red and black
  lists and tax's credit ratings;
* e-licences (``sample.generate_licence``): business and food-operation licences, construction
  permits, electronic ID cards and marriage certificates from their issuing departments;
* macro-economy (``sample.generate_macro``): the statistics bureau's indicators, tax revenue, the
  budget and fixed-asset investment, two monthly releases each (the second revising the first).

Every file follows its source contract (``contracts/sources/<source>.yaml``: columns, format,
encoding). The subjects of credit records and the holders of licences are the entities and people
whose register row is clean, so that apart from the recorded defects every record agrees with
``base.legal_entity`` and ``base.population``: each injected defect is one row of
``truth/defects.csv`` ``(source, record_key, field, defect_type)`` (vocabulary in docs/defects.md),
and no clean row trips a check. Unknown subjects have credit codes of region 120101 and ID numbers of
region 130102, which the registers never use. The output is a pure function of
``(scale, seed, extract_date)``: each domain has its own ``random.Random`` stream seeded from the
seed, and the collector samples people with its own stream, so the population and legal-entity
files are byte-identical with and without these domains.
"""
from __future__ import annotations

import bisect
import csv
import datetime
import hashlib
import itertools
import json
import random
from collections import Counter
from pathlib import Path
from typing import NamedTuple, Sequence

from lake import contracts as contracts_mod
from lake.reference import LEGAL_ENTITY
from lake.settings import REPO
from sample.common import _RecordIds
from sample.identifiers import cn_id_check_char, make_uscc, to_fullwidth, USCC_ALPHABET

CONTRACTS = REPO / "contracts"
PERSON_SHARE = 0.12          # share of clean household-register people kept as possible holders / subjects
UNKNOWN_CODE_REGION = "120101"   # never a region of the registers' credit codes
UNKNOWN_ID_REGION = "130102"     # never a region of the household register's ID numbers
ACTIVE = frozenset(LEGAL_ENTITY.active_statuses)
DEREGISTERED = frozenset(LEGAL_ENTITY.deregistered_statuses)
# the defects sample.generate injects into a market-register row that keep the row out of raw/ (errors):
# an entity with one of them is not in base.legal_entity with its town and industry
REGISTER_ERRORS = frozenset({"malformed_row", "missing_value", "credit_code_checksum", "credit_code_authority",
                             "invalid_date", "invalid_value"})


# ------------------------------------------------------------------ subjects (fed by sample.generate)

class Entity(NamedTuple):
    code: str
    name: str
    status: str
    established: datetime.date | None
    town: str
    industry: str          # "" for social organisations and institutions (the market register's only)
    register: str          # samr_enterprises / mca_social_orgs / seo_institutions

    @property
    def subject_type(self) -> str:
        """双公示 subject type: an individual business (credit code 92) or an organisation."""
        return "个体工商户" if self.code.startswith("92") else "法人及非法人组织"


class Person(NamedTuple):
    id_number: str
    name: str
    male: bool
    birth: datetime.date
    status: str            # the register's status: 正常, 死亡, 迁出


class Subjects:
    """What the lake will know about legal entities and people, collected while ``sample.generate``
    writes their registers: every entity whose register row is clean (``entities``), the active
    entities per (town, industry) that ``base.legal_entity`` will hold (``active_counts``, for the
    statistics bureau's entity counts) and a sample of the people whose household-register row is
    clean (``people``). Sampling uses its own random stream: the registers are not changed by it."""

    def __init__(self, seed: int, person_share: float = PERSON_SHARE) -> None:
        self._rng = random.Random(f"{seed}-subjects")
        self._share = person_share
        self.entities: list[Entity] = []
        self.people: list[Person] = []
        self.active_counts: Counter = Counter()
        self._counted: set[str] = set()

    def entity(self, source: str, values: Sequence[str], defect: str | None) -> None:
        """A register row as written (``values`` without the record id, before any defect was applied)."""
        if source == "samr_enterprises":
            code, name, _, industry, _, established, status, town = values[:8]
            if defect not in REGISTER_ERRORS and status in ACTIVE and code not in self._counted:
                self._counted.add(code)
                self.active_counts[(town, industry)] += 1
        elif source == "mca_social_orgs":
            code, name, _, _, established, status, town = values[:7]
            industry = ""
        elif source == "seo_institutions":
            code, name, _, _, _, status, town = values[:7]
            industry, established = "", ""
        else:
            return
        if defect is None:
            self.entities.append(Entity(code, name, status, datetime.date.fromisoformat(established) if established else None,
                                        town, industry, source))

    def person(self, name: str, id_number: str, male: bool, birth: datetime.date, status: str, defect: str | None) -> None:
        """A household-register row as written (its status after any injected defect)."""
        if defect is None and self._rng.random() < self._share:
            self.people.append(Person(id_number, name, male, birth, status))


# ------------------------------------------------------------------ defects and files

class Plan:
    """Draws at most one defect per row among those eligible for it, at the given rates; a defect a
    source has not shown yet is forced on every ``FORCE_EVERY``-th eligible row until it has, so that
    even a tiny sample carries every defect type of every source."""

    FORCE_EVERY = 3

    def __init__(self, rng: random.Random, rates: dict[str, float]) -> None:
        self._rng = rng
        self.rates = dict(rates)
        self.owed = list(rates)
        self._calls = 0

    def pick(self, eligible: set[str] | frozenset[str] | None = None) -> str | None:
        names = [d for d in self.rates if eligible is None or d in eligible]
        defect = None
        if names:
            cum = list(itertools.accumulate(self.rates[d] for d in names))
            u = self._rng.random()
            if u < cum[-1]:
                defect = names[bisect.bisect_right(cum, u)]
        self._calls += 1
        if defect is None and self.owed and self._calls % self.FORCE_EVERY == 0:
            defect = next((d for d in self.owed if eligible is None or d in eligible), None)
        if defect in self.owed:
            self.owed.remove(defect)
        return defect

    def pick_from(self, wanted: Sequence[str]) -> str | None:
        """A defect among ``wanted`` only (for rows that can carry nothing else)."""
        return self.pick(set(wanted))


class SourceFile:
    """The rows of one department file, written by its contract (columns, format, encoding), with its
    truth rows. Rows are dicts of column -> text ("" = empty); each keeps its place in the file under
    ``_pos`` (a duplicate copy is placed some rows after its original) and a malformed row its raw
    line under ``_line``."""

    DUPLICATE_WINDOW = 200   # a duplicate copy comes up to this many rows after its original

    def __init__(self, source: str, stamp: str, rng: random.Random, prefix: str) -> None:
        sc = contracts_mod.load(str(CONTRACTS)).source(source)
        self.source, self.stamp, self.sc = source, stamp, sc
        self.columns = sc.column_names
        self.format = sc.format
        self.encoding = sc.encoding
        self._rng = rng
        self.ids = _RecordIds(rng, prefix)
        self.rows: list[dict] = []
        self.truth: list[tuple[str, str, str, str]] = []

    def add(self, row: dict, defect: str | None = None, field: str | None = None) -> dict:
        """Append ``row`` (record id assigned), recording a defect already in its values on ``field``."""
        out = {"record_id": self.ids()}
        for c in self.columns:
            if c != "record_id":
                v = row.get(c, "")
                out[c] = "" if v is None else str(v)
        out["_pos"] = float(len(self.rows))
        self.rows.append(out)
        if defect:
            self.record(out, defect, field)
        return out

    def record(self, row: dict, defect: str, field: str) -> None:
        self.truth.append((self.source, row["record_id"], field, defect))

    def duplicate(self, row: dict) -> dict:
        """A later copy of ``row`` with a record id of its own: ``duplicate_record`` on the source's
        entity key (the first row of a record in a file counts)."""
        copy = dict(row, record_id=self.ids())
        copy["_pos"] = row["_pos"] + 0.5 + self._rng.randrange(self.DUPLICATE_WINDOW)
        self.rows.append(copy)
        self.record(copy, "duplicate_record", self.sc.entity_key)
        return copy

    def corrupt(self, row: dict, defect: str, field: str) -> None:
        """Apply a row-level (ingest) defect to ``row`` in place and record it on ``field``."""
        rng = self._rng
        value = row.get(field, "")
        if defect == "malformed_row":
            row["_line"] = self._malformed(row)
            self.record(row, defect, "_row")
            return
        if defect == "missing_value":
            row[field] = ""
        elif defect == "whitespace":
            space = " " if rng.random() < 0.6 else "\u3000"
            pos = rng.randint(1, max(1, len(value) - 1))
            row[field] = value[:pos] + space + value[pos:]
        elif defect == "fullwidth":
            row[field] = to_fullwidth(value)
        elif defect == "credit_code_checksum":
            row[field] = value[:17] + rng.choice([c for c in USCC_ALPHABET if c != value[17]])
        elif defect == "id_checksum":
            row[field] = value[:17] + rng.choice([c for c in "0123456789X" if c != value[17]])
        elif defect == "invalid_date":
            row[field] = rng.choice((value.replace("-", "/"), value[:5] + "13" + value[7:]))
        elif defect == "invalid_number":
            row[field] = f"{float(value):,.2f}" if abs(float(value)) >= 1000 else value + "万"
        elif defect == "invalid_value":
            row[field] = INVALID_VALUES[field]
        else:
            raise ValueError(f"unknown row defect {defect!r}")
        self.record(row, defect, field)

    def _malformed(self, row: dict) -> str:
        values = [row[c] for c in self.columns]
        if self.format == "jsonl":  # truncated; the record id pair stays intact at the start
            line = json.dumps({c: _json_value(self.sc, c, v) for c, v in zip(self.columns, values)}, ensure_ascii=False)
            head = len(json.dumps({"record_id": row["record_id"]}, ensure_ascii=False)) - 1
            return line[:head + 1 + self._rng.randrange(max(1, len(line) - head - 2))]
        return _csv_line(values[:-1] if self._rng.random() < 0.5 else values + ["x"])

    def write(self, out: Path) -> dict:
        """The file ``<source>/<source>_<stamp>.<format>`` and its manifest entry."""
        rel = f"{self.source}/{self.source}_{self.stamp}.{self.format}"
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        newline = "\r\n" if self.encoding == "gb18030" else "\n"
        lines = [] if self.format == "jsonl" else [_csv_line(self.columns)]
        for r in sorted(self.rows, key=lambda r: r["_pos"]):
            if "_line" in r:
                lines.append(r["_line"])
            elif self.format == "jsonl":
                lines.append(json.dumps({c: _json_value(self.sc, c, r[c]) for c in self.columns}, ensure_ascii=False))
            else:
                lines.append(_csv_line([r[c] for c in self.columns]))
        data = (newline.join(lines) + newline).encode(self.encoding)
        path.write_bytes(data)
        return {"source": self.source, "path": rel, "encoding": self.encoding, "format": self.format,
                "rows": len(self.rows), "sha256": hashlib.sha256(data).hexdigest()}


INVALID_VALUES = {"penalty_type": "罚金", "list_name": "黑名单", "rating": "AA", "status": "正常",
                  "town": "大兴区", "subject_type": "企业"}


def _csv_line(values: Sequence[str]) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(values)
    return buf.getvalue()


def _json_value(sc, column: str, text: str):
    """A JSON value as a department writes it: null for empty, numbers as numbers where they parse."""
    if text == "":
        return None
    typ = sc.column(column).type
    if typ in ("long", "int"):
        try:
            return int(text)
        except ValueError:
            return text
    if typ == "double" or typ.startswith("decimal"):
        try:
            f = float(text)
            return int(f) if f.is_integer() and "." not in text else f
        except ValueError:
            return text
    return text


# ------------------------------------------------------------------ identifiers and names

class Unknowns:
    """Credit codes and ID numbers of subjects no register knows (regions the registers never use)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._codes: set[str] = set()
        self._ids: set[str] = set()

    def code(self) -> str:
        while True:
            body = f"{self._rng.randrange(10**8):08d}"
            check = 11 - sum(int(c) * w for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2))) % 11
            org = body + {10: "X", 11: "0"}.get(check, str(check))
            code = make_uscc("9", "1", UNKNOWN_CODE_REGION, org)
            if code not in self._codes:
                self._codes.add(code)
                return code

    def id_number(self) -> str:
        while True:
            birth = datetime.date(1950, 1, 1) + datetime.timedelta(days=self._rng.randrange(365 * 50))
            first17 = f"{UNKNOWN_ID_REGION}{birth:%Y%m%d}{self._rng.randrange(1, 999):03d}"
            idn = first17 + cn_id_check_char(first17)
            if idn not in self._ids:
                self._ids.add(idn)
                return idn


def other_name(rng: random.Random, name: str, trade_chars: str) -> str:
    """A name differing from ``name`` in one character that is not a legal-form word: for an
    organisation a trade-name character, for a person the last character."""
    chars = list(name)
    if len(name) <= 4:  # a person's name
        positions = [len(name) - 1]
    else:
        positions = [i for i, c in enumerate(chars) if c in trade_chars] or [len(name) // 2]
    i = rng.choice(positions)
    pool = [c for c in trade_chars if c != chars[i] and c not in chars]
    chars[i] = rng.choice(pool)
    return "".join(chars)


def date_between(rng: random.Random, first: datetime.date, last: datetime.date) -> datetime.date:
    if last <= first:
        return first
    return first + datetime.timedelta(days=rng.randrange((last - first).days + 1))


def add_years(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)
