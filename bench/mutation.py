"""The mutation score, per module, from mutmut's results in ``mutants/`` (``make mutation``).

``make mutation`` runs mutmut 3 over the modules listed in ``pyproject.toml``
``[tool.mutmut] only_mutate`` and then this script, which reads the per-file
results mutmut left in ``mutants/<path>.meta`` and writes
``bench/results/mutation-latest.{json,md}`` (and a dated copy of both): killed /
survived / timeout / no tests / total per module, and every surviving mutant
with its diff and, where one was made, the judgement that it is equivalent or
harmless (``JUDGED`` below: a rule matched against the mutated line). A survivor
no rule covers is listed as *not judged*: a test is missing, or a judgement.

    .venv/bin/python -m bench.mutation [--command "make mutation"] [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

#: mutmut's exit codes → status (mutmut/stats.py). Timeouts count as detected, as mutmut does.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", 37: "type check", 2: "interrupted", None: "not checked", -11: "segfault",
          -9: "segfault"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "suspicious", "other", "total")


@dataclass(frozen=True)
class Rule:
    """Survivors whose mutated line (the ``+`` side) matches ``pattern`` within ``module``
    (and, when ``was`` is given, whose original line (the ``-`` side) matches ``was``)."""

    module: str  # glob over the file path, e.g. "*/admission/metrics.py"
    pattern: str  # regex searched in the mutated line
    verdict: str  # "equivalent" | "harmless"
    why: str
    was: str = ""  # regex searched in the original line, for a mutated line that says too little


#: Survivors judged after reading them (the run of bench/results/mutation-latest.md). Keep each
#: rule narrow: it must describe one kind of mutant that no test should be asked to kill.
JUDGED: tuple[Rule, ...] = (
    # -- equivalent: no test can tell them apart, because nothing can ------------------------------
    Rule("*", r"zip\(.*(strict=(None|False)|, \)\)?)", "equivalent",
         "zip over sequences built to the same length: strict= only adds a check"),
    Rule("*/admission/quota.py", r"(budget_checks\(budget_list, policy, key, (None|1), now\)|"
         r"limit_checks\(checks, policy, scope, subject, counter, (None|1)\))", "equivalent",
         "the amount a check would reserve: /v1/quota only reads counters, never reserves"),
    Rule("*/admission/quota.py", r"if \(checks\) or True else", "equivalent",
         "reading no counters returns no states either way"),
    Rule("*/admission/config.py", r'team_ids.get\(spec.team or "XXXX"\)', "equivalent",
         "spec.team is always set here: team and team×model limits are validated to name one"),
    Rule("*/admission/fair_queue.py", r"w\.fut\.set_result\(None\)", "equivalent",
         "an expired waiter reads its result as not granted: None and False alike"),
    Rule("*/admission/fair_queue.py", r"(self\._leave\(w, None\)|^\s*w\.state = None$)", "equivalent",
         "_EXPIRED is only ever told apart as not waiting, not granted, not cancelled: as None is"),
    Rule("*/admission/control.py", r"ticket\.metered = (None|True)$", "equivalent",
         "in _undo the ticket is dropped right after (None is as falsy as False); finish's own "
         "guard is pinned by test_control_finish"),
    Rule("*/admission/control.py", r"^\s*metered = None$", "equivalent",
         "None is as falsy as False: the ticket is unmetered either way"),
    Rule("*/admission/control.py", r'headers=\{"(retry-after|RETRY-AFTER)": "1"\}', "equivalent",
         "response header names are lower-cased on the way out (respond_error)"),
    Rule("*/admission/headers.py", r'rstrip\("XX[0.]XX"\)', "equivalent",
         "rstrip takes a set of characters; 'X' never occurs in a formatted number"),
    Rule("*/admission/memory_ledger.py", r"window\.add\(now (\* SLOTS /|/ SLOTS //) check\.window_s, "
         r"used, now\)", "harmless",
         "a restored window slot's index only decides whether a later admission in the same slot "
         "joins its entry (one list entry fewer); slots leave the window by their time "
         "(test_memory_ledger_restore)"),
    Rule("*/admission/plan.py", r"(limit_checks\(checks, policy, Scope\.\w+, .*, (None|1)\)$|"
         r"f\"\{key\.team_id\}/\{model\}\", (None|1)\)$)", "equivalent",
         "a template's limit checks take a placeholder amount: only TOKENS checks carry it, and "
         "plan_request rebuilds those with the request's own amount (test_plan_memo)"),
    Rule("*/admission/plan.py", r"^\s*(template = None|template = templates\.get\(None\)|"
         r"templates\[at\] = None)$", "harmless",
         "the template is worked out again on every request: the same plan, only slower"),
    Rule("*/admission/plan.py", r"strict=(None|False)\):$", "equivalent",
         "both sequences are the template's budgets, the same length by construction"),
    Rule("*/admission/plan.py", r"= \((\+1|-2), \(\)\)$", "equivalent",
         "the first day asked is days since 1970 (about 20,000): never 1 or -2"),
    Rule("*/admission/plan.py", r"day = int\(now / DAY_S\)", "equivalent",
         "for times after 1970 int() truncates as // floors"),
    Rule("*/admission/plan.py", r"if windows\[1\] != day:", "harmless",
         "compares the windows tuple with a day number: always worked out again, the same "
         "windows, only slower"),
    Rule("*/admission/plan.py", r"(needs_usage|Plan\(tuple\(checks\), None|"
         r"^\s*price = (None|policy\.price\(None, now\))$)", "equivalent",
         "Plan.needs_usage and Plan.price have no reader since the pipeline kernel "
         "(settle prices the request and always reads usage)"),
    Rule("*/admission/redis_ledger.py", r'call\("(ping|del|evalsha|script)"|call\("SCRIPT", "load"',
         "equivalent", "Redis command names (and SCRIPT's subcommands) are case-insensitive"),
    Rule("*/admission/redis_ledger.py", r"self\._live_until = 1\.0", "equivalent",
         "both are long past on the monotonic clock: the instance is not live either way"),
    Rule("*/admission/resp.py", r"cast\(None, ", "equivalent", "typing.cast does nothing at run time"),
    Rule("*/admission/redis_ledger.py", r'(_frame\("(read|release)", [^)]*\b1\b|'
         r'_frame\("settle", request_id, checks, tokens, cost, 1\)|_frame\("read", "XXXX"|'
         r'\["totals", "(XXXX)?", [01], [01], [01], [01]|_ticket\((None|"XXXX")\))', "equivalent",
         "an argument the Lua script does not read for this operation (lua/ledger.lua: read, "
         "release and totals take no amounts; only the ticket key's hash tag is read)"),
    Rule("*/admin/api/deps.py", r"if \(team_id is not None\) or True else", "equivalent",
         "no team is keyed None: looking it up finds nothing, as the guard does"),
    Rule("*/admin/api/deps.py", r'platform_role or "XXXX"', "equivalent",
         "neither '' nor 'XXXX' is a platform role"),
    Rule("*/platform/identity.py", r"isinstance\(keys, dict\)\) and False", "harmless",
         "copies the builder's dict instead of taking it: the same index, twice the memory"),
    Rule("*/admission/fair_queue.py", r"^\s*(self\._seq = 1|self\._loop: .* = \"\"|"
         r"self\._last_done: .* = \"\"|self\.gen = 1|self\.waited = (None|1\.0)|"
         r"self\.vtime = 1\.0|self\.finish = 1\.0)", "equivalent",
         "a starting value only ever compared relatively (sequence numbers, generations, start tags "
         "shifted alike for every team) or always overwritten before it is read (the loop, the last "
         "completion, a waiter's wait)"),
    Rule("*/admission/instance.py", r"self\._lapsed = None", "equivalent", "None is as falsy as False"),
    Rule("*/admission/fair_queue.py", r"team\.gen (-= 1|\+= 2|= 1)\b", "equivalent",
         "a team's generation is only compared for equality with its own heap entries, and its stale "
         "entries always leave the heap before its live one (smaller start tag and sequence): any new "
         "value serves"),
    Rule("*/admission/fair_queue.py", r"team\.finish = tag \+ 2\.0 / w\.weight", "equivalent",
         "every start tag is a sum of 1/weight steps from 0: doubling every step doubles every tag and "
         "the virtual time alike, and the order of service stays the same"),
    Rule("*/admission/fair_queue.py", r"self\._seq \+= 2", "equivalent",
         "sequence numbers only order heap entries of equal start tag: counting in twos keeps the order"),
    Rule("*/admission/fair_queue.py", r"if self\._in_flight <= self\._capacity:  # not reachable",
         "equivalent", "_dispatch admits only while a slot is free: with none free it does nothing"),
    Rule("*/admission/memory_ledger.py", r"if budget\.spent - check\.amount <= check\.limit", "equivalent",
         "a hard budget's retry hint: ending every reservation frees what is reserved, which covers the "
         "need only when spent + amount fits, so the lease walk finds none exactly when the guard "
         "skips it"),
    Rule("*/admission/memory_ledger.py", r"_SPAN >= life", "equivalent",
         "a window span equal to the life so far: it is set to the value it has"),
    Rule("*/admission/memory_ledger.py", r"reset = window if (\(amount > 0\) and False|amount > 1) else",
         "equivalent", "the newest slot holding an amount is the one this admission just added, at now: "
         "its reset is the window either way (to a rounding)"),
    Rule("*/admission/memory_ledger.py", r"latest = expiry if \(expiry >= holder\.latest\) and False",
         "equivalent", "exact_latest() finds the latest expiry the shortcut takes"),
    Rule("*/admission/memory_ledger.py", r"(_Window\(None\)|self\.window = None)", "equivalent",
         "a window's own window_s is read only by the sweep once it holds a slot, and the admission "
         "that adds the slot sets it"),
    Rule("*/admission/memory_ledger.py", r"^\s*self\.spent = (None|1)$", "equivalent",
         "a new budget's deadline is already past (0.0): the first read of spent (live_spent) zeroes it"),
    Rule("*/admission/memory_ledger.py", r"(^\s*self\.latest = 1\.0$|"
         r"for lease in leases\.values\(\)\), default=1\.0\))", "equivalent",
         "latest is an upper bound only: whenever a new lease may not be the latest, exact_latest() "
         "recomputes it"),
    Rule("*/admission/memory_ledger.py", r"if slot\[0\] == index or slot\[2\] > cutoff:", "equivalent",
         "walking from the newest, the first slot at or before the admission's is its own while it is "
         "held (older slots leave first), and a slot past the window is trimmed, with what it holds, "
         "before any count is read"),
    Rule("*/admission/resp.py", r"""(encode|decode)\(["']LATIN-1["']\)""", "equivalent",
         "codec names are case-insensitive"),
    Rule("*/admission/resp.py", r"elif type\(None\) is int:", "equivalent",
         "an int then takes the general path, where _bytes_of writes the same decimal digits"),
    Rule("*/admission/resp.py", r"^\s*(self\._closed|self\.closed|opened) = None$", "equivalent",
         "None is as falsy as False"),
    Rule("*/admission/resp.py", r"(server_hostname=None\)|server_hostname=target\.host if "
         r"\(self\._ssl\) and False else None\)|^\s*\)$)", "equivalent",
         "asyncio verifies TLS against the host connected to when server_hostname is None (and "
         "must have None without TLS)", was=r"server_hostname="),
    Rule("*/admission/resp.py", r"conn\.abort\((None|Unavailable\(None\))\)", "equivalent",
         "a connection that failed while opening was never handed to a caller, and its handshake "
         "calls are answered or cancelled by then: nobody receives the error"),
    Rule("*/admission/resp.py", r'^\s*self\._out = ""$', "equivalent",
         "a closed connection writes nothing: send checks closed first, and a flush skips an empty join"),
    Rule("*/admission/resp.py", r"elif self\._gone\.done\(\):", "equivalent",
         "a connection aborted before it was made is never in a slot, so nobody waits for it to close"),
    Rule("*/admission/resp.py", r"self\.abort\((None|ProtocolError\(None\))\)", "equivalent",
         "a reply nobody asked for: no call is pending to receive the error", was=r"no call asked for"),
    Rule("*/admission/redis_ledger.py", r"^\s*(self\._supervised|leased) = None$", "equivalent",
         "None is as falsy as False"),
    Rule("*/admission/redis_ledger.py", r"ttl = -2 if check\.ttl_s is None", "equivalent",
         "the script reads every ttl_ms <= 0 as none (lua/ledger.lua refresh_spent)"),
    Rule("*/admission/redis_ledger.py", r"max\(2, math\.ceil\(check\.ttl_s \* 1000\)\)", "equivalent",
         "a budget's ttl_s is its period plus BUDGET_MARGIN_S (a week): never 1 ms or less"),
    Rule("*/admission/control.py", r'b"%\.1F"', "equivalent",
         "%F differs from %f only for inf and nan, and a wait is finite"),
    # -- harmless: a difference no caller can rely on ---------------------------------------------
    Rule("*/admission/fair_queue.py", r"^\s*arrivals = None$", "harmless",
         "granted waiters stay in the class's arrival list until the next expiry pass drops them (at "
         "most max_wait later): memory, not order"),
    Rule("*/admission/fair_queue.py", r"^\s*if cls\.stale .*len\(cls\.heap\):", "harmless",
         "when stale heap entries are compacted (after how many, at what share): memory and CPU; what a "
         "compaction keeps is pinned by test_fair_queue_housekeeping"),
    Rule("*/admission/fair_queue.py", r"(errors\.append\(|counted != cls\.live and)", "harmless",
         "_self_check is a test aid that reports broken invariants; the gate never breaks them, so its "
         "messages (or an and for its or) are never seen"),
    Rule("*/admission/resp.py", r"await asyncio\.gather\(return_exceptions=True\)", "harmless",
         "close() returns without waiting for cancelled connects to unwind; each still fails its "
         "callers as closed and aborts its connection"),
    Rule("*/admission/redis_ledger.py", r"max\(2, math\.ceil\(self\.liveness\.ttl_s \* 1000\)\)",
         "harmless", "a heartbeat TTL of 1 ms or less: Liveness allows it, nothing could keep it"),
    Rule("*/admission/redis_ledger.py", r"if time\.monotonic\(\) > self\._live_until", "harmless",
         "a heartbeat that runs out at the exact instant of an admission"),
    Rule("*/admission/redis_ledger.py", r"None if reply\[2\] (<= 0|< 1) else", "harmless",
         "a refusal whose retry is exactly 0 µs away: no hint or 'retry now'"),
    Rule("*/admission/instance.py", r"if delay >= 0:", "harmless",
         "a beat due exactly now: sleep(0) first, or the pace re-based on now; the same beat a loop "
         "turn apart"),
    Rule("*/admission/metrics.py", r"(?i)# help |ledger was unreachable|did not reach redis",
         "harmless", "a metric's HELP text, for humans; names, types, labels and values are "
         "pinned by test_metrics_exposition"),
    Rule("*/admission/memory_ledger.py", r"(budget (>= 0|= 1|\+= 1|-= 2)|budget > 1:|"
         r"_sweep_at = now|_sweep_at = clock\(\) - SWEEP_EVERY_S|work = \[)", "harmless",
         "how much of a sweep round one admission does, or when the next starts: CPU and memory "
         "pacing; what a sweep may drop is pinned by test_memory_ledger_edges"),
    Rule("*/admission/memory_ledger.py", r"(value\[0\] < now|lease\[0\] < now|"
         r"self\.deadline < now|< now - self\.window)", "harmless",
         "an idle counter swept at its exact expiry instant rather than after it"),
    Rule("*/admission/memory_ledger.py", r"return windows [-+] leases [-+] len\(self\._tickets\)",
         "harmless", "entries() is read only by the memory-bound test left out of the selection"),
    Rule("*/admission/fair_queue.py", r"(horizon = loop\.time\(\) - _TIMER_SLACK_S|"
         r"if w\.deadline >= horizon)", "harmless",
         "a wait that runs out at its deadline or within the 1 ms timer slack of it"),
    Rule("*/admission/fair_queue.py", r"(self\.prune_at = 65|cls\.prune_at = max\((65, 2 \*|64, 3 \*) "
         r"len\(cls\.teams\)\)|if len\(cls\.teams\) > cls\.prune_at:|t\.live or t\.finish >= cls\.vtime)",
         "harmless", "when idle teams are pruned from memory (a team later, at another size) or whether "
         "one whose turn is exactly now stays: it would start at that turn either way"),
    Rule("*/admission/memory_ledger.py", r"(ticket\[0\] (>=|<) now|now > (slots|budget)\.next_expiry|"
         r"if now <= self\.next_expiry|slots\[0\]\[2\] < cutoff|slot\[2\] >= cutoff|"
         r"expiry <= holder\.next_expiry|expiry > holder\.latest)", "harmless",
         "a lease, ticket or window slot that ends at the exact instant of the call counts as ended "
         "or not: one clock tick either way"),
    Rule("*/admission/resp.py", r"self\._pos (>= 65536|> 65537)", "harmless",
         "the size from which the reader compacts its buffer: memory only"),
    Rule("*/admission/resp.py", r"if deadline < self\._loop\.time\(\)", "harmless",
         "a call timed out at its exact deadline or one timer tick after"),
    Rule("*/admission/resp.py", r"if out or not self\.closed", "harmless",
         "an empty write to an open transport"),
)


