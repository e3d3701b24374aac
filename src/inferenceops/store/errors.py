"""The store's error tree, and the one place database-library exceptions are translated.

    StoreError                 anything the store could not do (base; message says what to fix)
    ├── NotFound               the row asked for (or a row it references) does not exist
    ├── Conflict               a uniqueness rule or the row's current state forbids the change
    ├── Invalid                the values break a rule of the schema (CHECK, allowed values), or
    │                          the database cannot hold them (out of range, a NUL character)
    ├── SchemaOutdated         the database has not been migrated to what this code expects
    ├── InvalidDatabaseURL     the URL is malformed or names a backend we do not support
    ├── StoreUnavailable       the database cannot be reached, refused us, or stayed busy/locked
    └── CredentialsError       stored provider credentials cannot be sealed or opened: a malformed
        │                      key, an altered ciphertext, or one bound to another row
        └── WrongCredentialsKey  they were sealed under another key (both key ids are named)

SQLAlchemy, asyncpg and sqlite3 exceptions never leave ``inferenceops.store``:
``translate`` turns them into one of these, and callers (admin API, bootstrap,
snapshot builder) map these to HTTP statuses or exit messages. This tree is
deliberately not part of ``inferenceops.errors`` (the client-visible tree):
a store failure is not by itself a client's error; the admin layer decides.

Nothing here does I/O; asyncpg is never imported (it is an optional extra),
errors are recognised by SQLSTATE / SQLite error names instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc


class StoreError(Exception):
    """Base of every store failure; ``str()`` says what happened and what to do."""


class NotFound(StoreError):
    """The row asked for, or a row it must reference, does not exist."""


class Conflict(StoreError):
    """A uniqueness rule or the current state of a row forbids the change."""


class Invalid(StoreError, ValueError):
    """Values that break a rule of the schema (a CHECK, an allowed value), or that the database
    cannot hold (a number out of its range, a NUL character in PostgreSQL text).

    ``field`` names the offending value when the repository knows it (``"rpm"``),
    so the admin API can point the client at it; None for a rule over several.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaOutdated(StoreError):
    """Tables or columns are missing: the database needs ``inferenceops migrate``."""


class InvalidDatabaseURL(StoreError):
    """The database URL cannot be parsed, or names a backend other than SQLite/PostgreSQL."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, refused the login, or stayed locked too long."""


class CredentialsError(StoreError):
    """Provider credentials cannot be encrypted or decrypted (``store.credentials``).

    The message names the row and what to fix; it never contains a key or a plaintext.
    """


class WrongCredentialsKey(CredentialsError):
    """The ciphertext was made under another key: set that key (its id is in the message)."""

    def __init__(self, message: str, *, stored_key_id: str, current_key_id: str) -> None:
        super().__init__(message)
        self.stored_key_id = stored_key_id
        self.current_key_id = current_key_id


EXAMPLE_URLS = "sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user@host:5432/db"

# SQLSTATE classes (PostgreSQL) that mean "cannot talk to the database" rather than "bad data".
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "28", "3D", "53", "57", "58")
_SQLITE_BUSY = ("database is locked", "database table is locked", "unable to open database")
#: SQLSTATE class 22, "data exception": the value itself is wrong (22003 out of range, 22021 a
#: character not in the encoding — NUL —, 22P05 untranslatable, 22008 datetime overflow, …;
#: asyncpg reports an argument it cannot encode, such as an int past 64 bits, as 22000).
_DATA_SQLSTATE_CLASS = "22"
#: What a column type raises binding a value it cannot hold (``UTCDateTime``: a datetime past
#: the calendar once made UTC raises OverflowError).
_BIND_ERRORS = (ValueError, TypeError, OverflowError)


def _sqlstate(error: BaseException | None) -> str | None:
    """The PostgreSQL SQLSTATE of a DBAPI error (asyncpg adapter or its cause), if any."""
    while error is not None:
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str):
            return code
        error = error.__cause__
    return None


