"""Deployments and providers in the platform file: where a model is served, and how to reach it.

    providers:
      - {name: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
    deployments:
      - name: llama
        engine: openai                  # or simulator (with profile: and replicas: N)
        served_model: meta-llama/Llama-3.1-8B-Instruct
        replicas: [{url: http://10.0.0.5:8000/v1}]

Each spec checks its own fields (a simulator needs a profile, an openai deployment replicas or a
provider); what needs the whole file (a provider that is defined, unique names, environment
variables) is checked in the package (``_cross_check``). Pure models, no I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from inferenceops.config.spec.base import Name, _Strict
from inferenceops.metering.gpu_costs import GpuCostSpec


class TimeoutsSpec(_Strict):
    connect_s: float = Field(5.0, gt=0)
    first_byte_s: float = Field(120.0, gt=0)
    between_chunks_s: float = Field(60.0, gt=0)
    total_s: float = Field(900.0, gt=0)


class QueueSpec(_Strict):
    max_waiting: int = Field(1000, ge=0, le=1_000_000)
    interactive_max_wait_s: float = Field(30.0, gt=0, le=3600)
    background_max_wait_s: float = Field(600.0, gt=0, le=86400)


Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]


class ReplicaSpec(_Strict):
    url: Url


class ProviderSpec(_Strict):
    """An upstream endpoint and how to sign in to it, shared by the deployments that name it."""

    name: Name
    base_url: Url = Field(description="API root, e.g. https://api.openai.com/v1")
    dialect: Literal["openai"] = Field("openai", description="the wire protocol it speaks")
    api_key_env: str | None = Field(None, description="environment variable holding its key")


class DeploymentSpec(_Strict):
    name: Name
    engine: Literal["simulator", "openai"] = Field(
        description="simulator = built-in simulated engine; openai = any OpenAI-compatible "
        "server (vLLM, SGLang, llama.cpp, Ollama, TGI, OpenAI)"
    )
    served_model: Name = Field(description="the model name the engine itself answers to")
    provider: Name | None = Field(None, description="openai: a provider whose base URL and key "
                                  "it uses (replicas then default to the provider's base URL)")
    profile: str | None = Field(None, description="simulator profile (built-in name or YAML path)")
    replicas: int | list[ReplicaSpec] | None = Field(
        None, description="simulator: how many replicas (default 1); openai: a list of {url: ...}"
    )
    seed: int = Field(0, ge=-(2**63), le=2**63 - 1)  # stored as JSON: a 64-bit integer
    api_key_env: str | None = Field(None, description="environment variable holding the upstream key")
    timeouts: TimeoutsSpec = TimeoutsSpec()
    max_connections: int = Field(256, ge=1, le=100_000)
    capacity: int | None = Field(None, ge=1, le=100_000, description="requests this gateway "
                                 "process sends at once; more wait in the fair queue")
    queue: QueueSpec = QueueSpec()
    routing: Literal["least_outstanding", "round_robin", "engine_load", "prefix_affinity",
                     "session_affinity"] = Field(
        "least_outstanding", description="how a replica is picked for each request: "
        "least_outstanding (fewest in flight), round_robin, engine_load (two random choices on "
        "the engines' scraped /metrics), prefix_affinity or session_affinity (consistent hashing "
        "of the prompt's prefix or the session, with bounded load)")
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "fcfs", description="the engine's own queue order: fcfs, or priority when it runs "
        "vLLM's --scheduling-policy priority — the gateway then sets each request's engine "
        "priority from its service class (interactive 0, background and batch 1), so batch "
        "work queued on the engine never delays an interactive request")
    gpu_cost: GpuCostSpec | None = Field(None, description="self-hosted: its GPUs and their "
                                         "hourly cost, shared among teams by chargeback")
    max_loras: int | None = Field(None, ge=1, le=1024, description="LoRA adapters the gateway "
                                  "keeps loaded on each replica at once (the least recently used "
                                  "idle one is unloaded for another); default: a simulator's "
                                  "profile max_loras, else 1 (vLLM's --max-loras default)")

    @model_validator(mode="after")
    def _engine_fields(self) -> DeploymentSpec:
        if self.engine == "simulator":
            replicas = 1 if self.replicas is None else self.replicas
            if not isinstance(replicas, int) or not 1 <= replicas <= 64:
                raise ValueError("a simulator deployment takes 'replicas: N' with 1 <= N <= 64")
            if not self.profile:
                raise ValueError("a simulator deployment needs 'profile:' (e.g. llama-3.1-8b-h100)")
            if self.provider:
                raise ValueError("'provider' is only for openai deployments")
        else:
            if self.replicas is None and self.provider is None:
                raise ValueError("an openai deployment takes 'replicas:' as a list of "
                                 "{url: http://host:port/v1}, or a 'provider:'")
            if self.replicas is not None and (not isinstance(self.replicas, list) or not self.replicas):
                raise ValueError("an openai deployment takes 'replicas:' as a list of {url: http://host:port/v1}")
            if self.profile:
                raise ValueError("'profile' is only for simulator deployments")
        return self
