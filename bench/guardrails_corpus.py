"""Builds the labelled corpus the guardrail detectors are measured on (``bench/data/``).

``python -m bench.guardrails_corpus`` rewrites ``bench/data/guardrails-corpus.jsonl``
deterministically (a fixed seed): one JSON object per line, ``text``, the
``entities`` a careful human would mark in it (type and exact value), and a
``note`` for the hard negatives. Three sources:

* published examples (issuers' and banks' test numbers, documentation tokens);
* generated positives: valid numbers made here with their own check-digit code (not
  the detectors'), in many formats and in sentences of four languages;
* hard negatives: near-misses that a pattern alone would take (a card-like number
  that fails Luhn, an IBAN with a wrong checksum, hashes, UUIDs, placeholders,
  dates, versions, tracking numbers), and ordinary text.

The corpus is committed; the detectors never read it. ``bench.guardrails`` scores them.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import orjson

OUT = Path(__file__).resolve().parent / "data" / "guardrails-corpus.jsonl"
SEED = 20261204

TEMPLATES = (
    "Please update my details: {x}.",
    "My {what} is {x}, can you check it?",
    "Bitte prüfen Sie {x} und melden Sie sich.",
    "Voici mes coordonnées : {x}. Merci !",
    "Mi dato es {x}; gracias por la ayuda.",
    "{x}",
    "Customer wrote: \"use {x} for the refund\"",
    "Ticket #4521 — {x} — priority high",
    "- {what}: {x}\n- status: pending",
    "Summarise this email thread. From Anna: hi team, {x} is the one to use.",
)

# --- check digits, written here independently of inferenceops.guardrails ------------------


def luhn_complete(partial: str) -> str:
    """``partial`` with the digit that makes its Luhn sum a multiple of 10."""
    for d in "0123456789":
        digits = [int(c) for c in partial + d][::-1]
        total = sum(x if i % 2 == 0 else (x * 2 - 9 if x * 2 > 9 else x * 2)
                    for i, x in enumerate(digits))
        if total % 10 == 0:
            return partial + d
    raise AssertionError


def iban_make(country: str, bban: str) -> str:
    moved = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in moved))
    return f"{country}{98 - number % 97:02d}{bban}"


IBAN_BBAN = {  # country: (length of the BBAN, characters: d digits, a alnum)
    "DE": "d" * 18, "FR": "d" * 10 + "a" * 11 + "d" * 2, "ES": "d" * 20, "IT": "A" + "d" * 10 + "a" * 12,
    "NL": "AAAA" + "d" * 10, "GB": "AAAA" + "d" * 14, "BE": "d" * 12, "CH": "d" * 5 + "a" * 12,
    "AT": "d" * 16, "PL": "d" * 24, "SE": "d" * 20, "IE": "AAAA" + "d" * 14, "PT": "d" * 21,
}


def _fill(rng: random.Random, shape: str) -> str:
    pools = {"d": string.digits, "a": string.ascii_uppercase + string.digits,
             "A": string.ascii_uppercase}
    return "".join(rng.choice(pools[c]) for c in shape)


def group(value: str, sizes: list[int], sep: str) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(value[at:at + size])
        at += size
    if at < len(value):
        out.append(value[at:])
    return sep.join(p for p in out if p)


def card_numbers(rng: random.Random) -> list[str]:
    made = []
    for prefix, length in (("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
                           ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3530", 16),
                           ("36", 14), ("62", 16), ("4", 19)):
        for _ in range(4):
            partial = prefix + "".join(rng.choice(string.digits)
                                       for _ in range(length - len(prefix) - 1))
            made.append(luhn_complete(partial))
    return made


def card_format(rng: random.Random, number: str) -> str:
    n = len(number)
    style = rng.choice(("plain", "space", "dash"))
    if style == "plain":
        return number
    sep = " " if style == "space" else "-"
    if n == 15:
        return group(number, [4, 6, 5], sep)
    if n == 14:
        return group(number, [4, 6, 4], sep)
    return group(number, [4, 4, 4, 4], sep)


def ibans(rng: random.Random) -> list[str]:
    return [iban_make(c, _fill(rng, shape)) for c, shape in IBAN_BBAN.items() for _ in range(4)]


def iban_format(rng: random.Random, iban: str) -> str:
    return group(iban, [4] * 9, " ") if rng.random() < 0.6 else iban


def emails(rng: random.Random) -> list[str]:
    first = ("anna", "li.wei", "j.smith", "m_garcia", "o'neil", "ops-team", "x", "jean-luc",
             "sales+eu", "kim.lee42", "f.mueller", "admin")
    domains = ("example.com", "mail.example.org", "corp.example.co.uk", "uni-example.de",
               "example.fr", "sub.domain.example.io", "example.travel")
    return [f"{rng.choice(first)}@{rng.choice(domains)}".replace("'", "") for _ in range(50)]


def _rand(rng: random.Random, n: int, pool: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(pool) for _ in range(n))


def secrets_list(rng: random.Random) -> list[str]:
    b64 = string.ascii_letters + string.digits + "+/"
    made = []
    for _ in range(4):
        made += [
            "AKIA" + _rand(rng, 16, string.ascii_uppercase + "234567"),
            "ghp_" + _rand(rng, 36), "gho_" + _rand(rng, 36),
            "github_pat_" + _rand(rng, 22) + "_" + _rand(rng, 59),
            "glpat-" + _rand(rng, 20),
            "xoxb-" + _rand(rng, 12, string.digits) + "-" + _rand(rng, 24),
            "sk-proj-" + _rand(rng, 48, string.ascii_letters + string.digits + "_-"),
            "sk-" + _rand(rng, 48), "sk_live_" + _rand(rng, 24), "rk_test_" + _rand(rng, 24),
            "AIza" + _rand(rng, 35, string.ascii_letters + string.digits + "_-"),
            "hf_" + _rand(rng, 34),
            _rand(rng, 40, b64),  # an AWS secret access key's shape, bare
        ]
    return made


def private_key(rng: random.Random) -> str:
    body = "\n".join(_rand(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(4))
    kind = rng.choice(("RSA ", "EC ", "", "OPENSSH "))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def jwt(rng: random.Random) -> str:
    import base64
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(doc)).decode().rstrip("=")
    head = part({"alg": rng.choice(("HS256", "RS256")), "typ": "JWT"})
    body = part({"sub": _rand(rng, 10, string.digits), "name": "Jane", "iat": 1516239022})
    return f"{head}.{body}.{_rand(rng, 43, string.ascii_letters + string.digits + '_-')}"


PUBLISHED = [
    ("card", "4242 4242 4242 4242"), ("card", "5555555555554444"), ("card", "3782 822463 10005"),
    ("card", "6011111111111117"), ("card", "3530111333300000"), ("card", "30569309025904"),
    ("card", "4000-0566-5566-5556"), ("card", "5200828282828210"), ("card", "371449635398431"),
    ("iban", "GB82 WEST 1234 5698 7654 32"), ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "NL91ABNA0417164300"), ("iban", "ES91 2100 0418 4502 0005 1332"),
    ("iban", "IT60 X054 2811 1010 0000 0123 456"), ("iban", "CH93 0076 2011 6238 5295 7"),
    ("iban", "BE68 5390 0754 7034"), ("iban", "DE89370400440532013000"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"), ("secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("email", "john.doe@example.com"), ("email", "first.last+filter@sub.example.org"),
    ("national_id", "078-05-1120"), ("national_id", "AB 12 34 56 C"), ("national_id", "12345678Z"),
    ("national_id", "X1234567L"), ("national_id", "1 85 05 78 006 084 91"),
    ("phone", "+1 415 555 2671"), ("phone", "+44 20 7946 0958"), ("phone", "(212) 555-0187"),
    ("phone", "+49 30 901820"), ("phone", "06 12 34 56 78"), ("phone", "+33 1 42 68 53 00"),
    ("ip_address", "192.168.1.20"), ("ip_address", "2001:db8::8a2e:370:7334"),
    ("ip_address", "203.0.113.7"),
]

HARD_NEGATIVES = [
    ("card", "Order number 1234 5678 9012 3456 shipped."),
    ("card", "Tracking: 1Z999AA10123456784"),
    ("card", "ISBN 978-3-16-148410-0 is on the shelf."),
    ("card", "IMEI 490154203237518 belongs to the test phone."),
    ("card", "Unix time in ms: 1701388800123"),
    ("card", "Invoice 2024-000123-456789 is overdue."),
    ("card", "Account ref 9876543210123456."),
    ("card", "The build id was 20261204123456789."),
    ("card", "Coordinates 48.858370, 2.294481 mark the spot."),
    ("iban", "Product code AB12 3456 7890 1234 is discontinued."),
    ("iban", "Part DE12 is out of stock, use DE14 instead."),
    ("iban", "Shipment XY89 3704 0044 0532 0130 00 arrived."),
    ("iban", "Flight LH1234 departs from gate DE22."),
    ("iban", "SKU FR14200410100505000135Q.02606 is new."),
    ("email", "Reach me at john at example dot com."),
    ("email", "Use @app.route('/x') and @property decorators."),
    ("email", "Ping @maria on Slack."),
    ("email", "ssh admin@localhost works only on the box."),
    ("email", "The version string is v2@3 in the old scheme."),
    ("email", "foo@bar is not an address."),
    ("email", "Price: 3 items @ 4.50 each."),
    ("secret", "commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it"),
    ("secret", "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
    ("secret", "request id 123e4567-e89b-12d3-a456-426614174000 failed"),
    ("secret", "password: <your-password-here>"),
    ("secret", "api_key=${OPENAI_API_KEY}"),
    ("secret", "token: ********"),
    ("secret", "Set the password field in settings.py."),
    ("secret", "The class AbstractSingletonProxyFactoryBean is long."),
    ("secret", "See /usr/local/lib/python3.11/site-packages/requests/adapters.py"),
    ("secret", "https://example.com/docs/getting-started/installation-guide"),
    ("secret", "Our API key rotation policy is quarterly."),
    ("secret", "pneumonoultramicroscopicsilicovolcanoconiosis is a word."),
    ("secret", "The image is data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAf"
               "FcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="),
    ("secret", "Use sk- as the prefix for keys."),
    ("secret", "secret = changeme"),
    ("secret", "MD5 d41d8cd98f00b204e9800998ecf8427e of the empty file"),
    ("national_id", "Call extension 123-45-0000 for support."),
    ("national_id", "Code 000-12-3456 is invalid."),
    ("national_id", "Room 666-12-3456 is taken."),
    ("national_id", "Reference 12345678A is wrong (bad letter)."),
    ("national_id", "The model GB 12 34 56 A is a router."),
    ("phone", "Released on 2024-01-15 at 10:30."),
    ("phone", "Version 1.2.3.4567 is out."),
    ("phone", "Ships in 3-5 days, 12 items."),
    ("phone", "Population: 83 200 000 people."),
    ("phone", "ZIP 94105-1234."),
    ("ip_address", "Python 3.11.7 and numpy 1.26.4 are pinned."),
    ("ip_address", "The meeting is at 10:30:45 today."),
    ("ip_address", "Score was 999.1.2.3 in the old format."),
]

#: Written after the detectors were, and not tuned against: formats and contexts they were not
#: shaped on (their misses and false alarms are what the score is for).
UNSEEN_POSITIVES = [
    ("card", "Card: 4242.4242.4242.4242 exp 12/29"), ("card", "pay with 5555 5555 5555 4444, cvc 123"),
    ("card", "amex=378282246310005;"), ("card", "[4000056655665556]"),
    ("card", "número de tarjeta 4012 8888 8888 1881"), ("card", "Karte: 5105-1051-0510-5100"),
    ("email", "<maria.gonzalez@example.es>"), ("email", "mailto:ops@example.net?subject=hi"),
    ("email", "(contact: r.kumar@example.in)"), ("email", "E-Mail:j.mueller@example.de,"),
    ("email", "\"email\": \"li.na@example.cn\""), ("email", "CC: BOB.SMITH@EXAMPLE.COM"),
    ("iban", "iban: gb82 west 1234 5698 7654 32"), ("iban", "IBAN:NL91ABNA0417164300."),
    ("iban", "Konto DE44 5001 0517 5407 3249 31 (Sparkasse)"), ("iban", "(FR7630006000011234567890189)"),
    ("secret", "export AWS_SECRET_ACCESS_KEY=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"),
    ("secret", "{\"apiKey\": \"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe\"}"),
    ("secret", "Authorization: Bearer sk-ant-api03-Xk2lP9qW8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM"),
    ("secret", "DATABASE_URL=postgres://app:Zp4!kq9Lm2@db.internal:5432/app"),
    ("secret", "git clone https://oauth2:glpat-Ab3dEf6hIj9kLm2nOp5q@gitlab.example.com/x.git"),
    ("secret", "client_secret: 8Q~xY7.zW_vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7"),
    ("phone", "Call 1-800-555-0199 to order."),
]
#: Values a labeller marks in the positives above (the exact text).
UNSEEN_VALUES = {
    "Card: 4242.4242.4242.4242 exp 12/29": "4242.4242.4242.4242",
    "pay with 5555 5555 5555 4444, cvc 123": "5555 5555 5555 4444",
    "amex=378282246310005;": "378282246310005", "[4000056655665556]": "4000056655665556",
    "número de tarjeta 4012 8888 8888 1881": "4012 8888 8888 1881",
    "Karte: 5105-1051-0510-5100": "5105-1051-0510-5100",
    "<maria.gonzalez@example.es>": "maria.gonzalez@example.es",
    "mailto:ops@example.net?subject=hi": "ops@example.net",
    "(contact: r.kumar@example.in)": "r.kumar@example.in",
    "E-Mail:j.mueller@example.de,": "j.mueller@example.de",
    "\"email\": \"li.na@example.cn\"": "li.na@example.cn",
    "CC: BOB.SMITH@EXAMPLE.COM": "BOB.SMITH@EXAMPLE.COM",
    "iban: gb82 west 1234 5698 7654 32": "gb82 west 1234 5698 7654 32",
    "IBAN:NL91ABNA0417164300.": "NL91ABNA0417164300",
    "Konto DE44 5001 0517 5407 3249 31 (Sparkasse)": "DE44 5001 0517 5407 3249 31",
    "(FR7630006000011234567890189)": "FR7630006000011234567890189",
    "export AWS_SECRET_ACCESS_KEY=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY":
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "{\"apiKey\": \"AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe\"}": "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    "Authorization: Bearer sk-ant-api03-Xk2lP9qW8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM":
        "sk-ant-api03-Xk2lP9qW8eR7tY6uI5oP4aS3dF2gH1jK0lZ9xC8vB7nM",
    "DATABASE_URL=postgres://app:Zp4!kq9Lm2@db.internal:5432/app": "Zp4!kq9Lm2",
    "git clone https://oauth2:glpat-Ab3dEf6hIj9kLm2nOp5q@gitlab.example.com/x.git":
        "glpat-Ab3dEf6hIj9kLm2nOp5q",
    "client_secret: 8Q~xY7.zW_vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7": "8Q~xY7.zW_vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7",
    "Call 1-800-555-0199 to order.": "1-800-555-0199",
}
UNSEEN_NEGATIVES = [
("card", "Serial no. 4532 0151 1283 0367 is void."),
    ("card", "GTIN 00012345600012 on the label."),  ("card", "Bank sort code 12-34-56, acct 12345678."),
    ("card", "Lat/long 40.712776,-74.005974."), ("card", "Build 2024.11.30.1234.5678"),
    ("email", "The @-sign in user@ is required."), ("email", "see docs@v2"),
    ("email", "Decorators like @lru_cache(maxsize=None) help."),
    ("email", "npm i @types/node@20.11.5"),
    ("iban", "Model DE40 engine has 4000 rpm."), ("iban", "Use GB02 as the code for London."),
    ("iban", "Flight BA2490 lands at 14:25."), ("iban", "Postcode SW1A 1AA is Buckingham Palace."),
    ("secret", "Checksum: 5d41402abc4b2a76b9719d911017c592"),
    ("secret", "import { useState, useEffect, useCallback } from 'react';"),
    ("secret", "The password must be at least 12 characters long."),
    ("secret", "Set API_KEY in your environment before running."),
    ("secret", "ThisIsAVeryLongCamelCaseIdentifierName2024Version"),
    ("secret", "docker pull ghcr.io/example/inference-gateway:v1.2.3-rc1"),
    ("secret", "https://www.example.com/search?q=inference+gateway&page=2"),
    ("secret", "The token limit is 128000 per request."),
    ("secret", "Use the sk-learn library (scikit-learn) for baselines."),
    ("secret", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG is an IPFS hash"),
]

PLAIN = [
    "Write a haiku about autumn leaves.",
    "Translate 'good morning' into German and French.",
    "Summarise the quarterly report in three bullet points; revenue grew 12% to 4.5 million.",
    "Explain the difference between TCP and UDP for a beginner.",
    "What is 17 * 23? Show your steps.",
    "List five tips for writing unit tests in Python.",
    "The patient reported mild symptoms for 3 days; temperature 38.2 C.",
    "Rewrite this sentence to sound more formal: we gotta ship it by friday.",
    "def add(a, b):\n    return a + b  # returns the sum",
    "Meeting notes: budget approved, next review on 12 March, owner: finance team.",
]


def build() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    rows: list[dict[str, Any]] = []

    def put(entity: str, value: str, what: str) -> None:
        text = rng.choice(TEMPLATES).format(x=value, what=what)
        rows.append({"text": text, "entities": [{"type": entity, "value": value}]})

    for entity, value in PUBLISHED:
        put(entity, value, entity.replace("_", " "))
    for number in card_numbers(rng):
        put("card", card_format(rng, number), "card number")
    for iban in ibans(rng):
        put("iban", iban_format(rng, iban), "IBAN")
    for email in emails(rng):
        put("email", email, "email")
    for secret in secrets_list(rng):
        put("secret", secret, rng.choice(("key", "token", "credential")))
    for _ in range(8):
        put("secret", private_key(rng), "key")
        put("secret", jwt(rng), "token")
    for label, value in (("password", "Tr0ub4dor&3x"), ("api_key", "9f8e7d6c5b4a39281706"),
                         ("client_secret", "q8Zt-1LmR0_pXv2Nw"), ("PASSWORD", "S3cure!Pass2024")):
        rows.append({"text": f"config: {label}={value}",
                     "entities": [{"type": "secret", "value": value}]})
    # Near misses made from valid values: one digit changed breaks the check.
    for number in card_numbers(rng)[:20]:
        bad = number[:-1] + str((int(number[-1]) + 1) % 10)
        rows.append({"text": rng.choice(TEMPLATES).format(x=card_format(rng, bad), what="number"),
                     "entities": [], "note": "hard negative: card-like, fails Luhn"})
    for iban in ibans(rng)[:20]:
        bad = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
        rows.append({"text": rng.choice(TEMPLATES).format(x=iban_format(rng, bad), what="reference"),
                     "entities": [], "note": "hard negative: IBAN-like, fails mod 97"})
    for entity, text in HARD_NEGATIVES:
        rows.append({"text": text, "entities": [], "note": f"hard negative ({entity})"})
    for text in PLAIN:
        rows.append({"text": text, "entities": [], "note": "plain text"})
    for entity, text in UNSEEN_POSITIVES:
        rows.append({"text": text, "entities": [{"type": entity, "value": UNSEEN_VALUES[text]}],
                     "note": "unseen format"})
    for entity, text in UNSEEN_NEGATIVES:
        rows.append({"text": text, "entities": [], "note": f"unseen hard negative ({entity})"})
    # Several entities in one text, as a real prompt has them.
    for _ in range(10):
        email, card = rng.choice(emails(rng)), card_format(rng, rng.choice(card_numbers(rng)))
        iban = iban_format(rng, rng.choice(ibans(rng)))
        rows.append({"text": f"Refund to {iban} please; my card {card} was charged twice. "
                             f"Reply to {email}.",
                     "entities": [{"type": "iban", "value": iban}, {"type": "card", "value": card},
                                  {"type": "email", "value": email}]})
    return rows


def main() -> None:
    rows = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    print(f"{len(rows)} texts -> {OUT}")


if __name__ == "__main__":
    main()
