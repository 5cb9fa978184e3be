#!/usr/bin/env python3
"""PyTorch SDPA decode attention beside dsinfer-attention-bench (issue 7), same GPU, same run.

Decode shapes done right: q of length 1 per sequence, [batch, 32, 1, 128]; K/V
[batch, kv_heads, context, 128] fp16; Llama-2-7B heads (32 kv, MHA) and Llama-3-8B heads
(8 kv, GQA via enable_gqa, never by expanding K/V). Reports the median over repetitions (CUDA
events, each call timed alone) and K/V bytes read / time. Configurations whose K/V exceed
--max-gib are skipped, as in the C++ bench. Writes JSON (--out). With --ours (the JSON of
dsinfer-attention-bench from the same run) it also prints the merged markdown table of
docs/benchmarks.md ("CUDA Double Sparsity"): per configuration, microseconds and the ratio to
the byte floor for our dense, SDPA and each Double Sparsity variant, and DS's speed-up over
both dense baselines.
"""
import argparse
import json

import torch
import torch.nn.functional as F

from bench_shapes import KV_HEADS, model_list  # (same folder)
from bench_transformers import cuda_time, save_and_merge  # (same folder)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="sdpa_decode.json")
    p.add_argument("--models", type=model_list, default="llama2-7b,llama3-8b")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--contexts", default="4096,16384,65536,131072,262144")
    p.add_argument("--max-gib", type=float, default=56.0)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--ours", default="", help="dsinfer-attention-bench JSON to merge")
    a = p.parse_args()
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": []}
    for model in a.models:
        hkv = KV_HEADS[model]
        for batch in [int(x) for x in a.batches.split(",")]:
            for ctx in [int(x) for x in a.contexts.split(",")]:
                kv_bytes = 2 * batch * hkv * ctx * 128 * 2
                if kv_bytes > a.max_gib * 2**30:
                    print(f"sdpa {model} batch {batch} ctx {ctx}: skipped", flush=True)
                    continue
                q = torch.randn(batch, 32, 1, 128, device="cuda", dtype=torch.float16)
                k = torch.randn(batch, hkv, ctx, 128, device="cuda", dtype=torch.float16)
                v = torch.randn(batch, hkv, ctx, 128, device="cuda", dtype=torch.float16)
                kw = {"enable_gqa": True} if hkv != 32 else {}
                try:
                    us = 1000.0 * cuda_time(
                        lambda: F.scaled_dot_product_attention(q, k, v, **kw), a.reps)
                except TypeError:  # torch < 2.5 has no enable_gqa: not measured, not faked
                    print(f"sdpa {model}: this torch has no enable_gqa; skipped", flush=True)
                    del q, k, v
                    continue
                tbps = kv_bytes / us / 1e6
                res["results"].append({"model": model, "batch": batch, "context": ctx,
                                       "us": us, "bytes": kv_bytes, "TBps": tbps})
                print(f"sdpa {model} batch {batch} ctx {ctx}: {us:.1f} us, {tbps:.2f} TB/s",
                      flush=True)
                del q, k, v
                torch.cuda.empty_cache()
    save_and_merge(res, a.out, a.ours, print_table)


def print_table(ours_path, sdpa):
    with open(ours_path) as f:
        ours = json.load(f)
    hbm = ours["hbm_gbps"] * 1e9
    by_key = {}
    for r in ours["results"]:
        by_key.setdefault((r["model"], r["batch"], r["context"]), {})[r["op"]] = r
    sd = {(r["model"], r["batch"], r["context"]): r for r in sdpa["results"]}
    variants = [op for op in next(iter(by_key.values())).keys() if op != "dense"] if by_key else []
    print(f"\n{ours['gpu']}, HBM {hbm / 1e9:.0f} GB/s (D2D), fp16; us (x byte floor)")
    head = "| heads | batch | ctx | dense | SDPA | " + " | ".join(variants) + " | best DS vs dense / SDPA |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for key in sorted(by_key, key=lambda k: (k[0], k[1], k[2])):
        row = by_key[key]
        dense = row["dense"]
        s = sd.get(key)
        cells = [key[0], str(key[1]), f"{key[2] // 1024}K",
                 f"{dense['us']:.0f} ({dense['us'] / dense['floor_us']:.2f})"]
        cells.append(f"{s['us']:.0f} ({s['us'] / dense['floor_us']:.2f})" if s else "-")
        best = None
        for v in variants:
            r = row.get(v)
            if r is None:
                cells.append("-")
                continue
            cells.append(f"{r['us']:.1f} ({r['us'] / r['floor_us']:.2f})")
            best = r if best is None or r["us"] < best["us"] else best
        if best:
            vs_sdpa = f"{s['us'] / best['us']:.1f}x" if s else "-"
            cells.append(f"{dense['us'] / best['us']:.1f}x / {vs_sdpa}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
