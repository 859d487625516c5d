"""De-identification of record-level open datasets, driven by the contract (``open_dataset``), and the
k-anonymity / l-diversity gate on the exact file published.

A record-level dataset (``kind: record``) names one rule per column of its table in
``open_dataset.deidentify``:

- ``keep``: published as it is (never allowed for a personal column: ``pii: true``);
- ``drop``: not published;
- ``pseudonymise``: replaced by a keyed hash (HMAC-SHA256 of dataset, column and value, 16 base32
  characters: no digit run that could look like an ID or phone number). The key never enters the lake
  or git: ``LAKE_PSEUDONYM_KEY`` (hex) or the key file ``LAKE_PSEUDONYM_KEY_FILE`` (default
  ``.cache/secrets/pseudonym.key``, git-ignored), generated on first use, except under CI (``CI`` set),
  where a missing key is an error: pseudonyms must stay the same from one release to the next;
- ``suppress``: values held by fewer than ``k`` rows are replaced by ``*`` (local suppression);
- ``{generalise: [level, level, ...], as: name, title: ..., at: column, lat: column}``: the value at its
  first level; the gate may move a quasi-identifier to the next levels. Levels: ``month``, ``quarter``,
  ``year`` (dates); ``age_5y``, ``age_10y``, ``age_20y`` (a birth date -> the age band at ``at``, a date
  column of the row, or at the run's reference date); ``town`` (a town, or an address read by
  ``lake.address`` -> its town), ``district``; ``grid_1km``, ``grid_5km`` (a longitude column and its
  ``lat`` -> the grid cell); ``value`` (as it is: the first level of a column the gate may withhold), ``*`` (the value
  withheld).

Anonymisation (``anonymise``) is Sweeney's Datafly: while more rows than ``max_suppression`` of the
dataset sit in equivalence classes (rows with equal quasi-identifiers) of fewer than ``k`` rows, or
with fewer than ``l`` distinct values of a sensitive attribute, the quasi-identifier with the most
distinct values moves to its next level; then the rows of the classes still too small are suppressed.
When every level is used up and more rows would have to go, publication is refused.

The gate (``check_file``) parses the data.csv bytes that would be published and measures k and l on
them with its own code (``measure``), tested against pycanon."""
from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import hmac
import io as pyio
import math
import os
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lake.settings import REPO
from opendata.contract import OpenDataError

KEY_ENV = "LAKE_PSEUDONYM_KEY"
KEY_FILE_ENV = "LAKE_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = REPO / ".cache" / "secrets" / "pseudonym.key"
WITHHELD = "*"
UNKNOWN = "unknown"
AGE_WIDTH = {"age_5y": 5, "age_10y": 10, "age_20y": 20}
AGE_TOP = 85  # 85+ (age_5y), 80+ (age_10y, age_20y)
GRID_KM = {"grid_1km": 1.0, "grid_5km": 5.0}
KM_PER_DEGREE = 111.32


class Refused(OpenDataError):
    """A dataset may not be published as it stands; the message says why (one line)."""


# ----------------------------------------------------------------------------------- the key

