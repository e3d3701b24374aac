"""Personal data in text: email addresses, phone numbers, payment cards, IBANs, national
identifiers, IP addresses.

Python's regular expressions test a pattern that starts with a character class at every
position of the text (~20 µs per KB here), so the finders share their scans: every run of
digits is found once (``ScanText.runs``) and the number finders look only inside the runs with
enough digits; IBANs and UK NINOs share one scan for two letters and two digits; emails
start from each ``@`` (``str.find``, in C). Numbers
that carry check digits (cards: Luhn and a known issuer prefix; IBANs: the country's length
and mod 97; Spanish DNI/NIE: the check letter; French NIR: its key; US SSNs and UK NINOs: the
ranges never issued) are reported only when the check holds, which is what keeps an order
number or a tracking code from being taken for one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from inferenceops.guardrails import checksums
from inferenceops.guardrails.findings import (
    CARD,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    NATIONAL_ID,
    PHONE,
    Finding,
)

# --- numbers: one scan finds every run of digits and separators; the finders of cards,
# identifiers, phones and IPv4 addresses look only inside those runs ---------------------
_NUMERIC = re.compile(r"[0-9][0-9 .()/-]*")  # a class of ASCII digits first: the fastest scan
_LETTERS_DIGITS = re.compile(r"[A-Za-z]{2} ?\d\d")
_DROP_SEPARATORS = str.maketrans("", "", " .()/-")


class ScanText:
    """A text being scanned, and its runs of digits (``(start, end, digits)``), found once
    for every finder that needs them."""

    __slots__ = ("text", "_runs", "_pairs")

    def __init__(self, text: str) -> None:
        self.text = text
        self._runs: list[tuple[int, int, int]] | None = None
        self._pairs: list[tuple[int, str]] | None = None

    def runs(self, min_digits: int) -> Iterator[tuple[int, int]]:
        """Runs of digits and separators holding at least ``min_digits`` digits (with a
        ``+`` or ``(`` just before them)."""
        if self._runs is None:
            text = self.text
            runs = []
            for m in _NUMERIC.finditer(text):
                start, run = m.start(), m.group()
                digits = len(run.translate(_DROP_SEPARATORS))
                if start and text[start - 1] in "+(":
                    start -= 1
                runs.append((start, m.end(), digits))
            self._runs = runs
        for start, end, digits in self._runs:
            if digits >= min_digits:
                yield start, end

    def letters_then_digits(self) -> list[tuple[int, str]]:
        """Where two letters (a space between allowed) are followed by two digits: found at
        the start of each run of digits, not by a scan of their own."""
        if self._pairs is None:
            text = self.text
            pairs = []
            for start, _ in self.runs(2):
                if start < 2 or not text[start - 1].isalpha() and text[start - 1] != " ":
                    continue
                for back in (2, 3):
                    m = _LETTERS_DIGITS.match(text, start - back) if start >= back else None
                    if m is not None:
                        pairs.append((m.start(), m.group()))
                        break
            self._pairs = pairs
        return self._pairs


def _candidates(pattern: re.Pattern[str], text: str, start: int, end: int) -> Iterator[re.Match[str]]:
    """Every match of ``pattern`` in ``text[start:end]``, each search going on from the
    character after the last match's start (not its end): a long stretch that turns out
    not to be a card or a phone must not hide one inside it. Overlaps between the findings
    made of these are settled later (``detect.settle_overlaps``)."""
    pos = start
    while pos < end:
        m = pattern.search(text, pos, end)
        if m is None:
            return
        yield m
        pos = m.start() + 1


# --- email: found from each "@", the local part read backwards, the domain forwards ----------
_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}\Z")  # what addresses in use hold (RFC 5322 allows more)
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                     r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])")


def find_emails(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    at = text.find("@")
    while at != -1:
        local = _LOCAL.search(text, max(0, at - 64), at)
        domain = _DOMAIN.match(text, at + 1)
        if local is not None and domain is not None:
            start = local.start()
            while start < at and text[start] in ".%+-":
                start += 1  # punctuation before an address is the sentence's, not the address's
            if start < at and text[at - 1] != ".":
                yield Finding(EMAIL, "email", start, domain.end())
        at = text.find("@", at + 1)


# Payment cards: contiguous digits, or 4-digit groups with one separator throughout.
_CARD = re.compile(
    r"(?<![\d.,-])(?:\d{12,19}"
    r"|\d{4}([ .-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?"
    r"|\d{4}([ .-])\d{6}\2\d{4,5}"
    r"|\d{4}([ .-])\d{4}\3\d{4}\3\d{1,3})(?![\d]|[.,-]\d)")


def find_cards(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, end in scan.runs(12):
        for m in _candidates(_CARD, text, start, end):
            candidate = m.group()
            # Groups may run on into another number ("4242 4242 4242 4242 42"): the whole,
            # then without its last group.
            for stop in (len(candidate), candidate.rfind(candidate[4]) if candidate[4] in " .-"
                         else -1):
                digits = candidate[:stop].translate(_DROP_SEPARATORS)
                if stop > 0 and 12 <= len(digits) <= 19 and checksums.luhn_valid(digits):
                    brand = checksums.card_brand(digits)
                    if brand is not None:
                        yield Finding(CARD, brand, m.start(), m.start() + stop)
                        break


# National identifiers with digits only (or digits and a check letter after them).
_US_SSN = re.compile(r"(?<![\d-])(\d{3})([ -])(\d{2})\2(\d{4})(?![\d]|-\d)")
_ES_DNI = re.compile(r"(?<![A-Za-z0-9])([XYZxyz]\d{7}|\d{8})[- ]?([A-Za-z])(?![A-Za-z0-9])")
_FR_NIR = re.compile(r"(?<![\w])([12]) ?(\d{2}) ?(\d{2}) ?(\d{2}|2[ABab]) ?(\d{3}) ?(\d{3})"
                     r" ?(\d{2})(?![\w])")


def find_national_ids(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, end in scan.runs(5):  # a NIR cut by 2A/2B starts with a run of 5 digits
        for m in _US_SSN.finditer(text, start, end):
            if checksums.us_ssn_valid(m.group(1), m.group(3), m.group(4)):
                yield Finding(NATIONAL_ID, "us_ssn", m.start(), m.end())
        # A DNI's check letter follows the run; a NIE's letter leads it. A NIR starts a run
        # (Corsica's 2A/2B cut it in two, so it is matched on from there).
        dni = _ES_DNI.match(text, start - 1 if start and text[start - 1] in "XYZxyz" else start)
        if dni is not None and checksums.es_dni_valid((dni.group(1) + dni.group(2)).upper()):
            yield Finding(NATIONAL_ID, "es_dni", dni.start(), dni.end())
        nir = _FR_NIR.match(text, start)
        if nir is not None and checksums.fr_nir_valid("".join(nir.groups()).upper()):
            yield Finding(NATIONAL_ID, "fr_nir", nir.start(), nir.end())


# Phone numbers: international (+ or 00), North American, or national with a trunk 0.
_PHONE = re.compile(r"(?<![\w+.])(?:\+|00)?\(?\d[\d ().-]{5,22}\d(?![\w]|[.-]\d)")
_NANP = re.compile(r"(?:\+?1[ .-]?)?\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]\d{4}\Z")
_NATIONAL = re.compile(r"0\d{1,4}(?:[ .-]?\d{2,4}){2,4}\Z")
_DATE_LIKE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\Z")
_SEPARATORS = re.compile(r"[ .-]{2,}|\(\)|\)\(")


def find_phones(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, end in scan.runs(8):
        for m in _candidates(_PHONE, text, start, end):
            at = m.start()
            if at > 1 and text[at] not in "+(" and text[at - 1] in " .-" and text[at - 2].isdigit():
                continue  # the tail of a longer number (an IBAN's, a card's), not a phone
            candidate = m.group()
            # The pattern is greedy: a phone followed by other numbers ("+44 20 7946 0958 4242")
            # is tried whole, then without its last groups, longest first.
            for stop in [len(candidate), *(i for i in range(len(candidate) - 1, 7, -1)
                                           if candidate[i] in " .-" and candidate[i - 1].isdigit())]:
                kind = _phone_kind(candidate[:stop])
                if kind is not None:
                    yield Finding(PHONE, kind, at, at + stop)
                    break


def _phone_kind(candidate: str) -> str | None:
    digits = sum(map(str.isdigit, candidate))
    if not 8 <= digits <= 15 or _SEPARATORS.search(candidate) \
            or _DATE_LIKE.match(candidate) or candidate.count("(") != candidate.count(")"):
        return None
    if candidate[0] == "+" or candidate.startswith("00") and candidate[2:3] not in "0 ":
        return "international"
    if _NANP.match(candidate):
        return "nanp"
    if _NATIONAL.match(candidate) and 9 <= digits <= 11:
        return "national"
    return None


# --- letters then digits: IBANs (two capitals, two digits) and UK NINOs share one scan --------
_UK_NINO = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2}) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-Da-d])"
                      r"(?![A-Za-z0-9])")


def find_ibans(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, head in scan.letters_then_digits():
        if len(head) != 4 or (start and text[start - 1].isascii() and text[start - 1].isalnum()):
            continue
        length = checksums.IBAN_LENGTHS.get(head[:2].upper())
        if length is None:
            continue
        chars = [head]
        count, i, end = 4, start + 4, len(text)
        while count < length and i < end:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
                count += 1
                i += 1
            elif ch == " " and i + 1 < end and text[i + 1].isascii() and text[i + 1].isalnum():
                i += 1
            else:
                break
        if count != length or (i < end and text[i].isascii() and text[i].isalnum()):
            continue
        if checksums.iban_valid("".join(chars).upper()):
            yield Finding(IBAN, head[:2].lower(), start, i)


def find_uk_ninos(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, _ in scan.letters_then_digits():
        nino = _UK_NINO.match(text, start)
        if nino is not None and checksums.uk_nino_valid("".join(nino.groups()).upper()):
            yield Finding(NATIONAL_ID, "uk_nino", nino.start(), nino.end())


# --- IP addresses ---------------------------------------------------------------------------
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                   r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
                   r"(?![0-9A-Fa-f:])")


def find_ip_addresses(scan: ScanText) -> Iterator[Finding]:
    text = scan.text
    for start, end in scan.runs(4):
        for m in _IPV4.finditer(text, start, end):
            yield Finding(IP_ADDRESS, "ipv4", m.start(), m.end())
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            candidate = m.group()
            if sum(ch.isalnum() for ch in candidate) < 2:
                continue
            try:
                ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            yield Finding(IP_ADDRESS, "ipv6", m.start(), m.end())
