"""LoRA adapters in the platform file: what they build, and what is refused naming the line
and the field (``config.spec.adapters``)."""

from __future__ import annotations

import orjson
import pytest

from inferenceops.config.spec import ConfigError, parse_platform
from inferenceops.platform import Snapshot
from inferenceops.platform.identity import ApiKey, Identity, Principal

HEAD = """deployments:
  - {name: d, engine: simulator, served_model: base, profile: test-fast, replicas: 2}
  - {name: e, engine: openai, served_model: other, replicas: [{url: "http://e:1/v1"}], max_loras: 3}
models:
  - {name: m, deployment: d, aliases: [m-alias], canary: [{deployment: e, percent: 10}]}
  - {name: n, deployment: e}
"""


def parse(adapters: str):  # type: ignore[no-untyped-def]
    return parse_platform(HEAD + "adapters:\n" + adapters, source="p.yaml",
                          loopback_base_url="http://x:1", environ={})


def test_an_adapter_is_served_on_its_base_model_and_listed_with_its_parent() -> None:
    platform = parse("  - {name: tone, base_model: m, source: /loras/tone, description: x}\n")
    adapter = platform.catalog.adapter("tone")
    assert adapter is not None and adapter.model.name == "m" and adapter.source == "/loras/tone"
    assert platform.catalog.model("tone") is None  # an adapter, not a model
    # max_loras: a simulator's profile (test-fast: 2), or what the file says.
    assert platform.catalog.deployments["d"].max_loras == 2
    assert platform.catalog.deployments["e"].max_loras == 3
    team = ApiKey("k", "sk-", Principal("u", "user"), "t", frozenset({"inference"}))
    snapshot = Snapshot(platform.catalog, Identity({}, {"t": ["tone"]}))
    assert snapshot.visible(team, "tone") == (adapter.model, adapter)
    assert snapshot.visible(team, "m") is None  # the base model needs its own grant
    cards = orjson.loads(snapshot.models_json(team))["data"]
    assert cards == [{"id": "tone", "object": "model", "created": adapter.created,
                      "owned_by": "inferenceops", "root": "m", "parent": "m"}]
    other = ApiKey("k2", "sk-", Principal("v", "user"), "t2", frozenset({"inference"}))
    assert snapshot.visible(other, "tone") is None
    assert orjson.loads(snapshot.models_json(other))["data"] == []


@pytest.mark.parametrize(("adapters", "where", "says"), [
    ("  - {name: x, base_model: nope, source: /l}\n", "line 8: adapters[0].base_model",
     "names base model 'nope', which is not defined"),
    ("  - {name: x, base_model: m-alias, source: /l}\n", "adapters[0].base_model",
     "an alias of model 'm': use the model's name"),
    ("  - {name: n, base_model: m, source: /l}\n", "adapters[0].name",
     "already a name or alias of model 'n'"),
    ("  - {name: x, base_model: m, source: /l}\n  - {name: x, base_model: n, source: /k}\n",
     "line 9: adapters[1].name", "'x' is already used above"),
    ("  - {name: x, base_model: m}\n", "adapters[0].source", "Field required"),
    ("  - {name: x, base_model: m, source: ' '}\n", "adapters[0].source", "pattern"),
    ("  - {name: x, base_model: m, source: /l, path: /p}\n", "adapters[0].path", "Extra inputs"),
])
def test_bad_adapters_are_refused_naming_the_field(adapters: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(adapters)
    assert where in str(refused.value) and says in str(refused.value), str(refused.value)


def test_max_loras_is_bounded() -> None:
    with pytest.raises(ConfigError, match=r"deployments\[1\]\.max_loras"):
        parse_platform(HEAD.replace("max_loras: 3", "max_loras: 0"), source="p.yaml",
                       loopback_base_url="http://x:1", environ={})
