"""Bounded value types for the admin API's bodies and parameters. No I/O.

Each type refuses, at validation (a 422 naming the field), the values that would otherwise
fail later — in Python's own arithmetic or in the store — as a 500:

    Timestamp       an aware datetime that still exists once converted to UTC: the store keeps
                    UTC, and ``9999-12-31T23:59:59-01:00`` is past ``datetime.max`` there
    Sequence        a whole number a BIGINT column holds (0 … 2**63 - 1): SQLite cannot bind a
                    larger one, PostgreSQL refuses it
    amount_nanos    decimal money text → nano-units, bounded *before* scaling: the scaling of
                    ``"1e999999"`` overflows ``decimal``'s context (``decimal.Overflow``)

Strings are not bounded here: NUL characters, which PostgreSQL cannot store in text, are
refused for every parameter and body at once (``_input``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from inferenceops.platform.policy import NANOS, from_nanos, to_nanos
from inferenceops.store.repo.admission import MAX_VALUE

#: The largest value of a signed 64-bit column (BIGINT on PostgreSQL, INTEGER on SQLite).
BIGINT_MAX = 2**63 - 1
#: The largest amount of money, in currency units: what the ledgers count exactly (``MAX_VALUE`` nanos).
MAX_AMOUNT = Decimal(MAX_VALUE) / NANOS


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the calendar once converted to UTC (years 1 to 9999 "
                         "there); give an earlier or later time, or its UTC offset") from None


#: An aware datetime (an offset is required), returned in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_utc)]
#: A whole number from 0 to ``BIGINT_MAX``.
Sequence = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


def amount_nanos(value: str | int | float) -> int:
    """A positive amount of money (``"12.50"``, ``12.5``) in nano-units, at most ``MAX_VALUE``.

    ``ValueError`` says what is wrong. Fractions of a nano-unit round up, as prices do.
    """
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if amount <= 0:
        raise ValueError("must be more than 0")
    if amount > MAX_AMOUNT:
        raise ValueError(f"must be at most {from_nanos(MAX_VALUE)}")
    return to_nanos(amount)
