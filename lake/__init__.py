"""Daxing lake: the building blocks (settings, Spark session, Delta I/O, contracts, rules).

Jobs in ``jobs/`` compose these; DAGs in ``dags/`` and the ``lake`` CLI only call jobs.
"""
