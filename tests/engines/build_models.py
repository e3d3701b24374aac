"""Build the engine tier's tiny model and LoRA adapter, offline, into a cache folder.

Runs in the vLLM virtualenv (it has torch, transformers, tokenizers and peft):

    .engines/vllm/bin/python tests/engines/build_models.py .engines/models

and prints the folder of the build, ``ROOT/<key>``, which holds

- ``model/``: a Llama with random weights (fixed seed) small enough for vLLM on
  two CPU cores, and a byte-level BPE tokenizer (vocabulary 1024) trained on
  the Python standard library's sources, with a ChatML chat template and
  ``<|im_end|>`` as end of sequence (../shared/ENGINES.md);
- ``lora/``: a LoRA adapter for it (r=8 on q_proj and v_proj, random weights,
  so it changes the model's answers).

``key`` is a hash of everything the build depends on (this file, Python's and
the libraries' versions), so a build is reused until one of them changes; older
builds are removed. A build is made in a temporary folder and renamed into
place, so an interrupted build never looks finished. Output is gibberish by
design: tests assert on shapes, usage, streaming, errors and routing, never text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SEED = 20251204
VOCAB_SIZE = 1024
#: At most this much standard-library source trains the tokenizer (a few seconds on 2 cores).
TRAINING_TEXT_BYTES = 4_000_000
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|im_end|>"
PAD = "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MODEL_SHAPE = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 2, "num_key_value_heads": 2,
    "head_dim": 32,  # vLLM's CPU attention rejects head sizes below 32
    "max_position_embeddings": 512,
}
LORA = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "peft")


def build_key() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(sys.version.encode())
    for name in LIBRARIES:
        digest.update(f"{name}=={importlib.metadata.version(name)}".encode())
    return digest.hexdigest()[:16]


def training_text() -> Iterator[str]:
    """The standard library's top-level modules, in name order, up to TRAINING_TEXT_BYTES."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    total = 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        yield text
        total += len(text)
        if total >= TRAINING_TEXT_BYTES:
            return


def build_tokenizer(out: Path) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(training_text(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD,
                                   model_max_length=MODEL_SHAPE["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tokenizer: object) -> object:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(EOS)  # type: ignore[attr-defined]
    pad_id = tokenizer.convert_tokens_to_ids(PAD)  # type: ignore[attr-defined]
    torch.manual_seed(SEED)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=None, eos_token_id=eos_id,  # type: ignore[arg-type]
                         pad_token_id=pad_id, tie_word_embeddings=False, **MODEL_SHAPE)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id).save_pretrained(out)
    return model


def build_lora(out: Path, model: object) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(SEED + 1)
    config = LoraConfig(task_type="CAUSAL_LM", init_lora_weights=False, **LORA)
    get_peft_model(model, config).save_pretrained(out, safe_serialization=True)  # type: ignore[arg-type]


def build(root: Path) -> Path:
    """The finished build for today's inputs under ``root`` (made now if missing)."""
    key = build_key()
    final = root / key
    if (final / "build.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    work.chmod(0o755)
    try:
        tokenizer = build_tokenizer(work / "model")
        model = build_model(work / "model", tokenizer)
        build_lora(work / "lora", model)
        (work / "build.json").write_text(json.dumps({
            "key": key, "seed": SEED, "seconds": round(time.monotonic() - started, 1),
            "python": sys.version.split()[0],
            "libraries": {n: importlib.metadata.version(n) for n in LIBRARIES},
        }, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(work, final)
        except OSError:  # another process finished the same build first: keep theirs
            if not (final / "build.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in root.iterdir():  # builds for other inputs, and leftovers of interrupted ones
        if stale.name != key and stale.is_dir() and not stale.name.startswith(f".{key}-"):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def main() -> int:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} CACHE_ROOT", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    print(build(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
