"""What every part of the platform file's schema builds on: the strict base model and a name.

``_Strict``: no unknown fields, frozen, and no inf/NaN (stored as JSON they would become
null). ``Name``: what a provider, deployment or model may be called. A module of its own so
that the parts of the schema (``deployments``, ``models``, the whole file in the package)
share them without importing one another.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]


class _Strict(BaseModel):
    # No inf/NaN: stored as JSON they become null, and the row no longer reads back as a spec.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
