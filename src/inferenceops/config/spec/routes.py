"""A model's canary split and fallback chain in the platform file: their specs, checks and build.

    models:
      - name: llama
        deployment: llama-stable            # the primary: what the canaries leave
        canary:
          - {deployment: llama-next, percent: 5}
        fallbacks:                          # in order, when the chosen deployment cannot take it
          - {deployment: llama-backup}
          - {model: gpt-4o-mini}            # another model: the caller must be granted it

The checks name the field: a canary or fallback naming a deployment or model that is not
defined, a deployment listed twice in one model's split and chain, shares adding up to 100 %
or more, a fallback model of another type (chat vs embedding), and a chain of models that
comes back to where it started (A → B → A).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from inferenceops.platform.catalog import Deployment, Fallback, Model, Split

MAX_CANARIES = 8
MAX_FALLBACKS = 8
Problem = tuple[list[Any], str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CanarySpec(_Strict):
    deployment: str = Field(min_length=1, max_length=200)
    percent: float = Field(gt=0, lt=100, description="share of the model's requests it gets")


class FallbackSpec(_Strict):
    deployment: str | None = Field(None, min_length=1, max_length=200)
    model: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_target(self) -> FallbackSpec:
        if (self.deployment is None) == (self.model is None):
            raise ValueError("a fallback names exactly one of 'deployment' or 'model'")
        return self


class Routed(Protocol):
    """What the checks read of a model spec (``config.spec.ModelSpec``)."""

    @property
    def name(self) -> str: ...
    @property
    def deployment(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def canary(self) -> Sequence[CanarySpec]: ...
    @property
    def fallbacks(self) -> Sequence[FallbackSpec]: ...


def share_problems(canary: Sequence[CanarySpec]) -> str | None:
    """What is wrong with the canaries' shares on their own (None: nothing)."""
    if sum(c.percent for c in canary) >= 100:
        return "the canaries' percents add up to 100 or more: the primary deployment must keep a share"
    return None


def route_problems(models: Sequence[Routed], deployments: Sequence[str]) -> list[Problem]:
    """Every problem of the models' canaries and fallbacks, located under ``models``."""
    problems: list[Problem] = []
    known = set(deployments)
    by_name = {m.name: m for m in models}
    for i, m in enumerate(models):
        used = {m.deployment}
        for j, c in enumerate(m.canary):
            at = ["models", i, "canary", j, "deployment"]
            if c.deployment not in known:
                problems.append((at, f"model {m.name!r} sends a canary share to deployment "
                                     f"{c.deployment!r}, which is not defined"))
            elif c.deployment in used:
                problems.append((at, f"deployment {c.deployment!r} already serves model {m.name!r}"))
            used.add(c.deployment)
        for j, f in enumerate(m.fallbacks):
            if f.deployment is not None:
                at = ["models", i, "fallbacks", j, "deployment"]
                if f.deployment not in known:
                    problems.append((at, f"model {m.name!r} falls back to deployment "
                                         f"{f.deployment!r}, which is not defined"))
                elif f.deployment in used:
                    problems.append((at, f"deployment {f.deployment!r} already serves model "
                                         f"{m.name!r} before this fallback"))
                used.add(f.deployment)
                continue
            at = ["models", i, "fallbacks", j, "model"]
            other = by_name.get(f.model or "")
            if other is None:
                problems.append((at, f"model {m.name!r} falls back to model {f.model!r}, which is "
                                     "not defined (use its name, not an alias)"))
            elif other.type != m.type:
                problems.append((at, f"model {m.name!r} ({m.type}) cannot fall back to model "
                                     f"{other.name!r} ({other.type})"))
            else:
                cycle = _cycle(m.name, other.name, by_name)
                if cycle:
                    problems.append((at, "the fallback chain comes back to where it started: "
                                         + " → ".join(cycle)))
    return problems


def _cycle(start: str, first: str, by_name: Mapping[str, Routed]) -> list[str] | None:
    """The models from ``start`` through ``first`` back to ``start``, if fallbacks lead there."""
    path, seen = [start, first], {first}
    stack = [(first, iter(_next_models(by_name.get(first))))]
    while stack:
        name, following = stack[-1]
        step = next(following, None)
        if step is None:
            stack.pop()
            path.pop()
            continue
        if step == start:
            return [*path, start]
        if step not in seen and step in by_name:
            seen.add(step)
            path.append(step)
            stack.append((step, iter(_next_models(by_name[step]))))
    return None


def _next_models(model: Routed | None) -> list[str]:
    return [f.model for f in model.fallbacks if f.model is not None] if model else []


def with_routes(models: Sequence[Model], specs: Mapping[str, Routed],
                deployments: Mapping[str, Deployment]) -> list[Model]:
    """``models`` with their splits and fallback chains; a reference that cannot be served (a
    stored row left out) is skipped, so the rest of the catalog still serves."""
    by_name = {m.name: m for m in models}
    routed: dict[str, Model] = {}
    for model in models:
        spec = specs[model.name]
        split = None
        canaries = [(deployments[c.deployment], c.percent) for c in spec.canary
                    if c.deployment in deployments]
        if canaries:
            primary = 100.0 - sum(percent for _, percent in canaries)
            shares = [(model.deployment, primary), *canaries]
            bounds, total = [], 0.0
            for _, percent in shares:
                total += percent / 100.0
                bounds.append(total)
            bounds[-1] = 1.0
            split = Split(tuple(d for d, _ in shares), tuple(bounds))
        routed[model.name] = replace(model, split=split)
    out = []
    for model in routed.values():
        chain: list[Fallback] = []
        for f in specs[model.name].fallbacks:
            if f.deployment is not None and f.deployment in deployments:
                chain.append(Fallback(deployments[f.deployment]))
            elif f.model is not None and f.model in by_name:
                other = routed[f.model]
                chain.append(Fallback(other.deployment, other))
        out.append(replace(model, fallbacks=tuple(chain)))
    return out
