"""Synthetic 12345 接诉即办 work orders (``csgl_hotline_orders``), one file per delivery day, with injected
defects and their truth.

Orders are accepted over the ``BACKLOG_DAYS`` days before the first delivery day and on every delivery
day. Each has a lifecycle: accepted, dispatched 0.2-4 h later to a handling department (the town
government of the address, or the line department of the category), responded to 1-24 h after
dispatch, closed 0.5-6 days after the response, rated by the caller (满意/基本满意/不满意) a day after
closure for 85 % of the orders. A delivery day's file holds every order with a step on that day (the
first day: every order accepted by then) in its state at the end of the day, so a later day's row of an
order replaces the earlier one. The caller (a name and a mobile number) is in every row.

The complaint's address is a door plate of the district's address book (``sample.generate_spatial``,
the same book the door plates file is written from, so every plate is in base.standard_address),
written canonically or in a variant the address parser undoes; ``REPEAT_SHARE`` of the orders repeat
the address and category of an earlier order 1-20 days later (repeat complaints).

Defects (``RATES``; at most one per order, only on an order's last row over the generated days, so
that the truth is what the current build reports; each a row of ``truth/defects.csv``):
``address_unresolved`` (an address that is no standard address: a missing door number on a real road,
no number at all, or empty), ``timestamps_out_of_order`` (dispatch before acceptance, response before
dispatch or closure before response: the later step's column), ``closed_without_response`` (a closed
order without a response time), ``unknown_category`` (a category outside the vocabulary),
``invalid_timestamp`` (a dispatch, response or closure time in another format) and
``duplicate_record`` (the row again, later in the same file; field ``order_id``).

``truth/hotline_addresses.csv`` ``(order_id, door_key)`` names each order's standard address (empty
when it has none): the tests' plain-Python recomputation of the topics starts from it.

Sizes: ``ORDERS_PER_DAY`` at scale 1.0 (Daxing's 12345 volume, ~45 K a month), at least ``MIN_ORDERS``
in the backlog. A pure function of ``(scale, seed, days, book)``.
"""
from __future__ import annotations

import datetime
import random
from pathlib import Path

from lake.reference import HOTLINE
from sample.common import _Names
from sample.governance import Plan, SourceFile

SOURCE = "csgl_hotline_orders"
ORDERS_PER_DAY = 1_500
BACKLOG_DAYS = 30
MIN_ORDERS = 60
REPEAT_SHARE = 0.12
RATES = {"address_unresolved": 0.03, "timestamps_out_of_order": 0.02, "closed_without_response": 0.02,
         "unknown_category": 0.015, "invalid_timestamp": 0.015, "duplicate_record": 0.01}
CHANNELS = (("电话", 80), ("网站", 8), ("微信", 7), ("App", 5))
LINE_DEPARTMENTS = {"市容环境": "北京市大兴区城市管理委员会", "交通出行": "北京市大兴区交通局",
                    "供水供暖": "北京市大兴区水务局", "违法建设": "北京市大兴区城市管理委员会",
                    "环境保护": "北京市大兴区生态环境局", "市场监管": "北京市大兴区市场监督管理局",
                    "社会保障": "北京市大兴区人力资源和社会保障局", "物业管理": "北京市大兴区住房和城乡建设委员会"}
UNKNOWN_CATEGORIES = ("其他诉求", "城市管理类", "咨询")
FMT = "%Y-%m-%d %H:%M:%S"
OTHER_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y年%m月%d日 %H:%M", "%Y%m%d%H%M%S")
STEPS = ("accepted_at", "dispatched_at", "responded_at", "closed_at")
SAFE_STYLES = ("cn_numeral", "space", "space_number", "hash", "dash")


