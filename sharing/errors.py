"""The refusals of the share zone: one exception, with an HTTP status, a Delta Sharing error code and a
one-line reason that names what was refused and why, never any data."""
from __future__ import annotations


class Refused(Exception):
    """A request that is refused: ``status`` 400 (malformed), 401 (no valid token), 403 (not granted),
    404 (no such share, schema or table)."""

    def __init__(self, status: int, reason: str, code: str | None = None, department_code: str = ""):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.department_code = department_code  # who, when the refused token is known (for the audit)
        self.code = code or {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                             404: "RESOURCE_DOES_NOT_EXIST"}.get(status, "INTERNAL_ERROR")

    def __str__(self) -> str:
        return self.reason
