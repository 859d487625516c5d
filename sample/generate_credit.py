"""Synthetic social-credit files (社会信用): 双公示 licences and penalties, red and black lists, tax-credit
ratings; see ``sample.generate_governance`` for how they stay consistent with the registers.

Sizes at scale 1.0 (Daxing's 60 K credit topic records): licences 18 K (market regulation 16 K,
emergency management 2 K), penalties 13.5 K (market regulation 6 K, ecology and environment 2.5 K, tax
3.5 K, emergency management 1.5 K), 6 K list entries, 22.5 K ratings; at least ``MIN_ROWS`` per
source. Defects per source (``RATES``; each recorded in the truth file):

* every decision source: ``credit_subject_unknown`` (a code or ID no register has), ``name_mismatch``
  (one character of the subject's name changed), ``duplicate_record``, ``missing_value`` (a required
  name, or the subject's identifier: then found when building), ``whitespace`` (name),
  ``fullwidth`` (credit code), ``credit_code_checksum``, ``malformed_row``;
* licences: ``licence_before_establishment`` (decided before the entity's establishment date),
  ``invalid_period`` (valid to before valid from), ``invalid_date``;
* penalties: ``penalty_on_deregistered`` (a non-revoking penalty on an entity its register says is
  注销/吊销/撤销), ``id_checksum`` (a person's ID), ``invalid_value`` (a penalty type not in the list);
* lists: ``red_black_conflict`` (a red listing of a subject in force on a black list), ``invalid_value``,
  ``invalid_date``; ratings: ``invalid_value`` (rating ``AA``).

Clean decisions name active entities (or living people) under their register names, licences are
decided after the entity's establishment, validities run forwards; a subject is on lists of one
colour only (a red subject may have a *removed* black listing, which is not a conflict); 3% of clean
penalties are revocations (吊销许可证件) of entities whose register says 吊销, which are expected.
"""
from __future__ import annotations

import datetime
import random

from lake.reference import CREDIT
from sample.common import _TRADE_NAME_CHARS, _Weighted
from sample.governance import (ACTIVE, DEREGISTERED, Entity, Person, Plan, SourceFile, Subjects, Unknowns,
                                        add_years, date_between, other_name)

MIN_ROWS = 25
SIZES = {"samr_licences": 16_000, "mem_licences": 2_000, "samr_penalties": 6_000, "mee_penalties": 2_500,
         "tax_penalties": 3_500, "mem_penalties": 1_500, "ndrc_credit_lists": 6_000, "tax_credit_ratings": 22_500}
PREFIX = {"samr_licences": "SCXK", "mem_licences": "YJXK", "samr_penalties": "SCCF", "mee_penalties": "HJCF",
          "tax_penalties": "SWCF", "mem_penalties": "YJCF", "ndrc_credit_lists": "XYMD", "tax_credit_ratings": "NSXY"}
DOC = {"samr_licences": "京兴市监许", "mem_licences": "京兴应急许", "samr_penalties": "京兴市监罚",
       "mee_penalties": "京兴环罚", "tax_penalties": "京兴税罚", "mem_penalties": "京兴应急罚"}
AUTHORITY = {"samr_licences": "北京市大兴区市场监督管理局", "samr_penalties": "北京市大兴区市场监督管理局",
             "mem_licences": "北京市大兴区应急管理局", "mem_penalties": "北京市大兴区应急管理局",
             "mee_penalties": "北京市大兴区生态环境局", "tax_penalties": "国家税务总局北京市大兴区税务局"}
