"""Simulator profiles: the hardware/model numbers that drive the simulated engine.

A profile is *data*: a YAML file (built-ins live in ``profiles/``) validated once
into a frozen :class:`SimulatorProfile`. Nothing here runs per request. Loading
errors become a :class:`ValueError` whose message names the offending field and
says how to fix it, so an operator editing a YAML file gets a usable message.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["SimulatorProfile", "builtin_profiles", "load_profile"]

_PACKAGE = "inferenceops.engines.simulator"


class SimulatorProfile(BaseModel):
    """Numbers for one (model, hardware, engine settings) combination.

    Field descriptions double as the "how to fix" hint in load errors.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="a short identifier, e.g. 'llama-3.1-8b-h100'")
    description: str = Field(description="one line saying what this profile simulates")
    source: str = Field(description="where the numbers come from (measurement or estimate)")
    task: Literal["generate", "embed"] = Field(
        default="generate", description="'generate' (chat/completions) or 'embed' (embeddings)"
    )
    max_model_len: int = Field(gt=0, description="a positive context length in tokens")
    block_size: int = Field(default=16, gt=0, description="a positive KV block size in tokens")
    kv_cache_tokens: int = Field(
        gt=0, description="a KV-cache budget in tokens, at least max_model_len + one block"
    )
    max_num_seqs: int = Field(gt=0, description="a positive number of sequences run at once")
    max_num_batched_tokens: int = Field(
        default=8192, gt=0, description="a positive per-step token budget (chunked prefill)"
    )
    prefill_tokens_per_s: float = Field(gt=0, description="a positive prefill rate in tokens/s")
    decode_step_ms_base: float = Field(ge=0, description="a non-negative fixed step cost in ms")
    decode_step_ms_per_seq: float = Field(
        default=0.0, ge=0, description="a non-negative step cost per scheduled sequence in ms"
    )
    decode_step_ms_per_1k_context_tokens: float = Field(
        default=0.0,
        ge=0,
        description="a non-negative step cost per 1000 context tokens read by decoding, in ms",
    )
    prefix_cache_blocks: int = Field(
        default=0, ge=0, description="a non-negative prefix-cache capacity in blocks (0 = off)"
    )
    default_output_tokens: int = Field(
        default=256, gt=0, description="a positive output length used when min/max are unset"
    )
    output_tokens_min: int | None = Field(
        default=None, gt=0, description="a positive lower bound of the natural output length"
    )
    output_tokens_max: int | None = Field(
        default=None, gt=0, description="a positive upper bound of the natural output length"
    )
    max_loras: int = Field(default=0, ge=0, description="a non-negative number of LoRA slots")
    lora_load_ms: float = Field(default=0.0, ge=0, description="a non-negative adapter swap-in time in ms")
    lora_adapters: tuple[str, ...] = Field(
        default=(), description="a list of adapter names loaded at start (needs max_loras > 0)"
    )
    embedding_dim: int | None = Field(
        default=None, gt=0, description="a positive embedding size (required when task is embed)"
    )
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        default="fcfs", description="'fcfs' or 'priority' (vLLM's --scheduling-policy: requests "
        "carry a 'priority', lower first; other than 0 is refused under fcfs)"
    )
    time_scale: float = Field(
        default=1.0, gt=0, description="a positive factor on every simulated duration (1 = real)"
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> SimulatorProfile:
        # vLLM refuses to start when one max-length sequence cannot fit in the KV cache;
        # admission also keeps one spare block, hence the "+ 1".
        least = (-(-self.max_model_len // self.block_size) + 1) * self.block_size
        if self.kv_cache_tokens < least:
            raise ValueError(
                f"kv_cache_tokens must hold one max_model_len sequence plus a block ({least}); "
                "raise kv_cache_tokens or lower max_model_len"
            )
        if self.task == "embed" and self.embedding_dim is None:
            raise ValueError("embedding_dim is required when task is 'embed'; set it, e.g. 384")
        if (self.output_tokens_min is None) != (self.output_tokens_max is None):
            raise ValueError("output_tokens_min and output_tokens_max must be set together")
        if (
            self.output_tokens_min is not None
            and self.output_tokens_max is not None
            and self.output_tokens_min > self.output_tokens_max
        ):
            raise ValueError("output_tokens_min must be <= output_tokens_max; swap them")
        if self.lora_adapters and self.max_loras == 0:
            raise ValueError("lora_adapters needs max_loras > 0; set max_loras or drop them")
        return self

    def override(self, **changes: Any) -> SimulatorProfile:
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        data = self.model_dump()
        data.update(changes)
        return _validate(data, f"override of profile {self.name!r}")


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in ``profiles/``, sorted."""
    folder = resources.files(_PACKAGE).joinpath("profiles")
    return sorted(
        entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def load_profile(name_or_path: str) -> SimulatorProfile:
    """Load a built-in profile by name, or a YAML file by path.

    Raises ValueError naming the bad field and the fix.
    """
    builtin = resources.files(_PACKAGE).joinpath("profiles").joinpath(f"{name_or_path}.yaml")
    if "/" not in name_or_path and builtin.is_file():
        text, origin = builtin.read_text(encoding="utf-8"), f"built-in profile {name_or_path!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(
                f"simulator profile {name_or_path!r} is neither a built-in profile "
                f"({', '.join(builtin_profiles())}) nor a readable YAML file; "
                "pass one of those names or a path to a profile file"
            )
        text, origin = path.read_text(encoding="utf-8"), f"profile file {str(path)!r}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{origin} is not valid YAML: {exc}; fix the syntax") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{origin} must be a YAML mapping of field: value at the top level")
    return _validate(data, origin)


def _validate(data: dict[str, Any], origin: str) -> SimulatorProfile:
    try:
        return SimulatorProfile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_describe(exc, origin)) from None


def _describe(exc: ValidationError, origin: str) -> str:
    problems = []
    fields = SimulatorProfile.model_fields
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        field = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            known = ", ".join(fields)
            problems.append(f"unknown field {loc!r}; remove it or use one of: {known}")
        elif field in fields:
            hint = fields[field].description or "a valid value"
            got = err.get("input")
            shown = "missing" if err["type"] == "missing" else f"got {got!r}"
            problems.append(f"field {loc!r}: {err['msg']} ({shown}); set it to {hint}")
        else:
            # Cross-field check from the model validator: its message names fields and fix.
            problems.append(err["msg"].removeprefix("Value error, "))
    return f"invalid {origin}: " + "; ".join(problems)
