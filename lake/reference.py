"""Reference data declared once (``contracts/reference.yaml``), validated strictly, as Python values.

The district and its towns, the legal-entity statuses, the sensing network's departments, device
types, metrics, units and conversions, the GB 3095-2012 limits, the social-credit vocabularies (subject
types, red and black lists, ratings), the e-licence catalogue (which department issues which licence
type), the macro-economic indicators (one authority each, units, tolerances), the 12345 hotline's
vocabularies, the emergency registers' classes, the medical institution register's categories and
levels, the bus-line plausibility bounds and the health and transport services (facility table or POI
category, reach) are written in one file and read
from here by the jobs, the contract loader (``${district}`` in regexes, ``values_from`` /
``allowed_from``), the catalogue and the sample-data generator, so that no copy can drift.

Unit conversions are exact fractions: the job converts a delivered value with ``factor`` and
``offset`` and the generator writes the inverse, both derived from the same fractions.
"""
from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lake.settings import REPO

PATH = REPO / "contracts" / "reference.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class District(_Strict):
    code: str = Field(pattern=r"^[0-9]{6}$")
    name: str
    city: str
    short_name: str
    bureau: str
    bureau_code: str = Field(pattern=r"^[0-9]{11}$")
    bbox_wgs84: tuple[float, float, float, float]
    towns: tuple[str, ...] = Field(min_length=1)

    @property
    def town_codes(self) -> dict[str, str]:
        """town name -> town code (``<district><n:03d>``, n from 1 in the declared order)."""
        return {t: f"{self.code}{i:03d}" for i, t in enumerate(self.towns, start=1)}


class LegalEntity(_Strict):
    deregistered_statuses: tuple[str, ...]
    active_statuses: tuple[str, ...]


class SensingDepartment(_Strict):
    department: str
    department_code: str = Field(pattern=r"^[0-9]{11}$")


class DeviceType(_Strict):
    name: str
    owner: str
    metrics: tuple[str, ...] = Field(min_length=1)
    interval_min: int = Field(gt=0)


class Metric(_Strict):
    unit: str
    min: float
    max: float


class Conversion(_Strict):
    unit: str
    factor: str
    offset: str = "0"

    @field_validator("factor", "offset")
    @classmethod
    def _fraction(cls, v: str) -> str:
        try:
            Fraction(v)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"'{v}' is not an exact number or fraction like 5/9") from None
        return v

    @property
    def to_canonical(self) -> tuple[float, float]:
        """(factor, offset): canonical = delivered * factor + offset."""
        return float(Fraction(self.factor)), float(Fraction(self.offset))

    @property
    def from_canonical(self) -> tuple[float, float]:
        """(scale, offset): delivered = canonical * scale + offset (the generator's direction)."""
        f, o = Fraction(self.factor), Fraction(self.offset)
        return float(1 / f), float(-o / f)


class Sensing(_Strict):
    departments: dict[str, SensingDepartment]
    device_types: dict[str, DeviceType]
    metrics: dict[str, Metric]
    unit_conversions: dict[str, Conversion]
    unit_spellings: dict[str, str]
    continuous_metrics: tuple[str, ...]
    flatline_minutes: int = Field(gt=0)
    in_service_status: str

    @model_validator(mode="after")
    def _consistent(self):
        for code in [*self.departments, *self.device_types]:
            if not re.fullmatch(r"[0-9]{2}", code) or code == "00":
                raise ValueError(f"'{code}' is not a two-digit code 01-99 (a part of the city code)")
        for code, t in self.device_types.items():
            if t.owner not in self.departments:
                raise ValueError(f"device type {code}: owner '{t.owner}' is not one of the departments")
            for m in t.metrics:
                if m not in self.metrics:
                    raise ValueError(f"device type {code}: metric '{m}' is not declared under metrics")
        for m in [*self.unit_conversions, *self.continuous_metrics]:
            if m not in self.metrics:
                raise ValueError(f"'{m}' is not declared under metrics")
        return self


