"""``inferenceops prices list|set|delete`` against a real server, each command its own process.

A model made with ``models create`` and a price; a change scheduled for later and one for a
deployment (cached-input price, batch discount); the history listed as a table and as JSON;
the later change deleted; the price in force changed now; and refusals: a price that has
started (exit 1, "history"), bad amounts, discounts and times (exit 1, the field named by
the server), a missing option (exit 2). Nothing refused is written.
"""

from __future__ import annotations

import pytest

from tests.integration._harness import SpawnGateway
from tests.integration.test_cli_admin import cli, ok, ok_json

pytestmark = pytest.mark.integration

LATER = "2999-01-01T00:00:00Z"


def test_a_models_prices_from_the_command_line(spawn_gateway: SpawnGateway) -> None:
    gw = spawn_gateway(name="cli-prices")
    ok_json(gw, "deployments", "create", "--name", "pool", "--engine", "simulator", "--profile",
            "test-fast", "--served-model", "m")
    ok_json(gw, "models", "create", "--name", "chat", "--deployment", "pool", "--input-price", "0.60",
            "--output-price", "0.80")

    later = ok_json(gw, "prices", "set", "chat", "--input", "0.5", "--output", "0.7", "--from", LATER)
    assert (later["effective_from"], later["input_per_million"], later["state"]) == (LATER, "0.5",
                                                                                   "scheduled")
    spot = ok_json(gw, "prices", "set", "chat", "--input", "0.3", "--output", "0.4", "--deployment",
                   "pool", "--cached-input", "0.03", "--batch-discount", "50", "--from", "2998-06-01")
    assert (spot["deployment"], spot["effective_from"], spot["cached_input_per_million"],
            spot["batch_discount_percent"]) == ("pool", "2998-06-01T00:00:00Z", "0.03", "50")

    table = ok(gw, "prices", "list", "chat").splitlines()
    assert table[0].split() == ["ID", "DEPLOYMENT", "FROM", "INPUT/1M", "OUTPUT/1M", "CACHED/1M",
                                "BATCH", "-%", "STATE"]
    assert [line.split()[1:] for line in table[1:]] == [  # times in UTC, shortened for people
        ["(model)", "beginning", "0.60", "0.80", "=", "input", "0", "in_force"],
        ["(model)", "2999-01-01", "00:00:00", "0.5", "0.7", "=", "input", "0", "scheduled"],
        ["pool", "2998-06-01", "00:00:00", "0.3", "0.4", "0.03", "50", "scheduled"]]
    history = ok_json(gw, "prices", "list", "chat")["data"]
    assert [p["state"] for p in history] == ["in_force", "scheduled", "scheduled"]

    assert ok_json(gw, "prices", "delete", "chat", later["id"]) == {"id": later["id"], "deleted": True}
    now = ok_json(gw, "prices", "set", "chat", "--input", "0.65", "--output", "0.80")
    assert now["state"] == "in_force"
    assert ok_json(gw, "models", "show", "chat")["price"]["input_per_million"] == "0.65"

    before = ok_json(gw, "prices", "list", "chat")
    started = cli("prices", "delete", "chat", history[0]["id"], url=gw.origin)
    assert started.returncode == 1 and "history" in started.stderr
    for args, field in ((("--input", "-1", "--output", "1"), "input_per_million"),
                        (("--input", "cheap", "--output", "1"), "input_per_million"),
                        (("--input", "1", "--output", "1", "--batch-discount", "120"),
                         "batch_discount_percent"),
                        (("--input", "1", "--output", "1", "--from", "10/12/2026"), "effective_from"),
                        (("--input", "1", "--output", "1", "--from", "2001-01-01T00:00:00Z"),
                         "effective_from")):
        refused = cli("prices", "set", "chat", *args, url=gw.origin)
        assert refused.returncode == 1 and field in refused.stderr, (args, refused.stderr)
    unknown = cli("prices", "set", "chat", "--input", "1", "--output", "1", "--deployment", "nope",
                  url=gw.origin)
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr
    assert cli("prices", "set", "chat", "--input", "1", url=gw.origin).returncode == 2
    assert cli("prices", "list", "no-such-model", url=gw.origin).returncode == 1
    assert ok_json(gw, "prices", "list", "chat") == before
