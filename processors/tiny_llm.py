"""A tiny Llama-architecture language model, made offline in seconds: for the LLM demo and the tests.

Nothing is downloaded. A byte-level BPE tokenizer is trained with `tokenizers` on local text (Ferry's own docs
by default), and `transformers`' LlamaConfig gets random weights (seeded: the same files every time), saved as
safetensors with a chat template, in the Hugging Face layout vLLM loads. It answers in gibberish, but through
the real engine: tokenization, the chat template, the KV cache, sampling, streaming, /metrics.

Run with the engine environment's python (it has transformers, tokenizers and torch; Ferry's own does not):

    <engine python> -m processors.tiny_llm TARGET_DIR [--text FILE_OR_DIR ...]

vLLM's CPU attention needs a head size of at least 64: hidden 128 with 2 heads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SEED = 17
VOCAB_SIZE = 512
HIDDEN_SIZE = 128
HEADS = 2
LAYERS = 2
MAX_POSITIONS = 1024
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|end|>"]
# What /v1/chat/completions renders messages with (Jinja, as Hugging Face tokenizers carry it).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MARKER = "tiny-llm.json"  # written last: a directory holding it is complete


def make_tiny_llm(target_dir: Path, texts: list[Path] | None = None) -> Path:
    """Writes the model into `target_dir` (kept when already complete) and returns it."""
    target_dir = Path(target_dir)
    if (target_dir / MARKER).is_file():
        return target_dir
    # Instances run as users of their own and read it in place: every directory made here is searchable
    # whatever the umask (`make run` sets 077), parents included (a private `models/` made here first would
    # hide the other demo models too).
    missing = [d for d in [target_dir, *target_dir.parents] if not d.exists()]
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
        os.chmod(made, 0o755)
    corpus = _corpus(texts or [Path(__file__).resolve().parent.parent / "docs"])
    _save_tokenizer(target_dir, corpus)
    _save_model(target_dir)
    for path in target_dir.iterdir():
        os.chmod(path, 0o644)
    (target_dir / MARKER).write_text(json.dumps({"seed": SEED, "vocab_size": VOCAB_SIZE, "hidden_size": HIDDEN_SIZE,
                                                 "layers": LAYERS, "heads": HEADS}))
    os.chmod(target_dir / MARKER, 0o644)
    return target_dir


def _corpus(texts: list[Path]) -> list[str]:
    files = []
    for path in texts:
        files += sorted(path.rglob("*.md")) if path.is_dir() else [path]
    lines = [line for file in files for line in file.read_text(errors="replace").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"no text to train the tokenizer on in {', '.join(map(str, texts))}")
    return lines


def _save_tokenizer(target_dir: Path, corpus: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer=trainer)  # deterministic for a given corpus
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", pad_token="<|pad|>",
                                   model_max_length=MAX_POSITIONS)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(target_dir))


def _save_model(target_dir: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN_SIZE, intermediate_size=HIDDEN_SIZE * 2,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS, bos_token_id=0, eos_token_id=1, pad_token_id=2,
        tie_word_embeddings=True, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(target_dir), safe_serialization=True)
    # Sampling defaults vLLM reads: none that would stop generation early (the weights are random).
    GenerationConfig(bos_token_id=0, eos_token_id=1, pad_token_id=2).save_pretrained(str(target_dir))


LORA_RANK = 8
LORA_TARGETS = ("q_proj", "v_proj")


def make_lora_adapter(target_dir: Path, base_dir: Path, seed: int) -> Path:
    """A LoRA adapter of the tiny model (PEFT's layout: adapter_config.json and adapter_model.safetensors), with
    seeded random weights, so that adapters made with different seeds answer differently: for the model mesh's
    adapter pools (docs/mesh.md). Kept when already complete."""
    import torch
    from safetensors.torch import save_file

    target_dir = Path(target_dir)
    if (target_dir / "adapter_model.safetensors").is_file():
        return target_dir
    target_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(target_dir, 0o755)
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(LAYERS):
        for module in LORA_TARGETS:
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(LORA_RANK, HIDDEN_SIZE, generator=generator) * 0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(HIDDEN_SIZE, LORA_RANK, generator=generator) * 0.5
    save_file(tensors, str(target_dir / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": LORA_RANK, "lora_alpha": 2 * LORA_RANK,
              "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "target_modules": list(LORA_TARGETS),
              "base_model_name_or_path": str(base_dir), "modules_to_save": None}
    (target_dir / "adapter_config.json").write_text(json.dumps(config))
    for path in target_dir.iterdir():
        os.chmod(path, 0o644)
    return target_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m processors.tiny_llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("target_dir", type=Path)
    parser.add_argument("--text", type=Path, action="append", help="a text file or a directory of .md files")
    parser.add_argument("--lora-of", type=Path, help="make a LoRA adapter of this tiny model instead")
    parser.add_argument("--seed", type=int, default=1, help="the adapter's seed (with --lora-of)")
    args = parser.parse_args(argv)
    if args.lora_of:
        print(make_lora_adapter(args.target_dir, args.lora_of, args.seed))
    else:
        print(make_tiny_llm(args.target_dir, args.text))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
