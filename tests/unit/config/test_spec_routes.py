"""A model's canary split and fallback chain in the platform file: what it builds, and what it
refuses (naming the line and the field)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferenceops.config.spec import ConfigError, parse_platform

DEPLOYMENTS = "".join(
    f"  - {{name: {name}, engine: simulator, served_model: m, profile: test-fast}}\n"
    for name in ("a", "b", "c", "d"))


def platform(models: str) -> str:
    return f"deployments:\n{DEPLOYMENTS}models:\n{models}"


def parse(models: str):  # type: ignore[no-untyped-def]
    return parse_platform(platform(models), source="p.yaml", loopback_base_url="http://x:1",
                          environ={})


def test_a_split_and_a_chain_are_built_and_every_deployment_is_served() -> None:
    catalog = parse("""  - name: m1
    deployment: a
    canary: [{deployment: b, percent: 10}, {deployment: c, percent: 25.5}]
    fallbacks: [{deployment: d}, {model: m2}]
  - {name: m2, deployment: c, type: chat}
""").catalog
    model = catalog.model("m1")
    assert model is not None and model.split is not None
    assert [d.name for d in model.split.deployments] == ["a", "b", "c"]
    assert model.split.bounds == pytest.approx((0.645, 0.745, 1.0))
    assert [(f.deployment.name, f.model.name if f.model else None) for f in model.fallbacks] == [
        ("d", None), ("c", "m2")]
    assert set(catalog.deployments) == {"a", "b", "c", "d"}


@given(session=st.text(min_size=1, max_size=40))
def test_a_session_always_lands_on_the_same_deployment(session: str) -> None:
    model = CANARY.model("m")
    assert model is not None
    first = model.pick(session, random.random)
    assert all(model.pick(session, random.random) is first for _ in range(5))


def test_shares_come_out_as_written() -> None:
    model = CANARY.model("m")
    assert model is not None
    draw = random.Random(7).random
    picks = [model.pick(None, draw).name for _ in range(20_000)]
    assert picks.count("b") / len(picks) == pytest.approx(0.2, abs=0.015)
    sessions = [model.pick(f"user-{i}", draw).name for i in range(20_000)]
    assert sessions.count("b") / len(sessions) == pytest.approx(0.2, abs=0.015)


CANARY = parse("  - {name: m, deployment: a, canary: [{deployment: b, percent: 20}]}\n").catalog


@pytest.mark.parametrize(("models", "says"), [
    ("  - {name: m, deployment: a, canary: [{deployment: zz, percent: 5}]}\n",
     "line 7: models[0].canary[0].deployment: model 'm' sends a canary share to deployment 'zz'"),
    ("  - {name: m, deployment: a, canary: [{deployment: a, percent: 5}]}\n",
     "deployment 'a' already serves model 'm'"),
    ("  - {name: m, deployment: a, canary: [{deployment: b, percent: 60}, "
     "{deployment: c, percent: 40}]}\n", "add up to 100 or more"),
    ("  - {name: m, deployment: a, canary: [{deployment: b, percent: 0}]}\n", "percent"),
    ("  - {name: m, deployment: a, fallbacks: [{deployment: b, model: x}]}\n",
     "exactly one of 'deployment' or 'model'"),
    ("  - {name: m, deployment: a, fallbacks: [{model: nope}]}\n",
     "models[0].fallbacks[0].model: model 'm' falls back to model 'nope', which is not defined"),
    ("  - {name: m, deployment: a, fallbacks: [{model: e}]}\n"
     "  - {name: e, deployment: b, type: embedding}\n", "(chat) cannot fall back to model 'e'"),
    ("  - {name: x, deployment: a, fallbacks: [{model: y}]}\n"
     "  - {name: y, deployment: b, fallbacks: [{model: z}]}\n"
     "  - {name: z, deployment: c, fallbacks: [{model: x}]}\n",
     "comes back to where it started: x → y → z → x"),
    ("  - {name: x, deployment: a, fallbacks: [{model: x}]}\n", "x → x"),
])
def test_a_bad_split_or_chain_is_refused_naming_the_field(models: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse(models)
    assert says in str(refused.value), refused.value
