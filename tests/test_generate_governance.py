"""The social-credit, e-licence and macro-economy sample files (sample.generate_credit,
sample.generate_licence, sample.generate_macro, wired in by sample.generate_governance) checked
independently of the generator: the files are read back as a department's files would be (by their
contracts), the registers from the population and legal-entity files, and every truth row must be
really defective and every other row really clean, by rules written here from docs/defects.md."""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from lake import contracts as contracts_mod
from lake.reference import CREDIT, DISTRICT, E_LICENCE, LEGAL_ENTITY, MACRO
from sample.generate import generate
from sample.generate_governance import GOVERNANCE_SOURCES
from sample.identifiers import is_valid_cn_id, is_valid_uscc, is_valid_uscc_authority

CONTRACTS = contracts_mod.load(str(Path(__file__).resolve().parents[1] / "contracts"))
SCALE, SEED = 0.003, 11
EXTRACT = datetime.date(2026, 11, 1)
FULLWIDTH = re.compile("[\uff01-\uff5e]")
SPACE = re.compile("[\\s\u3000]")
CREDIT_DECISIONS = ("samr_licences", "mem_licences", "samr_penalties", "mee_penalties", "tax_penalties", "mem_penalties")
E_LICENCES = ("samr_elicences", "zjw_elicences", "psb_elicences", "mca_elicences")
MACRO_SOURCES = ("nbs_indicators", "tax_revenue", "mof_budget", "ndrc_investment")
# ingest-level defects: the row is quarantined (errors) or normalised (warnings) before any cross check
ROW_ERRORS = {"malformed_row", "missing_value", "invalid_date", "invalid_number", "invalid_value",
              "credit_code_checksum", "id_checksum", "credit_code_authority"}


def read_file(out: Path, entry: dict) -> list[dict]:
    """Rows as dicts (None for a malformed row's values, with ``_malformed``), in file order."""
    sc = CONTRACTS.source(entry["source"])
    path = out / entry["path"]
    text = path.read_bytes().decode(entry["encoding"])
    rows = []
    if sc.format == "csv":
        reader = csv.reader(text.splitlines())
        assert next(reader) == sc.column_names, entry["path"]
        for values in reader:
            if len(values) != len(sc.column_names):
                rows.append({"record_id": values[0], "_malformed": True})
            else:
                rows.append(dict(zip(sc.column_names, values)))
        return rows
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or list(obj) != sc.column_names:   # truncated, or a key the contract lacks
            rows.append({"record_id": re.match(r'\{"record_id": "([^"]+)"', line).group(1), "_malformed": True})
            continue
        rows.append({c: "" if v is None else str(v) for c, v in obj.items()})
    return rows


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("governance")
    manifest = generate(SCALE, SEED, out, iot_days=0)
    with open(out / "truth" / "defects.csv", encoding="utf-8") as f:
        truth = list(csv.DictReader(f))
    files = defaultdict(list)
    for e in manifest["governance_files"]:
        files[e["source"]].append((e, read_file(out, e)))
    registers = {e["source"]: read_file(out, e) for e in manifest["files"]}
    defects = defaultdict(dict)   # source -> record_key -> (defect, field)
    for t in truth:
        defects[t["source"]][t["record_key"]] = (t["defect_type"], t["field"])
    return {"out": out, "manifest": manifest, "truth": truth, "files": files, "registers": registers,
            "defects": defects}