class Order:
    """One work order's lifecycle (true times) and what it is about."""

    def __init__(self, order_id: str, accepted: datetime.datetime, rng: random.Random, book, index: int,
                 category: str, text: str, caller: str, phone: str, channel: str) -> None:
        self.order_id, self.index, self.category, self.text = order_id, index, category, text
        self.caller, self.phone, self.channel = caller, phone, channel
        self.town = book.entry(index).town
        self.times = {"accepted_at": accepted}
        t = accepted + datetime.timedelta(hours=rng.uniform(0.2, 4))
        self.times["dispatched_at"] = t
        t = t + datetime.timedelta(hours=rng.uniform(1, 24))
        self.times["responded_at"] = t
        t = t + datetime.timedelta(days=rng.uniform(0.5, 6))
        self.times["closed_at"] = t
        self.rated_at = t + datetime.timedelta(days=1) if rng.random() < 0.85 else None
        self.rating = rng.choices(HOTLINE.satisfaction, weights=(70, 20, 10))[0]
        self.department = LINE_DEPARTMENTS.get(category) if rng.random() < 0.5 else None
        self.department = self.department or (self.town + ("人民政府" if self.town.endswith("镇") else "办事处"))

    def state(self, end: datetime.datetime) -> dict:
        """The row as the centre exports it at ``end`` (the end of a delivery day)."""
        row = {"order_id": self.order_id, "channel": self.channel, "caller_name": self.caller,
               "caller_phone": self.phone, "address": self.text, "category": self.category,
               "content": f"来电人反映{self.category}问题，请尽快处理"}
        done = [s for s in STEPS if self.times[s] <= end]
        for s in STEPS:
            row[s] = self.times[s].strftime(FMT) if s in done else ""
        row["handling_department"] = self.department if "dispatched_at" in done else ""
        row["status"] = HOTLINE.statuses[len(done) - 1]
        row["satisfaction"] = self.rating if self.rated_at is not None and self.rated_at <= end else ""
        return row

    def steps_on(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        times = [*self.times.values(), *([self.rated_at] if self.rated_at else [])]
        return any(start < t <= end for t in times)


def _address_text(rng: random.Random, book, i: int) -> str:
    e = book.entry(i)
    unit = room = None
    if e.building and rng.random() < 0.3:
        unit, room = rng.randint(1, 6), rng.randint(1, 28) * 100 + rng.randint(1, 4)
    if rng.random() < 0.3:
        pool = [s for s in SAFE_STYLES if not (s == "hash" and not e.building) and not (s == "dash" and not room)]
        return book.render(i, unit, room, styles=(rng.choice(pool),))
    return book.render(i, unit, room)


def _unresolvable(rng: random.Random, book) -> str:
    from sample.generate_spatial import render_address

    u = rng.random()
    if u < 0.6:
        town, road, number, building, _, _ = book.unmatched(rng)
        return render_address(town, road, number, building)
    if u < 0.85:
        town = book.entry(book.random_index(rng)).town
        return f"北京市大兴区{town}{rng.choice(('地铁站附近', '菜市场门口', '公交站旁边'))}"
    return ""


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


def generate(scale: float, seed: int, book, days: list[datetime.date]) -> tuple[list[SourceFile], list[tuple]]:
    """One ``SourceFile`` per day in ``days`` (ascending) and the address truth ``(order_id, door_key)``."""
    rng = random.Random(f"{seed}-hotline")
    names = _Names()
    per_day = ORDERS_PER_DAY * scale
    n_backlog = max(MIN_ORDERS, round(per_day * BACKLOG_DAYS))
    first = datetime.datetime.combine(days[0], datetime.time()) - datetime.timedelta(days=BACKLOG_DAYS)
    accept_times = [first + datetime.timedelta(seconds=rng.uniform(0, BACKLOG_DAYS * 86400)) for _ in range(n_backlog)]
    for d in days:
        start = datetime.datetime.combine(d, datetime.time())
        accept_times += [start + datetime.timedelta(seconds=rng.uniform(0, 86399))
                         for _ in range(max(2, round(per_day)))]
    accept_times.sort()
    orders: list[Order] = []
    for k, acc in enumerate(accept_times):
        repeat_of = None
        if orders and rng.random() < REPEAT_SHARE:
            earlier = [o for o in orders[-200:] if datetime.timedelta(days=1) <= acc - o.times["accepted_at"]
                       <= datetime.timedelta(days=20)]
            repeat_of = rng.choice(earlier) if earlier else None
        if repeat_of is not None:
            index, category = repeat_of.index, repeat_of.category
        else:
            index, category = book.random_index(rng), rng.choice(HOTLINE.categories)
        order_id = f"DX{acc:%Y%m%d}{k:06d}"
        orders.append(Order(order_id, acc, rng, book, index, category, _address_text(rng, book, index),
                            names(rng, rng.random() < 0.5), _phone(rng), rng.choices(*zip(*CHANNELS))[0]))

    # every day's rows, then the defects on each order's last row
    files, rows_of_day = [], []
    last_row: dict[str, tuple[int, dict]] = {}
    for k, d in enumerate(days):
        end = datetime.datetime.combine(d, datetime.time(23, 59, 59))
        start = datetime.datetime.combine(days[k - 1], datetime.time(23, 59, 59)) if k else datetime.datetime.min
        f = SourceFile(SOURCE, d.strftime("%Y%m%d"), rng, "RX")
        day_rows = []
        for o in orders:
            if o.times["accepted_at"] <= end and (k == 0 or o.steps_on(start, end)):
                day_rows.append((o, o.state(end)))
        files.append(f)
        rows_of_day.append(day_rows)
        for o, row in day_rows:
            last_row[o.order_id] = (k, row)
    plan = Plan(rng, RATES)
    truth_address = {o.order_id: book.entry(o.index).key for o in orders}
    defects: dict[str, tuple[str, str]] = {}
    for o in orders:
        if o.order_id not in last_row:
            continue
        _, row = last_row[o.order_id]
        defect = plan.pick(_eligible(row))
        if defect is None:
            continue
        field = _apply(rng, book, row, defect)
        defects[o.order_id] = (defect, field)
        if defect == "address_unresolved":
            truth_address[o.order_id] = ""
    for k, (f, day_rows) in enumerate(zip(files, rows_of_day)):
        for o, row in day_rows:
            mine = last_row[o.order_id][0] == k and o.order_id in defects
            defect, field = defects[o.order_id] if mine else (None, None)
            added = f.add(row, None if defect == "duplicate_record" else defect, field)
            if defect == "duplicate_record":
                f.duplicate(added)
    return files, sorted(truth_address.items())


def _eligible(row: dict) -> set[str]:
    out = {"address_unresolved", "unknown_category", "duplicate_record"}
    if row["dispatched_at"]:
        out |= {"timestamps_out_of_order", "invalid_timestamp"}
    if row["closed_at"]:
        out.add("closed_without_response")
    return out


def _apply(rng: random.Random, book, row: dict, defect: str) -> str:
    """Change ``row`` to carry ``defect``; the field the truth names."""
    if defect == "address_unresolved":
        row["address"] = _unresolvable(rng, book)
        return "address"
    if defect == "unknown_category":
        row["category"] = rng.choice(UNKNOWN_CATEGORIES)
        return "category"
    if defect == "duplicate_record":
        return "order_id"
    if defect == "closed_without_response":
        row["responded_at"] = ""
        return "closed_at"
    done = [s for s in STEPS[1:] if row[s]]
    step = rng.choice(done)
    if defect == "invalid_timestamp":
        t = datetime.datetime.strptime(row[step], FMT)
        row[step] = t.strftime(rng.choice(OTHER_FORMATS))
        return step
    # timestamps_out_of_order: the step before the one before it (and so before its predecessor)
    i = STEPS.index(step)
    before = datetime.datetime.strptime(row[STEPS[i - 1]], FMT)
    row[step] = (before - datetime.timedelta(minutes=rng.randint(5, 600))).strftime(FMT)
    return step


def generate_hotline(scale: float, seed: int, out: Path, book, extract_date: datetime.date,
                     days: list[datetime.date] | None = None) -> dict:
    """Write the hotline files (one per day of ``days``, default the extract date) into ``out`` and
    ``truth/hotline_addresses.csv``; return ``{"files": [...], "truth": [...]}``."""
    import csv

    files, addresses = generate(scale, seed, book, days or [extract_date])
    entries = [f.write(Path(out)) for f in files]
    truth_dir = Path(out) / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    with open(truth_dir / "hotline_addresses.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("order_id", "door_key"))
        w.writerows(addresses)
    return {"files": entries, "truth": [t for f in files for t in f.truth]}
