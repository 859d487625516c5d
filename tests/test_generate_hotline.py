"""The 12345 work-order sample files (sample.generate_hotline) checked independently of the generator
(fast tier, no JVM): the files are read back by their contract, the addresses re-read with the address
book's own reader (not lake.address), the timestamps with strptime, and every truth row must be really
defective and every other current row really clean, by rules written here from docs/defects.md."""
from __future__ import annotations

import csv
import datetime
from collections import Counter
from pathlib import Path

import pytest

from lake import contracts as contracts_mod
from lake.reference import HOTLINE
from sample.generate_hotline import RATES, SOURCE, generate_hotline
from sample.generate_spatial import AddressBook

CONTRACTS = contracts_mod.load(str(Path(__file__).resolve().parents[1] / "contracts"))
SCALE, SEED = 0.002, 5
DAYS = [datetime.date(2026, 11, 1), datetime.date(2026, 11, 2), datetime.date(2026, 11, 3)]
FMT = "%Y-%m-%d %H:%M:%S"
STEPS = ("accepted_at", "dispatched_at", "responded_at", "closed_at")


def read_rows(out: Path, entry: dict) -> list[dict]:
    sc = CONTRACTS.source(entry["source"])
    with open(out / entry["path"], encoding=entry["encoding"], newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == sc.column_names
        return [dict(zip(sc.column_names, r)) for r in reader]


def ts(text: str):
    try:
        return datetime.datetime.strptime(text, FMT)
    except ValueError:
        return None


def defects_of(row: dict, book) -> set[tuple[str, str]]:
    """The defects a current row carries, from docs/defects.md (field, defect_type)."""
    out = set()
    if not row["address"] or book.key_of(row["address"]) is None:
        out.add(("address", "address_unresolved"))
    if row["category"] not in HOTLINE.categories:
        out.add(("category", "unknown_category"))
    t = {s: ts(row[s]) for s in STEPS}
    for s in STEPS[1:]:
        if row[s] and t[s] is None:
            out.add((s, "invalid_timestamp"))
    prev = t["accepted_at"]
    for s in STEPS[1:]:
        if t[s] is not None:
            if t[s] < prev:
                out.add((s, "timestamps_out_of_order"))
                break
            prev = t[s]
    if row["closed_at"] and not row["responded_at"]:
        out.add(("closed_at", "closed_without_response"))
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("hotline")
    book = AddressBook(SEED, SCALE)
    res = generate_hotline(SCALE, SEED, out, book, DAYS[-1], days=DAYS)
    return {"out": out, "book": book, **res}


def test_files_follow_the_contract_and_days(sample):
    assert [e["path"] for e in sample["files"]] == [f"{SOURCE}/{SOURCE}_{d:%Y%m%d}.csv" for d in DAYS]
    for entry, day in zip(sample["files"], DAYS):
        rows = read_rows(sample["out"], entry)
        assert len(rows) == entry["rows"] > 0
        end = datetime.datetime.combine(day, datetime.time(23, 59, 59))
        for r in rows:
            assert r["caller_name"] and r["caller_phone"].startswith("1") and len(r["caller_phone"]) == 11
            assert r["status"] in HOTLINE.statuses and r["channel"] in ("电话", "网站", "微信", "App")
            assert all(ts(r[s]) is None or ts(r[s]) <= end for s in STEPS)   # nothing from the future
            n_steps = sum(1 for s in STEPS if r[s])
            assert r["status"] == HOTLINE.statuses[n_steps - 1] or not r["responded_at"]


def test_truth_is_exactly_the_defects_of_the_current_rows(sample):
    """Every order's current row (its last day's, the first in that file) carries exactly the
    truth's defects; the later copies in one file are the duplicate_record truth; earlier days'
    rows of an order carry none (defects are injected on current rows only)."""
    book = sample["book"]
    truth = {(t[1], t[2], t[3]) for t in sample["truth"]}
    by_record = {}
    current: dict[str, dict] = {}
    expected = set()
    for k, entry in enumerate(sample["files"]):
        seen = set()
        for r in read_rows(sample["out"], entry):
            by_record[r["record_id"]] = (k, r)
            if r["order_id"] in seen:
                expected.add((r["record_id"], "order_id", "duplicate_record"))
                continue
            seen.add(r["order_id"])
            current[r["order_id"]] = r
    for oid, r in current.items():
        for field, defect in defects_of(r, book):
            expected.add((r["record_id"], field, defect))
    assert truth == expected
    # rows that are no longer current are clean
    current_ids = {r["record_id"] for r in current.values()}
    dups = {t[0] for t in truth if t[2] == "duplicate_record"}
    for rid, (_, r) in by_record.items():
        if rid not in current_ids and rid not in dups:
            assert not defects_of(r, book), rid
    counts = Counter(t[3] for t in sample["truth"])
    assert set(counts) == set(RATES)      # every defect type at least once


def test_orders_progress_across_days_and_repeat(sample):
    rows = [read_rows(sample["out"], e) for e in sample["files"]]
    day1 = {r["order_id"]: r for r in rows[0]}
    later = [r for r in rows[1] if r["order_id"] in day1]
    assert later, "day 2 updates orders of day 1"
    assert any(sum(bool(r[s]) for s in STEPS) > sum(bool(day1[r["order_id"]][s]) for s in STEPS) for r in later)
    assert any(r["order_id"] not in day1 for r in rows[1])  # and brings new ones
    with open(sample["out"] / "truth" / "hotline_addresses.csv", encoding="utf-8") as f:
        addresses = {r["order_id"]: r["door_key"] for r in csv.DictReader(f)}
    book = sample["book"]
    last = {}
    for rs in rows:
        for r in rs:
            last[r["order_id"]] = r
    for oid, r in last.items():
        assert addresses[oid] == (book.key_of(r["address"]) or ""), oid
    # repeat complaints exist: the same standard address and category again within the window
    pairs = Counter((addresses[o], r["category"]) for o, r in last.items() if addresses[o])
    assert max(pairs.values()) >= 2


def test_same_inputs_same_bytes(tmp_path):
    book = AddressBook(SEED, SCALE)
    a = generate_hotline(SCALE, SEED, tmp_path / "a", book, DAYS[0])
    b = generate_hotline(SCALE, SEED, tmp_path / "b", book, DAYS[0])
    assert [e["sha256"] for e in a["files"]] == [e["sha256"] for e in b["files"]]
