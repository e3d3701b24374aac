"""The built-in detector set: what it finds, what it leaves, and that no text breaks it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferenceops.guardrails.detect import placeholder, redact, scan, settle_overlaps
from inferenceops.guardrails.findings import ENTITIES, Finding

_CORSICAN_NIR = f"1 85 05 2A 006 084 {97 - 1850519006084 % 97:02d}"  # 2A counts as 19


def found(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start:f.end]) for f in scan(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("mail anna.k+eu@mail.example.co.uk.", [("email", "anna.k+eu@mail.example.co.uk")]),
    ("card 4242 4242 4242 4242 exp 12/29", [("card", "4242 4242 4242 4242")]),
    ("amex 3782-822463-10005", [("card", "3782-822463-10005")]),
    ("IBAN DE89 3704 0044 0532 0130 00 please", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("AT IBAN AT61 1904 3002 3457 3201", [("iban", "AT61 1904 3002 3457 3201")]),
    ("SSN 078-05-1120", [("national_id", "078-05-1120")]),
    (f"NIR {_CORSICAN_NIR}", [("national_id", _CORSICAN_NIR)]),
    ("DNI 12345678-Z, NIE X1234567L", [("national_id", "12345678-Z"), ("national_id", "X1234567L")]),
    ("call +44 20 7946 0958 now", [("phone", "+44 20 7946 0958")]),
    ("host 203.0.113.7 and 2001:db8::1", [("ip_address", "203.0.113.7"),
                                          ("ip_address", "2001:db8::1")]),
    ("key AKIAIOSFODNN7EXAMPLE", [("secret", "AKIAIOSFODNN7EXAMPLE")]),
    ("password: Tr0ub4dor&3x", [("secret", "Tr0ub4dor&3x")]),
    ("postgres://app:Zp4!kq9Lm2@db.internal/app", [("secret", "Zp4!kq9Lm2")]),
])
def test_finds_each_entity_type(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    "Order 1234 5678 9012 3456 shipped",  # 16 digits failing Luhn
    "IMEI 490154203237518",  # Luhn-valid, but no card issuer has that prefix and length
    "ref DE90 3704 0044 0532 0130 00",  # an IBAN's shape with the wrong check digits
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "password: <your-password-here>", "api_key=${OPENAI_API_KEY}",
    "released 2024-01-15, version 1.2.3", "user@localhost", "@app.route('/x')",
    "ThisIsAVeryLongCamelCaseIdentifierName2024Version",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA",
    "Write a haiku about autumn leaves.",
])
def test_leaves_near_misses_alone(text: str) -> None:
    assert found(text) == []


def test_an_iban_is_not_also_a_card_and_a_secret_wins_over_what_it_holds() -> None:
    # The last 16 digits of this IBAN pass Luhn with a Diners prefix: still one IBAN.
    assert found("AT86 3037 0401 9230 3557") == [("iban", "AT86 3037 0401 9230 3557")]
    assert [e for e, _ in found("token=sk-live4242424242424242abcdEFGH")] == ["secret"]


def test_redact_replaces_each_finding_with_its_type() -> None:
    text = "Refund DE89370400440532013000 to anna@example.com, card 4242424242424242."
    assert redact(text, scan(text)) == "Refund [IBAN] to [EMAIL], card [CARD]."


def test_only_the_entity_types_asked_for_are_looked_for() -> None:
    text = "anna@example.com 4242424242424242"
    assert [f.entity for f in scan(text, entities={"card"})] == ["card"]


def test_overlaps_keep_the_stronger_type_then_the_longer() -> None:
    kept = settle_overlaps([Finding("phone", "x", 0, 10), Finding("card", "visa", 2, 12),
                            Finding("email", "e", 20, 30), Finding("email", "e", 22, 35)])
    assert [(f.entity, f.start, f.end) for f in kept] == [("card", 2, 12), ("email", 22, 35)]


def _luhn_complete(partial: str) -> str:
    for d in "0123456789":
        digits = [int(c) for c in (partial + d)[::-1]]
        total = sum(x if i % 2 == 0 else (x * 2 - 9 if x > 4 else x * 2) for i, x in enumerate(digits))
        if total % 10 == 0:
            return partial + d
    raise AssertionError


_PROSE = st.text(alphabet=st.sampled_from("abcdefghij klmnop,.!?"), max_size=60)


@given(_PROSE, st.text(alphabet="0123456789", min_size=14, max_size=14), _PROSE)
def test_a_valid_visa_number_anywhere_in_prose_is_redacted(before: str, digits: str,
                                                           after: str) -> None:
    number = _luhn_complete("4" + digits)
    text = f"{before} {number} {after}"
    assert number not in redact(text, scan(text))
    assert placeholder("card") in redact(text, scan(text))


@settings(max_examples=300)
@given(st.text(max_size=400))
def test_any_text_scans_without_error_into_ordered_disjoint_findings(text: str) -> None:
    findings = scan(text)
    assert all(0 <= f.start < f.end <= len(text) and f.entity in ENTITIES for f in findings)
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:], strict=False))
    redacted = redact(text, findings)
    assert isinstance(redacted, str)


@settings(max_examples=200)
@given(st.text(alphabet=st.sampled_from("0123456789 -.+()/:ABCDEFGHXYZabcxyz@"), max_size=200))
def test_digit_and_separator_soup_scans_without_error(text: str) -> None:
    for f in scan(text):
        assert text[f.start:f.end].strip() == text[f.start:f.end] or f.entity == "secret"


def test_the_platform_knows_the_entity_types_the_detectors_find() -> None:
    from inferenceops.platform import guardrails

    assert set(guardrails.ENTITIES) == set(ENTITIES)
