"""Bearer tokens: one per department (a department may hold several; each is revocable on its own).

A token is ``dxs1.<token id>.<secret>``: the id (12 hex characters) is public and names the token in
the audit; the secret (256 random bits) is shown once, in the profile file ``lake share token issue``
writes, and never stored: the lake keeps only the sha256 of the whole token (``_private/sharing/tokens``).
A token is refused when it is malformed, unknown, does not match its hash (forged), has expired or
was revoked; each refusal names which."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lake.contracts import Contracts
from lake.settings import Settings
from sharing import store
from sharing.errors import Refused

FORMAT = re.compile(r"^dxs1\.([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")


@dataclass
class Token:
    token_id: str
    department_code: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    sha256: str

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if now >= self.expires_at else "active"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens(settings: Settings) -> dict[str, Token]:
    out: dict[str, Token] = {}
    for r in sorted(store.read(settings, store.TOKENS), key=lambda r: r["at"]):
        if r["event"] == "issued":
            out[r["token_id"]] = Token(r["token_id"], r["department_code"], r["at"], r["expires_at"], None,
                                       r["token_sha256"])
        elif r["event"] == "revoked" and r["token_id"] in out and out[r["token_id"]].revoked_at is None:
            out[r["token_id"]].revoked_at = r["at"]
    return out


def issue(settings: Settings, contracts: Contracts, department_code: str, days: int, now: datetime | None = None,
          note: str = "") -> tuple[str, Token]:
    """A new token for a registered department: (the token, its record). The token itself is returned
    once and stored nowhere."""
    contracts.department(department_code)  # raises naming the unknown code
    if days <= 0:
        raise ValueError(f"--days must be positive, got {days}")
    now = now or now_utc()
    token_id = secrets.token_hex(6)
    token = f"dxs1.{token_id}.{secrets.token_urlsafe(32)}"
    rec = Token(token_id, department_code, now, now + timedelta(days=days), None, _sha(token))
    store.append(settings, store.TOKENS, [{"token_id": token_id, "event": "issued", "at": now,
                                           "department_code": department_code, "token_sha256": rec.sha256,
                                           "expires_at": rec.expires_at, "note": note}])
    return token, rec


def revoke(settings: Settings, token_id: str | None = None, department_code: str | None = None,
           now: datetime | None = None) -> list[Token]:
    """Revoke one token (by id) or every active token of a department; returns what was revoked."""
    now = now or now_utc()
    known = tokens(settings)
    if token_id:
        if token_id not in known:
            raise ValueError(f"unknown token id '{token_id}' (lake share token list shows them)")
        chosen = [known[token_id]]
    elif department_code:
        chosen = [t for t in known.values() if t.department_code == department_code]
        if not chosen:
            raise ValueError(f"department {department_code} holds no token")
    else:
        raise ValueError("give a token id or --department")
    todo = [t for t in chosen if t.revoked_at is None]
    store.append(settings, store.TOKENS, [{"token_id": t.token_id, "event": "revoked", "at": now,
                                           "department_code": t.department_code} for t in todo])
    for t in todo:
        t.revoked_at = now
    return todo


def verify(settings: Settings, token: str | None, now: datetime | None = None) -> Token:
    """The token's record if it may be used now; else Refused(401) saying why."""
    now = now or now_utc()
    if not token:
        raise Refused(401, "no bearer token: send 'Authorization: Bearer <token>' (the token of your profile file)")
    m = FORMAT.match(token)
    if not m:
        raise Refused(401, "malformed bearer token: not a token issued by this lake (lake share token issue)")
    rec = tokens(settings).get(m.group(1))
    if rec is None:
        raise Refused(401, f"unknown bearer token {m.group(1)}: it was never issued by this lake")
    if not hmac.compare_digest(rec.sha256, _sha(token)):
        raise Refused(401, f"bearer token {rec.token_id} does not match the token issued (forged or altered)",
                      department_code=rec.department_code)
    state = rec.state(now)
    if state == "revoked":
        raise Refused(401, f"bearer token {rec.token_id} was revoked on {rec.revoked_at:%Y-%m-%d %H:%M} UTC; "
                           "ask the big-data bureau for a new profile file", department_code=rec.department_code)
    if state == "expired":
        raise Refused(401, f"bearer token {rec.token_id} expired on {rec.expires_at:%Y-%m-%d %H:%M} UTC; "
                           "ask the big-data bureau for a new profile file", department_code=rec.department_code)
    return rec


def token_id_of(token: str | None) -> str:
    m = FORMAT.match(token or "")
    return m.group(1) if m else ""


def write_profile(path: Path, endpoint: str, token: str, expires_at: datetime) -> None:
    """A Delta Sharing profile file (shareCredentialsVersion 1), readable by its owner only."""
    doc = {"shareCredentialsVersion": 1, "endpoint": endpoint.rstrip("/") + "/", "bearerToken": token,
           "expirationTime": expires_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0Z")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)


def read_profile(path: Path) -> dict:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable Delta Sharing profile file ({e})") from None
    for k in ("shareCredentialsVersion", "endpoint", "bearerToken"):
        if k not in doc:
            raise ValueError(f"{path}: profile file lacks '{k}'")
    return doc
