"""Synthetic e-licence files (电子证照) from the issuing departments; see ``sample.generate_governance``
for how they stay consistent with the registers.

* ``samr_elicences``: a business licence (营业执照, numbered by the credit code, 长期 or a term of
  operation) for 70% of the clean market-register entities, a food-operation licence (5 years) for
  40% of those in wholesale/retail and catering (F, H);
* ``zjw_elicences``: construction permits (3 years) for 50% of the construction and real-estate
  entities (E, K);
* ``psb_elicences``: the electronic ID card for 80% of the sampled people aged 16 and over (valid 10,
  20 years or 长期 by the age at issue);
* ``mca_elicences``: marriage certificates for 20% of the sampled adults (no expiry, they do not end
  with their holder).

A licence's status follows its holder and validity: 有效 while valid and the holder exists, 过期 after
its validity, 注销/吊销 with a deregistered entity (注销 for a dead person's ID card); a marriage
certificate stays 有效. At least ``MIN_ROWS`` per source (topped up with other holders at tiny scales).

Defects (``RATES``): ``licence_holder_unknown``, ``name_mismatch``, ``licence_issuer_unauthorised``
(a type another department issues, in this department's file), ``licence_expired_active``,
``licence_holder_inactive`` (有效 though the entity is deregistered / the person dead),
``invalid_period``, ``duplicate_record``, ``missing_value`` (the holder's identifier: found when
building), and at ingest ``whitespace`` (name), ``fullwidth`` and ``credit_code_checksum`` (credit
code), ``id_checksum`` (ID number), ``invalid_value`` (status), ``invalid_date``, ``malformed_row``.
"""
from __future__ import annotations

import datetime
import random

from lake.reference import E_LICENCE
from sample.common import _TRADE_NAME_CHARS
from sample.governance import (ACTIVE, DEREGISTERED, Entity, Person, Plan, SourceFile, Subjects, Unknowns,
                                        add_years, date_between, other_name)

MIN_ROWS = 25
PREFIX = {"samr_elicences": "SCZZ", "zjw_elicences": "ZJZZ", "psb_elicences": "GAZZ", "mca_elicences": "MZZZ"}
TYPES = {"samr_elicences": ("YYZZ", "SPJY"), "zjw_elicences": ("SGXK",), "psb_elicences": ("JMSFZ",),
         "mca_elicences": ("JHZ",)}
# a type of another department that a file sometimes carries (licence_issuer_unauthorised)
FOREIGN = {"samr_elicences": "SGXK", "zjw_elicences": "SPJY", "psb_elicences": "JHZ", "mca_elicences": "JMSFZ"}
RATES = {"licence_holder_unknown": 0.01, "name_mismatch": 0.01, "licence_issuer_unauthorised": 0.005,
         "licence_expired_active": 0.01, "licence_holder_inactive": 0.01, "invalid_period": 0.005,
         "duplicate_record": 0.005, "missing_holder": 0.003, "whitespace": 0.004, "fullwidth": 0.003,
         "credit_code_checksum": 0.003, "id_checksum": 0.003, "invalid_value": 0.003, "invalid_date": 0.003,
         "malformed_row": 0.002}
ENTITY_ONLY = {"fullwidth", "credit_code_checksum"}
PERSON_ONLY = {"id_checksum"}


class _Licence:
    """What a licence is before it is written: type, number, holder, dates, status."""

    def __init__(self, ltype: str, number: str, holder: Entity | Person, issued: datetime.date,
                 valid_from: datetime.date, valid_to: datetime.date | None, status: str) -> None:
        self.ltype, self.number, self.holder = ltype, number, holder
        self.issued, self.valid_from, self.valid_to, self.status = issued, valid_from, valid_to, status

    def row(self, issuer_source: str | None = None) -> dict:
        cat = E_LICENCE.catalogue[self.ltype]
        h = self.holder
        entity = isinstance(h, Entity)
        return {"licence_type": self.ltype, "licence_no": self.number, "holder_name": h.name,
                "holder_credit_code": h.code if entity else "", "holder_id_number": "" if entity else h.id_number,
                "issuer": cat.issuer, "issuer_code": cat.issuer_code, "issue_date": self.issued.isoformat(),
                "valid_from": self.valid_from.isoformat(), "valid_to": self.valid_to.isoformat() if self.valid_to else "",
                "status": self.status}


