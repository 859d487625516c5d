"""Sample data over time: a first full delivery and N-1 days of department changes.

``generate_days(days, scale, seed, out)`` writes ``out/day-01/`` … ``out/day-NN/``, each an inbox (one
folder per source) with its own ``manifest.json`` (``as_of``: the business date of the day's
deliveries; ``day``; ``files`` as ``sample.generate`` lists them, each with its ``kind``: ``full``,
``changes`` or ``snapshot``) and ``truth/`` (``defects.csv`` of the day's files, ``links.csv`` of
the day's rows without an ID number, ``changes.csv`` of every change the day's files carry).

Day 01 is ``sample.generate.generate`` unchanged (the full first delivery, with the base map and the
sensing day). On each later day every department sends what its contract's ``delivery`` says
(``contracts/sources/*.yaml``):

* change files with an operation column ``op`` (I insert, U update, D delete) from 公安 (births, people
  moving in, moves inside the district, deaths, moving out, phone changes, corrections deleted), 民政
  residents (marital status, allowance, deaths, new and removed residents), 人社 (employment changes,
  new insured, insurance ended), 市场监管 (new enterprises, moves, deregistrations, phone changes,
  deletions) and 税务 (new taxpayers, tax status following a deregistration, phone changes);
* an event file without an operation column from 卫健 (the day's births and deaths);
* a complete snapshot from 民政 social organisations and 编办 institutions (new ones added, some
  status changes, a few removed).

About 0.3-1 % of a source's rows change on a day (the rate is drawn per source and day). Copies stay
consistent: a move, a death or a new enterprise reaches every department that holds the person or
entity on the same day, so that no unrecorded disagreement appears. About 2 % of the change rows
carry one row-level defect (``DAILY_DEFECTS``, recorded in ``truth/defects.csv``); deletions carry
none. Output is a pure function of (days, scale, seed, start date).
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import random
from pathlib import Path

from sample.common import DAXING_TOWNS, DEFAULT_EXTRACT_DATE, _TOWN_WEIGHTS, _Weighted
from sample.generate import (
    COLUMNS, ENCODINGS, FORMATS, HRSS, MCA, NHC, PSB, SAMR, SEO, SOC, SOURCES, TAX, _corrupt, _Names, _phone,
    generate,
)
from sample.identifiers import cn_id_check_char, make_uscc

CHANGE_SOURCES = (PSB, MCA, HRSS, SAMR, TAX)  # change files with an op column
EVENT_SOURCES = (NHC,)  # events, no op column
SNAPSHOT_SOURCES = (SOC, SEO)  # complete list every day
OP = "op"
DAILY_DEFECT_RATE = 0.02
# (defect, field) drawn for a defective change row, per source
DAILY_DEFECTS = {
    PSB: (("phone_format", "phone"), ("whitespace", "name"), ("id_checksum", "id_number"),
          ("fullwidth", "phone"), ("missing_value", "name")),
    MCA: (("phone_format", "phone"), ("whitespace", "name"), ("id_checksum", "id_number")),
    HRSS: (("phone_format", "phone"), ("whitespace", "name"), ("id_checksum", "id_number")),
    NHC: (("whitespace", "name"), ("id_checksum", "id_number")),
    SAMR: (("phone_format", "phone"), ("whitespace", "name"), ("credit_code_checksum", "credit_code")),
    TAX: (("phone_format", "phone"), ("credit_code_checksum", "credit_code")),
    SOC: (("phone_format", "phone"), ("whitespace", "name")),
    SEO: (("whitespace", "name"),),
}
_KEY = {PSB: "id_number", MCA: "id_number", HRSS: "id_number", NHC: "id_number", SAMR: "credit_code",
        SOC: "credit_code", SEO: "credit_code", TAX: "credit_code"}
_PREFIX = {PSB: "HJ", MCA: "MZ", HRSS: "SB", NHC: "WJ", SAMR: "SC", SOC: "ST", SEO: "SY", TAX: "SW"}


def day_dir(out: Path, k: int) -> Path:
    return Path(out) / f"day-{k:02d}"


def _read_rows(path: Path, source: str) -> list[dict]:
    """Every well-formed row of a generated file, in order (malformed lines are skipped)."""
    cols = COLUMNS[source]
    text = path.read_text(encoding=ENCODINGS[source])
    rows = []
    if FORMATS[source] == "csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader)
        for rec in reader:
            if len(rec) == len(cols):
                rows.append(dict(zip(cols, rec)))
    else:
        for line in text.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and set(obj) == set(cols):
                rows.append({c: obj[c] if obj[c] is not None else "" for c in cols})
    return rows


class _State:
    """The clean current rows of every department, per entity key (rows that carried a defect on
    day 01, duplicates and rows without an ID number are left alone: they never change)."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        bad: set[tuple[str, str]] = set()
        with open(folder / "truth" / "defects.csv", encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                bad.add((r["source"], r["record_key"]))
        self.rows: dict[str, dict[str, dict]] = {s: {} for s in SOURCES}
        self.snapshot_lines: dict[str, list[tuple]] = {}
        self.keys: set[str] = set()
        self.truth_kept: dict[str, list[tuple]] = {s: [] for s in SNAPSHOT_SOURCES}
        with open(folder / "truth" / "defects.csv", encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                if r["source"] in SNAPSHOT_SOURCES:
                    self.truth_kept[r["source"]].append((r["source"], r["record_key"], r["field"], r["defect_type"]))
        for entry in manifest["files"]:
            source = entry["source"]
            rows = _read_rows(folder / entry["path"], source)
            key = _KEY[source]
            for r in rows:
                if r[key]:
                    self.keys.add(r[key])
                if (source, r["record_id"]) in bad or not r[key] or r[key] in self.rows[source]:
                    continue
                self.rows[source][r[key]] = r
            if source in SNAPSHOT_SOURCES:  # the list as the department keeps it, defects and all
                self.snapshot_lines[source] = [(_line_key(line, source), _line_record_id(line, source), line)
                                               for line in _raw_records(folder / entry["path"], source)]


def _raw_records(path: Path, source: str) -> list[str]:
    text = path.read_text(encoding=ENCODINGS[source])
    lines = text.splitlines()
    return lines[1:] if FORMATS[source] == "csv" else lines


class _Writer:
    """The files of one day: rows per source, the truth of its defects and changes."""

    def __init__(self, rng: random.Random, k: int) -> None:
        self.rng = rng
        self.k = k
        self.rows: dict[str, list[list[str]]] = {s: [] for s in SOURCES}
        self.defects: list[tuple] = []
        self.links: list[tuple] = []
        self.changes: list[tuple] = []
        self._n = 0

    def record_id(self, source: str) -> str:
        self._n += 1
        return f"{_PREFIX[source]}D{self.k:02d}{self._n:06d}"

    def serialize(self, source: str, op: str, row: dict, defect_ok: bool = True) -> str:
        """A snapshot row as the line written (the change and any defect recorded)."""
        self.emit(source, None, row, defect_ok)
        values = self.rows[source].pop()
        self.changes[-1] = (source, op, row.get(_KEY[source], ""), row["record_id"])
        if FORMATS[source] == "csv":
            buf = io.StringIO()
            csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="").writerow(values)
            return buf.getvalue()
        return json.dumps({c: v if v != "" else None for c, v in zip(COLUMNS[source], values)}, ensure_ascii=False)

    def emit(self, source: str, op: str | None, row: dict, defect_ok: bool = True) -> None:
        values = [row.get(c, "") or "" for c in COLUMNS[source]]
        key = row.get(_KEY[source], "")
        self.changes.append((source, op or "I", key, row["record_id"]))
        if defect_ok and op != "D" and self.rng.random() < DAILY_DEFECT_RATE:
            defect, field = self.rng.choice(DAILY_DEFECTS[source])
            i = COLUMNS[source].index(field)
            if values[i]:
                values[i] = _corrupt(self.rng, defect, field, values[i])
                self.defects.append((source, row["record_id"], field, defect))
        self.rows[source].append(([op] if op is not None else []) + values)


def _new_id(rng: random.Random, taken: set[str], birth: datetime.date, male: bool, region: str = "110115") -> str:
    while True:
        seq = rng.randrange(1, 500) * 2 - (1 if male else 0)
        first17 = f"{region}{birth:%Y%m%d}{seq:03d}"
        ident = first17 + cn_id_check_char(first17)
        if ident not in taken:
            taken.add(ident)
            return ident


def _new_uscc(rng: random.Random, taken: set[str], authority: str, org_type: str) -> str:
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    while True:
        body = f"{rng.randrange(10**8):08d}"
        check = 11 - sum(int(c) * w for c, w in zip(body, weights)) % 11
        code = make_uscc(authority, org_type, "110115", body + {10: "X", 11: "0"}.get(check, str(check)))
        if code not in taken:
            taken.add(code)
            return code


def _rate(rng: random.Random) -> float:
    return 0.003 + rng.random() * 0.007


def _day(state: _State, k: int, as_of: datetime.date, seed: int, book, names: _Names) -> _Writer:
    rng = random.Random(f"{seed}-day-{k}")
    w = _Writer(rng, k)
    town = _Weighted(zip(DAXING_TOWNS, _TOWN_WEIGHTS))
    iso = as_of.isoformat()
    psb, mca, hrss = state.rows[PSB], state.rows[MCA], state.rows[HRSS]
    samr, tax = state.rows[SAMR], state.rows[TAX]

    def pick(d: dict, n: int, where=lambda r: True) -> list[str]:
        keys = sorted(k for k, r in d.items() if where(r))
        return rng.sample(keys, min(n, len(keys)))

    def nhc_event(kind: str, person: dict, when: str, no_id: bool = False) -> None:
        row = {"record_id": w.record_id(NHC), "event_type": kind, "id_number": person["id_number"],
               "name": person["name"], "gender": person["gender"], "birth_date": person["birth_date"],
               "event_date": when, "institution": "北京市大兴区人民医院", "town": person["town"]}
        if no_id:
            row["id_number"] = ""
            w.links.append((NHC, row["record_id"], person["id_number"]))
        w.emit(NHC, None, row, defect_ok=not no_id)

    # --- population: 公安 first, every other department follows on the same day
    n = len(psb)
    living = lambda r: r["register_status"] == "正常"  # noqa: E731
    for key in pick(psb, round(n * _rate(rng) * 0.35), living):  # moves inside the district
        r = dict(psb[key])
        r["town"] = town(rng)
        r["address"] = book.residence(rng, r["town"])
        psb[key] = r
        w.emit(PSB, "U", r)
        for src, d in ((MCA, mca), (HRSS, hrss)):
            if key in d:
                c = dict(d[key])
                c["address"] = r["address"]
                if "town" in c:
                    c["town"] = r["town"]
                d[key] = c
                w.emit(src, "U", c)
    for key in pick(psb, round(n * _rate(rng) * 0.25), living):  # phone changes
        r = dict(psb[key])
        r["phone"] = _phone(rng, empty=0.0, landline=0.1)
        psb[key] = r
        w.emit(PSB, "U", r)
    for key in pick(psb, max(1, round(n * _rate(rng) * 0.08)), living):  # deaths
        r = dict(psb[key])
        r["register_status"] = "死亡"
        psb[key] = r
        w.emit(PSB, "U", r)
        nhc_event("死亡", r, iso)
        if key in mca:
            c = dict(mca[key])
            c["death_date"] = iso
            mca[key] = c
            w.emit(MCA, "U", c)
        if key in hrss:
            w.emit(HRSS, "D", {**hrss.pop(key)})
    for key in pick(psb, max(1, round(n * _rate(rng) * 0.05)), living):  # moved out of the district
        r = dict(psb[key])
        r["register_status"] = "迁出"
        psb[key] = r
        w.emit(PSB, "U", r)
    for _ in range(max(1, round(n * _rate(rng) * 0.1))):  # births: register and birth certificate
        male = rng.random() < 0.51
        birth = as_of - datetime.timedelta(days=1 + rng.randrange(10))
        t = town(rng)
        r = {"record_id": w.record_id(PSB), "name": names(rng, male),
             "id_number": _new_id(rng, state.keys, birth, male), "gender": "男" if male else "女",
             "birth_date": birth.isoformat(), "ethnicity": "汉族", "phone": "", "town": t,
             "address": book.residence(rng, t), "registered_date": iso, "register_status": "正常"}
        psb[r["id_number"]] = r
        w.emit(PSB, "I", r)
        nhc_event("出生", r, birth.isoformat(), no_id=rng.random() < 0.4)
    for _ in range(round(n * _rate(rng) * 0.15)):  # people moving into the district
        male = rng.random() < 0.5
        birth = as_of - datetime.timedelta(days=365 * 20 + rng.randrange(365 * 40))
        t = town(rng)
        r = {"record_id": w.record_id(PSB), "name": names(rng, male),
             "id_number": _new_id(rng, state.keys, birth, male, rng.choice(("110101", "110108", "130102"))),
             "gender": "男" if male else "女", "birth_date": birth.isoformat(), "ethnicity": "汉族",
             "phone": _phone(rng, empty=0.1, landline=0.05), "town": t, "address": book.residence(rng, t),
             "registered_date": iso, "register_status": "正常"}
        psb[r["id_number"]] = r
        w.emit(PSB, "I", r)
    for key in pick(psb, max(1, round(n * 0.0002))):  # records entered in error, deleted
        r = psb.pop(key)
        w.emit(PSB, "D", {c: (r[c] if c in ("record_id", "id_number") else "") for c in COLUMNS[PSB]})
        for src, d in ((MCA, mca), (HRSS, hrss)):
            if key in d:
                c = d.pop(key)
                w.emit(src, "D", {x: (c[x] if x in ("record_id", "id_number") else "") for x in COLUMNS[src]})
    # 民政 residents: marital status and allowance, some new, some removed
    for key in pick(mca, round(len(mca) * _rate(rng) * 0.5)):
        c = dict(mca[key])
        c["marital_status"] = rng.choice(["已婚", "离异", "丧偶", "未婚"])
        mca[key] = c
        w.emit(MCA, "U", c)
    for key in pick(mca, round(len(mca) * _rate(rng) * 0.2)):
        c = dict(mca[key])
        c["subsistence_allowance"] = "否" if c["subsistence_allowance"] == "是" else "是"
        mca[key] = c
        w.emit(MCA, "U", c)
    for key in pick(psb, round(len(mca) * _rate(rng) * 0.2), lambda r: living(r) and r["id_number"] not in mca):
        p = psb[key]
        c = {"record_id": w.record_id(MCA), "id_number": key, "name": p["name"], "gender": p["gender"],
             "birth_date": p["birth_date"], "marital_status": "已婚", "subsistence_allowance": "否",
             "death_date": "", "phone": p["phone"], "town": p["town"], "address": p["address"]}
        mca[key] = c
        w.emit(MCA, "I", c)
    # 人社: employment changes, new insured, insurance ended
    for key in pick(hrss, round(len(hrss) * _rate(rng) * 0.6)):
        c = dict(hrss[key])
        c["employment_status"] = rng.choice(["在职", "灵活就业", "失业", "退休"])
        if c["employment_status"] != "在职":
            c["employer_credit_code"] = ""
        hrss[key] = c
        w.emit(HRSS, "U", c)
    for key in pick(psb, round(len(hrss) * _rate(rng) * 0.2),
                    lambda r: living(r) and r["id_number"] not in hrss and r["birth_date"] < "2008-01-01"):
        p = psb[key]
        c = {"record_id": w.record_id(HRSS), "id_number": key, "name": p["name"], "gender": p["gender"],
             "birth_date": p["birth_date"], "employment_status": "灵活就业", "insurance_types": "养老;医疗",
             "employer_credit_code": "", "phone": p["phone"], "address": p["address"]}
        hrss[key] = c
        w.emit(HRSS, "I", c)
    for key in pick(hrss, round(len(hrss) * _rate(rng) * 0.1)):
        c = hrss.pop(key)
        w.emit(HRSS, "D", {x: (c[x] if x in ("record_id", "id_number") else "") for x in COLUMNS[HRSS]})

    # --- legal entities: 市场监管 first, tax follows
    ns = len(samr)
    active = lambda r: r["status"] in ("存续", "在业")  # noqa: E731
    for _ in range(max(1, round(ns * _rate(rng) * 0.4))):  # new enterprises
        t = town(rng)
        code = _new_uscc(rng, state.keys, "9", "1")
        r = {"record_id": w.record_id(SAMR), "credit_code": code,
             "name": f"北京{''.join(rng.sample('恒泰华信达瑞丰源鑫德安博创宏盛兴隆', 3))}商贸有限公司",
             "legal_rep": names(rng, rng.random() < 0.7), "industry": "F", "registered_capital": "100.00",
             "established_date": iso, "status": "存续", "town": t, "address": book.residence(rng, t, True),
             "phone": _phone(rng, empty=0.08, landline=0.35), "deregistered_date": ""}
        samr[code] = r
        w.emit(SAMR, "I", r)
        if rng.random() < 0.5:
            x = {"record_id": w.record_id(TAX), "credit_code": code, "taxpayer_name": r["name"], "tax_status": "正常",
                 "taxpayer_type": "小规模纳税人", "tax_authority": "国家税务总局北京市大兴区税务局第一税务所",
                 "phone": r["phone"]}
            tax[code] = x
            w.emit(TAX, "I", x)
    for key in pick(samr, max(1, round(ns * _rate(rng) * 0.2)), active):  # deregistrations
        r = dict(samr[key])
        r["status"] = rng.choice(["注销", "吊销"])
        r["deregistered_date"] = iso
        samr[key] = r
        w.emit(SAMR, "U", r)
        if key in tax:
            x = dict(tax[key])
            x["tax_status"] = "注销" if r["status"] == "注销" else "非正常"
            tax[key] = x
            w.emit(TAX, "U", x)
    for key in pick(samr, round(ns * _rate(rng) * 0.3), active):  # moves
        r = dict(samr[key])
        r["town"] = town(rng)
        r["address"] = book.residence(rng, r["town"], True)
        samr[key] = r
        w.emit(SAMR, "U", r)
    for key in pick(tax, round(len(tax) * _rate(rng) * 0.3)):  # phone changes in tax
        x = dict(tax[key])
        x["phone"] = _phone(rng, empty=0.0, landline=0.3)
        tax[key] = x
        w.emit(TAX, "U", x)
    for key in pick(samr, max(1, round(ns * 0.0002)), lambda r: r["credit_code"] not in tax):  # entered in error
        r = samr.pop(key)
        w.emit(SAMR, "D", {c: (r[c] if c in ("record_id", "credit_code") else "") for c in COLUMNS[SAMR]})

    # --- snapshot departments: the complete list, a few changes
    for source in SNAPSHOT_SOURCES:
        d = state.rows[source]
        changed: dict[str, dict] = {}
        for key in pick(d, max(1, round(len(d) * _rate(rng) * 0.5)), lambda r: r["status"] == "正常"):
            changed[key] = d[key] = {**d[key], "status": "注销"}
        removed = set(pick(d, round(len(d) * _rate(rng) * 0.2)) if len(d) > 20 else [])
        new_list = []
        for key, rid, raw in state.snapshot_lines[source]:
            if key in removed:
                continue
            if key in changed and rid == changed[key]["record_id"]:
                raw = w.serialize(source, "U", changed[key], defect_ok=False)
            new_list.append((key, rid, raw))
        for key in removed:
            d.pop(key, None)
            w.changes.append((source, "D", key, ""))
        for _ in range(max(1, round(len(d) * _rate(rng) * 0.4))):
            t = town(rng)
            code = _new_uscc(rng, state.keys, "5" if source == SOC else "1", "2")
            if source == SOC:
                r = {"record_id": w.record_id(SOC), "credit_code": code,
                     "name": f"北京市大兴区{''.join(rng.sample('阳光和谐康乐仁爱启明', 2))}社会工作服务中心",
                     "org_type": "民办非企业单位", "legal_rep": names(rng, True), "registered_date": iso,
                     "status": "正常", "town": t, "address": book.residence(rng, t, True),
                     "phone": _phone(rng, empty=0.1, landline=0.5)}
            else:
                r = {"record_id": w.record_id(SEO), "credit_code": code,
                     "name": f"北京市大兴区{''.join(rng.sample('育才实验明德新星', 2))}幼儿园",
                     "legal_rep": names(rng, False), "sponsor": "北京市大兴区教育委员会", "funding_type": "全额拨款",
                     "status": "正常", "town": t, "address": book.residence(rng, t, True)}
            d[code] = r
            new_list.append((code, r["record_id"], w.serialize(source, "I", r)))
        state.snapshot_lines[source] = new_list
        w.rows[source] = [("raw", raw) for _, _, raw in new_list]
        kept = {rid for _, rid, _ in new_list}
        today = [t for t in w.defects if t[0] == source]
        state.truth_kept[source] = [t for t in state.truth_kept[source] if t[1] in kept] + today
        w.defects = [t for t in w.defects if t[0] != source] + state.truth_kept[source]
    return w


def _line_key(raw: str, source: str) -> str | None:
    cols = COLUMNS[source]
    if FORMATS[source] == "csv":
        rec = next(csv.reader([raw]))
        return rec[cols.index("credit_code")] if len(rec) == len(cols) else None
    try:
        return json.loads(raw).get("credit_code")
    except (ValueError, AttributeError):
        return None


def _line_record_id(raw: str, source: str) -> str:
    if FORMATS[source] == "csv":
        return next(csv.reader([raw]))[0]
    try:
        return json.loads(raw).get("record_id", "")
    except (ValueError, AttributeError):
        import re

        m = re.search(r'"record_id"\s*:\s*"([^"]*)"', raw)
        return m.group(1) if m else ""


def _write_day(w: _Writer, folder: Path, as_of: datetime.date, k: int, generator: dict) -> dict:
    stamp = as_of.strftime("%Y%m%d")
    files = []
    for source in SOURCES:
        rows = w.rows[source]
        if not rows:
            continue
        fmt, enc = FORMATS[source], ENCODINGS[source]
        kind = "snapshot" if source in SNAPSHOT_SOURCES else "changes"
        rel = f"{source}/{source}_{stamp}.{fmt}"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = ([OP] if source in CHANGE_SOURCES else []) + list(COLUMNS[source])
        with path.open("w", encoding=enc, newline="") as fh:
            if fmt == "csv":
                writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n" if enc == "gb18030" else "\n")
                writer.writerow(cols)
                for r in rows:
                    if isinstance(r, tuple):
                        fh.write(r[1] + ("\r\n" if enc == "gb18030" else "\n"))
                    else:
                        writer.writerow(r)
            else:
                for r in rows:
                    if isinstance(r, tuple):
                        fh.write(r[1] + "\n")
                    else:
                        fh.write(json.dumps({c: v if v != "" else None for c, v in zip(cols, r)},
                                            ensure_ascii=False) + "\n")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files.append({"source": source, "path": rel, "encoding": enc, "format": fmt, "rows": len(rows),
                      "sha256": digest, "kind": kind})
    truth = folder / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (("defects.csv", ("source", "record_key", "field", "defect_type"), w.defects),
                               ("links.csv", ("source", "record_key", "id_number"), w.links),
                               ("changes.csv", ("source", "op", "entity_key", "record_key"), w.changes)):
        with open(truth / name, "w", encoding="utf-8", newline="") as f:
            cw = csv.writer(f, lineterminator="\n")
            cw.writerow(header)
            cw.writerows(sorted(set(rows)) if name == "defects.csv" else rows)
    manifest = {"generator": generator, "day": k, "as_of": as_of.isoformat(), "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def generate_days(days: int, scale: float, seed: int, out: Path, start: datetime.date = DEFAULT_EXTRACT_DATE,
                  iot_days: int = 1, progress=None) -> list[dict]:
    """Write ``out/day-01`` (the full delivery of ``sample.generate``) and ``days - 1`` days of
    changes; returns the manifests."""
    if days < 1:
        raise ValueError("days must be >= 1")
    out = Path(out)
    first = day_dir(out, 1)
    manifest = generate(scale, seed, first, extract_date=start, iot_days=iot_days,
                        progress=(lambda s, n: progress(1, s, n)) if progress else None)
    manifest["day"] = 1
    manifest["as_of"] = start.isoformat()
    for f in manifest["files"]:
        f["kind"] = "full"
    (first / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    manifests = [manifest]
    if days == 1:
        return manifests
    from sample.generate_spatial import AddressBook

    state = _State(first, manifest)
    book = AddressBook(seed, scale)
    names = _Names()
    for k in range(2, days + 1):
        as_of = start + datetime.timedelta(days=k - 1)
        w = _day(state, k, as_of, seed, book, names)
        m = _write_day(w, day_dir(out, k), as_of, k, manifest["generator"])
        manifests.append(m)
        if progress:
            for f in m["files"]:
                progress(k, f["source"], f["rows"])
    return manifests
