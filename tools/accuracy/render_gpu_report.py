#!/usr/bin/env python3
"""Renders docs/accuracy.md from the GPU run (tools/accuracy/gpu_report.sh's OUT_DIR), with
the CPU run of make_report.sh (tools/accuracy/results/) as the cross-check section.

    /usr/bin/python3 tools/accuracy/render_gpu_report.py --gpu OUT_DIR [--cpu tools/accuracy/results] \
        [--card "NVIDIA H100"] --out docs/accuracy.md

Every number on the page comes from the JSON files; the sentences under "What the data says"
are computed from them too (which lever helps most at 1/8, whether a target is met), so a
rerun rewrites them consistently. A missing job leaves its rows out and is listed.
"""
import argparse
import glob
import os

from report_common import HERE, RATIOS, ROOT, frac, load, ppl_runs, ret_runs

CONTEXTS = [("1k", 1024), ("2k", 2048), ("4k", 4096), ("8k", 8192)]


def change(run, dense):
    return 100 * (run["perplexity"] / dense["perplexity"] - 1)


def ppl_cell(j, key):
    runs = ppl_runs(j)
    if key not in runs or "dense" not in runs:
        return "—"
    return f"{runs[key]['perplexity']:.3f} ({change(runs[key], runs['dense']):+.2f}%)"


def ppl_change(j, key):
    runs = ppl_runs(j)
    if key not in runs or "dense" not in runs:
        return None
    return change(runs[key], runs["dense"])


def ret_count(j, key, length):
    run = ret_runs(j).get(key)
    if run is None or str(length) not in run["by_length"]:
        return None
    b = run["by_length"][str(length)]
    return b["correct"], b["total"]


