#!/usr/bin/env python3
"""A random-weight checkpoint at a real model's shape, for timing dsinfer-run end to end on
the GPU host (scripts/bench-long-prefill.sh): config.json + bf16 safetensors written by
transformers' save_pretrained, a random Double Sparsity channel config of the same shape
(double_sparsity_channels.json, which Model::Load picks up from the model directory) and a
prompt of random token ids. Speed does not depend on the weights' values or on which channels
a calibration would pick. Needs torch and transformers (the GPU host has both).

  python3 scripts/make_random_checkpoint.py --shape llama3-8b --out DIR --prompt-tokens 262144
"""
import argparse
import json
import os
import random

import torch
import transformers


def config_for(shape):
    common = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, rms_norm_eps=1e-5, torch_dtype="bfloat16",
                  tie_word_embeddings=False)
    if shape == "llama3-8b":  # Llama-3.1-8B
        return transformers.LlamaConfig(
            vocab_size=128256, num_key_value_heads=8, max_position_embeddings=524288,
            rope_theta=500000.0, bos_token_id=128000, eos_token_id=128001,
            rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=8192),
            **common)
    if shape == "llama2-7b":
        common["intermediate_size"] = 11008
        return transformers.LlamaConfig(vocab_size=32000, num_key_value_heads=32,
                                        max_position_embeddings=524288, bos_token_id=1,
                                        eos_token_id=2, **common)
    raise SystemExit(f"unknown shape {shape}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama3-8b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=0,
                    help="also write prompt_ids.txt with this many random ids")
    ap.add_argument("--seed", type=int, default=20261128)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    config = config_for(args.shape)
    torch.manual_seed(args.seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="20GB")
    rng = random.Random(args.seed)
    d = config.hidden_size // config.num_attention_heads
    channels = {}
    for layer in range(config.num_hidden_layers):
        name = f"model.layers.{layer}.self_attn."
        for proj, heads in (("q_proj", config.num_attention_heads),
                            ("k_proj", config.num_key_value_heads),
                            ("qk_proj", config.num_attention_heads)):
            channels[name + proj] = [rng.sample(range(d), d) for _ in range(heads)]
    with open(os.path.join(args.out, "double_sparsity_channels.json"), "w") as f:
        json.dump(channels, f)
    if args.prompt_tokens:
        with open(os.path.join(args.out, "prompt_ids.txt"), "w") as f:
            f.write(",".join(str(rng.randrange(1000, config.vocab_size - 1000))
                             for _ in range(args.prompt_tokens)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
