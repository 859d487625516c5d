"""CKAN-compatible JSON of the open zone, for harvesters that speak CKAN's action API rather than DCAT.

``<root>/open/ckan/package_list.json`` is what ``/api/3/action/package_list`` answers and
``<root>/open/ckan/package_show/<id>.json`` what ``/api/3/action/package_show?id=<id>`` answers
(``{"help", "success", "result"}``), with the package fields of CKAN 2.x: name, title, notes,
licence, tags, organization, groups (the EU data themes), maintainer, resources (url, format,
mimetype, size, hash) and extras (frequency, temporal and spatial coverage, …).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from opendata import vocab

if TYPE_CHECKING:  # dcat writes the CKAN files: only the type comes from it
    from opendata.dcat import DatasetModel

HELP = "https://docs.ckan.org/en/latest/api/index.html#ckan.logic.action.get."
ORG_NAME = "daxing-big-data-bureau"


def package_list(ids: list[str]) -> dict:
    return {"help": HELP + "package_list", "success": True, "result": sorted(ids)}


def package_show(m: DatasetModel, base: str) -> dict:
    lic = vocab.LICENCES[m.licence]
    modified = f"{m.modified}T00:00:00" if m.modified and "T" not in m.modified else m.modified
    resources = [{
        "id": f"{m.id}-{d.file.replace('.', '-')}", "package_id": m.id, "name": d.file, "description": d.title,
        "url": f"{base}{m.id}/{d.file}" if m.public else f"{base}{m.id}/", "format": d.format, "mimetype": d.media_type, "size": d.byte_size,
        "hash": f"sha256:{d.sha256}", "last_modified": modified or None, "position": i, "state": "active",
        "url_type": None,
    } for i, d in enumerate(m.distributions)]
    extras = {"dcat_uri": str(m.iri(base, "dataset")), "frequency": vocab.FREQUENCIES[m.frequency][0],
              "access_rights": vocab.ACCESS_RIGHTS[m.access][0], "language": "zh",
              "spatial_text": m.spatial.get("name", ""), "provenance": m.provenance}
    if m.temporal:
        extras["temporal_start"], extras["temporal_end"] = m.temporal
    if m.spatial.get("bbox_wgs84"):
        w, s, e, n = m.spatial["bbox_wgs84"]
        extras["spatial_bbox"] = f"{w},{s},{e},{n}"
    result = {
        "id": m.id, "name": m.id, "title": m.title, "notes": m.description, "type": "dataset", "state": "active",
        "private": False, "isopen": m.access == "unconditional",
        "license_id": lic["ckan_id"], "license_title": lic["label"], "license_url": lic["url"],
        "url": f"{base}{m.id}/", "metadata_modified": modified or None,
        "author": m.publisher_zh, "maintainer": m.contact_name, "maintainer_email": m.contact_email,
        "organization": {"name": ORG_NAME, "title": m.publisher_zh, "type": "organization", "is_organization": True},
        "groups": [{"name": code.lower(), "title": vocab.THEMES[code][1], "display_name": vocab.THEMES[code][1]}
                   for code in m.themes],
        "tags": [{"name": k, "display_name": k, "state": "active"} for k in m.keywords],
        "num_tags": len(m.keywords), "resources": resources, "num_resources": len(resources),
        "extras": [{"key": k, "value": v} for k, v in sorted(extras.items())],
    }
    return {"help": HELP + "package_show", "success": True, "result": result}
