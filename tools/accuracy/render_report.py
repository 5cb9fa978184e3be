#!/usr/bin/env python3
"""Renders docs/accuracy.md from the dsinfer-eval JSON files that make_report.sh leaves in
tools/accuracy/results/ (one file per job; a missing job leaves its rows out and says so).

    /usr/bin/python3 tools/accuracy/render_report.py --results tools/accuracy/results \
        --out docs/accuracy.md

The GPU-side numbers (transformers, dense) come from the training run's results.json
(tools/train/run-*/results.json, newest by name) so the page shows both views of the model.
"""
import argparse
import glob
import json
import os

from report_common import HERE, RATIOS, ROOT, frac, load, ppl_runs, ret_runs


def ret_cell(run, length):
    if run is None:
        return "—"
    b = run["by_length"].get(str(length))
    if b is None:
        return "—"
    return f"{b['correct']}/{b['total']}"


def ret_acc(run, length):
    if run is None or str(length) not in run["by_length"]:
        return None
    b = run["by_length"][str(length)]
    return b["correct"] / b["total"] if b["total"] else None


def ppl_cell(run, dense):
    if run is None:
        return "—"
    d = 100 * (run["perplexity"] / dense["perplexity"] - 1)
    return f"{run['perplexity']:.3f} ({d:+.1f}%)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "accuracy.md"))
    a = ap.parse_args()
    R = a.results
    J = {n: load(R, n) for n in [
        "ppl-2k-qk-full", "ret-2k-qk-full", "ppl-2k-q", "ppl-2k-k", "ppl-1k-qk", "ppl-4k-qk",
        "ret-1k-qk", "ret-1k-q", "ret-1k-k", "ret-4k-qk", "ret-1k-qk-recent16",
        "ppl-2k-qk-recent16"]}
    missing = [n for n, j in J.items() if j is None]
    runs = sorted(glob.glob(os.path.join(ROOT, "tools", "train", "run-*", "results.json")))
    gpu = json.load(open(runs[-1])) if runs else {}
    summ_p = os.path.join(os.path.dirname(runs[-1]), "train_summary.json") if runs else None
    summ = json.load(open(summ_p)) if summ_p and os.path.exists(summ_p) else {}
    cpu_user = sum(j.get("_user", 0) for j in J.values() if j)
    cpu_wall = sum(j.get("_wall", 0) for j in J.values() if j)

    L = []
    w = L.append
    w("# Accuracy of Double Sparsity on the demo model")
    w("")
    w("Produced by `bash tools/accuracy/make_report.sh` (calibration with `dsinfer-calibrate`, "
      "measurements with `dsinfer-eval` on the CPU engine, this page by "
      "`tools/accuracy/render_report.py`); raw JSON per job in `tools/accuracy/results/`. "
      "Issue 10. Model: `models/demo` (8 layers, 4 query / 2 KV heads of head_dim 128, GQA 2:1, "
      "trained here on Debian English text + synthetic key-value retrieval, see "
      "`models/demo/README.md`).")
    w("")
    w("## How it was measured")
    w("")
    w("- **Channels**: `dsinfer-calibrate --stat qk,q,k --block 1024 --max-blocks 16` on 16 K "
      "tokens of held-out text (the last 40 documents of `tests/data/eval/heldout_sample.jsonl`); "
      "r = 16 label channels per KV head for every run (`tools/accuracy/results/channels.json`).")
    w("- **Perplexity**: held-out text disjoint from the calibration text (the other 110 "
      "documents), one window per context (BOS + the first window-1 tokens). The first part "
      "of the window is one dense prefill; the last 512 (4K: 256) positions are fed one by one as "
      "decode rows — the rows Double Sparsity applies to — and scored; dense and every "
      "sparse run score exactly the same positions.")
    w("- **Retrieval**: prompts of `tests/data/eval/retrieval.jsonl` (BOS, a header, "
      "`- key: 5-digit value` lines, `Question: What is the value of KEY?` / `Answer: KEY:`), "
      "the first N per length class. The list goes in as a dense prefill; the question "
      "(~20 tokens) and the 6 answer tokens run as decode rows, so the lookup goes through "
      "Double Sparsity's selection. Correct = greedy answer equals the value exactly.")
    w("- **Double Sparsity settings**: explicit `double_sparse` mode (so `auto`'s "
      "dense_below = 4096 does not apply), engine defaults **sink 4, recent 64, "
      "dense_layers 2** (layers 0-1 always dense; 6 of 8 layers sparse), budget = ratio x "
      "context with the kept tokens counted inside it. One slice repeats with recent 16.")
    w("- **Budget of this run**: the CPU engine's dense prefill dominates (a 4K prefill is "
      "40-80 CPU-seconds here), so the full matrix (budgets 1/2-1/32 x fp16/"
      "4-bit labels x sum/max aggregation) is measured at **2K context**, with slices at 1K "
      "and 4K; retrieval uses 6 prompts at 2K, 10 at 1K (8 for q and k), 2 at 4K; perplexity "
      "512 scored positions at 1K and 2K, 256 at 4K, one window each. These are small samples: one retrieval miss at 2K is 17 "
      f"points. Total: {cpu_user / 60:.1f} CPU-minutes of dsinfer-eval (the jobs' wall times "
      f"add up to {cpu_wall / 60:.0f} minutes: they ran 2-4 at a time on a 2-core machine shared "
      "with other builds). 8K was not run on the CPU (an 8K prefill alone would take several "
      "CPU-minutes); its dense number is from transformers below.")
    if missing:
        w(f"- **Jobs missing from this page** (failed or not run): {', '.join(missing)}.")
    w("")
    if gpu:
        acc = gpu.get("retrieval_accuracy", {})
        w("## The model, dense (transformers fp32 on the GPU, from the training run)")
        w("")
        w("| context | 1K | 2K | 4K | 8K | 16K |")
        w("| --- | --- | --- | --- | --- | --- |")
        w("| retrieval accuracy (50 prompts each) | " + " | ".join(
            f"{acc.get(k, float('nan')):.2f}" for k in ("1024", "2048", "4096", "8192", "16384")) + " |")
        w("| held-out perplexity | {:.2f} | — | {:.2f} | {:.2f} | — |".format(
            gpu.get("heldout_ppl_ctx1024", float("nan")), gpu.get("heldout_ppl_ctx4096", float("nan")),
            gpu.get("heldout_ppl_ctx8192", float("nan"))))
        w("")
        w("Trained at 4K then 8K sequences (max_position_embeddings 8192): retrieval is "
          "perfect to 4K, 0.74 at 8K (misses concentrated in the first third of the list), "
          "and 0 at 16K (no extrapolation beyond the trained positions).")
        w("")

    # Full matrix at 2K
    pj, rj = J["ppl-2k-qk-full"], J["ret-2k-qk-full"]
    combos = [(16, "sum"), (16, "max"), (4, "sum"), (4, "max")]
    if pj:
        P = ppl_runs(pj)
        dense = P["dense"]
        w(f"## Perplexity at 2K context, qk channels (the full matrix)")
        w("")
        w(f"Dense: **{dense['perplexity']:.3f}** over {pj['scored']} scored positions "
          f"(contexts {pj['prefill']}-{pj['tokens']}). Cells: perplexity (change vs dense).")
        w("")
        w("| budget | fp16 labels, sum | fp16, max | 4-bit, sum | 4-bit, max | tokens attended (fp16 sum) |")
        w("| --- | --- | --- | --- | --- | --- |")
        for r in RATIOS:
            cells = [ppl_cell(P.get((r, b, g)), dense) for b, g in combos]
            att = P.get((r, 16, "sum"))
            tail = f" | {100 * att['attended_share']:.1f}% |" if att else " | — |"
            w(f"| {frac(r)} | " + " | ".join(cells) + tail)
        w("")
        w("Tokens attended: share of the context read, over all 8 layers' decode rows "
          "(the 2 dense layers read everything).")
        w("")
        w("Recall per sparse layer (share of each query head's true softmax mass that the "
          "selected tokens hold), fp16 labels, sum:")
        w("")
        w("| budget | " + " | ".join(f"layer {l}" for l in range(2, 8)) + " |")
        w("| --- |" + " --- |" * 6)
        for r in RATIOS:
            run = P.get((r, 16, "sum"))
            if run:
                rec = [x for x in run["recall_per_layer"] if x is not None]
                w(f"| {frac(r)} | " + " | ".join(f"{x:.3f}" for x in rec) + " |")
        w("")
    if rj:
        Q = ret_runs(rj)
        n = Q["dense"]["by_length"]["2048"]["total"]
        w(f"## Retrieval at 2K context, qk channels (the full matrix, {n} prompts)")
        w("")
        w(f"Dense: **{ret_cell(Q['dense'], 2048)}**. Cells: correct/total.")
        w("")
        w("| budget | fp16 labels, sum | fp16, max | 4-bit, sum | 4-bit, max |")
        w("| --- | --- | --- | --- | --- |")
        for r in RATIOS:
            w(f"| {frac(r)} | " + " | ".join(ret_cell(Q.get((r, b, g)), 2048) for b, g in combos) + " |")
        w("")
        w("At 2K with recent 64 and sink 4, the 1/32 budget (64 tokens) is spent entirely on "
          "the kept tokens; 1/16 (128) leaves 60 selected tokens.")
        w("")

    # statistics
    w("## Channel statistic: qk vs q vs k (fp16 labels, sum)")
    w("")
    stat_p = {"qk": J["ppl-2k-qk-full"], "q": J["ppl-2k-q"], "k": J["ppl-2k-k"]}
    if any(stat_p.values()):
        w("Perplexity at 2K (change vs dense):")
        w("")
        w("| budget | qk | q | k |")
        w("| --- | --- | --- | --- |")
        for r in RATIOS:
            cells = []
            for s in ("qk", "q", "k"):
                j = stat_p[s]
                if j:
                    P = ppl_runs(j)
                    cells.append(ppl_cell(P.get((r, 16, "sum")), P["dense"]))
                else:
                    cells.append("—")
            w(f"| {frac(r)} | " + " | ".join(cells) + " |")
        w("")
    stat_r = {"qk": J["ret-1k-qk"], "q": J["ret-1k-q"], "k": J["ret-1k-k"]}
    if any(stat_r.values()):
        w("Retrieval at 1K (correct/total):")
        w("")
        w("| budget | qk | q | k |")
        w("| --- | --- | --- | --- |")
        rows = ["dense", 0.25, 0.125, 0.0625]
        for r in rows:
            cells = []
            for s in ("qk", "q", "k"):
                j = stat_r[s]
                Q = ret_runs(j) if j else {}
                cells.append(ret_cell(Q.get("dense" if r == "dense" else (r, 16, "sum")), 1024))
            w(f"| {'dense' if r == 'dense' else frac(r)} | " + " | ".join(cells) + " |")
        w("")

    # contexts
    w("## Across contexts (qk, fp16 labels, sum)")
    w("")
    ctx_p = [(1024, J["ppl-1k-qk"]), (2048, J["ppl-2k-qk-full"]), (4096, J["ppl-4k-qk"])]
    w("| context | dense ppl | 1/8 | 1/16 | 1/32 |")
    w("| --- | --- | --- | --- | --- |")
    for c, j in ctx_p:
        if not j:
            w(f"| {c} | — | — | — | — |")
            continue
        P = ppl_runs(j)
        w(f"| {c} | {P['dense']['perplexity']:.3f} | " +
          " | ".join(ppl_cell(P.get((r, 16, "sum")), P["dense"]) for r in (0.125, 0.0625, 0.03125)) + " |")
    w("")
    ctx_r = [(1024, J["ret-1k-qk"]), (2048, J["ret-2k-qk-full"]), (4096, J["ret-4k-qk"])]
    w("| context | dense retrieval | 1/4 | 1/8 | 1/16 | 1/32 |")
    w("| --- | --- | --- | --- | --- | --- |")
    for c, j in ctx_r:
        Q = ret_runs(j) if j else {}
        w(f"| {c} | {ret_cell(Q.get('dense'), c)} | " +
          " | ".join(ret_cell(Q.get((r, 16, "sum")), c) for r in (0.25, 0.125, 0.0625, 0.03125)) + " |")
    w("")
    j4 = J["ppl-1k-qk"]
    if j4:
        P = ppl_runs(j4)
        w("4-bit labels at 1K (perplexity): " + ", ".join(
            f"{frac(r)}: fp16 {ppl_cell(P.get((r, 16, 'sum')), P['dense'])}, 4-bit "
            f"{ppl_cell(P.get((r, 4, 'sum')), P['dense'])}" for r in (0.125, 0.0625)) + ".")
        w("")

    # recent 16
    w("## Kept recent tokens: 64 (default) vs 16 (qk, fp16, sum)")
    w("")
    a16, b64 = J["ret-1k-qk-recent16"], J["ret-1k-qk"]
    p16, p64 = J["ppl-2k-qk-recent16"], J["ppl-2k-qk-full"]
    w("| measure | budget | recent 64 | recent 16 |")
    w("| --- | --- | --- | --- |")
    for r in (0.125, 0.0625, 0.03125):
        x = ret_cell(ret_runs(b64).get((r, 16, "sum")), 1024) if b64 else "—"
        y = ret_cell(ret_runs(a16).get((r, 16, "sum")), 1024) if a16 else "—"
        w(f"| retrieval at 1K | {frac(r)} | {x} | {y} |")
    for r in (0.0625, 0.03125):
        x = ppl_cell(ppl_runs(p64).get((r, 16, "sum")), ppl_runs(p64)["dense"]) if p64 else "—"
        y = ppl_cell(ppl_runs(p16).get((r, 16, "sum")), ppl_runs(p16)["dense"]) if p16 else "—"
        w(f"| perplexity at 2K | {frac(r)} | {x} | {y} |")
    w("")

    # paper + targets
    w("## Beside the paper, and the targets")
    w("")
    w("Paper (Llama-2-7B, reference implementation's figures): wiki-2 perplexity about "
      "unchanged to 1/8, +5% at 1/16, broken at 1/32; key-value retrieval .9 at 1/8, "
      ".72 at 1/16. Targets of issue 10: perplexity +<=1% at 1/8, retrieval at 1/16 no worse "
      "than the paper's (.72).")
    w("")
    if pj:
        P = ppl_runs(pj)
        d = P["dense"]["perplexity"]
        row = lambda r: 100 * (P[(r, 16, "sum")]["perplexity"] / d - 1) if (r, 16, "sum") in P else float("nan")
        w("| | 1/8 | 1/16 | 1/32 |")
        w("| --- | --- | --- | --- |")
        w("| paper: perplexity change | ~0% | +5% | broken |")
        w("| dsinfer, demo model, 2K, qk fp16 sum | {:+.1f}% | {:+.1f}% | {:+.1f}% |".format(
            row(0.125), row(0.0625), row(0.03125)))
        w("| paper: retrieval | .90 | .72 | — |")
        if rj:
            Q = ret_runs(rj)
            acc = [ret_acc(Q.get((r, 16, "sum")), 2048) for r in (0.125, 0.0625, 0.03125)]
            w("| dsinfer, demo model, 2K retrieval, qk fp16 sum | " +
              " | ".join("—" if x is None else f"{x:.2f}" for x in acc) + " |")
        jr4 = J["ret-4k-qk"]
        if jr4:
            Q = ret_runs(jr4)
            acc = [ret_acc(Q.get((r, 16, "sum")), 4096) for r in (0.125, 0.0625, 0.03125)]
            w("| dsinfer, demo model, 4K retrieval, qk fp16 sum | " +
              " | ".join("—" if x is None else f"{x:.2f}" for x in acc) + " |")
        w("")
        t1 = row(0.125) <= 1.0
        w(f"- Perplexity target (+<=1% at 1/8), 2K: **{'met' if t1 else 'missed'}** "
          f"({row(0.125):+.2f}%).")
        for name, ctx in (("ppl-4k-qk", "4K"), ("ppl-1k-qk", "1K")):
            jj = J[name]
            if jj and (0.125, 16, "sum") in ppl_runs(jj):
                PP = ppl_runs(jj)
                x = 100 * (PP[(0.125, 16, "sum")]["perplexity"] / PP["dense"]["perplexity"] - 1)
                w(f"- Perplexity target (+<=1% at 1/8), {ctx}: **{'met' if x <= 1.0 else 'missed'}** "
                  f"({x:+.2f}%, {jj['scored']} scored positions).")
        if rj:
            a16 = ret_acc(ret_runs(rj).get((0.0625, 16, "sum")), 2048)
            if a16 is not None:
                w(f"- Retrieval target (>= .72 at 1/16, 2K): **{'met' if a16 >= 0.72 else 'missed'}** "
                  f"({a16:.2f}, {ret_cell(ret_runs(rj).get((0.0625, 16, 'sum')), 2048)}).")
        w("")
    w("## Reading (written for the committed results)")
    w("")
    w("- **Retrieval survives Double Sparsity** wherever the budget leaves room to select: "
      "6/6 at 2K down to 1/16 (fp16 or 4-bit labels, sum), 2/2 at 4K even at 1/32. It fails "
      "where the budget is all kept tokens: at 2K, 1/32 = 64 tokens < sink 4 + recent 64, and "
      "at 1K, 1/16 = 64 tokens (1/10). With recent 16 the same 1K budgets select again "
      "(1/16: 8/10, 1/32: 5/10). The issue's retrieval target (>= .72 at 1/16) is met at 2K "
      "and 4K; the samples are small (6 and 2 prompts).")
    w("- **Perplexity** follows the paper's shape at 2K, shifted by one step: +0.4% at 1/2, "
      "+1.3% at 1/4, +2.1% at 1/8, +5.3% at 1/16 (the paper's +5% lands at 1/16 too), broken "
      "at 1/32 (+25.6%: every config gives the same number because nothing is selected, "
      "only kept). The target +<=1% at 1/8 is **missed at 2K (+2.1%)** and at 1K (+1.0% "
      "is on the line; 1/16 at 1K is again all-kept), and met at 4K (-0.5%, with only 256 "
      "scored positions). Longer contexts help, as in the paper: the budget grows with the "
      "context while the heads' useful set does not.")
    w("- **Recall** (share of true attention mass selected) at 1/16 is 0.85-0.96 in layers "
      "3-7 but 0.67 in layer 2, the first sparse layer: its attention is the least "
      "concentrated. Keeping 3 dense layers instead of 2 is the obvious next measurement.")
    w("- **4-bit labels** (same 16 channels, a quarter of the label bytes) cost at most "
      "~1 point of perplexity percentage (1/8 at 2K: +3.1% vs +2.1%) and no retrieval. The "
      "paper's bit-budget comparison (4-bit with 4x the channels) was not run.")
    w("- **GQA aggregation**: max is slightly better at generous budgets (1/2, 1/4), sum at "
      "tight ones (1/8 perplexity, 1/16 retrieval 6/6 vs 5/6); differences are within the "
      "noise of 512 positions / 6 prompts. Sum stays the default.")
    w("- **Channel statistic**: qk, q and k are within ~1 point of each other at 2K (1/8: "
      "+2.1 / +2.8 / +2.4%; 1/16: +5.3 / +6.1 / +4.2%); for retrieval at 1K, 1/8, q-only "
      "channels lose keys (5/8) where qk (9/10) and k (8/8) hold. On this model qk is not "
      "clearly best, unlike the paper's finding at high sparsity; q is the weakest.")
    w("- Dense perplexities differ between the rows of 'Across contexts' because each "
      "context scores different text (the last 512 or 256 positions of its window); only "
      "the changes vs dense within a row compare.")
    w("")
    w("## Notes")
    w("")
    w("- The model is small (8 layers, 2 KV heads) and its contexts here short (1-4K), so "
      "the kept sink + recent tokens are a large part of small budgets; the paper's model and "
      "contexts are far larger. Budgets are the ratio of the whole context, as in the paper.")
    w("- GPU numbers and CPU numbers are the same checkpoint; the CPU engine matches "
      "transformers within the golden tolerance (`ctest -R Golden`, demo-trained).")
    w("")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(L))
    print("wrote", a.out, "missing:", missing)


if __name__ == "__main__":
    main()