def pseudonym_key() -> bytes:
    """The pseudonymisation key (32 bytes): ``LAKE_PSEUDONYM_KEY`` (hex), else the key file
    (``LAKE_PSEUDONYM_KEY_FILE``, default ``.cache/secrets/pseudonym.key``), created on first use outside CI."""
    env = os.environ.get(KEY_ENV, "").strip()
    if env:
        try:
            key = bytes.fromhex(env)
        except ValueError:
            raise OpenDataError(f"{KEY_ENV} must be a hex string (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)") from None
        if len(key) < 16:
            raise OpenDataError(f"{KEY_ENV} is {len(key)} bytes; a pseudonymisation key needs at least 16 (32 recommended)")
        return key
    path = Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE)
    if path.is_file():
        try:
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        except ValueError:
            raise OpenDataError(f"{path}: not a hex pseudonymisation key") from None
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        raise OpenDataError(f"no pseudonymisation key: set {KEY_ENV} (hex) or provide {path}; it is not generated "
                            "under CI, so that pseudonyms stay the same from one release to the next")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def pseudonym(key: bytes, scope: str, value) -> str | None:
    """16 base32 characters of HMAC-SHA256(key, scope \\x1f value); None stays None."""
    if value is None:
        return None
    mac = hmac.new(key, f"{scope}\x1f{value}".encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(mac[:10]).decode("ascii").lower()


# ----------------------------------------------------------------------------------- generalisation

def _date(v) -> dt.date | None:
    if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("", "NaT", "<NA>", "None", "nan"):
        return None
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if hasattr(v, "date") and callable(v.date):  # pandas Timestamp
        return v.date()
    return dt.date.fromisoformat(str(v)[:10])


def age_at(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_band(age: int, level: str) -> str:
    width = AGE_WIDTH[level]
    top = AGE_TOP if width == 5 else 80
    if age >= top:
        return f"{top}+"
    lo = (age // width) * width
    return f"{lo}-{lo + width - 1}"


def _town(text) -> str:
    from lake import address

    if text is None or str(text).strip() == "":
        return UNKNOWN
    s = str(text).strip()
    a = address.parse(s)
    if a.town:
        return a.town
    return address.town_of(s) or UNKNOWN


def grid_cell(lon, lat, level: str) -> str:
    """The south-west corner of the ``level`` cell holding (lon, lat), as ``"1km:116.330,39.730"``;
    cells are ``km`` kilometres tall and (at the district's latitude) wide."""
    km = GRID_KM[level]
    dlat = km / KM_PER_DEGREE
    dlon = km / (KM_PER_DEGREE * math.cos(math.radians(39.6)))
    x, y = math.floor(float(lon) / dlon) * dlon, math.floor(float(lat) / dlat) * dlat
    return f"{int(km)}km:{x:.3f},{y:.3f}"


def generalise(values: list, level: str, *, at: list | None = None, lat: list | None = None,
               as_of: str | None = None) -> list:
    """``values`` at ``level`` (text or None)."""
    from lake.reference import DISTRICT

    if level == WITHHELD:
        return [WITHHELD] * len(values)
    if level == "value":
        return [None if _plain_value(v) is None else str(_plain_value(v)) for v in values]
    if level in ("month", "quarter", "year"):
        out = []
        for v in values:
            d = _date(v)
            if d is None:
                out.append(None)
            elif level == "month":
                out.append(f"{d.year:04d}-{d.month:02d}")
            elif level == "quarter":
                out.append(f"{d.year:04d}-Q{(d.month - 1) // 3 + 1}")
            else:
                out.append(f"{d.year:04d}")
        return out
    if level in AGE_WIDTH:
        ref = _date(as_of) if as_of else None
        out = []
        for i, v in enumerate(values):
            b = _date(v)
            on = _date(at[i]) if at is not None else ref
            if b is None or on is None or on < b:
                out.append(UNKNOWN)
            else:
                out.append(age_band(age_at(b, on), level))
        return out
    if level == "town":
        return [_town(v) for v in values]
    if level == "district":
        return [None if v is None else DISTRICT.name for v in values]
    if level in GRID_KM:
        if lat is None:
            raise OpenDataError(f"{level} needs the latitude column")
        return [None if lo is None or la is None else grid_cell(lo, la, level) for lo, la in zip(values, lat)]
    raise OpenDataError(f"unknown generalisation level '{level}'")


# ----------------------------------------------------------------------------------- applying the contract

@dataclass
class Prepared:
    """A record-level dataset after its column rules: the published columns in order, each column's
    values per generalisation level (one level for kept, pseudonymised and suppressed columns)."""
    columns: list[dict]                 # {name, title, type, rule}
    levels: dict[str, list[str]]        # output column -> its level names
    values: dict[str, list[list]]       # output column -> one list of values per level
    rows: int


def prepare(tc, records: dict[str, list], as_of: str, key: bytes | None = None) -> Prepared:
    """Apply ``tc.open_dataset.deidentify`` to ``records`` (column name -> values, the table's rows)."""
    od = tc.open_dataset
    rules = od["deidentify"]
    n = len(next(iter(records.values()))) if records else 0
    cols, levels, values = [], {}, {}
    for c in tc.columns:
        rule = rules[c.name]
        col = records[c.name]
        if rule == "drop":
            continue
        if rule == "keep":
            cols.append({"name": c.name, "title": c.title, "type": c.type, "rule": "keep"})
            levels[c.name], values[c.name] = ["value"], [[_plain_value(v) for v in col]]
        elif rule == "pseudonymise":
            if key is None:
                key = pseudonym_key()
            scope = f"{od['id']}/{c.name}"
            cols.append({"name": c.name, "title": f"{c.title}（假名化）" if c.title else "", "type": "string",
                         "rule": "pseudonymise"})
            levels[c.name], values[c.name] = ["pseudonym"], [[pseudonym(key, scope, _plain_value(v)) for v in col]]
        elif rule == "suppress":
            plain = [_plain_value(v) for v in col]
            counts = Counter(v for v in plain if v is not None)
            cols.append({"name": c.name, "title": c.title, "type": "string" if c.type != "string" else c.type,
                         "rule": f"suppress values of fewer than {od['k']} rows"})
            levels[c.name] = ["value"]
            values[c.name] = [[v if v is None or counts[v] >= od["k"] else WITHHELD for v in plain]]
        else:
            name = rule.get("as") or c.name
            at = records[rule["at"]] if rule.get("at") else None
            lat = records[rule["lat"]] if rule.get("lat") else None
            cols.append({"name": name, "title": rule.get("title") or c.title, "type": "string",
                         "rule": "generalise: " + " -> ".join(rule["generalise"])})
            levels[name] = list(rule["generalise"])
            values[name] = [generalise(col, lv, at=at, lat=lat, as_of=as_of) for lv in rule["generalise"]]
    return Prepared(cols, levels, values, n)


def _plain_value(v):
    if v is None or str(v) in ("<NA>", "NaT", "nan", "None"):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return v


# ----------------------------------------------------------------------------------- measuring

def _key(v) -> str:
    return "" if v is None else str(v)


def classes(rows: list[dict], qi: list[str]) -> dict[tuple, list[int]]:
    """Equivalence classes: quasi-identifier values -> indexes of the rows holding them."""
    out: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        out[tuple(_key(r[q]) for q in qi)].append(i)
    return out


def measure(rows: list[dict], qi: list[str], sensitive: list[str] = ()) -> dict:
    """k (the smallest equivalence class) and l (the fewest distinct values of a sensitive attribute
    in a class, over the sensitive attributes) of ``rows``; None for an empty dataset."""
    if not rows:
        return {"k": None, "l": None, "classes": 0}
    groups = classes(rows, qi)
    k = min(len(ix) for ix in groups.values())
    ls = [min(len({_key(rows[i][s]) for i in ix}) for ix in groups.values()) for s in sensitive]
    return {"k": k, "l": min(ls) if ls else None, "classes": len(groups)}


def read_csv(data: bytes) -> tuple[list[str], list[dict]]:
    """data.csv bytes -> header and rows (blank cells as None)."""
    reader = csv.reader(pyio.StringIO(data.decode("utf-8")))
    header = next(reader, [])
    rows = [{h: (v if v != "" else None) for h, v in zip(header, r)} for r in reader]
    return header, rows


def check_file(data_csv: bytes, dataset: str, qi: list[str], sensitive: list[str], k: int, l: int | None) -> dict:
    """The gate: k-anonymity and l-diversity of the exact data.csv; raises Refused naming what fails."""
    header, rows = read_csv(data_csv)
    missing = [c for c in [*qi, *sensitive] if c not in header]
    if missing:
        raise Refused(f"open/{dataset}/data.csv has no column(s) {missing} of its declared quasi-identifiers "
                      f"and sensitive attributes (it has {header})")
    m = measure(rows, qi, sensitive)
    if qi and m["k"] is not None and m["k"] < k:
        small = sorted((key for key, ix in classes(rows, qi).items() if len(ix) < k))
        raise Refused(f"open/{dataset}/data.csv is not {k}-anonymous: its smallest equivalence class over {qi} has "
                      f"{m['k']} row(s) ({len(small)} class(es) under {k}, e.g. {list(small[0])})")
    if qi and l and m["l"] is not None and m["l"] < l:
        raise Refused(f"open/{dataset}/data.csv is not {l}-diverse: an equivalence class over {qi} has only "
                      f"{m['l']} distinct value(s) of {sensitive}")
    return m


# ----------------------------------------------------------------------------------- anonymising

@dataclass
class Anonymised:
    rows: list[dict]                    # the published rows, columns in Prepared order
    levels: dict[str, str] = field(default_factory=dict)   # quasi-identifier -> level used
    suppressed: int = 0
    steps: list[str] = field(default_factory=list)


def _bad_rows(rows: list[dict], qi: list[str], sensitive: list[str], k: int, l: int | None) -> set[int]:
    bad: set[int] = set()
    for ix in classes(rows, qi).values():
        if len(ix) < k or (l and any(len({_key(rows[i][s]) for i in ix}) < l for s in sensitive)):
            bad.update(ix)
    return bad


def anonymise(p: Prepared, dataset: str, qi: list[str], sensitive: list[str], k: int, l: int | None,
              max_suppression: float) -> Anonymised:
    """Datafly: generalise the quasi-identifiers step by step, then suppress the rows of the classes
    still under k (or l); Refused when that would be more than ``max_suppression`` of the rows."""
    names = [c["name"] for c in p.columns]
    at = {c: 0 for c in names}

    def assemble() -> list[dict]:
        cols = [p.values[c][at[c]] for c in names]
        return [dict(zip(names, vals)) for vals in zip(*cols)] if cols else []

    steps = []
    while True:
        rows = assemble()
        if not qi or not rows:
            return Anonymised(rows, {q: p.levels[q][at[q]] for q in qi}, 0, steps)
        bad = _bad_rows(rows, qi, sensitive, k, l)
        if len(bad) <= max_suppression * len(rows):
            break
        movable = [q for q in qi if at[q] < len(p.levels[q]) - 1]
        if not movable:
            raise Refused(
                f"open/{dataset}: k={k}" + (f", l={l}" if l else "") + f" cannot be reached: with every quasi-identifier "
                f"at its last level ({', '.join(f'{q}={p.levels[q][at[q]]}' for q in qi)}) {len(bad)} of {len(rows)} rows "
                f"({len(bad) / len(rows):.0%}) sit in classes that are too small, more than max_suppression "
                f"{max_suppression:.0%}; not published")
        distinct = {q: len({_key(r[q]) for r in rows}) for q in movable}
        q = max(movable, key=lambda q: (distinct[q], -qi.index(q)))
        at[q] += 1
        steps.append(f"{q}: {p.levels[q][at[q] - 1]} -> {p.levels[q][at[q]]} ({len(bad)} rows in small classes)")
    kept = [r for i, r in enumerate(rows) if i not in bad]
    return Anonymised(kept, {q: p.levels[q][at[q]] for q in qi}, len(bad), steps)
