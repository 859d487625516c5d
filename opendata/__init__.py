"""The open-data side of the lake: DCAT-AP 3 metadata of the open zone (``opendata.dcat``), a
CKAN-compatible package list (``opendata.ckan``) and the static open-data portal (``opendata.portal``).

Everything here reads what ``jobs/publish/open.py`` wrote to ``<root>/open/`` plus the table contracts'
``open_dataset`` mappings; nothing here needs a JVM.
"""
