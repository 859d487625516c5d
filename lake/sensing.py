"""What the sensing job (jobs/iot.py) and the IoT generator (lake/generate_iot.py) must agree on about
device health, defined once here so that the detector and the data it is measured on cannot drift
apart (docs/spatial_iot.md).

Flat-lining (数值僵直) means a stuck sensor: one value for at least ``FLATLINE_MINUTES`` of consecutive
readings. That is evidence only for a metric that is expected to vary continuously, where an analogue
sensor's reading always moves a little: the air pollutants, noise, water quality, a hydrant's network
pressure (it follows the demand) and a heat pump's supply temperature. The other metrics legitimately
read one value for hours, so they are never checked:

- ``water_level``: a dry flood point reads 0 cm until it rains;
- ``tilt``: a closed manhole cover rests at one angle;
- ``power``: a lamp post's LED driver holds its rated (or dimmed) power all night and its standby
  power all day;
- ``ch4``: a gas detector in clean air reads 0 %LEL.
"""
from __future__ import annotations

CONTINUOUS_METRICS = ("pm25", "pm10", "no2", "so2", "o3", "co", "noise", "ph", "do", "turbidity", "pressure",
                      "supply_temp")
STEADY_METRICS = ("water_level", "tilt", "power", "ch4")  # may read one value for hours (see above)
FLATLINE_MINUTES = 180
