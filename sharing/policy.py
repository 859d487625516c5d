"""``contracts/sharing.yaml``: the share name, the default protection of each grade, token and URL lifetimes.

Validated strictly (pydantic, unknown keys are errors) like every contract."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lake.contracts import ContractError, _load_yaml, _validate

NAME = r"^[a-z][a-z0-9_]{0,62}$"  # share, schema and table names the server accepts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tokens(_Strict):
    days: Annotated[int, Field(gt=0, le=3660)] = 365


class Files(_Strict):
    url_minutes: Annotated[int, Field(gt=0, le=1440)] = 15


class Grants(_Strict):
    max_days: Annotated[int, Field(gt=0, le=3660)] = 730


class Metrics(_Strict):
    unconditional_share_rate_target: Annotated[float, Field(ge=0, le=1)] = 0.8


class SharingModel(_Strict):
    share: str = Field(pattern=NAME)
    grades: dict[Literal[1, 2, 3, 4], Literal["clear", "protect", "exclude"]]
    tokens: Tokens = Tokens()
    files: Files = Files()
    grants: Grants = Grants()
    metrics: Metrics = Metrics()

    @model_validator(mode="after")
    def _all_grades(self):
        missing = {1, 2, 3, 4} - set(self.grades)
        if missing:
            raise ValueError(f"grades: every grade 1-4 needs a protection; missing {sorted(missing)}")
        order = {"clear": 0, "protect": 1, "exclude": 2}
        levels = [order[self.grades[g]] for g in (1, 2, 3, 4)]
        if levels != sorted(levels):
            raise ValueError("grades: a higher grade cannot be protected less than a lower one")
        return self


@dataclass(frozen=True)
class Policy:
    share: str
    grades: dict  # grade -> clear | protect | exclude
    token_days: int
    url_minutes: int
    grant_max_days: int
    rate_target: float


@lru_cache(maxsize=8)
def load(contracts_dir: str) -> Policy:
    path = Path(contracts_dir) / "sharing.yaml"
    if not path.is_file():
        raise ContractError(f"{path} is missing: the share name and the protection of each grade")
    m = _validate(SharingModel, path, _load_yaml(path))
    return Policy(share=m.share, grades=dict(m.grades), token_days=m.tokens.days, url_minutes=m.files.url_minutes,
                  grant_max_days=m.grants.max_days, rate_target=m.metrics.unconditional_share_rate_target)
