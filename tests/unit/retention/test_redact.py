"""What is stored of a kept body: no built-in entity survives, wherever it sits in the JSON."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.retention.redact import redacted_body

EMAIL = "dana.smith@example.com"
KEY_BLOCK = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
             "-----END PRIVATE KEY-----")
words = st.text(alphabet="abcdefghij klmnop", max_size=10)


def planted(where: Any) -> st.SearchStrategy[Any]:
    """JSON documents with ``where`` somewhere: in a value or a key, at any depth."""
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), words,
                       words.map(lambda w: f"{w} {where} {w}"))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(words, st.just(f"k {where}")), inner, max_size=3)), max_leaves=8)


@given(doc=planted(EMAIL))
def test_no_email_survives_anywhere_in_a_json_body(doc: Any) -> None:
    stored = redacted_body(orjson.dumps(doc))
    assert EMAIL not in stored
    orjson.loads(stored)  # still JSON


def test_a_private_key_block_is_found_under_json_escaping() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": f"here:\n{KEY_BLOCK}\nthanks"}]})
    assert b"\\n" in raw  # the block's line breaks are escaped in the body
    stored = orjson.loads(redacted_body(raw))
    assert stored["messages"][0]["content"] == "here:\n[SECRET]\nthanks"


def test_a_body_that_is_not_json_is_redacted_as_text() -> None:
    cut = b'{"messages": [{"content": "card 4242 4242 4242 4242 and ' + EMAIL.encode()
    stored = redacted_body(cut)
    assert "4242 4242" not in stored and EMAIL not in stored and "[CARD]" in stored
    assert redacted_body(b"\xff\xfe plain") == "\ufffd\ufffd plain"
