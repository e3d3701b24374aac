"""Check digits: real identifiers pass, one changed character fails."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.guardrails import checksums


@pytest.mark.parametrize("number", ["4242424242424242", "5555555555554444", "378282246310005",
                                    "6011111111111117", "3530111333300000", "30569309025904"])
def test_issuers_test_cards_pass_luhn_and_have_a_brand(number: str) -> None:
    assert checksums.luhn_valid(number)
    assert checksums.card_brand(number) is not None


@given(st.text(alphabet="0123456789", min_size=12, max_size=19), st.integers(1, 9))
def test_changing_one_digit_breaks_luhn(number: str, delta: int) -> None:
    if not checksums.luhn_valid(number):
        return
    changed = number[:-1] + str((int(number[-1]) + delta) % 10)
    assert not checksums.luhn_valid(changed)


@pytest.mark.parametrize("iban", ["GB82WEST12345698765432", "DE89370400440532013000",
                                  "FR1420041010050500013M02606", "NL91ABNA0417164300",
                                  "CH9300762011623852957", "BE68539007547034"])
def test_published_ibans_pass(iban: str) -> None:
    assert checksums.iban_valid(iban)


@pytest.mark.parametrize("iban", ["GB83WEST12345698765432",  # check digits off by one
                                  "DE8937040044053201300",  # one character short for DE
                                  "XX89370400440532013000",  # no such country
                                  "GB82WEST1234569876543!"])
def test_near_miss_ibans_fail(iban: str) -> None:
    assert not checksums.iban_valid(iban)


def test_national_identifier_rules() -> None:
    assert checksums.us_ssn_valid("078", "05", "1120")
    assert not any(checksums.us_ssn_valid(*parts) for parts in (
        ("000", "12", "3456"), ("666", "12", "3456"), ("912", "12", "3456"), ("123", "00", "4567"),
        ("123", "45", "0000")))
    assert checksums.uk_nino_valid("AB123456C")
    assert not any(checksums.uk_nino_valid(n) for n in ("QQ123456C", "GB123456A", "AB123456E",
                                                      "DA123456A"))
    assert checksums.es_dni_valid("12345678Z") and checksums.es_dni_valid("X1234567L")
    assert not checksums.es_dni_valid("12345678A")
    assert checksums.fr_nir_valid("185057800608491")
    assert not checksums.fr_nir_valid("185057800608436")
    assert checksums.fr_nir_valid("185052A006084" + f"{97 - 1850519006084 % 97:02d}")  # Corsica 2A
