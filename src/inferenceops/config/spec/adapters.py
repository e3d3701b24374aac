"""LoRA adapters in the platform file: their spec and the checks across the file.

    adapters:
      - name: support-tone              # what callers put in "model"; granted like a model name
        base_model: llama               # a model defined under models: (its name, not an alias)
        source: /models/loras/support   # what the engine loads it from (lora_path)
        description: tone for support replies

An adapter is served by its base model's primary deployment: the gateway loads it on a replica
at runtime (``routing.adapters``). Adapter names share the namespace of model names and
aliases (a request's ``model`` names one or the other), so a clash is refused naming the field.
Pure checks, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

Problem = tuple[list[Any], str]
AdapterName = Annotated[str, Field(min_length=1, max_length=200,
                                   pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]


class AdapterSpec(BaseModel):
    """One LoRA adapter: its public name, the model it adapts, where the engine loads it from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AdapterName = Field(description="what callers send as 'model'; unique among models, "
                              "aliases and adapters")
    base_model: AdapterName = Field(description="the model it adapts (its name, not an alias); "
                                    "requests go to that model's primary deployment")
    source: str = Field(min_length=1, max_length=4096, pattern=r"^\S(.*\S)?$",
                        description="where the engine loads it from (vLLM's lora_path: a folder "
                        "on the engine's machine, or a URI the engine understands)")
    description: str = Field("", max_length=1000)


def adapter_problems(adapters: Sequence[AdapterSpec], models: Mapping[str, str],
                     at: str = "adapters") -> list[Problem]:
    """Every problem of ``adapters`` against ``models`` (each public name or alias → the model
    it belongs to), located under ``at``: an unknown base model, a base model named by an
    alias, an adapter name used twice or already a model's name or alias."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, adapter in enumerate(adapters):
        if adapter.name in seen:
            problems.append(([at, i, "name"], f"adapter name {adapter.name!r} is already used "
                             "above; names must be unique"))
        seen.add(adapter.name)
        if adapter.name in models:
            problems.append(([at, i, "name"], f"adapter name {adapter.name!r} is already a name "
                             f"or alias of model {models[adapter.name]!r}"))
        owner = models.get(adapter.base_model)
        if owner is None:
            problems.append(([at, i, "base_model"], f"adapter {adapter.name!r} names base model "
                             f"{adapter.base_model!r}, which is not defined under models:"))
        elif owner != adapter.base_model:
            problems.append(([at, i, "base_model"], f"adapter {adapter.name!r} names "
                             f"{adapter.base_model!r}, an alias of model {owner!r}: use the "
                             "model's name"))
    return problems