class Credit(_Strict):
    subject_types: dict[str, Literal["credit_code", "id_number"]]
    licence_categories: tuple[str, ...] = Field(min_length=1)
    penalty_types: tuple[str, ...] = Field(min_length=1)
    revoking_penalties: tuple[str, ...]
    lists: dict[str, Literal["red", "black"]]
    list_statuses: tuple[str, ...]
    active_list_status: str
    tax_ratings: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        for p in self.revoking_penalties:
            if p not in self.penalty_types:
                raise ValueError(f"revoking_penalties: '{p}' is not one of penalty_types")
        if self.active_list_status not in self.list_statuses:
            raise ValueError(f"active_list_status '{self.active_list_status}' is not one of list_statuses")
        if {"red", "black"} - set(self.lists.values()):
            raise ValueError("lists: needs at least one red and one black list")
        return self

    def lists_of(self, colour: str) -> list[str]:
        return [n for n, c in self.lists.items() if c == colour]


class LicenceType(_Strict):
    name: str
    issuer: str
    issuer_code: str = Field(pattern=r"^[0-9]{11}$")
    holder: Literal["entity", "person"]
    valid_years: int | None = Field(default=None, gt=0)
    ends_with_holder: bool


class ELicence(_Strict):
    catalogue: dict[str, LicenceType] = Field(min_length=1)
    statuses: tuple[str, ...]
    valid_status: str

    @model_validator(mode="after")
    def _consistent(self):
        if self.valid_status not in self.statuses:
            raise ValueError(f"valid_status '{self.valid_status}' is not one of statuses")
        return self


class Indicator(_Strict):
    name: str
    unit: str
    source: str
    column: str | None = None
    frequency: Literal["monthly", "quarterly"]
    by: tuple[Literal["town", "industry"], ...]
    additive: bool


class Tolerance(_Strict):
    relative: float = Field(default=0.0, ge=0)
    absolute: float = Field(default=0.0, ge=0)

    def allows(self, reported: float, expected: float) -> bool:
        """``reported`` is within the tolerance of ``expected`` (the larger of the two bounds)."""
        return abs(reported - expected) <= max(self.absolute, self.relative * abs(expected))


class CrossCheck(_Strict):
    indicator: str
    against: str


class Macro(_Strict):
    total_town: str
    total_industry: str
    industries: dict[str, str] = Field(min_length=1)
    units: tuple[str, ...]
    unit_conversions: dict[str, dict[str, str]]
    indicators: dict[str, Indicator] = Field(min_length=1)
    tolerances: dict[Literal["totals", "turnover", "entity_count"], Tolerance]
    cross_checks: dict[str, CrossCheck]

    @field_validator("unit_conversions")
    @classmethod
    def _fractions(cls, v):
        for canonical, others in v.items():
            for unit, factor in others.items():
                try:
                    Fraction(factor)
                except (ValueError, ZeroDivisionError):
                    raise ValueError(f"{canonical} <- {unit}: '{factor}' is not an exact number or fraction") from None
        return v

    @model_validator(mode="after")
    def _consistent(self):
        for unit in [*self.unit_conversions, *(u for o in self.unit_conversions.values() for u in o)]:
            if unit not in self.units:
                raise ValueError(f"unit_conversions: unit '{unit}' is not one of units")
        for code, ind in self.indicators.items():
            if ind.unit not in self.units:
                raise ValueError(f"indicators.{code}: unit '{ind.unit}' is not one of units")
        for name, cc in self.cross_checks.items():
            for code in (cc.indicator, cc.against):
                if code not in self.indicators:
                    raise ValueError(f"cross_checks.{name}: '{code}' is not an indicator")
            if name not in self.tolerances:
                raise ValueError(f"cross_checks.{name}: no tolerance of that name")
        return self

    def factor(self, canonical: str, delivered: str) -> float | None:
        """canonical = delivered x factor; 1 for the canonical unit itself, None when not convertible."""
        if delivered == canonical:
            return 1.0
        f = self.unit_conversions.get(canonical, {}).get(delivered)
        return None if f is None else float(Fraction(f))

    def indicators_of(self, source: str) -> dict[str, Indicator]:
        return {c: i for c, i in self.indicators.items() if i.source == source}


Period = Literal["1h", "8h", "24h"]


