"""Governance (管·评): timeliness of every source, the department quality reports, `lake check`."""
