"""Detection quality of the built-in guardrail detectors on the labelled corpus, and their cost.

``python -m bench.guardrails`` (``make bench-guardrails``) scans every text of
``bench/data/guardrails-corpus.jsonl`` (built by ``bench.guardrails_corpus``) with
``inferenceops.guardrails.detect.scan`` and scores it per entity type: a finding is
a true positive when it overlaps a labelled value of its type, a false positive
otherwise; a labelled value no finding of its type overlaps is a false negative.
Precision = TP / (TP + FP), recall = TP / (TP + FN). The targets (issue #13): at
least 0.95 of each for cards, IBANs, emails and secrets.

Cost: the median time to scan ordinary prose of ~1 KB and ~8 KB with two entities
in it, and ~1 KB dense with entities (medians of repeated runs; the machine is
shared, so these are indications, never asserted).

Writes ``bench/results/guardrails-<stamp>.{json,md}`` and ``guardrails-latest.*``.
``--detector presidio`` scores the same corpus with Presidio finding the PII types (the
``presidio`` extra; secrets stay built-in): ``guardrails-presidio-*``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from inferenceops.guardrails.detect import scan, use_detector
from inferenceops.guardrails.findings import ENTITIES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "data" / "guardrails-corpus.jsonl"
RESULTS = ROOT / "bench" / "results"
TARGETED = ("card", "iban", "email", "secret")
TARGET = 0.95


def score(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per entity: tp, fp, fn, precision, recall; and every miss and false alarm, to read."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})
    mistakes: list[dict[str, Any]] = []
    for row in rows:
        text = row["text"]
        expected = []
        for e in row["entities"]:
            start = text.find(e["value"])
            if start == -1:
                raise ValueError(f"corpus value {e['value']!r} is not in its text {text!r}")
            expected.append((e["type"], start, start + len(e["value"])))
        found = scan(text)
        for f in found:  # a finding of no labelled value of its type is a false alarm
            if not any(t == f.entity and f.start < end and start < f.end
                       for t, start, end in expected):
                counts[f.entity]["fp"] += 1
                mistakes.append({"false_positive": f.entity, "kind": f.kind,
                                 "found": text[f.start:f.end], "text": text[:200]})
        for t, start, end in expected:  # each labelled value is found, or missed, once
            if any(f.entity == t and f.start < end and start < f.end for f in found):
                counts[t]["tp"] += 1
            else:
                counts[t]["fn"] += 1
                mistakes.append({"missed": t, "value": text[start:end], "text": text[:200]})
    table: dict[str, dict[str, Any]] = {}
    for entity in ENTITIES:
        c = counts[entity]
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
        table[entity] = {**c, "precision": precision, "recall": recall,
                         "target": TARGET if entity in TARGETED else None}
    return table, mistakes


def cost(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median µs to scan ordinary prompts of ~1 KB and ~8 KB with two entities in each
    (the common case), and ~1 KB of corpus texts run together (an entity every ~60
    characters: the worst case a real prompt comes near)."""
    plain = " ".join(r["text"] for r in rows if r.get("note") == "plain text")
    entities = " Reply to anna@example.com, card 4242 4242 4242 4242. "

    def prose(size: int) -> str:
        body = (plain + " ") * (size // len(plain) + 1)
        half = size // 2
        return body[:half] + entities + body[half:size - len(entities)]

    dense = " ".join(r["text"] for r in rows[::7])[:1024]
    out = {}
    for name, text in (("prose_1KB", prose(1024)), ("prose_8KB", prose(8192)),
                       ("dense_1KB", dense)):
        runs = []
        for _ in range(7):
            n = 100
            t = time.perf_counter()
            for _ in range(n):
                scan(text)
            runs.append((time.perf_counter() - t) / n * 1e6)
        out[f"scan_{name}_us"] = round(statistics.median(runs), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    presidio = args[-2:] == ["--detector", "presidio"]
    if presidio:
        from inferenceops.guardrails.presidio import PresidioDetector
        use_detector(PresidioDetector())
    rows = [orjson.loads(line) for line in CORPUS.read_bytes().splitlines() if line.strip()]
    table, mistakes = score(rows)
    timing = cost(rows)
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    now = datetime.now(UTC)
    doc = {"date": now.isoformat(timespec="seconds"), "commit": commit, "texts": len(rows),
           "detector": "presidio (PII), built-in (secrets)" if presidio else "built-in",
           "entities": table, "cost": timing, "mistakes": mistakes}
    met = all(table[e]["precision"] is not None and table[e]["precision"] >= TARGET
              and table[e]["recall"] is not None and table[e]["recall"] >= TARGET for e in TARGETED)
    lines = [f"# Guardrail detectors on the labelled corpus: {doc['detector']}", "",
             "| entity | labelled | TP | FP | FN | precision | recall | target | met? |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for entity, r in table.items():
        def fmt(x: float | None) -> str:
            return "—" if x is None else f"{x:.3f}"
        ok = "—"
        if r["target"] is not None:
            ok = "✅ yes" if (r["precision"] or 0) >= TARGET and (r["recall"] or 0) >= TARGET \
                else "❌ no"
        lines.append(f"| {entity} | {r['tp'] + r['fn']} | {r['tp']} | {r['fp']} | {r['fn']} | "
                     f"{fmt(r['precision'])} | {fmt(r['recall'])} | "
                     f"{'≥ 0.95 both' if r['target'] else '—'} | {ok} |")
    lines += ["", f"Corpus: {len(rows)} texts (`bench/data/guardrails-corpus.jsonl`, built by "
              "`python -m bench.guardrails_corpus`: published examples, generated valid values in "
              "four languages' sentences, hard negatives such as card-like numbers failing Luhn and "
              "IBANs failing mod 97, plain text). A finding counts when it overlaps a labelled value "
              "of its type.", "",
              "Cost of a scan for every entity type (median of 7 × 100 scans, one core of a shared "
              f"machine): ordinary prose with two entities {timing['scan_prose_1KB_us']} µs per "
              f"~1 KB, {timing['scan_prose_8KB_us']} µs per ~8 KB; corpus texts run together (an "
              f"entity every ~60 characters) {timing['scan_dense_1KB_us']} µs per ~1 KB.", "",
              f"Mistakes: {len(mistakes)} (listed in the JSON). Commit {commit}, {doc['date']}.", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = now.strftime("%Y%m%d-%H%M")
    stem = "guardrails-presidio" if presidio else "guardrails"
    for name in (f"{stem}-{stamp}", f"{stem}-latest"):
        (RESULTS / f"{name}.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    for m in mistakes:
        print(" ", m)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
