"""Presidio as the PII detector (``INFERENCEOPS_GUARDRAILS_DETECTOR=presidio``), the real one.

Presidio is in the dev install (the ``presidio`` extra), offline on a blank spaCy pipeline.
It finds the PII types, mapped to ours; secrets stay with the built-in finders; a policy
acts on what it finds exactly as on the built-in findings; and choosing it without the extra
stops the start with a message saying what to install.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from inferenceops.config.spec import ConfigError
from inferenceops.guardrails import detect
from inferenceops.guardrails.detect import scan, use_detector
from inferenceops.guardrails.presidio import PresidioDetector, PresidioUnavailable

pytest.importorskip("presidio_analyzer", reason="the presidio extra is part of the dev install")


@pytest.fixture(scope="module")
def presidio() -> PresidioDetector:
    return PresidioDetector()


@pytest.fixture
def with_presidio(presidio: PresidioDetector) -> Iterator[PresidioDetector]:
    use_detector(presidio)
    try:
        yield presidio
    finally:
        use_detector(None)


def found(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start:f.end]) for f in scan(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("mail bob@example.org today", [("email", "bob@example.org")]),
    ("card 4111 1111 1111 1111 exp 12/29", [("card", "4111 1111 1111 1111")]),
    ("IBAN DE89 3704 0044 0532 0130 00 please", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("host 203.0.113.7 down", [("ip_address", "203.0.113.7")]),
    # national identifiers the built-in set does not know
    ("codice fiscale MRTMTT25D09F205Z grazie", [("national_id", "MRTMTT25D09F205Z")]),
    ("aadhaar 2341 2341 2346", [("national_id", "2341 2341 2346")]),
    ("PESEL 44051401359", [("national_id", "44051401359")]),
])
def test_presidio_finds_the_pii_types_under_our_names(with_presidio: PresidioDetector, text: str,
                                                      expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


def test_presidio_is_what_finds_them_when_chosen(with_presidio: PresidioDetector) -> None:
    text = "codice fiscale MRTMTT25D09F205Z"
    assert [f.kind for f in scan(text)] == ["it_fiscal_code"]
    use_detector(None)
    assert scan(text) == []  # the built-in set has no Italian fiscal code


def test_secrets_stay_with_the_built_in_finders(with_presidio: PresidioDetector) -> None:
    text = "key AKIAIOSFODNN7EXAMPLE and mail bob@example.org"
    assert found(text) == [("secret", "AKIAIOSFODNN7EXAMPLE"), ("email", "bob@example.org")]
    assert {f.kind for f in scan(text)} == {"aws_access_key", "email_address"}


def test_only_the_asked_types_are_looked_for(with_presidio: PresidioDetector) -> None:
    text = "mail bob@example.org, card 4111 1111 1111 1111"
    assert [f.entity for f in scan(text, {"card"})] == ["card"]
    assert scan(text, {"iban"}) == []
    assert list(with_presidio.find("", {"email"})) == []


def test_a_failing_luhn_is_not_a_card(with_presidio: PresidioDetector) -> None:
    assert scan("order 4111 1111 1111 1112 shipped", {"card"}) == []


def test_a_policy_redacts_what_presidio_finds(with_presidio: PresidioDetector) -> None:
    from inferenceops.guardrails.enforce import check_input
    from inferenceops.platform.guardrails import Attachment, GuardrailPolicy, Guardrails, Rule

    policy = GuardrailPolicy("pii", 1, (Rule("entities", "redact",
                                             entities=frozenset({"national_id"})),))
    effective = Guardrails({"pii": policy}, (Attachment("pii", "global"),)).effective(
        None, "m", "k")
    assert effective is not None
    doc = {"messages": [{"role": "user", "content": "my codice fiscale is MRTMTT25D09F205Z"}]}
    outcome = check_input(effective, doc, "messages", "m", lambda: 10)
    assert doc["messages"][0]["content"] == "my codice fiscale is [NATIONAL_ID]"
    assert outcome.found == [("national_id", "redact")]


def test_choosing_presidio_without_the_extra_stops_the_start(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from inferenceops.app import use_guardrails_detector
    from inferenceops.settings import Settings

    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import fails
    with pytest.raises(PresidioUnavailable, match=r"pip install 'inferenceops\[presidio\]'"):
        PresidioDetector()
    with pytest.raises(ConfigError, match="presidio"):
        use_guardrails_detector(Settings(guardrails_detector="presidio"))
    assert detect._other is None


def test_the_setting_picks_the_detector_for_the_process() -> None:
    from inferenceops.app import use_guardrails_detector
    from inferenceops.settings import Settings

    try:
        use_guardrails_detector(Settings(guardrails_detector="presidio"))
        assert isinstance(detect._other, PresidioDetector)
        use_guardrails_detector(Settings())
        assert detect._other is None
    finally:
        use_detector(None)
    with pytest.raises(ValueError, match="guardrails_detector"):
        Settings(guardrails_detector="spacy")