LICENCE_NAMES = {
    "samr_licences": (("食品经营许可证", "普通", 5), ("药品经营许可证", "普通", 5), ("特种设备使用登记证", "登记", 0),
                      ("工业产品生产许可证", "核准", 5), ("食品生产许可证", "普通", 5)),
    "mem_licences": (("安全生产许可证", "普通", 3), ("危险化学品经营许可证", "普通", 3), ("烟花爆竹经营（零售）许可证", "特许", 1)),
}
VIOLATIONS = {
    "samr_penalties": ("销售不符合食品安全标准的食品", "发布虚假广告", "未按规定公示年度报告", "销售过期食品", "价格违法行为"),
    "mee_penalties": ("超标排放大气污染物", "未批先建", "未按规定设置排污口", "噪声超标排放", "危险废物贮存不规范"),
    "tax_penalties": ("未按期办理纳税申报", "虚开发票", "逃避缴纳税款", "未按规定保管账簿", "未按规定开具发票"),
    "mem_penalties": ("未按规定开展安全生产教育培训", "安全设备未经检测", "未建立事故隐患排查制度", "特种作业人员未持证上岗"),
}
PENALTY_TYPES = (("罚款", 70), ("警告", 15), ("没收违法所得", 6), ("责令停产停业", 4), ("通报批评", 3), ("暂扣许可证件", 2))
LIST_BASIS = {"纳税信用A级纳税人": "国家税务总局北京市大兴区税务局", "守信激励对象": "北京市大兴区发展和改革委员会",
              "诚信示范企业": "北京市大兴区市场监督管理局", "失信被执行人": "北京市大兴区人民法院",
              "重大税收违法失信主体": "国家税务总局北京市大兴区税务局", "严重违法失信主体": "北京市大兴区市场监督管理局",
              "安全生产失信联合惩戒对象": "北京市大兴区应急管理局"}
RATING_WEIGHTS = (("A", 20), ("B", 45), ("M", 25), ("C", 7), ("D", 3))

_GENERIC = {"duplicate_record": 0.005, "missing_value": 0.003, "whitespace": 0.004, "fullwidth": 0.003,
            "credit_code_checksum": 0.003, "malformed_row": 0.002}
RATES = {
    "licence": {"credit_subject_unknown": 0.01, "name_mismatch": 0.01, "licence_before_establishment": 0.01,
                "invalid_period": 0.008, "invalid_date": 0.003, "missing_subject": 0.003, **_GENERIC},
    "penalty": {"credit_subject_unknown": 0.01, "name_mismatch": 0.01, "penalty_on_deregistered": 0.015,
                "id_checksum": 0.05, "invalid_value": 0.003, "missing_subject": 0.003, **_GENERIC},
    "list": {"credit_subject_unknown": 0.01, "name_mismatch": 0.01, "red_black_conflict": 0.02,
             "invalid_value": 0.003, "invalid_date": 0.003, "duplicate_record": 0.005, "whitespace": 0.004,
             "missing_value": 0.003, "malformed_row": 0.002},
    "rating": {"credit_subject_unknown": 0.01, "name_mismatch": 0.01, "invalid_value": 0.004, **_GENERIC},
}
# defects that need a subject of a kind (the rest apply to any row)
ENTITY_ONLY = {"licence_before_establishment", "penalty_on_deregistered", "fullwidth", "credit_code_checksum"}
PERSON_ONLY = {"id_checksum"}


class _Pools:
    """The subjects records are drawn from, by what they are (all clean in their registers)."""

    def __init__(self, rng: random.Random, subjects: Subjects, extract: datetime.date) -> None:
        self.rng = rng
        self.active = [e for e in subjects.entities if e.status in ACTIVE]
        self.dead = [e for e in subjects.entities if e.status in DEREGISTERED]
        self.revoked = [e for e in self.dead if e.status == "吊销"]
        self.established = [e for e in self.active if e.established and e.established.year >= 1995]
        self.living = [p for p in subjects.people if p.status == "正常"]
        self.extract = extract
        if not self.active or not self.living:
            raise ValueError("the credit sample needs clean active entities and living people; scale too small")

    def entity(self) -> Entity:
        return self.rng.choice(self.active)

    def person(self) -> Person:
        return self.rng.choice(self.living)


def _subject_fields(s: Entity | Person) -> dict:
    if isinstance(s, Person):
        return {"subject_name": s.name, "subject_type": "自然人", "id_number": s.id_number, "credit_code": ""}
    return {"subject_name": s.name, "subject_type": s.subject_type, "credit_code": s.code, "id_number": ""}


def _n(scale: float, source: str) -> int:
    return max(MIN_ROWS, round(SIZES[source] * scale))


