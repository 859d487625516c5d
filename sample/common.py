"""What the three sample-data generators share (population and legal entities: sample.generate; the base map
and addresses: sample.generate_spatial; sensing: sample.generate_iot): the extract date, the towns and
their weights, road and village names, and the small helpers that draw weighted values and number records.
"""
from __future__ import annotations

import bisect
import itertools
import datetime
import random
from collections.abc import Iterable, Mapping, Sequence

from faker.providers.person.zh_CN import Provider as _ZhPersonProvider

from lake.reference import DISTRICT

DEFAULT_EXTRACT_DATE = datetime.date(2026, 11, 1)


DAXING_TOWNS = list(DISTRICT.towns)  # contracts/reference.yaml, in town-code order


_TOWN_WEIGHTS = (3, 2.5, 2, 2.5, 3, 3, 2.5, 3, 2.5, 6, 7, 5, 5, 4,
                 7, 7, 8, 6, 8, 7, 6, 6)


_ROADS = ("兴华大街", "黄村东大街", "金星西路", "兴业大街", "兴政街", "清源路", "林校北路",
          "康庄路", "永华南路", "双河北路", "欣宁街", "红星路", "旧宫东路", "德茂路", "宏业路",
          "兴丰大街", "天华街", "磁各庄路", "京开路", "育英路")


_VILLAGES = ("东村", "西村", "南村", "北村", "前街村", "后街村", "大营村", "小营村", "新庄村",
             "王庄村", "李家村", "张各庄村", "孙村", "马村", "刘家庄村")


_TRADE_NAME_CHARS = "华兴德瑞鑫泰隆恒盛达宏远博创嘉信诚安康顺通力海天金源佳丰凯明亿新百富永祥和中科润亚星辰"


_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 organisation code check


class _Weighted:
    """Draws one of a fixed set of values with fixed relative weights."""

    __slots__ = ("_values", "_cum", "_total", "_last")

    def __init__(self, pairs: Iterable[tuple[object, float]]) -> None:
        values, weights = zip(*pairs)
        self._values = values
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]
        self._last = len(values) - 1

    def __call__(self, rng: random.Random):
        return self._values[bisect.bisect_right(self._cum, rng.random() * self._total,
                                                hi=self._last)]


class _RecordIds:
    """Increasing department record numbers: prefix + 9 digits, with small gaps."""

    def __init__(self, rng: random.Random, prefix: str) -> None:
        self._rng = rng
        self._prefix = prefix
        self._next = 100_000_000 + rng.randrange(50_000_000)

    def __call__(self) -> str:
        value = self._next
        self._next += 1 if self._rng.random() < 0.9 else 2 + self._rng.randrange(5)
        return f"{self._prefix}{value:09d}"


def _weighted_items(tokens: Mapping[str, float] | Sequence[str]) -> list[tuple[str, float]]:
    """Faker lists are plain sequences or (Ordered)dicts of weights; accept both."""
    if isinstance(tokens, Mapping):
        return list(tokens.items())
    return [(token, 1.0) for token in tokens]


class _Names:
    """Chinese personal names from Faker's zh_CN lists, drawn with our own RNG."""

    def __init__(self) -> None:
        p = _ZhPersonProvider
        self._surname = _Weighted(_weighted_items(p.last_names))
        given = {True: _weighted_items(p.first_names_male),
                 False: _weighted_items(p.first_names_female)}
        self._given = {male: _Weighted(items) for male, items in given.items()}
        self._single = {male: [t for t, _ in items if len(t) == 1] for male, items in given.items()}
        self._all_single = sorted(set(self._single[True]) | set(self._single[False]))

    def __call__(self, rng: random.Random, male: bool) -> str:
        given = self._given[male](rng)
        if len(given) == 1 and rng.random() < 0.4:
            given += rng.choice(self._single[male])
        return self._surname(rng) + given

    def altered(self, rng: random.Random, name: str) -> str:
        """The same name with its last character swapped for another given-name character."""
        last = name[-1]
        replacement = last
        while replacement == last:
            replacement = rng.choice(self._all_single)
        return name[:-1] + replacement

    def other(self, rng: random.Random, male: bool, name: str) -> str:
        """A different person's name of the same sex."""
        while True:
            candidate = self(rng, male)
            if candidate != name:
                return candidate
