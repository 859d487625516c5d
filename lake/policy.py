"""The lake's quality policy (``contracts/policy.yaml``): what blocks publication, how late a
department may deliver, and the weights of the department quality score.

A missing file means the defaults below. A present file is validated strictly: an unknown key, a
wrong type or a bad value raises ``ContractError`` naming the file and the key (``timeliness.grace_days``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lake.contracts import ContractError

SEVERITIES = ("error", "warning")
FILE_NAME = "policy.yaml"


@dataclass(frozen=True)
class Policy:
    blocking_severities: tuple[str, ...] = ("error",)
    blocking_defect_types: tuple[str, ...] = ()
    grace_days: int = 0
    block_publication: bool = False
    # checks against history (source contracts' history_checks): a failed check of the newest
    # delivery of a source blocks publication of the tables it feeds
    history_block_publication: bool = False
    weights: dict = field(default_factory=lambda: {"error": 1.0, "warning": 0.3})
    stale_penalty: float = 10.0
    path: str = ""

    def is_blocking(self, severity: str | None, defect_type: str | None = None) -> bool:
        return severity in self.blocking_severities or (defect_type or "") in self.blocking_defect_types


_SCHEMA = {
    "check": {"blocking_severities": list, "blocking_defect_types": list},
    "timeliness": {"grace_days": int, "block_publication": bool},
    "score": {"weights": dict, "stale_penalty": (int, float)},
    "history": {"block_publication": bool},
}


def _type_name(t) -> str:
    names = {list: "a list", dict: "a mapping", int: "an integer", bool: "true or false", (int, float): "a number"}
    return names.get(t, str(t))


def parse(data: dict | None, path: str = FILE_NAME) -> Policy:
    """Validate a policy mapping (as read from YAML) and return a ``Policy``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a mapping at the top level")
    for section, value in data.items():
        if section not in _SCHEMA:
            raise ContractError(f"{path}: unknown key '{section}'; known: {', '.join(_SCHEMA)}")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ContractError(f"{path}: '{section}' must be a mapping")
        for key, v in value.items():
            want = _SCHEMA[section].get(key)
            if want is None:
                raise ContractError(f"{path}: unknown key '{section}.{key}'; known: "
                                    + ", ".join(f"{section}.{k}" for k in _SCHEMA[section]))
            # bool is an int in Python: reject true/false where a number is wanted
            if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
                raise ContractError(f"{path}: '{section}.{key}' must be {_type_name(want)}, got {v!r}")
    check = data.get("check") or {}
    tl = data.get("timeliness") or {}
    score = data.get("score") or {}
    hist = data.get("history") or {}
    defaults = Policy()
    sev = tuple(check.get("blocking_severities", defaults.blocking_severities))
    bad = [s for s in sev if s not in SEVERITIES]
    if bad:
        raise ContractError(f"{path}: 'check.blocking_severities' has unknown severities {bad}; known: {list(SEVERITIES)}")
    grace = tl.get("grace_days", defaults.grace_days)
    if grace < 0:
        raise ContractError(f"{path}: 'timeliness.grace_days' must be >= 0, got {grace}")
    weights = dict(defaults.weights)
    for k, w in (score.get("weights") or {}).items():
        if k not in SEVERITIES:
            raise ContractError(f"{path}: unknown key 'score.weights.{k}'; known: {list(SEVERITIES)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise ContractError(f"{path}: 'score.weights.{k}' must be a number >= 0, got {w!r}")
        weights[k] = float(w)
    penalty = score.get("stale_penalty", defaults.stale_penalty)
    if penalty < 0:
        raise ContractError(f"{path}: 'score.stale_penalty' must be >= 0, got {penalty}")
    return Policy(
        blocking_severities=sev,
        blocking_defect_types=tuple(str(d) for d in check.get("blocking_defect_types", ())),
        grace_days=int(grace), block_publication=bool(tl.get("block_publication", False)),
        weights=weights, stale_penalty=float(penalty), path=path,
        history_block_publication=bool(hist.get("block_publication", False)),
    )


def load(contracts_dir: str) -> Policy:
    """``<contracts_dir>/policy.yaml``, validated; the defaults when the file does not exist."""
    p = Path(contracts_dir) / FILE_NAME
    if not p.is_file():
        return Policy()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ContractError(f"{p}: not valid YAML: {e}") from None
    return parse(data, str(p))
