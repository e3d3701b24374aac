"""Simulator profiles: built-ins load, the H100 numbers hold together, bad data is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferenceops.engines.simulator import SimulatorProfile, builtin_profiles, load_profile

_MINIMAL = """\
name: mine
description: d
source: s
max_model_len: 1024
kv_cache_tokens: 4096
max_num_seqs: 8
prefill_tokens_per_s: 1000
decode_step_ms_base: 1
"""


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return str(path)


def test_builtins_load_and_are_documented() -> None:
    names = builtin_profiles()
    assert {"llama-3.1-8b-h100", "embed-minilm-cpu", "test-fast", "test-embed"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.description and profile.source


def test_h100_profile_numbers() -> None:
    p = load_profile("llama-3.1-8b-h100")
    assert p.task == "generate" and p.time_scale == 1.0
    kv_bytes_per_token = 2 * 32 * 8 * 128 * 2
    assert kv_bytes_per_token == 128 * 1024
    assert p.kv_cache_tokens * kv_bytes_per_token == 53 * 1024**3  # 53 GiB for KV
    assert p.max_num_seqs == 256 and p.block_size == 16 and p.max_model_len == 131072
    assert 10_000 <= p.prefill_tokens_per_s <= 20_000
    assert 6.0 <= p.decode_step_ms_base <= 9.0
    assert p.max_loras == 4 and 10 <= p.lora_load_ms <= 100
    assert "estimate" in p.source.lower()


def test_embed_profiles() -> None:
    assert load_profile("embed-minilm-cpu").embedding_dim == 384
    assert load_profile("test-embed").task == "embed"


def test_profile_is_frozen() -> None:
    p = load_profile("test-fast")
    with pytest.raises(ValueError):
        p.max_num_seqs = 9  # type: ignore[misc]


def test_load_from_path(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, _MINIMAL))
    assert isinstance(p, SimulatorProfile) and p.name == "mine" and p.task == "generate"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("max_num_seqs: 0", "max_num_seqs"),
        ("prefill_tokens_per_s: fast", "prefill_tokens_per_s"),
        ("max_num_sequences: 4", "max_num_sequences"),
        ("task: train", "task"),
        ("kv_cache_tokens: 512", "kv_cache_tokens"),
        ("task: embed", "embedding_dim"),
        ("output_tokens_min: 5", "output_tokens_max"),
        ("lora_adapters: [a]", "max_loras"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, change: str, field: str) -> None:
    key = change.split(":")[0]
    lines = [line for line in _MINIMAL.splitlines() if not line.startswith(key + ":")]
    with pytest.raises(ValueError) as info:
        load_profile(_write(tmp_path, "\n".join([*lines, change]) + "\n"))
    message = str(info.value)
    assert field in message
    assert "profile.yaml" in message


def test_missing_field_says_how_to_fix(tmp_path: Path) -> None:
    text = "\n".join(line for line in _MINIMAL.splitlines() if "max_num_seqs" not in line)
    with pytest.raises(ValueError, match=r"max_num_seqs.*missing.*set it to a positive"):
        load_profile(_write(tmp_path, text))


def test_unknown_name_lists_builtins() -> None:
    with pytest.raises(ValueError, match="test-fast"):
        load_profile("no-such-profile")


def test_not_yaml_or_not_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YAML"):
        load_profile(_write(tmp_path, "name: [unclosed"))
    with pytest.raises(ValueError, match="mapping"):
        load_profile(_write(tmp_path, "- a\n- b\n"))


def test_override_revalidates() -> None:
    p = load_profile("test-fast")
    assert p.override(max_num_seqs=2).max_num_seqs == 2
    with pytest.raises(ValueError, match="max_num_seqs"):
        p.override(max_num_seqs=-1)
