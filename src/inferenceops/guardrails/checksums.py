"""Check digits that tell a real identifier from a number that only looks like one.

A 16-digit order number, a 22-character reference that starts with two letters,
a nine-digit invoice id: text is full of them. The identifiers worth redacting
carry check digits, and testing them is what keeps the detectors' precision
high (``docs/guardrails.md`` has the measured figures). Each function takes the
identifier with separators already removed and upper-cased where it has letters.
"""

from __future__ import annotations

#: IBAN length per country (ISO 13616 registry, the SEPA countries and the common others).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_NIE_PREFIX = {"X": "0", "Y": "1", "Z": "2"}


def luhn_valid(digits: str) -> bool:
    """The Luhn check (payment cards): every second digit from the right doubled."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The card scheme the number's prefix and length belong to, or None (no such card)."""
    n = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    if digits[0] == "4" and n in (13, 16, 19):
        return "visa"
    if (51 <= two <= 55 or 2221 <= four <= 2720) and n == 16:
        return "mastercard"
    if two in (34, 37) and n == 15:
        return "amex"
    if (digits.startswith("6011") or two == 65 or 644 <= int(digits[:3]) <= 649) \
            and 16 <= n <= 19:
        return "discover"
    if 3528 <= four <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305) and 14 <= n <= 19:
        return "diners"
    if two == 62 and 16 <= n <= 19:
        return "unionpay"
    if (two == 50 or 56 <= two <= 69) and 12 <= n <= 19:
        return "maestro"
    return None


def iban_valid(iban: str) -> bool:
    """Country length and the ISO 7064 mod-97 check (the remainder is 1)."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit() or not iban.isalnum():
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def us_ssn_valid(area: str, group: str, serial: str) -> bool:
    """The ranges the SSA never issues: area 000, 666, 9xx; group 00; serial 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def uk_nino_valid(nino: str) -> bool:
    """The prefixes HMRC never allocates (``BG GB NK KN NT TN ZZ``, D F I Q U V first, …)."""
    first, second = nino[0], nino[1]
    if first in "DFIQUV" or second in "DFIQUVO":
        return False
    return nino[:2] not in ("BG", "GB", "NK", "KN", "NT", "TN", "ZZ") and nino[-1] in "ABCD"


def es_dni_valid(value: str) -> bool:
    """Spain's DNI (8 digits) or NIE (X/Y/Z + 7 digits) and its check letter (mod 23)."""
    body, letter = value[:-1], value[-1]
    if body[0] in _NIE_PREFIX:
        body = _NIE_PREFIX[body[0]] + body[1:]
    return body.isdigit() and _DNI_LETTERS[int(body) % 23] == letter


def fr_nir_valid(value: str) -> bool:
    """France's social security number (NIR): 13 characters and a key, 97 - (n mod 97).

    Corsica's departments 2A and 2B count as 19 and 18 for the key (that is, as 20, less
    1,000,000 or 2,000,000 — the same thing).
    """
    body, key = value[:13], value[13:]
    if body[0] not in "12" or not key.isdigit():
        return False
    if body[5:7] == "2A":
        number = int(body[:5] + "19" + body[7:])
    elif body[5:7] == "2B":
        number = int(body[:5] + "18" + body[7:])
    elif body.isdigit():
        number = int(body)
    else:
        return False
    month = int(body[3:5])
    return (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99) \
        and 97 - number % 97 == int(key)
