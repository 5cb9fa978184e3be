#!/usr/bin/env python3
"""PyTorch SDPA causal prefill attention beside dsinfer-attention-bench's prefill section.

One prompt of L tokens attending causally over itself, bf16, head_dim 128: q [1, 32, L, 128],
K/V [1, kv_heads, L, 128]; Llama-2-7B heads (32 kv) and Llama-3-8B heads (8 kv). Each SDPA
backend PyTorch has on this GPU (flash, cuDNN, memory-efficient) is timed on its own (CUDA
events, median over repetitions). GQA goes through enable_gqa where the backend takes it, else
K/V are expanded to 32 heads before timing (the copy is not timed; the JSON says which).
FLOPs = 4·L²·d·Hq / 2, as the C++ bench counts them. Writes JSON (--out). With --ours (the
JSON of dsinfer-attention-bench from the same run) it prints the merged markdown table of
docs/benchmarks.md ("Prefill attention"): our fastest tensor-core body's ms and TFLOP/s beside each
backend's, and the ratio to the fastest.
"""
import argparse
import json
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench_transformers import cuda_time, save_and_merge  # (same folder)

BACKENDS = (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION))


def time_backend(backend, q, k, v, reps):
    """(ms, how GQA was done) or None where the backend refuses these inputs."""
    hq, hkv = q.shape[1], k.shape[1]
    tries = [("native", {})] if hq == hkv else [("enable_gqa", {"enable_gqa": True}),
                                                ("expanded", {})]
    for how, kw in tries:
        kk, vv = k, v
        if how == "expanded":
            kk = k.repeat_interleave(hq // hkv, dim=1)
            vv = v.repeat_interleave(hq // hkv, dim=1)
        try:
            with sdpa_kernel(backend):
                ms = cuda_time(
                    lambda: F.scaled_dot_product_attention(q, kk, vv, is_causal=True, **kw), reps)
            return ms, how
        except (RuntimeError, TypeError):
            continue
        finally:
            torch.cuda.synchronize()
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="sdpa_prefill.json")
    p.add_argument("--lengths", default="4096,32768")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ours", default="", help="dsinfer-attention-bench JSON to merge")
    a = p.parse_args()
    # A backend that declines an input warns before raising; the JSON says which ran.
    warnings.filterwarnings("ignore", category=UserWarning)
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": []}
    for length in [int(x) for x in a.lengths.split(",")]:
        for model, hkv in (("llama2-7b", 32), ("llama3-8b", 8)):
            q = torch.randn(1, 32, length, 128, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, hkv, length, 128, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(1, hkv, length, 128, device="cuda", dtype=torch.bfloat16)
            flops = 4.0 * length * length * 128 * 32 / 2
            for name, backend in BACKENDS:
                got = time_backend(backend, q, k, v, a.reps)
                if got is None:
                    print(f"sdpa {name} {model} {length}: not available", flush=True)
                    continue
                ms, how = got
                tflops = flops / (ms * 1e-3) / 1e12
                res["results"].append({"model": model, "tokens": length, "backend": name,
                                       "gqa": how, "ms": ms, "tflops": tflops})
                print(f"sdpa {name} {model} {length}: {ms:.2f} ms, {tflops:.1f} TFLOP/s ({how})",
                      flush=True)
            del q, k, v
            torch.cuda.empty_cache()
    save_and_merge(res, a.out, a.ours, print_table)


def print_table(ours_path, sdpa):
    with open(ours_path) as f:
        ours = json.load(f)
    mine = {}  # the fastest of our tensor-core bodies (and repeats) at each shape
    for r in ours.get("prefill", []):
        key = (r["model"], r["tokens"])
        if r["body"] != "simt" and (key not in mine or r["ms"] < mine[key]["ms"]):
            mine[key] = r
    by_key = {}
    for r in sdpa["results"]:
        by_key.setdefault((r["model"], r["tokens"]), {})[r["backend"]] = r
    names = [n for n, _ in BACKENDS]
    print(f"\n{ours['gpu']}: causal prefill attention, bf16, d 128; ms (TFLOP/s); "
          f"cuBLAS bf16 {ours.get('cublas_bf16_tflops', 0):.0f} TFLOP/s")
    head = "| heads | tokens | ours (fastest body) | " + " | ".join(f"SDPA {n}" for n in names) + \
        " | ours vs fastest SDPA |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for key in sorted(by_key, key=lambda k: (k[0], k[1])):
        m = mine.get(key)
        cells = [f"{m['ms']:.2f} ({m['tflops']:.0f}, {m['body']})" if m else "—"]
        best = None
        for n in names:
            r = by_key[key].get(n)
            cells.append(f"{r['ms']:.2f} ({r['tflops']:.0f})" if r else "—")
            if r and (best is None or r["ms"] < best):
                best = r["ms"]
        ratio = f"{best / m['ms']:.2f}x" if m and best else "—"
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {ratio} |")


if __name__ == "__main__":
    main()