def only_mutate() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def mutated_files(patterns: list[str]) -> list[Path]:
    files = sorted(p.relative_to(ROOT) for p in (ROOT / "src").rglob("*.py"))
    return [f for f in files if any(fnmatch(str(f), pattern) for pattern in patterns)]


def diff_of(name: str, path: Path) -> str:
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant
        return get_diff_for_mutant(name, path=path)
    except Exception as exc:  # noqa: BLE001 - a diff we cannot show is reported, not fatal
        return f"(diff unavailable: {exc})"


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()
    return ([line[1:] for line in lines if line.startswith("-") and not line.startswith("---")],
            [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")])


def judge(path: Path, added: list[str], removed: list[str]) -> Rule | None:
    text = "\n".join(added) if added else "\n".join(removed)
    original = "\n".join(removed)
    for rule in JUDGED:
        if fnmatch(str(path), rule.module) and re.search(rule.pattern, text) and \
                (not rule.was or re.search(rule.was, original)):
            return rule
    return None


def collect() -> dict[str, object]:
    modules: dict[str, dict[str, int]] = {}
    survivors: list[dict[str, object]] = []
    with_mutants = 0
    for path in mutated_files(only_mutate()):
        meta = ROOT / "mutants" / (str(path) + ".meta")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"] \
            if meta.exists() else {}
        counts = dict.fromkeys(COLUMNS, 0)
        for name, code in sorted(codes.items()):
            status = STATUS.get(code, "other")
            counts[status if status in counts else "other"] += 1
            counts["total"] += 1
            if status != "survived":
                continue
            diff = diff_of(name, path)
            removed, added = changed_lines(diff)
            rule = judge(path, added, removed)
            survivors.append({"module": str(path), "mutant": name, "removed": removed,
                              "added": added, "verdict": rule.verdict if rule else "not judged",
                              "why": rule.why if rule else ""})
        if counts["total"]:
            with_mutants += 1
        modules[str(path)] = counts
    total = {c: sum(m[c] for m in modules.values()) for c in COLUMNS}
    return {"modules": modules, "total": total, "survivors": survivors}


def score(counts: dict[str, int]) -> float | None:
    tested = counts["total"] - counts["no tests"] - counts["other"]
    return None if tested <= 0 else 100.0 * (counts["killed"] + counts["timeout"]) / tested


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def markdown(doc: dict[str, object]) -> str:
    modules: dict[str, dict[str, int]] = doc["modules"]  # type: ignore[assignment]
    total: dict[str, int] = doc["total"]  # type: ignore[assignment]
    survivors: list[dict[str, object]] = doc["survivors"]  # type: ignore[assignment]
    out = ["# Mutation score (mutmut)", "",
           f"Run {doc['date']} on commit `{doc['commit']}` with mutmut {doc['mutmut']}: "
           f"`{doc['command']}`" + (f", {doc['seconds'] / 60:.0f} min" if doc.get("seconds") else "")
           + f". Test selection: `[tool.mutmut]` in pyproject.toml; {doc['machine']}.", "",
           "Score = (killed + timeout) / (total − no tests). A *timeout* is a mutant that made "
           "the tests hang (detected); *no tests*: no selected test reaches the function.", "",
           "| module | killed | timeout | survived | no tests | total | score |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in [*modules.items(), ("**all**", total)]:
        s = score(c)
        out.append(f"| {name.removeprefix('src/inferenceops/')} | {c['killed']} | {c['timeout']} | "
                   f"{c['survived']} | {c['no tests']} | {c['total']} | "
                   f"{'—' if s is None else f'{s:.1f} %'} |")
    judged = [s for s in survivors if s["verdict"] != "not judged"]
    open_ = [s for s in survivors if s["verdict"] == "not judged"]
    out += ["", f"## Surviving mutants: {len(survivors)} ({len(judged)} judged equivalent or "
            f"harmless, {len(open_)} not judged)", ""]
    if judged:
        out += ["### Judged", "", "| module | verdict | why | mutants |", "|---|---|---|---:|"]
        groups: dict[tuple[str, str, str], int] = {}
        for s in judged:
            key = (str(s["module"]).removeprefix("src/inferenceops/"), str(s["verdict"]), str(s["why"]))
            groups[key] = groups.get(key, 0) + 1
        out += [f"| {m} | {v} | {w} | {n} |" for (m, v, w), n in sorted(groups.items())]
        out.append("")
    out += ["### Every survivor", "", "| mutant | mutated line | verdict |", "|---|---|---|"]
    for s in survivors:
        line = " / ".join(str(x).strip() for x in s["added"]) or "(line removed: " + \
            " / ".join(str(x).strip() for x in s["removed"]) + ")"
        line = line.replace("|", "\\|")
        if len(line) > 160:
            line = line[:157] + "…"
        name = str(s["mutant"]).removeprefix("inferenceops.")
        out.append(f"| `{name}` | `{line}` | {s['verdict']} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="make mutation")
    parser.add_argument("--seconds", type=float, default=None, help="how long the run took")
    args = parser.parse_args(argv)
    if not (ROOT / "mutants").is_dir():
        print("no mutants/ directory: run `make mutation` first", file=sys.stderr)
        return 1
    import mutmut

    doc: dict[str, object] = {
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "command": args.command, "seconds": args.seconds,
        "commit": git("rev-parse", "--short", "HEAD") + (" (dirty)" if git("status", "--porcelain",
                                                                            "src") else ""),
        "mutmut": mutmut.__version__, "python": sys.version.split()[0],
        "machine": f"{len(__import__('os').sched_getaffinity(0))} cores",
        **collect()}
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    table = markdown(doc)
    for name in ("latest", stamp):
        (RESULTS / f"mutation-{name}.json").write_text(text)
        (RESULTS / f"mutation-{name}.md").write_text(table)
    total: dict[str, int] = doc["total"]  # type: ignore[assignment]
    s = score(total)
    print(f"mutation score {'—' if s is None else f'{s:.1f} %'}: {total['killed']} killed, "
          f"{total['timeout']} timeout, {total['survived']} survived, {total['no tests']} no tests, "
          f"{total['total']} in all → bench/results/mutation-latest.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