@pytest.fixture(scope="module")
def known(sample):
    """What the base tables will know, from the register files: entities and people whose row is clean,
    every identifier any register row carries, and the active entities per town and industry."""
    reg, d = sample["registers"], sample["defects"]
    entities, people, all_codes, all_ids = {}, {}, set(), set()
    for source in ("samr_enterprises", "mca_social_orgs", "seo_institutions", "tax_taxpayers"):
        for r in reg[source]:
            if r.get("_malformed"):
                continue
            all_codes.add(r["credit_code"])
            if source != "tax_taxpayers" and r["record_id"] not in d[source]:
                est = r.get("established_date") or r.get("registered_date") or ""
                entities[r["credit_code"]] = {"name": r["name"], "status": r["status"],
                                              "established": datetime.date.fromisoformat(est) if est else None}
    for source in ("psb_household", "mca_residents", "hrss_insured", "nhc_vital_events"):
        for r in reg[source]:
            if not r.get("_malformed"):
                all_ids.add(r["id_number"])
    for r in reg["psb_household"]:
        if not r.get("_malformed") and r["record_id"] not in d["psb_household"]:
            people[r["id_number"]] = {"name": r["name"], "status": r["register_status"]}
    counts, seen = Counter(), set()
    for r in reg["samr_enterprises"]:
        defect = d["samr_enterprises"].get(r["record_id"], (None,))[0]
        if r.get("_malformed") or defect in ROW_ERRORS or r["credit_code"] in seen:
            continue
        seen.add(r["credit_code"])
        if r["status"] in LEGAL_ENTITY.active_statuses:
            counts[(r["town"], r["industry"])] += 1
    return {"entities": entities, "people": people, "codes": all_codes, "ids": all_ids, "counts": counts}


def day(text: str) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def rows_of(sample, source):
    return [(e, r) for e, rows in sample["files"][source] for r in rows]


def row_defect_ok(defect: str, field: str, r: dict, sc) -> bool:
    """An ingest-level defect is really in the row's field (docs/defects.md, row level)."""
    v = r.get(field, "")
    if defect == "malformed_row":
        return r.get("_malformed", False)
    if defect == "missing_value":
        return v == ""
    if defect == "whitespace":
        return bool(SPACE.search(v))
    if defect == "fullwidth":
        return bool(FULLWIDTH.search(v))
    if defect == "credit_code_checksum":
        return not is_valid_uscc(v) and len(v) == 18
    if defect == "id_checksum":
        return not is_valid_cn_id(v) and len(v) == 18
    if defect == "invalid_date":
        return v != "" and day(v) is None
    if defect == "invalid_number":
        try:
            float(v)
            return False
        except ValueError:
            return True
    if defect == "invalid_value":
        return v not in sc.column(field).allowed
    raise AssertionError(defect)


# --------------------------------------------------------------------------- files

