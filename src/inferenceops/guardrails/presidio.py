"""Microsoft Presidio as the detector of the PII entity types, chosen per process at start.

``INFERENCEOPS_GUARDRAILS_DETECTOR=presidio`` (the ``presidio`` extra installed) makes every
guardrail check — input, output, streams, batch lines — find ``email``, ``phone``, ``card``,
``iban``, ``ip_address`` and ``national_id`` with Presidio's recognizers instead of the
built-in finders; ``secret`` stays built-in (Presidio has no recognizer for cloud keys,
private key blocks or JWTs). Why an operator would: Presidio's recognizers are a known,
audited set with national identifiers of many more countries (Spain, Italy, India,
Singapore, Australia, Korea…) than the built-in few. What it costs: about a hundred times
the built-in set's CPU per KB of prose (~18 ms against 0.1–0.2 ms here; ``bench/guardrails.py``
measures both), on the request's thread.

It runs **offline**: the NLP engine is a blank spaCy pipeline (no model to download; the
recognizers used are pattern and checksum ones, which need no NER), and tldextract, which
Presidio's e-mail validation calls, uses the suffix list it ships instead of fetching one.
Everything is built once when the process starts, so a missing extra or a broken install
stops the start with a message, not the first request.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from typing import Any

from inferenceops.guardrails.findings import (
    CARD,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    NATIONAL_ID,
    PHONE,
    Finding,
)

#: Presidio's entity type → ours. Several of Presidio's national identifiers map to one type.
ENTITY_OF: dict[str, str] = {
    "EMAIL_ADDRESS": EMAIL, "PHONE_NUMBER": PHONE, "CREDIT_CARD": CARD, "IBAN_CODE": IBAN,
    "IP_ADDRESS": IP_ADDRESS,
    "US_SSN": NATIONAL_ID, "UK_NINO": NATIONAL_ID, "UK_NHS": NATIONAL_ID,
    "ES_NIF": NATIONAL_ID, "ES_NIE": NATIONAL_ID, "IT_FISCAL_CODE": NATIONAL_ID,
    "IN_AADHAAR": NATIONAL_ID, "IN_PAN": NATIONAL_ID, "SG_NRIC_FIN": NATIONAL_ID,
    "AU_TFN": NATIONAL_ID, "KR_RRN": NATIONAL_ID, "PL_PESEL": NATIONAL_ID,
    "FI_PERSONAL_IDENTITY_CODE": NATIONAL_ID,
}
#: The recognizers built (class names in ``presidio_analyzer.predefined_recognizers``).
RECOGNIZERS = ("EmailRecognizer", "PhoneRecognizer", "CreditCardRecognizer", "IbanRecognizer",
               "IpRecognizer", "UsSsnRecognizer", "UkNinoRecognizer", "NhsRecognizer",
               "EsNifRecognizer", "EsNieRecognizer", "ItFiscalCodeRecognizer",
               "InAadhaarRecognizer", "InPanRecognizer", "SgFinRecognizer", "AuTfnRecognizer",
               "KrRrnRecognizer", "PlPeselRecognizer", "FiPersonalIdentityCodeRecognizer")
#: Below this confidence a match is not reported (Presidio scores a bare phone-shaped number
#: 0.4, a validated card 1.0; a context word raises a score).
MIN_SCORE = 0.3


class PresidioUnavailable(RuntimeError):
    """Presidio was chosen but cannot be built (the extra is not installed, or broken)."""


class PresidioDetector:
    """Finds the PII entity types with Presidio's recognizers (see the module doc)."""

    entities: frozenset[str] = frozenset(ENTITY_OF.values())

    def __init__(self, min_score: float = MIN_SCORE) -> None:
        self.min_score = min_score
        self._analyzer = _build_analyzer()
        self._by_entity: dict[str, list[str]] = {}
        for theirs, ours in ENTITY_OF.items():
            self._by_entity.setdefault(ours, []).append(theirs)

    def find(self, text: str, entities: Collection[str]) -> Iterator[Finding]:
        """Findings of ``entities`` (ours) in ``text``; overlaps are settled by the caller."""
        wanted = [theirs for ours in entities for theirs in self._by_entity.get(ours, ())]
        if not wanted or not text:
            return
        for result in self._analyzer.analyze(text=text, language="en", entities=wanted,
                                             score_threshold=self.min_score):
            ours = ENTITY_OF.get(result.entity_type)
            if ours is not None and result.end > result.start:
                yield Finding(ours, result.entity_type.lower(), result.start, result.end)


def _build_analyzer() -> Any:
    # tldextract (e-mail validation) must not fetch the public suffix list: no internet.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer import predefined_recognizers as predefined
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError as exc:
        raise PresidioUnavailable(
            f"guardrails_detector is presidio, but Presidio is not installed ({exc}); "
            "install the extra: pip install 'inferenceops[presidio]'") from None
    try:
        engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
        # No model to load: pattern recognizers only (presidio types nlp as set by load()).
        engine.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]
        registry = RecognizerRegistry(
            recognizers=[getattr(predefined, name)(supported_language="en") for name in RECOGNIZERS],
            supported_languages=["en"])
        analyzer = AnalyzerEngine(nlp_engine=engine, registry=registry,
                                  supported_languages=["en"])
        analyzer.analyze(text="warm-up: bob@example.org", language="en")
    except Exception as exc:  # noqa: BLE001 - any failure here is "cannot use Presidio"
        raise PresidioUnavailable(f"Presidio could not be set up: {exc}") from exc
    return analyzer