def _status(holder, valid_to: datetime.date | None, extract: datetime.date, ends_with_holder: bool) -> str:
    if ends_with_holder:
        if isinstance(holder, Entity) and holder.status in DEREGISTERED:
            return "吊销" if holder.status == "吊销" else "注销"
        if isinstance(holder, Person) and holder.status == "死亡":
            return "注销"
    if valid_to is not None and valid_to < extract:
        return "过期"
    return "有效"


class _Maker:
    """Licences of each type for a holder, valid by construction."""

    def __init__(self, rng: random.Random, extract: datetime.date) -> None:
        self.rng, self.extract = rng, extract
        self.seq = 100_000 + rng.randrange(100_000)

    def make(self, ltype: str, holder) -> _Licence:
        rng, extract = self.rng, self.extract
        self.seq += 1
        cat = E_LICENCE.catalogue[ltype]
        if ltype == "YYZZ":
            issued = holder.established or date_between(rng, datetime.date(2000, 1, 1), extract)
            valid_from = issued
            valid_to = None if rng.random() < 0.9 else add_years(issued, rng.choice((20, 30))) - datetime.timedelta(days=1)
            number = holder.code
        elif ltype in ("SPJY", "SGXK"):
            first = max(holder.established or datetime.date(2015, 1, 1), extract - datetime.timedelta(days=6 * 365))
            issued = date_between(rng, first, extract - datetime.timedelta(days=1))
            valid_from = issued
            valid_to = add_years(issued, cat.valid_years) - datetime.timedelta(days=1)
            number = (f"JY1{110115}{self.seq:08d}" if ltype == "SPJY" else f"110115{issued:%Y%m%d}{self.seq % 1000:03d}01")
        elif ltype == "JMSFZ":
            sixteen = add_years(holder.birth, 16)
            issued = date_between(rng, max(sixteen, extract - datetime.timedelta(days=25 * 365)), extract - datetime.timedelta(days=1))
            age = (issued - holder.birth).days // 365
            years = 10 if age < 26 else 20 if age < 46 else None
            valid_from = issued
            valid_to = add_years(issued, years) if years else None
            number = f"DZZZ{self.seq:012d}"
        else:  # JHZ
            adult = add_years(holder.birth, 22 if holder.male else 20)
            issued = date_between(rng, adult, extract - datetime.timedelta(days=1))
            valid_from, valid_to = issued, None
            number = f"J110115-{issued.year}-{self.seq:06d}"
        return _Licence(ltype, number, holder, issued, valid_from, valid_to,
                        _status(holder, valid_to, extract, cat.ends_with_holder))


def generate(scale: float, seed: int, subjects: Subjects, extract: datetime.date) -> list[SourceFile]:
    rng = random.Random(f"{seed}-licence")
    stamp = extract.strftime("%Y%m%d")
    unknowns = Unknowns(rng)
    maker = _Maker(rng, extract)
    samr = [e for e in subjects.entities if e.register == "samr_enterprises"]
    people = [p for p in subjects.people if (extract - p.birth).days >= 16 * 365]
    if not samr or not people:
        raise ValueError("the e-licence sample needs clean entities and people; scale too small")
    holders = {
        "samr_elicences": [("YYZZ", e) for e in samr if rng.random() < 0.7]
        + [("SPJY", e) for e in samr if e.industry in ("F", "H") and rng.random() < 0.4],
        "zjw_elicences": [("SGXK", e) for e in samr if e.industry in ("E", "K") and rng.random() < 0.5],
        "psb_elicences": [("JMSFZ", p) for p in people if rng.random() < 0.8],
        "mca_elicences": [("JHZ", p) for p in people if (extract - p.birth).days >= 22 * 365 and rng.random() < 0.2],
    }
    pools = {"entity": [e for e in samr if e.status in ACTIVE], "dead_entity": [e for e in samr if e.status in DEREGISTERED],
             "person": [p for p in people if p.status == "正常"], "dead_person": [p for p in people if p.status == "死亡"]}
    files = []
    for source, items in holders.items():
        kind = "entity" if source in ("samr_elicences", "zjw_elicences") else "person"
        while len(items) < MIN_ROWS:   # tiny scales: other holders of the source's first type
            items.append((TYPES[source][0], rng.choice(pools[kind] or (samr if kind == "entity" else people))))
        files.append(_write(rng, source, stamp, items, maker, pools, kind, unknowns, extract))
    return files


