#!/usr/bin/env python3
"""Baselines for dsinfer-bench, measured on the same GPU in the same run (issue 6):

* Hugging Face transformers `generate` (greedy, sdpa attention, bf16) on a Llama-2-7B-shaped
  model with random weights: ms per decoded token at a 4K prompt, batch 1 and 8
  (time(generate 1 + N tokens) - time(generate 1 token)) / N.
* PyTorch SDPA decode attention (q length 1, fp16, 32 x 128 heads): KV bytes read / time.

Writes JSON (--out) and prints a short table.
"""
import argparse
import json
import time

import torch


def cuda_time(fn, reps):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def save_and_merge(res, out_path, ours_path, print_table):
    """Writes the SDPA results as JSON; with ours_path (a dsinfer-attention-bench JSON of the same
    run) also prints the merged table (print_table(ours_path, res))."""
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)
    if ours_path:
        print_table(ours_path, res)


def sdpa(results):
    import torch.nn.functional as F
    for batch, ctx in [(1, 4096), (8, 4096), (1, 32768), (8, 32768)]:
        q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.float16)
        k = torch.randn(batch, 32, ctx, 128, device="cuda", dtype=torch.float16)
        v = torch.randn_like(k)
        ms = cuda_time(lambda: F.scaled_dot_product_attention(q, k, v), 50)
        tbps = 2 * k.numel() * 2 / (ms * 1e-3) / 1e12
        results["sdpa_decode"].append({"batch": batch, "context": ctx, "ms": ms, "TBps": tbps})
        print(f"sdpa decode batch {batch} ctx {ctx}: {ms:.3f} ms, {tbps:.2f} TB/s", flush=True)
        del q, k, v


def generate(results, new_tokens):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=8192)
    cfg._attn_implementation = "sdpa"
    torch.set_default_dtype(torch.bfloat16)
    t0 = time.time()
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.eval()
    print(f"random Llama-2-7B shape built in {time.time() - t0:.1f} s", flush=True)
    for batch in (1, 8):
        ids = torch.randint(0, 32000, (batch, 4096), device="cuda")
        def run(n):
            with torch.no_grad():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                               min_new_tokens=n, do_sample=False, pad_token_id=0)
        run(2)
        torch.cuda.synchronize()
        def wall(n):
            torch.cuda.synchronize()
            t = time.time()
            run(n)
            torch.cuda.synchronize()
            return time.time() - t
        t1 = wall(1)
        tn = wall(1 + new_tokens)
        ms = (tn - t1) / new_tokens * 1e3
        results["generate"].append({"model": "llama2-7b", "batch": batch, "context": 4096,
                                    "ms_per_step": ms, "tokens_per_s": batch / (ms * 1e-3),
                                    "prefill_s": t1})
        print(f"transformers generate llama2-7b batch {batch} ctx 4096: {ms:.1f} ms/step "
              f"(prefill+1 token {t1:.2f} s)", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="transformers.json")
    p.add_argument("--new-tokens", type=int, default=16)
    a = p.parse_args()
    results = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "sdpa_decode": [], "generate": []}
    try:
        import transformers
        results["transformers"] = transformers.__version__
    except ImportError:
        pass
    sdpa(results)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)
    generate(results, a.new_tokens)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