def ret_cell(j, key, length):
    c = ret_count(j, key, length)
    return "—" if c is None else f"{c[0]}/{c[1]} ({c[0] / c[1]:.2f})"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu", required=True, help="gpu_report.sh's OUT_DIR")
    ap.add_argument("--cpu", default=os.path.join(HERE, "results"))
    ap.add_argument("--card", default="", help="the GPU, as the run's host named it")
    ap.add_argument("--gpu-dir-name", default="", help="where the GPU JSON is kept (for the page)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "accuracy.md"))
    a = ap.parse_args()
    G = {os.path.basename(p)[:-5]: load(a.gpu, os.path.basename(p)[:-5])
         for p in glob.glob(os.path.join(a.gpu, "*.json"))}
    C = {os.path.basename(p)[:-5]: load(a.cpu, os.path.basename(p)[:-5])
         for p in glob.glob(os.path.join(a.cpu, "*.json"))}
    # gpu_report.sh splits each full perplexity matrix into ppl-CTX-full-BITSAGG jobs: merge
    # them (same windows, so their dense runs agree; the first one's is kept).
    for tag, _ in CONTEXTS:
        parts = [G[n] for n in sorted(G) if n.startswith(f"ppl-{tag}-full-") and G[n]]
        if parts and f"ppl-{tag}-full" not in G:
            merged = dict(parts[0])
            merged["runs"] = [parts[0]["runs"][0]] + [r for j in parts for r in j["runs"][1:]]
            G[f"ppl-{tag}-full"] = merged
    g = lambda n: G.get(n)
    jobs_listed = []
    jl = os.path.join(a.gpu, "jobs.txt")
    if os.path.exists(jl):
        jobs_listed = [ln.split("|")[0] for ln in open(jl) if "|" in ln]
    missing = [n for n in jobs_listed if G.get(n) is None]
    wall = sum(j.get("_wall", 0) for n, j in G.items()
               if j and n not in ("channels-gpu", "channels-more") and not n.endswith("-full"))
    where = a.gpu_dir_name or a.gpu

    L = []
    w = L.append
    w("# Accuracy of Double Sparsity on the demo model")
    w("")
    w(f"Measured on the **CUDA engine**{' (' + a.card + ')' if a.card else ''} by "
      "`bash tools/accuracy/gpu_report.sh BIN_DIR OUT_DIR` (calibration with "
      "`dsinfer-calibrate --device cuda`, measurements with `dsinfer-eval --device cuda`), this "
      f"page by `tools/accuracy/render_gpu_report.py`; raw JSON per job in `{where}`. The "
      "earlier CPU-engine run (`tools/accuracy/make_report.sh`, small samples) is kept as the "
      "cross-check section at the end. Issue 10. Model: `models/demo` (8 layers, 4 query / 2 KV "
      "heads of head_dim 128, GQA 2:1, max_position 8192; see `models/demo/README.md`).")
    w("")
    w("## How it was measured")
    w("")
    p2 = g("ppl-2k-full") or {}
    w(f"- **Perplexity**: held-out text disjoint from the calibration text "
      f"(`tools/accuracy/prepare_data.py`), {p2.get('windows', '?')} consecutive windows per "
      "context (BOS + window-1 tokens each); the last 512 positions of each window run one by one "
      f"as decode rows (the rows Double Sparsity applies to) and are scored: "
      f"{p2.get('scored', '?')} scored positions per context and config, pooled. Dense and every "
      "sparse run score exactly the same positions; each context scores different text, so only "
      "changes vs dense within a context compare.")
    r2 = ret_runs(g("ret-2k-full")).get("dense")
    n_ret = r2["by_length"]["2048"]["total"] if r2 else "?"
    w(f"- **Retrieval**: {n_ret} prompts per length class: the 20 committed ones "
      "(`tests/data/eval/retrieval.jsonl`) and 40 more assembled from their token pieces by "
      "`tools/accuracy/expand_retrieval.py` (fresh keys, values and asked positions, exactly the "
      "ids `tools/train/kv_retrieval.py` would make). The list is a dense prefill; the question "
      "and the 6 answer tokens are decode rows. Correct = greedy answer equals the value exactly.")
    w("- **Double Sparsity**: explicit `double_sparse` mode, budget = ratio x context with the "
      "kept tokens (sink 4, recent 64 by default) counted inside it; engine defaults dense_layers "
      "2, r = 16 label channels per KV head, fp16 labels, sum aggregation, channels of the "
      "committed `models/demo/double_sparsity_channels.json` (qk statistic) unless a row says "
      "otherwise.")
    w(f"- **Cost**: {wall:.0f} s of dsinfer-eval wall time summed over jobs (they ran several at "
      "once on the one GPU). The CUDA engine does not count tokens attended nor measure recall "
      "(its selection runs on the device); those come from the CPU run below.")
    if missing:
        w(f"- **Missing jobs** (failed or not run): {', '.join(missing)}.")
    on_cpu = sorted(n for n, j in G.items()
                    if j and j.get("device") == "cpu" and not n.endswith("-full"))
    if on_cpu:
        w(f"- **Run on the CPU engine** (the same job, `DEVICE=cpu`, same windows and positions; "
          f"the engines agree within 0.12% in the cross-check below): {', '.join(on_cpu)}.")
    w("")

    # Full matrices per context.
    for tag, ctx in CONTEXTS:
        pj = g(f"ppl-{tag}-full") or g(f"ppl-{tag}")
        rj = g(f"ret-{tag}-full") or g(f"ret-{tag}")
        if pj is None and rj is None:
            continue
        w(f"## Context {ctx // 1024}K")
        w("")
        cols = [(16, "sum"), (16, "max"), (4, "sum"), (4, "max")]
        if pj is not None:
            present = [c for c in cols if any((r, c[0], c[1]) in ppl_runs(pj) for r in RATIOS)]
            d = ppl_runs(pj).get("dense")
            w(f"Perplexity, dense **{d['perplexity']:.3f}** over {pj['scored']} scored positions. "
              "Cells: perplexity (change vs dense).")
            w("")
            L += table(["budget"] + [f"{'fp16' if b == 16 else '4-bit'}, {agg}" for b, agg in present],
                       [[frac(r)] + [ppl_cell(pj, (r, b, agg)) for b, agg in present] for r in RATIOS])
            w("")
        if rj is not None:
            present = [c for c in cols if any((r, c[0], c[1]) in ret_runs(rj) for r in RATIOS)]
            w(f"Retrieval, dense **{ret_cell(rj, 'dense', ctx)}**. Cells: correct/total (accuracy).")
            w("")
            L += table(["budget"] + [f"{'fp16' if b == 16 else '4-bit'}, {agg}" for b, agg in present],
                       [[frac(r)] + [ret_cell(rj, (r, b, agg), ctx) for b, agg in present] for r in RATIOS])
            w("")

    # Across contexts.
    w("## Across contexts (qk, fp16 labels, sum)")
    w("")
    rows = []
    for tag, ctx in CONTEXTS:
        pj = g(f"ppl-{tag}-full") or g(f"ppl-{tag}")
        rj = g(f"ret-{tag}-full") or g(f"ret-{tag}")
        d = ppl_runs(pj).get("dense")
        rows.append([ctx, f"{d['perplexity']:.3f}" if d else "—"] +
                    [ppl_cell(pj, (r, 16, "sum")) for r in RATIOS[1:]] +
                    [ret_cell(rj, "dense", ctx)] + [ret_cell(rj, (r, 16, "sum"), ctx) for r in RATIOS[1:]])
    L += table(["context", "dense ppl"] + [f"ppl {frac(r)}" for r in RATIOS[1:]] +
               ["dense retrieval"] + [f"retrieval {frac(r)}" for r in RATIOS[1:]], rows)
    w("")

    # Levers of the 1/8 target.
    w("## The 1/8 target: what moves it (fp16 labels unless named, sum)")
    w("")
    w("Perplexity change vs dense at 1K and 2K (the contexts where the CPU run missed +1% at "
      "1/8), retrieval at 1K and 2K. Each row changes one setting from the defaults (dense "
      "layers 2, recent 64, r 16 fp16, committed qk channels).")
    w("")
    levers = [
        ("defaults", "ppl-{t}-full", "ret-{t}-full", (16, "sum"), "dense_layers 2, recent 64, r 16 fp16, qk"),
        ("GQA max", "ppl-{t}-full", "ret-{t}-full", (16, "max"), "aggregation max"),
        ("4-bit labels", "ppl-{t}-full", "ret-{t}-full", (4, "sum"), "r 16 4-bit: 1/4 the label bytes"),
        ("dense layers 3", "ppl-{t}-dl3", "ret-lever-dl3", (16, "sum"), "layers 0-2 dense (layer 2 had the lowest recall)"),
        ("dense layers 4", "ppl-{t}-dl4", None, (16, "sum"), "layers 0-3 dense"),
        ("recent 32", "ppl-{t}-recent32", None, (16, "sum"), "more of the budget selected"),
        ("recent 16", "ppl-{t}-recent16", "ret-lever-recent16", (16, "sum"), ""),
        ("dense layers 3 + recent 32", "ppl-{t}-dl3-recent32", None, (16, "sum"), ""),
        ("r 64, 4-bit", "ppl-{t}-r64b4", "ret-lever-r64b4", (4, "sum"), "same label bytes as r 16 fp16"),
        ("r 32, 4-bit", "ppl-{t}-r32", None, (4, "sum"), "half the label bytes"),
        ("r 32, fp16", "ppl-{t}-r32", None, (16, "sum"), "twice the label bytes"),
        ("channels: GPU calibration, 16K tokens", "ppl-{t}-calgpu", None, (16, "sum"), "the committed recipe rerun on the GPU"),
        ("channels: 90K tokens, 4K blocks", "ppl-{t}-calmore", "ret-lever-calmore", (16, "sum"), "more calibration data"),
        ("statistic k, 90K-token channels", "ppl-{t}-calmore-k", None, (16, "sum"), ""),
        ("statistic q", "ppl-{t}-q", "ret-lever-q", (16, "sum"), ""),
        ("statistic k", "ppl-{t}-k", "ret-lever-k", (16, "sum"), ""),
    ]
    rows, at18 = [], {}
    for name, pt, rt, (bits, agg), note in levers:
        cells = []
        for t in ("1k", "2k"):
            for r in (0.125, 0.0625):
                x = ppl_change(g(pt.format(t=t)), (r, bits, agg))
                cells.append("—" if x is None else f"{x:+.2f}%")
                if r == 0.125 and x is not None:
                    at18.setdefault(t, []).append((x, name))
        for length, t in ((1024, "1k"), (2048, "2k")):
            rj = g(rt.format(t=t)) if rt else None
            cells.append(ret_cell(rj, (0.0625, bits, agg), length) if rj else "—")
        rows.append([name] + cells + [note])
    L += table(["lever", "ppl 1K 1/8", "ppl 1K 1/16", "ppl 2K 1/8", "ppl 2K 1/16",
                "retrieval 1K 1/16", "retrieval 2K 1/16", "note"], rows)
    w("")
    w("At 1K, 1/16 is 64 tokens: with recent 64 the whole budget is kept tokens (nothing is "
      "selected), so only rows with a smaller recent window select anything there.")
    w("")

    # Targets.
    w("## Beside the paper, and the targets")
    w("")
    w("Paper (Llama-2-7B): perplexity about unchanged to 1/8, +5% at 1/16, broken at 1/32; "
      "key-value retrieval .9 at 1/8, .72 at 1/16. Issue 10's targets: perplexity +<=1% at 1/8, "
      "retrieval at 1/16 no worse than the paper's (.72). Defaults (qk, fp16, sum):")
    w("")
    rows = []
    for tag, ctx in CONTEXTS:
        pj = g(f"ppl-{tag}-full") or g(f"ppl-{tag}")
        rj = g(f"ret-{tag}-full") or g(f"ret-{tag}")
        x = ppl_change(pj, (0.125, 16, "sum"))
        c = ret_count(rj, (0.0625, 16, "sum"), ctx)
        rows.append([ctx, "—" if x is None else f"{x:+.2f}%",
                     "—" if x is None else ("**met**" if x <= 1.0 else "**missed**"),
                     "—" if c is None else f"{c[0] / c[1]:.2f} ({c[0]}/{c[1]})",
                     "—" if c is None else ("**met**" if c[0] / c[1] >= 0.72 else "**missed**")])
    L += table(["context", "ppl change at 1/8", "target +<=1%", "retrieval at 1/16", "target >= .72"], rows)
    w("")

    # Computed reading.
    w("## What the data says (computed from the tables above)")
    w("")
    for t, ctx in (("1k", 1024), ("2k", 2048)):
        opts = sorted(at18.get(t, []))
        if not opts:
            continue
        base = [x for x, n in opts if n == "defaults"]
        best = opts[0]
        met = [n for x, n in opts if x <= 1.0]
        w(f"- Perplexity at {ctx // 1024}K, 1/8: "
          + (f"defaults {base[0]:+.2f}%; " if base else "defaults not measured; ")
          + f"best lever **{best[1]}** ({best[0]:+.2f}%); within +1%: "
          + f"{', '.join(met) if met else 'none'}.")
    for tag, ctx in CONTEXTS:
        x = ppl_change(g(f"ppl-{tag}-full") or g(f"ppl-{tag}"), (0.125, 16, "sum"))
        y = ppl_change(g(f"ppl-{tag}-full") or g(f"ppl-{tag}"), (0.125, 4, "sum"))
        m = ppl_change(g(f"ppl-{tag}-full"), (0.125, 16, "max"))
        if x is not None and y is not None:
            w(f"- {ctx // 1024}K, 1/8: 4-bit labels {y:+.2f}% vs fp16 {x:+.2f}%"
              + (f"; max aggregation {m:+.2f}%." if m is not None else "."))
    w("")

    # CPU cross-check.
    w("## Cross-check: CPU engine vs CUDA engine")
    w("")
    cj, gj = C.get("ppl-2k-qk-full"), g("xc-ppl-2k")
    if cj and gj:
        cr, gr = ppl_runs(cj), ppl_runs(gj)
        rows, worst = [], 0.0
        for k in ["dense"] + [(r, b, agg) for agg in ("sum", "max") for b in (16, 4) for r in RATIOS]:
            if k in cr and k in gr:
                diff = 100 * (gr[k]["perplexity"] / cr[k]["perplexity"] - 1)
                worst = max(worst, abs(diff))
                rows.append(["dense" if k == "dense" else f"{frac(k[0])} {'fp16' if k[1] == 16 else '4-bit'} {k[2]}",
                             f"{cr[k]['perplexity']:.3f}", f"{gr[k]['perplexity']:.3f}", f"{diff:+.2f}%"])
        w("The CPU run's 2K perplexity job repeated on the GPU exactly (one window, 512 scored "
          f"positions, same channels): the engines differ by at most **{worst:.2f}%** in "
          "perplexity (CPU fp32 vs GPU bf16 activations; a top-k boundary can move with the "
          "rounding).")
        w("")
        L += table(["config", "CPU ppl", "GPU ppl", "GPU vs CPU"], rows)
        w("")
    cj, gj = C.get("ret-2k-qk-full"), g("xc-ret-2k")
    if cj and gj:
        cr, gr = ret_runs(cj), ret_runs(gj)
        same = sum(1 for k in cr if k in gr and cr[k]["by_length"] == gr[k]["by_length"])
        w(f"Retrieval, the CPU run's 6 prompts at 2K: {same} of {len(cr)} configs give the same "
          "correct/total on both engines.")
        w("")
    # The CPU run's recall table (the CUDA engine measures none).
    cj = C.get("ppl-2k-qk-full")
    if cj:
        w("### From the CPU run: recall per sparse layer at 2K (qk, fp16, sum)")
        w("")
        w("Share of each query head's true softmax mass that the selected tokens hold (one "
          "window, 512 decode rows). Layer 2, the first sparse layer, is the weakest: the "
          "dense-layers-3 rows above measure what keeping it dense buys.")
        w("")
        cr = ppl_runs(cj)
        rows = []
        for r in RATIOS:
            run = cr.get((r, 16, "sum"))
            if run:
                rows.append([frac(r)] + [f"{x:.3f}" for x in run["recall_per_layer"] if x is not None] +
                            [f"{100 * run['attended_share']:.1f}%"])
        L += table(["budget"] + [f"layer {i}" for i in range(2, 8)] + ["tokens attended"], rows)
        w("")
    w("The CPU run's full pages of figures (1 window and 6 prompts at 2K, slices at 1K and 4K) "
      "are reproduced by `bash tools/accuracy/make_report.sh` and "
      "`tools/accuracy/render_report.py` from `tools/accuracy/results/`.")
    w("")
    with open(a.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print(f"wrote {a.out} ({len(G)} GPU jobs, {len(missing)} missing)")


if __name__ == "__main__":
    main()