class Hotline(_Strict):
    categories: tuple[str, ...] = Field(min_length=1)
    statuses: tuple[str, ...] = Field(min_length=1)
    satisfaction: tuple[str, ...] = Field(min_length=1)
    satisfied: tuple[str, ...]
    timestamp_format: str = Field(min_length=1)
    repeat_window_days: int = Field(gt=0)
    grid_level: Literal["grid_1km", "grid_5km"]

    @model_validator(mode="after")
    def _consistent(self):
        bad = [s for s in self.satisfied if s not in self.satisfaction]
        if bad:
            raise ValueError(f"satisfied: {bad} not among satisfaction")
        return self


class Emergency(_Strict):
    shelter_reach_metres: float = Field(gt=0)
    shelter_types: tuple[str, ...] = Field(min_length=1)
    hazard_levels: tuple[str, ...] = Field(min_length=1)
    team_types: tuple[str, ...] = Field(min_length=1)


class HealthFacilities(_Strict):
    categories: tuple[str, ...] = Field(min_length=1)
    levels: tuple[str, ...] = Field(min_length=1)
    hospital_categories: tuple[str, ...] = Field(min_length=1)   # must declare beds
    statuses: tuple[str, ...] = Field(min_length=1)
    active_status: str = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self):
        bad = [c for c in self.hospital_categories if c not in self.categories]
        if bad:
            raise ValueError(f"hospital_categories: {bad} not among categories")
        if self.active_status not in self.statuses:
            raise ValueError(f"active_status '{self.active_status}' is not among statuses")
        return self


class BusLines(_Strict):
    directions: tuple[str, ...] = Field(min_length=1)
    stop_delimiter: str = Field(min_length=1)
    stop_service: str = Field(min_length=1)      # the service of ``services`` whose facilities are the stops
    min_km: float = Field(gt=0)
    max_km: float = Field(gt=0)
    outside_tolerance_km: float = Field(ge=0)


class Service(_Strict):
    """Facilities are either rows of a base table (``table``, in service when ``status_column`` is one
    of ``statuses``) or POIs of base.poi (``poi_category`` and optionally ``name_pattern``)."""
    poi_category: str = ""
    name_pattern: str = ""              # a regular expression the POI's name must contain a match of
    table: str = ""                     # a base table with key, lon, lat and town columns
    id_column: str = ""
    status_column: str = ""
    statuses: tuple[str, ...] = ()
    reach_metres: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_kind(self):
        if bool(self.poi_category) == bool(self.table):
            raise ValueError("a service takes its facilities from exactly one of poi_category and table")
        if self.table and not (self.id_column and self.status_column and self.statuses):
            raise ValueError("a service from a table names its id_column, status_column and statuses")
        if self.table and self.name_pattern:
            raise ValueError("name_pattern applies to POIs only")
        return self


class AirQuality(_Strict):
    gb3095_grade_ii: dict[str, dict[Period, float]]
    min_hours: dict[Literal["8h", "24h"], int]
    window_hours: int