def generate(scale: float, seed: int, subjects: Subjects, extract: datetime.date) -> list[SourceFile]:
    rng = random.Random(f"{seed}-credit")
    pools = _Pools(rng, subjects, extract)
    unknowns = Unknowns(rng)
    stamp = extract.strftime("%Y%m%d")
    from sample.common import _Names

    names = _Names()
    files = []
    for source in ("samr_licences", "mem_licences"):
        files.append(_licences(rng, source, stamp, _n(scale, source), pools, unknowns, names))
    for source in ("samr_penalties", "mee_penalties", "tax_penalties", "mem_penalties"):
        files.append(_penalties(rng, source, stamp, _n(scale, source), pools, unknowns, names))
    files.append(_lists(rng, stamp, _n(scale, "ndrc_credit_lists"), pools, unknowns))
    files.append(_ratings(rng, stamp, _n(scale, "tax_credit_ratings"), pools, unknowns))
    return files


def _eligible(plan: Plan, subject: Entity | Person) -> set[str]:
    out = set(plan.rates)
    if isinstance(subject, Person):
        out -= ENTITY_ONLY
    else:
        out -= PERSON_ONLY
    return out


def _apply_subject_defect(rng, f: SourceFile, row: dict, defect: str, subject, unknowns: Unknowns,
                          name_col: str = "subject_name") -> bool:
    """Subject-level defects, applied before the row is added; True when ``defect`` was one of them."""
    if defect == "credit_subject_unknown":
        if isinstance(subject, Person):
            row["id_number"] = unknowns.id_number()
        else:
            row["credit_code"] = unknowns.code()
        return True
    if defect == "name_mismatch":
        row[name_col] = other_name(rng, row[name_col], _TRADE_NAME_CHARS)
        return True
    if defect == "missing_subject":
        row["id_number" if isinstance(subject, Person) else "credit_code"] = ""
        return True
    return False


def _field_of_subject_defect(defect: str, subject, name_col: str = "subject_name") -> str:
    if defect == "name_mismatch":
        return name_col
    return "id_number" if isinstance(subject, Person) else "credit_code"


def _finish(rng, f: SourceFile, row: dict, defect: str | None, subject, name_col="subject_name",
            date_col: str = "decision_date", code_col: str = "credit_code") -> dict:
    """Add the row with its defect applied and recorded."""
    truth_defect = "missing_value" if defect == "missing_subject" else defect
    if defect in ("credit_subject_unknown", "name_mismatch", "missing_subject"):
        return f.add(row, truth_defect, _field_of_subject_defect(defect, subject, name_col))
    added = f.add(row)
    if defect == "duplicate_record":
        f.duplicate(added)
    elif defect == "whitespace":
        f.corrupt(added, "whitespace", name_col)
    elif defect == "missing_value":
        f.corrupt(added, "missing_value", name_col)
    elif defect in ("fullwidth", "credit_code_checksum"):
        f.corrupt(added, defect, code_col)
    elif defect == "id_checksum":
        f.corrupt(added, defect, "id_number")
    elif defect == "invalid_date":
        f.corrupt(added, defect, date_col)
    elif defect == "malformed_row":
        f.corrupt(added, defect, "_row")
    return added


def _licences(rng, source, stamp, n, pools: _Pools, unknowns, names) -> SourceFile:
    f = SourceFile(source, stamp, rng, PREFIX[source])
    plan = Plan(rng, RATES["licence"])
    kinds = LICENCE_NAMES[source]
    seq = 1000 + rng.randrange(1000)
    for _ in range(n):
        subject = pools.person() if rng.random() < 0.05 else pools.entity()
        defect = plan.pick(_eligible(plan, subject))
        if defect == "licence_before_establishment":
            subject = rng.choice(pools.established or pools.active)
            if not subject.established:
                defect = None
        name, category, years = rng.choice(kinds)
        first = max(getattr(subject, "established", None) or datetime.date(2015, 1, 1), datetime.date(2015, 1, 1))
        decided = date_between(rng, first, pools.extract - datetime.timedelta(days=1))
        if defect == "licence_before_establishment":
            decided = subject.established - datetime.timedelta(days=1 + rng.randrange(400))
        valid_to = "" if years == 0 else (add_years(decided, years) - datetime.timedelta(days=1)).isoformat()
        if defect == "invalid_period":
            valid_to = (decided - datetime.timedelta(days=1 + rng.randrange(365))).isoformat()
        seq += 1
        row = {**_subject_fields(subject), "decision_no": f"{DOC[source]}〔{decided.year}〕{seq}号",
               "legal_rep": "" if isinstance(subject, Person) else names(rng, rng.random() < 0.7),
               "licence_category": category, "licence_name": name,
               "licence_no": f"{'JY' if source.startswith('samr') else 'AQ'}{decided.year}{seq:07d}",
               "content": f"准予{name.replace('证', '').replace('登记', '')}", "decision_date": decided.isoformat(),
               "valid_from": decided.isoformat(), "valid_to": valid_to, "authority": AUTHORITY[source]}
        if defect in ("licence_before_establishment", "invalid_period"):
            f.add(row, defect, "decision_date" if defect == "licence_before_establishment" else "valid_to")
            continue
        _apply_subject_defect(rng, f, row, defect, subject, unknowns)
        _finish(rng, f, row, defect, subject)
    return f