def _write(rng, source, stamp, items, maker: _Maker, pools, kind, unknowns: Unknowns, extract) -> SourceFile:
    f = SourceFile(source, stamp, rng, PREFIX[source])
    plan = Plan(rng, RATES)
    seen: set[tuple[str, str]] = set()
    for ltype, holder in items:
        lic = maker.make(ltype, holder)
        if (ltype, lic.number) in seen:   # a business licence per entity: its credit code
            continue
        seen.add((ltype, lic.number))
        eligible = set(RATES) - (ENTITY_ONLY if kind == "person" else PERSON_ONLY)
        if not (E_LICENCE.catalogue[ltype].valid_years or ltype == "JMSFZ") or lic.status != "有效":
            eligible -= {"licence_expired_active"}
        # a licence that ended with its holder can be left 有效 (licence_holder_inactive)
        gone = (holder.status in DEREGISTERED) if kind == "entity" else (holder.status == "死亡")
        if not (E_LICENCE.catalogue[ltype].ends_with_holder and gone and lic.status != "有效"):
            eligible -= {"licence_holder_inactive"}
        defect = plan.pick(eligible)
        id_col = "holder_credit_code" if kind == "entity" else "holder_id_number"
        if defect == "licence_expired_active":
            ended = extract - datetime.timedelta(days=1 + rng.randrange(300))
            lic.valid_to = ended
            lic.valid_from = min(lic.valid_from, ended - datetime.timedelta(days=365))
            lic.issued = lic.valid_from
            f.add(lic.row(), defect, "status")
            continue
        if defect == "licence_holder_inactive":
            lic.status = "有效"
            if lic.valid_to is not None and lic.valid_to < extract:
                lic.valid_to = add_years(extract, 1)
            f.add(lic.row(), defect, id_col)
            continue
        if defect == "licence_issuer_unauthorised":
            foreign = FOREIGN[source]
            other = maker.make(foreign, holder if (E_LICENCE.catalogue[foreign].holder == kind)
                               else rng.choice(pools["person" if kind == "entity" else "entity"] or [holder]))
            row = other.row()
            row["issuer"], row["issuer_code"] = f.sc.department, f.sc.department_code
            f.add(row, defect, "issuer_code")
            continue
        row = lic.row()
        if defect == "invalid_period":
            row["valid_to"] = (lic.valid_from - datetime.timedelta(days=1 + rng.randrange(365))).isoformat()
            f.add(row, defect, "valid_to")
            continue
        if defect == "licence_holder_unknown":
            row[id_col] = unknowns.code() if kind == "entity" else unknowns.id_number()
            f.add(row, defect, id_col)
            continue
        if defect == "name_mismatch":
            row["holder_name"] = other_name(rng, row["holder_name"], _TRADE_NAME_CHARS)
            f.add(row, defect, "holder_name")
            continue
        if defect == "missing_holder":
            row[id_col] = ""
            f.add(row, "missing_value", id_col)
            continue
        added = f.add(row)
        if defect == "duplicate_record":
            f.duplicate(added)
        elif defect == "whitespace":
            f.corrupt(added, defect, "holder_name")
        elif defect in ("fullwidth", "credit_code_checksum", "id_checksum"):
            f.corrupt(added, defect, id_col)
        elif defect == "invalid_value":
            f.corrupt(added, defect, "status")
        elif defect == "invalid_date":
            f.corrupt(added, defect, "issue_date")
        elif defect == "malformed_row":
            f.corrupt(added, defect, "_row")
    return f