class Reference(_Strict):
    district: District
    legal_entity: LegalEntity
    sensing: Sensing
    air_quality: AirQuality
    credit: Credit
    e_licence: ELicence
    macro: Macro
    hotline: Hotline
    emergency: Emergency
    services: dict[str, Service] = Field(min_length=1)
    health_facilities: HealthFacilities
    bus_lines: BusLines

    @model_validator(mode="after")
    def _pollutants(self):
        for p in self.air_quality.gb3095_grade_ii:
            if p not in self.sensing.metrics:
                raise ValueError(f"air_quality: pollutant '{p}' is not a sensing metric")
        return self

    @model_validator(mode="after")
    def _bus_stops(self):
        sv = self.services.get(self.bus_lines.stop_service)
        if sv is None or not sv.poi_category:
            raise ValueError(f"bus_lines.stop_service '{self.bus_lines.stop_service}' is not a POI service of services")
        if self.bus_lines.min_km >= self.bus_lines.max_km:
            raise ValueError("bus_lines: min_km must be below max_km")
        return self

    # ---- the named value sets contracts may use (values_from: / allowed_from:)
    def value_set(self, name: str) -> list:
        sets = {
            "district.towns": list(self.district.towns),
            "legal_entity.deregistered_statuses": list(self.legal_entity.deregistered_statuses),
            "sensing.device_types": list(self.sensing.device_types),
            "sensing.departments": [d.department for d in self.sensing.departments.values()],
            "sensing.metrics": list(self.sensing.metrics),
            "air_quality.pollutants": list(self.air_quality.gb3095_grade_ii),
            "air_quality.periods": sorted({p for lim in self.air_quality.gb3095_grade_ii.values() for p in lim}),
            # the distinct limit values, in declaration order
            "air_quality.gb3095_limits": list(dict.fromkeys(
                v for lim in self.air_quality.gb3095_grade_ii.values() for v in lim.values())),
            "credit.subject_types": list(self.credit.subject_types),
            "credit.licence_categories": list(self.credit.licence_categories),
            "credit.penalty_types": list(self.credit.penalty_types),
            "credit.lists": list(self.credit.lists),
            "credit.list_statuses": list(self.credit.list_statuses),
            "credit.tax_ratings": list(self.credit.tax_ratings),
            "e_licence.types": list(self.e_licence.catalogue),
            "e_licence.statuses": list(self.e_licence.statuses),
            "macro.indicators": list(self.macro.indicators),
            "macro.towns": [*self.district.towns, self.macro.total_town],
            "macro.industries": [*self.macro.industries, self.macro.total_industry],
            "macro.units": list(self.macro.units),
            "hotline.categories": list(self.hotline.categories),
            "hotline.statuses": list(self.hotline.statuses),
            "hotline.satisfaction": list(self.hotline.satisfaction),
            "emergency.shelter_types": list(self.emergency.shelter_types),
            "emergency.hazard_levels": list(self.emergency.hazard_levels),
            "emergency.team_types": list(self.emergency.team_types),
            "services": list(self.services),
            "health_facilities.categories": list(self.health_facilities.categories),
            "health_facilities.levels": list(self.health_facilities.levels),
            "health_facilities.statuses": list(self.health_facilities.statuses),
            "bus_lines.directions": list(self.bus_lines.directions),
        }
        if name not in sets:
            raise KeyError(name)
        return sets[name]

    @property
    def value_set_names(self) -> list[str]:
        return ["district.towns", "legal_entity.deregistered_statuses", "sensing.device_types",
                "sensing.departments", "sensing.metrics", "air_quality.pollutants", "air_quality.periods",
                "air_quality.gb3095_limits", "credit.subject_types", "credit.licence_categories",
                "credit.penalty_types", "credit.lists", "credit.list_statuses", "credit.tax_ratings",
                "e_licence.types", "e_licence.statuses", "macro.indicators", "macro.towns", "macro.industries",
                "macro.units", "hotline.categories", "hotline.statuses", "hotline.satisfaction",
                "emergency.shelter_types", "emergency.hazard_levels", "emergency.team_types", "services",
                "health_facilities.categories", "health_facilities.levels", "health_facilities.statuses",
                "bus_lines.directions"]

    @property
    def substitutions(self) -> dict[str, str]:
        """What ``${name}`` in a contract's regex or text stands for."""
        return {"district": self.district.code,
                # the device types of a city code (positions 7-8) as a regex group: (01|02|...)
                "device_types": "(" + "|".join(sorted(self.sensing.device_types)) + ")"}


class ReferenceError(ValueError):
    """reference.yaml is wrong; the message names the key."""


def parse(path: Path) -> Reference:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ReferenceError(f"{path}: cannot be read: {e}") from None
    try:
        return Reference.model_validate(data)
    except ValidationError as e:
        raise ReferenceError(f"{path}: " + _messages(e)) from None


def _messages(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())


@lru_cache(maxsize=1)
def load() -> Reference:
    return parse(PATH)


REF = load()
DISTRICT = REF.district
SENSING = REF.sensing
AIR_QUALITY = REF.air_quality
LEGAL_ENTITY = REF.legal_entity
CREDIT = REF.credit
E_LICENCE = REF.e_licence
MACRO = REF.macro
HOTLINE = REF.hotline
EMERGENCY = REF.emergency
SERVICES = REF.services
HEALTH_FACILITIES = REF.health_facilities
BUS_LINES = REF.bus_lines
