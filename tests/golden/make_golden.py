#!/usr/bin/env python3
"""Writes the golden checkpoints and reference outputs the engine is tested against.

Run where PyTorch and Hugging Face transformers exist (the GPU host has them):

    python3 tests/golden/make_golden.py --out tests/data/golden

For each model below it writes DIR/NAME/ with:
  config.json, generation_config.json, model.safetensors  (save_pretrained, bf16)
  golden.json   prompt ids, greedy continuation, shapes, library versions
  logits.f32    raw little-endian float32 [prompt_len, vocab]: the fp32 model's logits at
                every prompt position (the model is the bf16 checkpoint upcast to fp32, which
                is exactly what dsinfer's CPU backend computes from)

Random weights are drawn with a fixed seed and scaled up (initializer_range 0.08, norms
perturbed around 1) so that logits are not flat and greedy decoding is not a run of ties.
"""
import argparse
import json
import os

import torch
import transformers

MODELS = {
    # Llama, GQA 4:2, head_dim 64 derived from hidden/heads, untied, default RoPE.
    "llama-gqa-hd64": dict(
        cls="LlamaForCausalLM", vocab_size=512, hidden_size=256, intermediate_size=512,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rope_theta=10000.0, tie_word_embeddings=False, rms_norm_eps=1e-5,
        max_position_embeddings=2048),
    # Llama 3 style: explicit head_dim 128 (hidden 192 != heads*head_dim), GQA 4:1,
    # llama3 RoPE scaling, tied embeddings.
    "llama3-hd128-tied": dict(
        cls="LlamaForCausalLM", vocab_size=384, hidden_size=192, intermediate_size=384,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1, head_dim=128,
        rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64)),
    # Mistral, MHA 4:4, head_dim 64.
    "mistral-mha": dict(
        cls="MistralForCausalLM", vocab_size=448, hidden_size=256, intermediate_size=640,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        rope_theta=1000000.0, tie_word_embeddings=False, rms_norm_eps=1e-6,
        max_position_embeddings=4096, sliding_window=None),
}
PROMPT_LEN = 144
GREEDY_TOKENS = 40


def build(name, spec, seed):
    spec = dict(spec)
    cls_name = spec.pop("cls")
    del name
    cfg_cls = transformers.MistralConfig if cls_name.startswith("Mistral") else transformers.LlamaConfig
    cfg = cfg_cls(initializer_range=0.08, bos_token_id=1, eos_token_id=[2, 3],
                  attn_implementation="eager", **spec)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    return model


def reference_outputs(m32, prompt, greedy_tokens):
    """The fp32 model's logits at every position of prompt [1, n] and its greedy
    continuation (full recompute each step) with the top-2 logit margin of each choice."""
    with torch.no_grad():
        logits = m32(prompt).logits[0].float().contiguous()
        ids = prompt.clone()
        greedy, margins = [], []
        for _ in range(greedy_tokens):
            last = m32(ids).logits[0, -1].double()
            top2 = torch.topk(last, 2).values
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            margins.append(float(top2[0] - top2[1]))
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], dim=1)
    return logits.cpu(), greedy, margins


def write_golden(d, name, prompt, logits, greedy, margins):
    """Writes d/logits.f32 and d/golden.json; returns the golden.json dict."""
    logits.numpy().astype("<f4").tofile(os.path.join(d, "logits.f32"))
    meta = dict(model=name, prompt_ids=prompt[0].tolist(), greedy_ids=greedy,
                greedy_top2_margin=margins, logits_shape=list(logits.shape),
                max_abs_logit=float(logits.abs().max()),
                transformers=transformers.__version__, torch=torch.__version__)
    with open(os.path.join(d, "golden.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    for i, (name, spec) in enumerate(MODELS.items()):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        model = build(name, spec, args.seed + i)
        model.generation_config.eos_token_id = [2, 3]
        model.generation_config.bos_token_id = 1
        model.save_pretrained(d, safe_serialization=True)
        # The reference is the saved checkpoint loaded fresh in fp32: weights upcast from bf16,
        # RoPE frequencies computed in fp32 (casting the live bf16 model instead would carry
        # bf16-rounded inv_freq buffers into the reference).
        cls = getattr(transformers, spec["cls"])
        m32 = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        assert m32.model.rotary_emb.inv_freq.dtype == torch.float32
        g = torch.Generator().manual_seed(args.seed + 100 + i)
        prompt = torch.randint(4, spec["vocab_size"], (1, PROMPT_LEN), generator=g)
        logits, greedy, margins = reference_outputs(m32, prompt, GREEDY_TOKENS)
        meta = write_golden(d, name, prompt, logits, greedy, margins)
        print(name, "max|logit|", meta["max_abs_logit"], "min greedy margin", min(margins))


if __name__ == "__main__":
    main()