def _constraint_kind(error: sa_exc.IntegrityError) -> str:
    """'unique' | 'foreign_key' | 'check' | 'not_null' | 'other' for either backend."""
    state = _sqlstate(error.orig)
    if state is not None:
        return {"23505": "unique", "23503": "foreign_key", "23514": "check",
                "23502": "not_null"}.get(state, "other")
    name = getattr(error.orig, "sqlite_errorname", "") or ""
    text = str(error.orig)
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY") or "UNIQUE" in text:
        return "unique"
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY" or "FOREIGN KEY" in text:
        return "foreign_key"
    if name == "SQLITE_CONSTRAINT_CHECK" or "CHECK constraint" in text:
        return "check"
    if name == "SQLITE_CONSTRAINT_NOTNULL" or "NOT NULL" in text:
        return "not_null"
    return "other"


def translate(error: BaseException, doing: str) -> StoreError:
    """The store error for a library exception raised while ``doing`` (e.g. "creating team 'a'")."""
    if isinstance(error, StoreError):
        return error
    detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0][:300]
    if isinstance(error, sa_exc.IntegrityError):
        kind = _constraint_kind(error)
        if kind == "unique":
            return Conflict(f"{doing}: already exists ({detail})")
        if kind == "foreign_key":
            return NotFound(f"{doing}: a referenced row does not exist ({detail})")
        return Invalid(f"{doing}: rejected by a schema rule ({detail})")
    if isinstance(error, sa_exc.ArgumentError):
        return InvalidDatabaseURL(f"{doing}: the database URL is not usable ({detail}); "
                                  f"use {EXAMPLE_URLS}")
    if isinstance(error, sa_exc.DBAPIError):
        state = _sqlstate(error.orig)
        if state in ("42P01", "42703") or "no such table" in detail or "no such column" in detail:
            return SchemaOutdated(f"{doing}: the schema is missing or old ({detail}); "
                                  "run `inferenceops migrate` against this database")
        if state is not None and state.startswith(_DATA_SQLSTATE_CLASS):
            return Invalid(f"{doing}: the database cannot store a value ({detail})")
        if (state is not None and state.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)) or (
                state is None and isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
                and any(s in detail for s in _SQLITE_BUSY)) or error.connection_invalidated:
            return StoreUnavailable(f"{doing}: the database is unavailable ({detail}); check that "
                                    "it is running, reachable and that the URL's user/database exist")
        return StoreError(f"{doing}: {detail}")
    if isinstance(error, sa_exc.StatementError) and isinstance(error.orig, _BIND_ERRORS):
        return Invalid(f"{doing}: {error.orig}")  # a value our column types refused to bind
    if isinstance(error, sa_exc.TimeoutError):
        return StoreUnavailable(f"{doing}: no free database connection in time ({detail}); "
                                "raise the pool size or find the long transaction")
    if isinstance(error, OSError | TimeoutError):
        return StoreUnavailable(f"{doing}: cannot reach the database ({type(error).__name__}: "
                                f"{detail}); check the server's host and port, or that the "
                                "SQLite data folder exists and is writable")
    if isinstance(error, sa_exc.SQLAlchemyError):
        return StoreError(f"{doing}: {detail}")
    if isinstance(error, OverflowError):  # sqlite3 binding an int past 64 bits raises it bare
        return Invalid(f"{doing}: a number is out of the database's range ({detail})")
    raise TypeError(f"not a database error: {error!r}")  # pragma: no cover - programming error


#: What ``translating`` catches: the library's errors, the socket errors a driver may leak, and
#: the ``OverflowError`` sqlite3 raises, unwrapped, for an integer it cannot bind.
TRANSLATED = (sa_exc.SQLAlchemyError, OSError, TimeoutError, OverflowError)


@contextmanager
def translating(doing: str) -> Iterator[None]:
    """Re-raise database-library exceptions inside the block as ``StoreError``s."""
    try:
        yield
    except TRANSLATED as error:
        raise translate(error, doing) from error
