"""The sensing network's reference data (``contracts/reference.yaml``, validated by ``lake.reference``)
in the forms the sensing jobs and the IoT generator use, so that the detector and the data it is
measured on cannot drift apart (docs/spatial_iot.md).

Flat-lining (数值僵直) means a stuck sensor: one value for at least ``FLATLINE_MINUTES`` of consecutive
readings. That is evidence only for a metric that is expected to vary continuously, where an analogue
sensor's reading always moves a little: the air pollutants, noise, water quality, a hydrant's network
pressure (it follows the demand) and a heat pump's supply temperature. The other metrics legitimately
read one value for hours, so they are never checked:

- ``water_level``: a dry flood point reads 0 cm until it rains;
- ``tilt``: a closed manhole cover rests at one angle;
- ``power``: a lamp post's LED driver holds its rated (or dimmed) power all night and its standby
  power all day;
- ``ch4``: a gas detector in clean air reads 0 %LEL;
- ``vehicle_count``: a traffic-flow detector on a quiet road counts no vehicle for hours at night.
"""
from __future__ import annotations

import datetime as dt

from lake.files import InputError
from lake.reference import AIR_QUALITY, SENSING

# code: (type name, owner department name, metrics, report interval in minutes)
DEVICE_TYPES = {code: (t.name, SENSING.departments[t.owner].department, tuple(t.metrics), t.interval_min)
                for code, t in SENSING.device_types.items()}
# metric: (canonical unit, physical minimum, physical maximum) in the canonical unit (inclusive)
METRICS = {m: (v.unit, v.min, v.max) for m, v in SENSING.metrics.items()}
METRIC_TYPE = {m: code for code, (_, _, metrics, _) in DEVICE_TYPES.items() for m in metrics}
# a known other unit: (metric, unit) -> (factor, offset): canonical = value * factor + offset
CONVERSIONS = {(m, c.unit): c.to_canonical for m, c in SENSING.unit_conversions.items()}
# spellings of the same unit (not a conversion): normalised before the lookup
UNIT_SPELLINGS = dict(SENSING.unit_spellings)
CONTINUOUS_METRICS = tuple(SENSING.continuous_metrics)
STEADY_METRICS = tuple(m for m in METRICS if m not in CONTINUOUS_METRICS)  # may read one value for hours
FLATLINE_MINUTES = SENSING.flatline_minutes
IN_SERVICE = SENSING.in_service_status
SILENT_HOURS = 6
FUTURE_TOLERANCE_MINUTES = 5
# GB 3095-2012 grade II: pollutant -> {averaging period: limit}; data validity; 8-hour windows of a day
# start at 00:00 ... 16:00 (they end at 08:00 ... 24:00, HJ 663-2013), so they never reach another day
GB3095_II = {p: dict(lim) for p, lim in AIR_QUALITY.gb3095_grade_ii.items()}
MIN_HOURS = dict(AIR_QUALITY.min_hours)
WINDOW_HOURS = AIR_QUALITY.window_hours
POLLUTANTS = DEVICE_TYPES["01"][2]


def as_date(day) -> dt.date:
    """A delivery or reading day from a date or ``YYYY-MM-DD`` text (InputError otherwise)."""
    if isinstance(day, dt.date):
        return day
    try:
        return dt.date.fromisoformat(str(day))
    except ValueError:
        raise InputError(f"day '{day}' is not a date in YYYY-MM-DD form") from None


def days_list(days) -> list[dt.date]:
    """One day or several, as a sorted list of distinct dates."""
    if isinstance(days, (str, dt.date)):
        days = [days]
    return sorted({as_date(d) for d in days})
