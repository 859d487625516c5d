"""The sample data's base map: a synthetic but plausible map of the 22 towns and streets (乡镇级) of
Daxing, built deterministically: an outline polygon of the district, two small "cores" (Huangcun's
six streets, the two streets of the Yizhuang development area) and Voronoi diagrams of fixed seed
points. All the lines are noded together and polygonized, so neighbouring units share exactly the
same edge vertices: the units tile the outline with no gap and no overlap
(``shapely.coverage_is_valid`` holds). The generators deliver it as the planning department's
boundaries file (``ghzrzy_boundaries``) and place every generated point inside it.
"""
from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import MultiPoint, Polygon

from lake.geo import DISTRICT_CODE, EXTENT, unit_kind
from lake.reference import DISTRICT

# Outline of the district (lon, lat), counter-clockwise from the north-west; touches the extent at
# the north (Yizhuang), east (Caiyu), south (Yufa) and west (Yufa, along the Yongding river).
_OUTLINE = (
    (116.2903, 39.7748), (116.2857, 39.747), (116.281, 39.7053), (116.2717, 39.659), (116.2578, 39.6126),
    (116.23, 39.5709), (116.1929, 39.5384), (116.13, 39.505), (116.1976, 39.4967), (116.2532, 39.4828),
    (116.2996, 39.4689), (116.335, 39.44), (116.3784, 39.4782), (116.4108, 39.5013), (116.4386, 39.4782),
    (116.4664, 39.5013), (116.4989, 39.5384), (116.5267, 39.5755), (116.5545, 39.6033), (116.5916, 39.6219),
    (116.638, 39.6311), (116.6797, 39.6451), (116.72, 39.675), (116.6472, 39.7007), (116.6009, 39.7239),
    (116.5731, 39.747), (116.587, 39.7748), (116.5777, 39.8027), (116.5499, 39.8258), (116.51, 39.85),
    (116.4664, 39.8212), (116.4294, 39.8073), (116.383, 39.798), (116.3366, 39.7841),
)

# Seed point of every unit, in the order of lake.reference (district.towns) (codes 110115001...022).
# Towns (镇) tile the district outside the two cores; streets (街道) tile their core.
_UNITS = (
    ("青云店镇", (116.490, 39.680)),
    ("采育镇", (116.640, 39.660)),
    ("安定镇", (116.500, 39.610)),
    ("礼贤镇", (116.440, 39.540)),
    ("榆垡镇", (116.270, 39.515)),
    ("庞各庄镇", (116.320, 39.600)),
    ("北臧村镇", (116.280, 39.670)),
    ("魏善庄镇", (116.405, 39.650)),
    ("长子营镇", (116.570, 39.700)),
    ("西红门镇", (116.330, 39.770)),
    ("旧宫镇", (116.440, 39.795)),
    ("黄村镇", (116.345, 39.705)),
    ("瀛海镇", (116.440, 39.745)),
    ("亦庄镇", (116.545, 39.760)),
    ("兴丰街道", (116.338, 39.728)),
    ("林校路街道", (116.318, 39.722)),
    ("清源街道", (116.352, 39.712)),
    ("观音寺街道", (116.372, 39.728)),
    ("天宫院街道", (116.335, 39.700)),
    ("高米店街道", (116.355, 39.745)),
    ("荣华街道", (116.500, 39.795)),
    ("博兴街道", (116.525, 39.782)),
)
# the two cores: centre (lon, lat), radius in km, and the streets inside
_CORES = (
    ((116.345, 39.725), 3.4, ("兴丰街道", "林校路街道", "清源街道", "观音寺街道", "天宫院街道", "高米店街道")),
    ((116.512, 39.789), 2.6, ("荣华街道", "博兴街道")),
)


def _ellipse(center: tuple[float, float], radius_km: float, n: int = 72) -> Polygon:
    lon0, lat0 = center
    dlat = radius_km / 111.195
    dlon = radius_km / (111.195 * math.cos(math.radians(lat0)))
    pts = [(round(lon0 + dlon * math.cos(2 * math.pi * i / n), 6), round(lat0 + dlat * math.sin(2 * math.pi * i / n), 6))
           for i in range(n)]
    return Polygon(pts)


def district_outline() -> Polygon:
    """The district's outline (WGS-84 Polygon, ~1,036 km²)."""
    return shapely.orient_polygons(Polygon(_OUTLINE))


def district_boundaries() -> list[dict]:
    """The 22 towns and streets: ``[{code, name, kind, geometry}]`` in code order (110115001...022,
    the order of the reference data's district.towns), WGS-84 Polygons tiling ``district_outline()``."""
    outline = district_outline()
    seeds = {name: pt for name, pt in _UNITS}
    box = shapely.box(EXTENT[0] - 0.2, EXTENT[1] - 0.2, EXTENT[2] + 0.2, EXTENT[3] + 0.2)
    cores = [(_ellipse(c, r), names) for c, r, names in _CORES]
    core_names = {n for _, names in cores for n in names}
    town_names = [n for n, _ in _UNITS if n not in core_names]
    lines = [outline.boundary]
    # Voronoi in a locally isotropic plane (longitude scaled by cos(latitude)), mapped back to degrees
    k = math.cos(math.radians((EXTENT[1] + EXTENT[3]) / 2))
    squash = lambda c: np.column_stack([c[:, 0] * k, c[:, 1]])  # noqa: E731
    stretch = lambda c: np.column_stack([c[:, 0] / k, c[:, 1]])  # noqa: E731
    for names in [town_names] + [list(n) for _, n in cores]:
        sites = shapely.transform(MultiPoint([seeds[n] for n in names]), squash)
        edges = shapely.voronoi_polygons(sites, extend_to=shapely.transform(box, squash), only_edges=True)
        lines.append(shapely.transform(edges, stretch))
    lines += [core.boundary for core, _ in cores]
    # node every line against every other: neighbouring faces share identical vertices
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.unary_union(lines, grid_size=1e-7))))
    shapely.prepare(outline)
    pieces: dict[str, list] = {n: [] for n, _ in _UNITS}
    for face in faces:
        p = face.point_on_surface()
        if not outline.contains(p):
            continue
        candidates = town_names
        for core, names in cores:
            if core.contains(p):
                candidates = names
                break
        nearest = min(candidates, key=lambda n: ((seeds[n][0] - p.x) * k) ** 2 + (seeds[n][1] - p.y) ** 2)
        pieces[nearest].append(face)
    out = []
    for i, (name, _) in enumerate(_UNITS):
        geom = shapely.orient_polygons(shapely.coverage_union_all(pieces[name]))
        out.append({"code": f"{DISTRICT_CODE}{i + 1:03d}", "name": name, "kind": unit_kind(name), "geometry": geom})
    return out


if tuple(n for n, _ in _UNITS) != DISTRICT.towns:  # the seeds follow the reference's towns
    raise ValueError("sample.basemap: the seed points are not the towns of contracts/reference.yaml in order")
