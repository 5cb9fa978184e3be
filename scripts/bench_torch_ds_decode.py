#!/usr/bin/env python3
"""The Double Sparsity decode chain in plain PyTorch, beside dsinfer-attention-bench (issue 7).

What a PyTorch implementation of the method runs, as the reference implementation
(github.com/andy-yang-1/DoubleSparse) runs it in eager mode: the label cache times the query's
heavy channels (one matmul; GQA: the group's query heads summed first, as dsinfer aggregates),
the kept tokens forced in (sink 4, recent 64, as dsinfer keeps them), torch.topk, the selected
K/V rows gathered (torch.gather), then SDPA over them with correct decode shapes (q of length
1, enable_gqa). Only PyTorch operators: the reference's own Triton sparse kernel is not run
here (its code is not ours to ship), so this is the method as PyTorch's stock kernels do it.
Each configuration is timed eagerly and as one captured CUDA graph (launch costs taken away,
the best case for a Python chain), and by stage (scores, top-k, gather + attention).

Variants: fp16 labels, 1/16 (r = 8, k = L/16) and 1/8 (r = 16, k = L/8); 4-bit labels are
dsinfer's own format and have no stock PyTorch path. Writes JSON (--out). With --ours (the
JSON of dsinfer-attention-bench from the same run) it prints, per configuration, PyTorch's
chain, ours, and our speed-up; with --sdpa (bench_sdpa_decode.py's JSON) also dense SDPA.
--table-from prints that table from an earlier run's JSON, on a machine without torch.
"""
import argparse
import json

from bench_shapes import KV_HEADS, model_list, names_in  # (same folder)

VARIANTS = {"ds 1/16 fp16 r8": (16, 8), "ds 1/8 fp16 r16": (8, 16)}
SINK, RECENT = 4, 64


def make_chain(q, labels, ch, k_cache, v_cache, budget):
    """Returns the chain's stages as closures over preallocated inputs: scores, select, attend."""
    import torch
    import torch.nn.functional as F
    b, hq, _, d = q.shape
    hkv, ctx, r = labels.shape[1], labels.shape[2], labels.shape[3]
    group = hq // hkv
    gqa = {"enable_gqa": True} if group > 1 else {}
    idx_ch = ch.view(1, hkv, r).expand(b, hkv, r)

    def scores():
        qs = q.view(b, hkv, group, d).sum(2)  # the group's query heads summed (GQA "sum")
        qc = torch.gather(qs, 2, idx_ch)  # [b, hkv, r]: the heavy channels
        s = torch.matmul(labels, qc.unsqueeze(-1)).squeeze(-1)  # [b, hkv, ctx]
        s[..., :SINK] = float("inf")  # kept tokens: sink and recent always selected
        s[..., ctx - RECENT:] = float("inf")
        return s

    def select(s):
        return torch.topk(s, budget, dim=-1, sorted=False).indices  # [b, hkv, budget]

    def attend(idx):
        rows = idx.unsqueeze(-1).expand(b, hkv, budget, d)
        ks = torch.gather(k_cache, 2, rows)
        vs = torch.gather(v_cache, 2, rows)
        return F.scaled_dot_product_attention(q, ks, vs, **gqa)

    return scores, select, attend


