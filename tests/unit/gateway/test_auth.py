"""Key authentication: only the exact key works, and failures look alike."""

from __future__ import annotations

import pytest

from inferenceops.errors import AuthenticationFailed
from inferenceops.gateway.auth import KeyAuthenticator, key_digest
from inferenceops.platform import Principal

ADMIN = Principal("admin")
AUTH = KeyAuthenticator({key_digest("sk-io-right"): ADMIN})


@pytest.mark.parametrize("header", [b"Bearer sk-io-right", b"bearer sk-io-right",
                                    b"Bearer   sk-io-right  "])
def test_right_key_gives_its_principal(header: bytes) -> None:
    assert AUTH.authenticate(header) is ADMIN


@pytest.mark.parametrize("header", [None, b"", b"Bearer", b"Bearer ", b"Basic sk-io-right",
                                    b"Bearer sk-io-righ", b"Bearer sk-io-right2", b"sk-io-right"])
def test_anything_else_is_refused(header: bytes | None) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        AUTH.authenticate(header)
    assert info.value.status == 401


def test_wrong_and_unknown_keys_get_the_same_message() -> None:
    messages = set()
    for header in (b"Bearer nope", b"Bearer sk-io-righ"):
        with pytest.raises(AuthenticationFailed) as info:
            AUTH.authenticate(header)
        messages.add(info.value.message)
    assert len(messages) == 1