def _penalties(rng, source, stamp, n, pools: _Pools, unknowns, names) -> SourceFile:
    f = SourceFile(source, stamp, rng, PREFIX[source])
    plan = Plan(rng, RATES["penalty"])
    types = _Weighted(PENALTY_TYPES)
    seq = 100 + rng.randrange(500)
    person_share = 0.15 if source == "tax_penalties" else 0.08
    for _ in range(n):
        subject = pools.person() if rng.random() < person_share else pools.entity()
        defect = plan.pick(_eligible(plan, subject))
        ptype = types(rng)
        if defect == "penalty_on_deregistered":
            subject = rng.choice(pools.dead) if pools.dead else subject
            if subject.status not in DEREGISTERED:
                defect = None
        elif defect is None and not isinstance(subject, Person) and pools.revoked and rng.random() < 0.03:
            subject, ptype = rng.choice(pools.revoked), "吊销许可证件"   # expected: not a finding
        decided = date_between(rng, pools.extract - datetime.timedelta(days=3 * 365), pools.extract - datetime.timedelta(days=1))
        amount = f"{rng.uniform(0.05, 50):.4f}" if ptype == "罚款" else ""
        publicity = decided + datetime.timedelta(days=90 if ptype in ("警告", "通报批评") else 365 * rng.choice((1, 3)))
        seq += 1
        row = {**_subject_fields(subject), "decision_no": f"{DOC[source]}〔{decided.year}〕{seq}号",
               "legal_rep": "" if isinstance(subject, Person) else names(rng, rng.random() < 0.7),
               "violation": rng.choice(VIOLATIONS[source]), "penalty_type": ptype,
               "content": ptype + (f"人民币{float(amount) * 10000:.0f}元" if amount else ""), "amount": amount,
               "decision_date": decided.isoformat(), "publicity_end": publicity.isoformat(), "authority": AUTHORITY[source]}
        if defect == "penalty_on_deregistered":
            f.add(row, defect, "credit_code")
            continue
        if defect == "invalid_value":
            added = f.add(row)
            f.corrupt(added, "invalid_value", "penalty_type")
            continue
        _apply_subject_defect(rng, f, row, defect, subject, unknowns)
        _finish(rng, f, row, defect, subject)
    return f


