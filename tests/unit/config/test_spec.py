"""Platform YAML: valid files build a catalog; bad ones name the line and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferenceops.config.spec import ConfigError, load_platform, parse_platform
from inferenceops.platform import Endpoint

LOOP = "http://127.0.0.1:8080"

GOOD = """\
deployments:
  - name: vllm
    engine: openai
    served_model: tiny
    api_key_env: VLLM_KEY
    replicas:
      - url: http://10.0.0.5:8000/v1/
      - url: http://10.0.0.6:8000/v1
    timeouts: {first_byte_s: 2}
  - name: sim
    engine: simulator
    profile: test-fast
    served_model: sim-model
    replicas: 2
models:
  - name: chat
    deployment: vllm
    aliases: [gpt-4o-mini]
  - name: sim-chat
    deployment: sim
"""


def parse(text: str, environ: dict[str, str] | None = None):
    return parse_platform(text, source="p.yaml", loopback_base_url=LOOP,
                          environ={"VLLM_KEY": "sk-vllm-secret"} if environ is None else environ)


def test_valid_file_builds_snapshot_with_aliases_replicas_and_mounts() -> None:
    platform = parse(GOOD)
    chat = platform.catalog.model("gpt-4o-mini")
    assert chat is not None and chat.name == "chat"
    assert chat.endpoints == {Endpoint.CHAT, Endpoint.COMPLETIONS}
    dep = chat.deployment
    assert [r.base_url for r in dep.replicas] == ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"]
    assert dep.api_key == "sk-vllm-secret" and dep.timeouts.first_byte_s == 2
    assert "sk-vllm-secret" not in repr(dep)
    sim = platform.catalog.model("sim-chat")
    assert sim is not None
    assert [r.base_url for r in sim.deployment.replicas] == [
        f"{LOOP}/_sim/sim-0/v1", f"{LOOP}/_sim/sim-1/v1"]
    assert [(m.id, m.seed) for m in platform.simulators] == [("sim-0", 0), ("sim-1", 1)]


def test_embedded_default_serves_demo_chat_on_two_replicas_and_demo_embed() -> None:
    platform = load_platform(None, loopback_base_url=LOOP, environ={})
    chat = platform.catalog.model("demo-chat")
    embed = platform.catalog.model("demo-embed")
    assert chat is not None and len(chat.deployment.replicas) == 2
    assert embed is not None and embed.endpoints == {Endpoint.EMBEDDINGS}


@pytest.mark.parametrize(("text", "expected"), [
    ("deployments: [\n  {name: x\n", "line 3: not valid YAML"),
    ("- a\n- b\n", "line 1: the platform config must be a mapping"),
    (GOOD.replace("engine: openai", "engine: tgi-special"),
     "line 3: deployments[0].engine: Input should be 'simulator' or 'openai'"),
    (GOOD.replace("deployment: vllm", "deployment: nope"),
     "line 17: models[0].deployment: model 'chat' names deployment 'nope', which is not defined"),
    (GOOD.replace("aliases: [gpt-4o-mini]", "aliases: [sim-chat]"),
     "line 19: models[1].name: model name or alias 'sim-chat' is used by both 'chat' and 'sim-chat'"),
    (GOOD.replace("url: http://10.0.0.6:8000/v1", "url: ftp://x"), "line 8: deployments[0].replicas"),
    (GOOD.replace("first_byte_s: 2", "first_byte_s: -1"),
     "line 9: deployments[0].timeouts.first_byte_s: Input should be greater than 0"),
    (GOOD.replace("    replicas: 2\n", "    replicas: 0\n"), "1 <= N <= 64"),
    (GOOD.replace("    profile: test-fast\n", ""), "needs 'profile:'"),
    (GOOD + "unknown_key: 1\n", "unknown_key: Extra inputs are not permitted"),
    (GOOD.replace("  - name: sim\n", "  - name: vllm\n"),
     "line 10: deployments[1].name: deployment name 'vllm' is already used"),
    (GOOD.replace("    replicas: 2\n", "    replicas: 2\n    routing: fastest\n"),
     "routing: Input should be 'least_outstanding', 'round_robin', 'engine_load', "
     "'prefix_affinity' or 'session_affinity'"),
])
def test_bad_file_names_line_field_and_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith("p.yaml: ")
    assert expected in str(info.value)


def test_each_deployment_names_its_routing_strategy() -> None:
    platform = parse(GOOD.replace("    replicas: 2\n", "    replicas: 2\n    routing: round_robin\n"))
    routing = {name: d.routing for name, d in platform.catalog.deployments.items()}
    assert routing == {"vllm": "least_outstanding", "sim": "round_robin"}


def test_unset_credential_variable_is_named() -> None:
    expected = "line 5: deployments.0..api_key_env: environment variable VLLM_KEY is not set"
    with pytest.raises(ConfigError, match=expected):
        parse(GOOD, environ={})


def test_example_platform_file_in_the_docs_is_valid() -> None:
    platform = load_platform(Path(__file__).parents[3] / "examples" / "platform.yaml",
                             loopback_base_url=LOOP, environ={"VLLM_API_KEY": "x"})
    assert platform.catalog.model("gpt-4o-mini") is not None


PROVIDERS = """\
providers:
  - name: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_KEY
deployments:
  - name: gpt
    engine: openai
    provider: openai
    served_model: gpt-4o-mini
  - name: gpt-pinned
    engine: openai
    provider: openai
    served_model: gpt-4o
    replicas: [{url: "https://eu.example.com/v1"}]
models:
  - {name: small, deployment: gpt}
  - {name: big, deployment: gpt-pinned}
"""


def test_a_provider_gives_deployments_its_base_url_and_key() -> None:
    platform = parse(PROVIDERS, environ={"OPENAI_KEY": "sk-openai"})
    small, big = platform.catalog.model("small"), platform.catalog.model("big")
    assert small is not None and big is not None
    assert [r.base_url for r in small.deployment.replicas] == ["https://api.openai.com/v1"]
    assert [r.base_url for r in big.deployment.replicas] == ["https://eu.example.com/v1"]
    assert small.deployment.api_key == big.deployment.api_key == "sk-openai"


@pytest.mark.parametrize(("text", "line", "words"), [
    (PROVIDERS.replace("provider: openai\n    served_model: gpt-4o-mini",
                       "provider: nope\n    served_model: gpt-4o-mini"), 8,
     "names provider 'nope', which is not defined under providers: (openai)"),
    (PROVIDERS.replace("    provider: openai\n    served_model: gpt-4o-mini",
                       "    served_model: gpt-4o-mini"), 6, "or a 'provider:'"),
    (PROVIDERS, 4, "environment variable OPENAI_KEY is not set"),
])
def test_bad_providers_are_refused_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, environ={})
    assert f"line {line}" in str(caught.value) and words in str(caught.value), str(caught.value)