def graph_of(fn):
    """fn captured as one CUDA graph (warmed up on a side stream first, as PyTorch asks)."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g


def measure(model, hkv, batch, ctx, op, ratio, r, reps):
    import torch
    from bench_transformers import cuda_time  # (same folder)
    d, hq = 128, 32
    budget = ctx // ratio
    q = torch.randn(batch, hq, 1, d, device="cuda", dtype=torch.float16)
    k_cache = torch.randn(batch, hkv, ctx, d, device="cuda", dtype=torch.float16)
    v_cache = torch.randn(batch, hkv, ctx, d, device="cuda", dtype=torch.float16)
    labels = torch.randn(batch, hkv, ctx, r, device="cuda", dtype=torch.float16)
    ch = torch.stack([torch.randperm(d, device="cuda")[:r] for _ in range(hkv)])
    scores, select, attend = make_chain(q, labels, ch, k_cache, v_cache, budget)
    chain = lambda: attend(select(scores()))
    us = 1000.0 * cuda_time(chain, reps)
    g = graph_of(chain)
    us_graph = 1000.0 * cuda_time(g.replay, reps)
    del g
    s = scores()
    idx = select(s)
    us_score = 1000.0 * cuda_time(scores, reps)
    us_topk = 1000.0 * cuda_time(lambda: select(s), reps)
    us_attend = 1000.0 * cuda_time(lambda: attend(idx), reps)
    # Bytes as dsinfer-attention-bench counts them for its floor: labels plus the selected rows.
    pairs = batch * hkv
    nbytes = pairs * ctx * r * 2 + pairs * budget * d * 2 * 2
    del q, k_cache, v_cache, labels, s, idx
    torch.cuda.empty_cache()
    return {"model": model, "batch": batch, "context": ctx, "op": op, "budget": budget, "r": r,
            "us": us, "us_graph": us_graph, "us_score": us_score, "us_topk": us_topk,
            "us_attention": us_attend, "bytes": nbytes}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="torch_ds_decode.json")
    p.add_argument("--models", type=model_list, default="llama2-7b,llama3-8b")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--contexts", default="4096,16384,65536,131072,262144")
    p.add_argument("--variants", type=names_in(VARIANTS, "variant(s)"),
                   default=",".join(VARIANTS))
    p.add_argument("--max-gib", type=float, default=100.0, help="K/V bigger than this: skipped")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--ours", default="", help="dsinfer-attention-bench JSON to merge")
    p.add_argument("--sdpa", default="", help="bench_sdpa_decode.py JSON to merge")
    p.add_argument("--table-from", default="", help="this script's JSON: print its table only")
    a = p.parse_args()
    if a.table_from:
        with open(a.table_from) as f:
            print_table(json.load(f), a.ours, a.sdpa)
        return
    import torch
    res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": []}
    for model in a.models:
        hkv = KV_HEADS[model]
        for batch in [int(x) for x in a.batches.split(",")]:
            for ctx in [int(x) for x in a.contexts.split(",")]:
                if 2 * batch * hkv * ctx * 128 * 2 > a.max_gib * 2**30:
                    print(f"torch-ds {model} batch {batch} ctx {ctx}: skipped", flush=True)
                    continue
                for op in a.variants:
                    ratio, r = VARIANTS[op]
                    try:
                        row = measure(model, hkv, batch, ctx, op, ratio, r, a.reps)
                    except torch.cuda.OutOfMemoryError:  # reported, not guessed
                        torch.cuda.empty_cache()
                        print(f"torch-ds {model} batch {batch} ctx {ctx} {op}: out of GPU "
                              "memory; skipped", flush=True)
                        continue
                    res["results"].append(row)
                    print(f"torch-ds {model} batch {batch} ctx {ctx} {op}: eager "
                          f"{row['us']:.1f} us, graph {row['us_graph']:.1f} (scores "
                          f"{row['us_score']:.1f}, top-k {row['us_topk']:.1f}, gather + "
                          f"attention {row['us_attention']:.1f})", flush=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    if a.ours:
        print_table(res, a.ours, a.sdpa)


def print_table(res, ours_path, sdpa_path):
    with open(ours_path) as f:
        ours = json.load(f)
    mine = {(r["model"], r["batch"], r["context"], r["op"]): r for r in ours["results"]}
    sdpa = {}
    if sdpa_path:
        with open(sdpa_path) as f:
            sdpa = {(r["model"], r["batch"], r["context"]): r for r in json.load(f)["results"]}
    print(f"\n{res['gpu']}, torch {res['torch']}, fp16; us per layer and step")
    print("| heads | batch | ctx | variant | SDPA dense | PyTorch chain eager / graph | "
          "(scores / top-k / gather + attention) | PyTorch graph vs SDPA | ours | "
          "ours vs PyTorch graph / eager |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in res["results"]:
        key = (t["model"], t["batch"], t["context"])
        o = mine.get(key + (t["op"],))
        s = sdpa.get(key)
        cells = [t["model"], str(t["batch"]), f"{t['context'] // 1024}K", t["op"][3:],
                 f"{s['us']:.0f}" if s else "-", f"{t['us']:.0f} / {t['us_graph']:.0f}",
                 f"{t['us_score']:.0f} / {t['us_topk']:.0f} / {t['us_attention']:.0f}",
                 f"{s['us'] / t['us_graph']:.2f}x" if s else "-",
                 f"{o['us']:.1f}" if o else "-",
                 f"{t['us_graph'] / o['us']:.1f}x / {t['us'] / o['us']:.1f}x" if o else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