def _lists(rng, stamp, n, pools: _Pools, unknowns) -> SourceFile:
    """Red and black listings: each subject's lists are of one colour; a red subject may carry a
    removed black listing. ``red_black_conflict`` adds a red listing to a subject with a black one in
    force (a clean row, written earlier)."""
    f = SourceFile("ndrc_credit_lists", stamp, rng, PREFIX["ndrc_credit_lists"])
    plan = Plan(rng, RATES["list"])
    extract = pools.extract
    red, black = CREDIT.lists_of("red"), CREDIT.lists_of("black")
    person_black = ["失信被执行人"]
    active_black: list[tuple[Entity | Person, str]] = []   # clean black listings in force: conflict targets
    red_subjects: dict[str, Entity] = {}
    black_codes: set[str] = set()
    seq = 10_000 + rng.randrange(10_000)

    def row_for(subject, list_name: str, status: str, in_force: bool) -> dict:
        nonlocal seq
        seq += 1
        included = date_between(rng, extract - datetime.timedelta(days=5 * 365), extract - datetime.timedelta(days=30))
        if in_force:
            until = "" if rng.random() < 0.3 else add_years(extract, rng.choice((1, 2, 3))).isoformat()
        else:   # removed, or expired before the extract date
            until = (extract - datetime.timedelta(days=1 + rng.randrange(20))).isoformat() if status != "已移出" else ""
        return {**_subject_fields(subject), "entry_no": f"XY{included.year}{seq:08d}", "list_name": list_name,
                "basis_department": LIST_BASIS[list_name], "reason": "依据认定部门决定列入", "included_date": included.isoformat(),
                "valid_until": until, "status": status}

    for _ in range(n):
        is_red = rng.random() < 0.4
        if is_red:
            subject = pools.entity()
            if subject.code in black_codes:
                subject = None
        else:
            subject = pools.person() if rng.random() < 0.25 else (rng.choice(pools.dead) if pools.dead and rng.random() < 0.2
                                                                   else pools.entity())
            if not isinstance(subject, Person) and subject.code in red_subjects:
                subject = None
        if subject is None:
            continue
        eligible = _eligible(plan, subject) - ({"red_black_conflict"} if not active_black else set())
        defect = plan.pick(eligible)
        if defect == "red_black_conflict":
            target, _ = rng.choice(active_black)
            f.add(row_for(target, rng.choice(red), "有效", True), defect, "list_name")
            continue
        names_of = red if is_red else (person_black if isinstance(subject, Person) else black)
        list_name = rng.choice(names_of)
        u = rng.random()
        status, in_force = ("已移出", False) if u < 0.1 else ("有效", False) if u < 0.15 else ("有效", True)
        row = row_for(subject, list_name, status, in_force)
        if defect is None and is_red and rng.random() < 0.05:  # a red subject with a removed black listing
            f.add(row_for(subject, rng.choice(black), "已移出", False))
        if defect == "invalid_value":
            f.corrupt(f.add(row), "invalid_value", "list_name")
            continue
        _apply_subject_defect(rng, f, row, defect, subject, unknowns)
        added = _finish(rng, f, row, defect, subject, date_col="included_date")
        # every listing, defective or not, fixes its subject's colour (a defective row is still linked)
        if is_red:
            red_subjects[subject.code] = subject
        elif not isinstance(subject, Person):
            black_codes.add(subject.code)
        if defect is None and not is_red and status == "有效" and in_force:
            active_black.append((subject, added["record_id"]))
    return f


def _ratings(rng, stamp, n, pools: _Pools, unknowns) -> SourceFile:
    """Tax-credit ratings of the year before the extract (evaluated in April), 30% of taxpayers also
    with the year before that; one row per taxpayer and year."""
    f = SourceFile("tax_credit_ratings", stamp, rng, PREFIX["tax_credit_ratings"])
    plan = Plan(rng, RATES["rating"])
    weights = _Weighted(RATING_WEIGHTS)
    year = pools.extract.year - 1
    taxpayers = [e for e in pools.active if e.register == "samr_enterprises"] or pools.active
    chosen = rng.sample(taxpayers, min(len(taxpayers), n))
    count = 0
    for subject in chosen:
        for y in ((year, year - 1) if rng.random() < 0.3 else (year,)):
            if count >= n:
                break
            count += 1
            defect = plan.pick(_eligible(plan, subject))
            evaluated = datetime.date(y + 1, 4, 1) + datetime.timedelta(days=rng.randrange(30))
            row = {"credit_code": subject.code, "taxpayer_name": subject.name, "rating_year": str(y),
                   "rating": weights(rng), "evaluated_date": evaluated.isoformat()}
            if defect == "missing_subject":
                defect = None
            if defect == "invalid_value":
                f.corrupt(f.add(row), "invalid_value", "rating")
                continue
            _apply_subject_defect(rng, f, row, defect, subject, unknowns, name_col="taxpayer_name")
            _finish(rng, f, row, defect, subject, name_col="taxpayer_name", date_col="evaluated_date")
    return f
