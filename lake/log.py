"""One logger for the lake; the CLI attaches a rich handler, Airflow its own."""
import logging

log = logging.getLogger("lake")
