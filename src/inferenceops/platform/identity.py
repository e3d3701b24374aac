"""Who is calling: the principal an API key resolves to. Pure data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Teams, roles and grants arrive with the identity store."""

    id: str
    kind: str = "admin"
