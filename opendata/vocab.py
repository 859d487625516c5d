"""Controlled vocabularies the DCAT-AP 3 description uses, with the labels the portal shows.

DCAT-AP asks for concepts from the EU Publications Office authority tables (data themes,
frequencies, file types, languages, licences, access rights, planned availability), the ADMS
vocabularies (publisher and licence types) and IANA media types. Only the concepts this lake uses
are listed; each has its English label from the authority table and a Chinese label for the portal.
"""
from __future__ import annotations

EU = "http://publications.europa.eu/resource/authority/"
IANA = "https://www.iana.org/assignments/media-types/"

# EU data themes (http://publications.europa.eu/resource/authority/data-theme): code -> (en, zh)
THEMES: dict[str, tuple[str, str]] = {
    "AGRI": ("Agriculture, fisheries, forestry and food", "农业、渔业、林业和食品"),
    "ECON": ("Economy and finance", "经济和金融"),
    "EDUC": ("Education, culture and sport", "教育、文化和体育"),
    "ENER": ("Energy", "能源"),
    "ENVI": ("Environment", "环境"),
    "GOVE": ("Government and public sector", "政府和公共部门"),
    "HEAL": ("Health", "卫生健康"),
    "INTR": ("International issues", "国际事务"),
    "JUST": ("Justice, legal system and public safety", "司法、法律体系和公共安全"),
    "REGI": ("Regions and cities", "区域和城市"),
    "SOCI": ("Population and society", "人口和社会"),
    "TECH": ("Science and technology", "科学和技术"),
    "TRAN": ("Transport", "交通"),
}

# contract update_cycle -> EU frequency (http://publications.europa.eu/resource/authority/frequency)
FREQUENCIES: dict[str, tuple[str, str, str]] = {
    "daily": ("DAILY", "daily", "每日"),
    "weekly": ("WEEKLY", "weekly", "每周"),
    "monthly": ("MONTHLY", "monthly", "每月"),
    "quarterly": ("QUARTERLY", "quarterly", "每季度"),
    "yearly": ("ANNUAL", "annual", "每年"),
}

# distribution format (metadata.json "format") -> EU file type, IANA media type, Chinese title
FORMATS: dict[str, dict] = {
    "CSV": {"file_type": "CSV", "media_type": "text/csv", "title": "CSV 表格"},
    "JSON": {"file_type": "JSON", "media_type": "application/json", "title": "JSON 记录"},
    "GeoJSON": {"file_type": "GEOJSON", "media_type": "application/geo+json", "title": "GeoJSON 地理数据"},
}

# licence as written in metadata.json -> EU licence concept, ADMS licence type, labels, CKAN id
LICENCES: dict[str, dict] = {
    "CC-BY-4.0": {
        "uri": EU + "licence/CC_BY_4_0", "label": "Creative Commons Attribution 4.0 International",
        "zh": "知识共享署名 4.0 国际许可协议（CC BY 4.0）", "type": "http://purl.org/adms/licencetype/Attribution",
        "type_label": "Attribution", "ckan_id": "cc-by", "url": "https://creativecommons.org/licenses/by/4.0/",
    },
}
LICENCE_TYPE_SCHEME = "http://purl.org/adms/licencetype/1.0"

# contract open_type -> EU access right
ACCESS_RIGHTS: dict[str, tuple[str, str, str]] = {
    "unconditional": ("PUBLIC", "public", "无条件开放"),
    "directed": ("RESTRICTED", "restricted", "有条件（定向）开放"),
}

PUBLISHER_TYPE = ("http://purl.org/adms/publishertype/LocalAuthority", "Local Authority", "地方政府机构")
PUBLISHER_TYPE_SCHEME = "http://purl.org/adms/publishertype/1.0"
LANGUAGE = (EU + "language/ZHO", "Chinese", "中文")
AVAILABILITY = (EU + "planned-availability/STABLE", "stable", "长期可用")

SCHEMES: dict[str, str] = {  # concept scheme IRI -> title (DCAT-AP requires a title on a scheme)
    EU + "data-theme": "Data theme",
    EU + "frequency": "Frequency",
    EU + "file-type": "File type",
    EU + "language": "Language",
    EU + "licence": "Licence",
    EU + "access-right": "Access right",
    EU + "planned-availability": "Planned availability",
    LICENCE_TYPE_SCHEME: "Licence type",
    PUBLISHER_TYPE_SCHEME: "Publisher type",
}
