"""The platform YAML: which models are served, by which deployments.

This is the declarative half of configuration (``Settings`` is the process
half). It is validated completely at start; an error names the file, the line
and the field, and says what to fix. Without a file, the embedded default
(``embedded_default``) serves a ``demo-chat`` model on two simulated replicas
and a ``demo-embed`` model, so a fresh checkout runs with nothing else.

The result is an immutable ``Catalog`` plus the list of simulators to mount
in-process; nothing here is read by the hot path.

This module holds the file as a whole (``PlatformSpec``), its checks across sections, loading
and building; the sections are its submodules: ``deployments`` (and providers), ``models``,
``routes`` (canaries, fallbacks), ``adapters``; ``base`` is what they share, ``bounded_yaml``
the YAML parsing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from inferenceops.admission.config import (
    BudgetSpec,
    LimitSpec,
    StaticPolicy,
    TeamSpec,
    check_currency,
)
from inferenceops.config.spec.adapters import AdapterSpec, adapter_problems
from inferenceops.config.spec.base import _Strict
from inferenceops.config.spec.bounded_yaml import load_yaml
from inferenceops.config.spec.deployments import DeploymentSpec, ProviderSpec
from inferenceops.config.spec.models import ModelSpec
from inferenceops.config.spec.routes import route_problems, with_routes
from inferenceops.engines.simulator.profile import load_profile
from inferenceops.guardrails.spec import GuardrailsSpec
from inferenceops.metering.prices import model_prices
from inferenceops.platform import (
    Adapter,
    Catalog,
    Deployment,
    Endpoint,
    Model,
    QueueSettings,
    Replica,
    Timeouts,
)
from inferenceops.platform.prices import ModelPrices

SIMULATOR_MOUNT = "/_sim"


class ConfigError(ValueError):
    """The platform configuration is invalid; the message says where and how to fix it."""


class PlatformSpec(_Strict):
    currency: str = "USD"
    providers: list[ProviderSpec] = []
    deployments: list[DeploymentSpec] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    teams: list[TeamSpec] = []
    limits: list[LimitSpec] = []
    budgets: list[BudgetSpec] = []
    guardrails: GuardrailsSpec = GuardrailsSpec()
    adapters: list[AdapterSpec] = Field([], max_length=10_000, description="LoRA adapters on "
                                        "the models (docs/adapters.md)")

    _currency = field_validator("currency")(check_currency)


@dataclass(frozen=True)
class SimulatorMount:
    """A simulated engine replica served in-process under ``/_sim/<id>``."""

    id: str
    profile: str
    served_model: str
    seed: int
    scheduling_policy: str = "fcfs"


@dataclass(frozen=True)
class Platform:
    catalog: Catalog
    simulators: tuple[SimulatorMount, ...]
    source: str
    policy: StaticPolicy = StaticPolicy()
    prices: dict[str, ModelPrices] | None = None
    spec: PlatformSpec | None = None  # what it was built from (``inferenceops.config.apply`` stores it)


EMBEDDED_DEFAULT: dict[str, Any] = {
    "deployments": [
        {"name": "demo-chat", "engine": "simulator", "profile": "llama-3.1-8b-h100",
         "served_model": "llama-3.1-8b-instruct", "replicas": 2},
        {"name": "demo-embed", "engine": "simulator", "profile": "embed-minilm-cpu",
         "served_model": "all-minilm-l6-v2", "replicas": 1},
    ],
    "models": [
        {"name": "demo-chat", "deployment": "demo-chat", "type": "chat"},
        {"name": "demo-embed", "deployment": "demo-embed", "type": "embedding"},
    ],
}


def load_platform(path: Path | None, *, loopback_base_url: str,
                  environ: dict[str, str] | None = None) -> Platform:
    """Read and validate the platform YAML (or the embedded default) into a snapshot."""
    environ = dict(os.environ) if environ is None else environ
    if path is None:
        spec = PlatformSpec.model_validate(EMBEDDED_DEFAULT)
        assert not _cross_check(spec, environ)
        return _build(spec, loopback_base_url, environ, "embedded default")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the platform config: {exc}") from exc
    return parse_platform(text, source=str(path), loopback_base_url=loopback_base_url,
                          environ=environ)


def parse_platform(text: str, *, source: str, loopback_base_url: str,
                   environ: dict[str, str]) -> Platform:
    try:
        node, data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}: not valid YAML: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: line 1: the platform config must be a mapping with "
                          "'deployments:' and 'models:'")
    try:
        spec = PlatformSpec.model_validate(data)
    except ValidationError as exc:
        problems = [([p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)],
                     re.sub(r"^Value error, ", "", err["msg"])) for err in exc.errors()]
        raise ConfigError(_describe(problems, node, source)) from None
    problems = _cross_check(spec, environ)
    if problems:
        raise ConfigError(_describe(problems, node, source))
    return _build(spec, loopback_base_url, environ, source)


Problem = tuple[list[Any], str]


def _cross_check(spec: PlatformSpec, environ: dict[str, str]) -> list[Problem]:
    """What one field alone cannot tell: references, uniqueness, the environment."""
    problems: list[Problem] = []
    providers = [p.name for p in spec.providers]
    for i, provider in enumerate(spec.providers):
        if providers.index(provider.name) != i:
            problems.append((["providers", i, "name"], f"provider name {provider.name!r} is "
                             "already used above; names must be unique"))
        if provider.api_key_env and not environ.get(provider.api_key_env):
            problems.append((["providers", i, "api_key_env"], f"environment variable "
                             f"{provider.api_key_env} is not set; export it or remove api_key_env"))
    names = [d.name for d in spec.deployments]
    for i, d in enumerate(spec.deployments):
        if names.index(d.name) != i:
            problems.append((["deployments", i, "name"], f"deployment name {d.name!r} is "
                             "already used above; names must be unique"))
        if d.api_key_env and not environ.get(d.api_key_env):
            problems.append((["deployments", i, "api_key_env"], f"environment variable "
                             f"{d.api_key_env} is not set; export it or remove api_key_env"))
        if d.provider is not None and d.provider not in providers:
            defined = ", ".join(providers) or "none"
            problems.append((["deployments", i, "provider"], f"deployment {d.name!r} names provider "
                             f"{d.provider!r}, which is not defined under providers: ({defined})"))
    seen: dict[str, str] = {}
    for i, m in enumerate(spec.models):
        if m.deployment not in names:
            defined = ", ".join(dict.fromkeys(names))
            problems.append((["models", i, "deployment"], f"model {m.name!r} names deployment "
                             f"{m.deployment!r}, which is not defined; defined: {defined}"))
        for j, entry in enumerate(m.prices):
            if entry.deployment is not None and entry.deployment not in names:
                problems.append((["models", i, "prices", j, "deployment"], f"model {m.name!r} has "
                                 f"a price for deployment {entry.deployment!r}, which is not defined"))
        problems += [(["models", i, *loc], message) for loc, message in m.price_problems()]
        for j, public in enumerate((m.name, *m.aliases)):
            if public in seen:
                loc = ["models", i, "name"] if j == 0 else ["models", i, "aliases", j - 1]
                problems.append((loc, f"model name or alias {public!r} is used by both "
                                 f"{seen[public]!r} and {m.name!r}"))
            seen.setdefault(public, m.name)
    problems += route_problems(spec.models, names)
    problems += adapter_problems(spec.adapters, seen)
    models = [m.name for m in spec.models]
    for i, limit in enumerate(spec.limits):
        if limit.model is not None and limit.model not in models:
            problems.append((["limits", i, "model"], f"model {limit.model!r} is not defined "
                             "under models: (use its name, not an alias)"))
    for i, budget in enumerate(spec.budgets):
        if budget.currency != spec.currency:
            problems.append((["budgets", i, "currency"], f"budget in {budget.currency}, but the "
                             f"platform's currency is {spec.currency}; currencies are not converted"))
    teams = [t.name for t in spec.teams]
    for i, team in enumerate(spec.teams):
        if teams.index(team.name) != i:
            problems.append((["teams", i, "name"], f"team {team.name!r} is listed twice"))
    return problems


def _describe(problems: list[Problem], root: yaml.Node | None, source: str) -> str:
    lines = [f"{source}: the platform config is invalid:"]
    for loc, message in problems:
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        line = _line_of(root, loc)
        where = f"line {line}: " if line else ""
        lines.append(f"  {where}{dotted or '(top level)'}: {message}")
    return "\n".join(lines)


_UNION_TAGS = {"int", "list[ReplicaSpec]", "function-after[_engine_fields(), DeploymentSpec]", "None"}


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest YAML node that ``loc`` reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            match = node.value[part]
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def build_platform(spec: PlatformSpec, *, loopback_base_url: str, environ: Mapping[str, str],
                   source: str, provider_keys: Mapping[str, str] | None = None,
                   created: Mapping[str, int] | None = None,
                   prices: Mapping[str, ModelPrices] | None = None,
                   drained: Mapping[str, frozenset[str]] | None = None) -> Platform:
    """A platform from specs that are each valid already (e.g. the store's catalog).

    ``provider_keys`` are stored provider keys by provider name (they win over
    ``api_key_env``); ``created`` the models' creation times by name; ``prices`` the models'
    whole price schedules by name (instead of what the specs say, e.g. the store's history);
    ``drained`` the replica ids operators drained, by deployment name (the store's).
    """
    return _build(spec, loopback_base_url, environ, source, provider_keys or {}, created or {},
                  prices, drained)


def _build(spec: PlatformSpec, loopback: str, environ: Mapping[str, str], source: str,
           provider_keys: Mapping[str, str] | None = None,
           created_at: Mapping[str, int] | None = None,
           schedules: Mapping[str, ModelPrices] | None = None,
           drained: Mapping[str, frozenset[str]] | None = None) -> Platform:
    deployments: dict[str, Deployment] = {}
    mounts: list[SimulatorMount] = []
    providers = {p.name: p for p in spec.providers}
    for d in spec.deployments:
        provider = providers.get(d.provider) if d.provider else None
        key_env = d.api_key_env or (provider.api_key_env if provider else None)
        api_key = environ.get(key_env) if key_env else None
        if provider is not None and provider_keys and provider.name in provider_keys and not d.api_key_env:
            api_key = provider_keys[provider.name]
        if d.engine == "simulator":
            count = 1 if d.replicas is None else d.replicas
            assert isinstance(count, int) and d.profile
            replicas = []
            for r in range(count):
                mount = SimulatorMount(f"{d.name}-{r}", d.profile, d.served_model, d.seed + r,
                                       d.scheduling_policy)
                mounts.append(mount)
                replicas.append(Replica(mount.id, f"{loopback}{SIMULATOR_MOUNT}/{mount.id}/v1"))
        else:
            urls = ([rs.url for rs in d.replicas] if isinstance(d.replicas, list)
                    else [provider.base_url] if provider else [])
            replicas = [Replica(f"{d.name}-{r}", url.rstrip("/")) for r, url in enumerate(urls)]
        deployments[d.name] = Deployment(
            name=d.name, dialect="openai", served_model=d.served_model,
            replicas=tuple(replicas), timeouts=Timeouts(**d.timeouts.model_dump()),
            api_key=api_key, max_connections=d.max_connections, capacity=d.capacity,
            queue=QueueSettings(**d.queue.model_dump()), routing=d.routing,
            engine_priority=d.scheduling_policy == "priority",
            drained=frozenset(r.id for r in replicas
                              if r.id in (drained or {}).get(d.name, frozenset())),
            probed=d.provider is None, max_loras=d.max_loras or _default_max_loras(d),
        )
    now = int(time.time())
    created_at = created_at or {}
    models = with_routes([
        Model(name=m.name, deployment=deployments[m.deployment], aliases=tuple(m.aliases),
              endpoints=_ENDPOINTS[m.type], created=created_at.get(m.name, now),
              max_output_tokens=m.max_output_tokens)
        for m in spec.models
    ], {m.name: m for m in spec.models}, deployments)
    if schedules is None:
        schedules = {m.name: model_prices(m.price_entries()) for m in spec.models
                     if m.price is not None or m.prices}
    served = {m.name for m in models}
    prices = {name: schedule for name, schedule in schedules.items() if name in served}
    policy = StaticPolicy(spec.currency, tuple(spec.teams), tuple(spec.limits), tuple(spec.budgets),
                          spec.guardrails if spec.guardrails.policies else None)
    by_model = {m.name: m for m in models}
    adapters = [Adapter(a.name, by_model[a.base_model], a.source,
                        (created_at or {}).get(a.name, now))
                for a in spec.adapters if a.base_model in by_model]
    return Platform(Catalog(models, adapters), tuple(mounts), source, policy, prices, spec)


def _default_max_loras(d: DeploymentSpec) -> int:
    """A simulator's profile ``max_loras``; else vLLM's own default (``--max-loras 1``)."""
    if d.engine == "simulator" and d.profile:
        try:
            return max(1, load_profile(d.profile).max_loras)
        except ValueError:
            return 1
    return 1


_ENDPOINTS = {
    "chat": frozenset({Endpoint.CHAT, Endpoint.COMPLETIONS}),
    "embedding": frozenset({Endpoint.EMBEDDINGS}),
}