def test_files_follow_their_contracts_and_the_manifest(sample):
    out, entries = sample["out"], sample["manifest"]["governance_files"]
    assert [e["source"] for e in entries] == [s for s in GOVERNANCE_SOURCES for _ in range(2 if s in MACRO_SOURCES else 1)]
    for e in entries:
        sc = CONTRACTS.source(e["source"])
        assert e["format"] == sc.format and e["encoding"] == sc.encoding
        data = (out / e["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"]
        assert data.startswith(b"\xef\xbb\xbf") == (sc.encoding == "utf-8-sig")
        assert e["rows"] == len(read_file(out, e)) >= 20


def test_deterministic(tmp_path):
    a = generate(0.001, 3, tmp_path / "a", iot_days=0)
    b = generate(0.001, 3, tmp_path / "b", iot_days=0)
    assert a["governance_files"] == b["governance_files"]
    assert (tmp_path / "a/truth/defects.csv").read_bytes() == (tmp_path / "b/truth/defects.csv").read_bytes()
    c = generate(0.001, 4, tmp_path / "c", iot_days=0)
    assert [e["sha256"] for e in c["governance_files"]] != [e["sha256"] for e in a["governance_files"]]


def test_every_new_defect_type_is_injected(sample):
    types = {t["defect_type"] for t in sample["truth"] if t["source"] in GOVERNANCE_SOURCES}
    assert {"credit_subject_unknown", "penalty_on_deregistered", "licence_before_establishment", "invalid_period",
            "red_black_conflict", "licence_issuer_unauthorised", "licence_holder_unknown", "licence_expired_active",
            "licence_holder_inactive", "indicator_not_authoritative", "unit_mismatch", "total_mismatch",
            "turnover_mismatch", "entity_count_mismatch", "name_mismatch", "duplicate_record"} <= types
    keys = [(t["source"], t["record_key"]) for t in sample["truth"] if t["source"] in GOVERNANCE_SOURCES]
    assert len(keys) == len(set(keys)), "one defect per row"


def test_truth_names_real_rows(sample):
    for source in GOVERNANCE_SOURCES:
        ids = [r["record_id"] for _, r in rows_of(sample, source)]
        assert len(ids) == len(set(ids)), source
        assert set(sample["defects"][source]) <= set(ids), source


# --------------------------------------------------------------------------- social credit

def subject_of(r: dict) -> tuple[str, str]:
    field = CREDIT.subject_types.get(r["subject_type"], "credit_code")
    return field, r[field]


def test_credit_decisions(sample, known):
    for source in CREDIT_DECISIONS:
        sc = CONTRACTS.source(source)
        seen: set[str] = set()
        for _, r in rows_of(sample, source):
            defect, field = sample["defects"][source].get(r["record_id"], (None, None))
            if defect in ROW_ERRORS or defect in ("whitespace", "fullwidth"):
                assert row_defect_ok(defect, field, r, sc), (source, r, defect)
                if r.get("_malformed"):
                    continue
            if defect == "duplicate_record":
                assert r["decision_no"] in seen, r
                continue
            seen.add(r["decision_no"])
            if defect in ROW_ERRORS:
                continue
            kind, key = subject_of(r)
            key = FULLWIDTH.sub(lambda m: chr(ord(m.group()) - 0xFEE0), key)
            base = (known["entities"] if kind == "credit_code" else known["people"]).get(key)
            if defect == "missing_value":
                assert key == "" and field == kind
                continue
            if defect == "credit_subject_unknown":
                assert field == kind and base is None and key not in (known["codes"] | known["ids"])
                assert (is_valid_uscc(key) and is_valid_uscc_authority(key)) if kind == "credit_code" else is_valid_cn_id(key)
                continue
            assert base is not None, (source, r)
            name_differs = SPACE.sub("", r["subject_name"]) != base["name"]
            assert name_differs == (defect == "name_mismatch"), (source, r, defect)
            if r["subject_type"] == "自然人":
                assert base["status"] == "正常"
                continue
            decided = day(r["decision_date"])
            if source.endswith("licences"):
                before = base["established"] is not None and decided < base["established"]
                assert before == (defect == "licence_before_establishment"), (r, base)
                inverted = r["valid_to"] != "" and day(r["valid_to"]) < day(r["valid_from"])
                assert inverted == (defect == "invalid_period"), r
            else:
                dead = base["status"] in LEGAL_ENTITY.deregistered_statuses
                flagged = dead and r["penalty_type"] not in CREDIT.revoking_penalties
                assert flagged == (defect == "penalty_on_deregistered"), (r, base)


def test_credit_lists_conflicts_are_exactly_the_truth(sample, known):
    sc = CONTRACTS.source("ndrc_credit_lists")
    active = defaultdict(set)   # subject -> colours in force
    red_rows = defaultdict(list)
    seen = set()
    for _, r in rows_of(sample, "ndrc_credit_lists"):
        defect, field = sample["defects"]["ndrc_credit_lists"].get(r["record_id"], (None, None))
        if defect in ROW_ERRORS:
            assert row_defect_ok(defect, field, r, sc), r
            continue
        if defect == "duplicate_record":
            assert r["entry_no"] in seen
            continue
        seen.add(r["entry_no"])
        kind, key = subject_of(r)
        until = day(r["valid_until"])
        if r["status"] == CREDIT.active_list_status and day(r["included_date"]) <= EXTRACT and (until is None or until >= EXTRACT):
            colour = CREDIT.lists[r["list_name"]]
            active[key].add(colour)
            if colour == "red":
                red_rows[key].append(r["record_id"])
        base = (known["entities"] if kind == "credit_code" else known["people"]).get(key)
        if defect == "credit_subject_unknown":
            assert base is None
        elif defect != "missing_value":
            assert base is not None and (SPACE.sub("", r["subject_name"]) != base["name"]) == (defect == "name_mismatch")
    conflicts = {rid for key, colours in active.items() if colours == {"red", "black"} for rid in red_rows[key]}
    truth = {k for k, (d, _) in sample["defects"]["ndrc_credit_lists"].items() if d == "red_black_conflict"}
    assert conflicts == truth and truth


def test_credit_ratings(sample, known):
    sc = CONTRACTS.source("tax_credit_ratings")
    seen = set()
    for _, r in rows_of(sample, "tax_credit_ratings"):
        defect, field = sample["defects"]["tax_credit_ratings"].get(r["record_id"], (None, None))
        if defect in ROW_ERRORS or defect in ("whitespace", "fullwidth"):
            assert row_defect_ok(defect, field, r, sc), r
            if defect in ROW_ERRORS:
                continue
        key = (FULLWIDTH.sub(lambda m: chr(ord(m.group()) - 0xFEE0), r["credit_code"]), r["rating_year"])
        if defect == "duplicate_record":
            assert key in seen
            continue
        seen.add(key)
        base = known["entities"].get(key[0])
        if defect == "credit_subject_unknown":
            assert base is None and key[0] not in known["codes"]
            continue
        assert base is not None and (SPACE.sub("", r["taxpayer_name"]) != base["name"]) == (defect == "name_mismatch")
        assert r["rating"] in CREDIT.tax_ratings


# --------------------------------------------------------------------------- e-licences

def test_e_licences(sample, known):
    for source in E_LICENCES:
        sc = CONTRACTS.source(source)
        seen = set()
        for _, r in rows_of(sample, source):
            defect, field = sample["defects"][source].get(r["record_id"], (None, None))
            if defect in ROW_ERRORS or defect in ("whitespace", "fullwidth"):
                if defect != "missing_value" or field == "licence_no":
                    assert row_defect_ok(defect, field, r, sc), (source, r)
                if defect in ROW_ERRORS and defect != "missing_value":
                    continue
            if defect == "duplicate_record":
                assert (r["licence_type"], r["licence_no"]) in seen
                continue
            seen.add((r["licence_type"], r["licence_no"]))
            cat = E_LICENCE.catalogue[r["licence_type"]]
            authorised = r["issuer_code"] == cat.issuer_code == sc.department_code
            assert authorised == (defect != "licence_issuer_unauthorised"), (source, r)
            if not authorised:
                continue
            key_col = "holder_credit_code" if cat.holder == "entity" else "holder_id_number"
            key = FULLWIDTH.sub(lambda m: chr(ord(m.group()) - 0xFEE0), r[key_col])
            if defect == "missing_value":
                assert field == key_col and key == ""
                continue
            base = (known["entities"] if cat.holder == "entity" else known["people"]).get(key)
            assert (base is None) == (defect == "licence_holder_unknown"), (source, r)
            if base is None:
                assert key not in (known["codes"] | known["ids"])
                continue
            assert (SPACE.sub("", r["holder_name"]) != base["name"]) == (defect == "name_mismatch"), r
            gone = base["status"] in LEGAL_ENTITY.deregistered_statuses if cat.holder == "entity" else base["status"] == "死亡"
            valid = r["status"] == E_LICENCE.valid_status
            vf, vt = day(r["valid_from"]), day(r["valid_to"])
            assert (vt is not None and vt < vf) == (defect == "invalid_period"), r
            expired = valid and vt is not None and vt < EXTRACT and vf <= vt
            assert expired == (defect == "licence_expired_active"), r
            assert (valid and gone and cat.ends_with_holder) == (defect == "licence_holder_inactive"), (r, base)


# --------------------------------------------------------------------------- macro-economy

def _money(text: str, unit: str, canonical: str) -> float:
    return float(text) * MACRO.factor(canonical, unit)


def macro_figures(sample) -> tuple[dict, dict]:
    """(every used figure: (indicator, period, town, industry) -> [(release, value, source, record, field)],
    rows by (source, record id)). Rows with an ingest defect, a wrong period or a non-authoritative
    indicator are left out, as the job leaves them out; so is a duplicate."""
    figures, rows = defaultdict(list), {}
    for source in MACRO_SOURCES:
        sc = CONTRACTS.source(source)
        for _, r in rows_of(sample, source):
            rows[(source, r["record_id"])] = r
            defect, field = sample["defects"][source].get(r["record_id"], (None, None))
            if defect in ROW_ERRORS or defect in ("duplicate_record", "indicator_not_authoritative"):
                if defect in ROW_ERRORS and defect != "invalid_value":
                    assert row_defect_ok(defect, field, r, sc), (source, r)
                continue
            if "indicator" in sc.column_names:
                items = [(r["indicator"], "value", r["unit"])]
            else:
                items = [(code, ind.column, r["amount_unit"] if ind.unit in MACRO.unit_conversions else ind.unit)
                         for code, ind in MACRO.indicators_of(source).items()]
            assert any(unit != MACRO.indicators[code].unit for code, _, unit in items) == (defect == "unit_mismatch"), r
            for code, col, unit in items:
                ind = MACRO.indicators[code]
                assert ind.source == source
                cell = (code, r["period"], r["town"], r.get("industry") or MACRO.total_industry)
                figures[cell].append((r["release_date"], _money(r[col], unit, ind.unit), source, r["record_id"], col))
    return figures, rows


def test_macro_row_level_defects(sample):
    for source in MACRO_SOURCES:
        for key, (defect, field) in sample["defects"][source].items():
            r = next(r for _, r in rows_of(sample, source) if r["record_id"] == key)
            if defect == "indicator_not_authoritative":
                assert MACRO.indicators[r["indicator"]].source != source
            elif defect == "invalid_value":
                assert field == "period" and not re.fullmatch(r"[0-9]{4}(-(0[1-9]|1[0-2])|Q[1-4])", r["period"])
            elif defect == "duplicate_record":
                cell = tuple(r.get(c) for c in CONTRACTS.source(source).unique_key)
                earlier = [x for _, x in rows_of(sample, source) if x is not r and tuple(x.get(c) for c in CONTRACTS.source(source).unique_key) == cell]
                assert earlier, r


def test_macro_releases_revise_and_totals_add_up(sample):
    figures, _ = macro_figures(sample)
    current = {}
    revised = 0
    for cell, versions in figures.items():
        releases = sorted(versions)
        assert len({v[0] for v in releases}) == len(releases), cell   # one figure per release
        revised += len(releases) > 1
        current[cell] = releases[-1]
    assert revised > 0
    truth = {(s, k) for s in MACRO_SOURCES for k, (d, _) in sample["defects"][s].items() if d == "total_mismatch"}
    found = set()
    T, I = MACRO.total_town, MACRO.total_industry
    for (code, period, town, industry), (_, value, source, rid, col) in current.items():
        ind = MACRO.indicators[code]
        if not ind.additive or not ind.by or (town != T and not ("industry" in ind.by and industry == I)):
            continue
        parts = [v[1] for (c, p, t, i), v in current.items() if c == code and p == period and t != T
                 and ("industry" not in ind.by or i != I) and (town == T or t == town) and (industry == I or i == industry)]
        if not parts:
            continue
        tol = MACRO.tolerances["totals"]
        if not tol.allows(value, sum(parts)):
            found.add((source, rid))
    assert found == truth and truth


def test_macro_cross_checks(sample, known):
    figures, _ = macro_figures(sample)
    current = {cell: sorted(v)[-1] for cell, v in figures.items()}
    T, I = MACRO.total_town, MACRO.total_industry
    finest = {cell: v for cell, v in current.items() if cell[2] != T and cell[3] != I}
    truth = lambda d: {k for s in MACRO_SOURCES for k, (x, _) in sample["defects"][s].items() if x == d}  # noqa: E731
    cc = MACRO.cross_checks["turnover"]
    off = set()
    for (code, period, town, industry), (_, value, source, rid, _) in finest.items():
        if code == cc.indicator:
            ref = finest.get((cc.against, period, town, industry))
            if ref is not None and not MACRO.tolerances["turnover"].allows(value, ref[1]):
                off.add(rid)
    assert off == truth("turnover_mismatch") and off
    latest = max(c[1] for c in finest if c[0] == "entity_count")
    wrong = {v[3] for c, v in finest.items() if c[0] == "entity_count" and c[1] == latest
             and not MACRO.tolerances["entity_count"].allows(v[1], known["counts"].get((c[2], c[3]), 0))}
    assert wrong == truth("entity_count_mismatch") and wrong
    assert set(DISTRICT.towns) >= {c[2] for c in finest}
