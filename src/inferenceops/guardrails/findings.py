"""What a detector found: an entity type, a finer kind, and where it is in the text.

Entity types are the words policies use (``card``, ``email``…); ``kind`` says
which shape matched (``visa``, ``us_ssn``, ``aws_access_key``…), for logs and
metrics, never the matched text itself.
"""

from __future__ import annotations

from dataclasses import dataclass

EMAIL = "email"
PHONE = "phone"
CARD = "card"
IBAN = "iban"
NATIONAL_ID = "national_id"
IP_ADDRESS = "ip_address"
SECRET = "secret"

#: Every entity type the built-in detectors know, strongest first: where two findings
#: overlap, the one of the earlier type is kept (a card number inside a secret is the secret;
#: an IBAN's digits can pass for a card's, never the other way round).
ENTITIES: tuple[str, ...] = (SECRET, IBAN, CARD, NATIONAL_ID, EMAIL, PHONE, IP_ADDRESS)
PII_ENTITIES = frozenset({EMAIL, PHONE, CARD, IBAN, NATIONAL_ID, IP_ADDRESS})
RANK = {entity: i for i, entity in enumerate(ENTITIES)}


@dataclass(frozen=True, slots=True)
class Finding:
    """``text[start:end]`` is an ``entity`` of the given ``kind``."""

    entity: str
    kind: str
    start: int
    end: int
