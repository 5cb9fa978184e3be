#!/usr/bin/env python3
"""Measures a trained demo checkpoint with transformers (dense attention) and writes the
eval sets and golden data.

    python3 tools/train/evaluate.py --model OUT/demo --data .train-data --out OUT/eval

Writes under --out:
  results.json            held-out perplexity, retrieval accuracy per length, samples
  retrieval.jsonl         the retrieval eval set (seed --kv-seed): prompt, prompt_ids (BOS
                          first), answer, answer_ids, n_tokens, depth, target length
  heldout_sample.jsonl    held-out documents (<= 1.9 MB of text) for perplexity/calibration
  golden/demo-trained/    golden.json + logits.f32 (tests/golden/make_golden.py's format):
                          the checkpoint loaded fresh in fp32, eager attention, on the CPU
"""
import argparse
import json
import lzma
import math
import os
import random
import sys
import time

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
import kv_retrieval  # noqa: E402
import make_golden  # noqa: E402
from train import BOS, encode_docs, read_docs, tokenizer  # noqa: E402

T0 = time.time()
SAMPLE_PROMPTS = ["The quick brown fox", "Once upon a time", "The meaning of the word",
                  "To install a package on Debian,", "A man page describes",
                  "Question: What is the capital of France?\nAnswer:"]


def log(*a):
    print(f"[eval {time.time() - T0:6.1f}s]", *a, flush=True)


def retrieval_set(kv, seed, lengths, per_length):
    """per_length prompts per target length L: BOS + a retrieval document with one question,
    the prompt plus its 6 answer tokens within L - 2 tokens."""
    rng = random.Random(seed)
    items = []
    for L in lengths:
        for _ in range(per_length):
            npairs = kv.n_pairs_for(L - 10, 1)
            while True:
                state = rng.getstate()
                prompt, ans, depth, q_len = kv.eval_item(rng, npairs)
                if len(prompt) + 1 + len(ans) <= L - 2:
                    break
                rng.setstate(state)
                npairs -= max(1, (len(prompt) + 1 + len(ans) - (L - 2)) // int(kv.pair_tokens) + 1)
            items.append(dict(target_len=L, n_tokens=len(prompt) + 1, depth=round(depth, 4),
                              question_tokens=q_len, answer=kv.text(ans), answer_ids=ans,
                              prompt_ids=[BOS] + prompt))
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=os.path.join(ROOT, ".train-data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--kv-seed", type=int, default=424242)
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384")
    ap.add_argument("--per-length", type=int, default=50)
    ap.add_argument("--keep-per-length", type=int, default=20,
                    help="prompts per length written to retrieval.jsonl (lengths <= --keep-max)")
    ap.add_argument("--keep-max", type=int, default=8192)
    ap.add_argument("--ppl-windows", type=int, default=96)
    ap.add_argument("--golden-prompt-len", type=int, default=128)
    ap.add_argument("--golden-tokens", type=int, default=40)
    ap.add_argument("--skip", default="", help="comma list of: ppl,retrieval,samples,golden")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    os.makedirs(args.out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    tok = tokenizer()
    def dump(r):  # after every section, so a time limit keeps what was measured
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(r, f, indent=1)

    res = dict(model=args.model, device=torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
               transformers=transformers.__version__, torch=torch.__version__)
    held_docs = read_docs(os.path.join(args.data, "heldout.txt.xz"))
    # held-out sample for later perplexity/calibration with the engine
    with open(os.path.join(args.out, "heldout_sample.jsonl"), "w") as f:
        n = 0
        for d in held_docs:
            if n + len(d) > 1_900_000:
                break
            f.write(json.dumps(dict(text=d)) + "\n")
            n += len(d)
    m = transformers.AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.float32, attn_implementation="sdpa").to(dev).eval()

    if "ppl" not in skip:
        held = encode_docs(tok, held_docs)
        res["heldout_tokens_total"] = int(len(held))
        for S in (1024, 4096, 8192):
            nwin = min(len(held) // (S + 1), args.ppl_windows * 4096 // S)
            tot, cnt = 0.0, 0
            with torch.no_grad():
                for i in range(nwin):
                    t = torch.from_numpy(held[i * (S + 1):(i + 1) * (S + 1)].astype(np.int64)).to(dev)[None]
                    lg = m(t[:, :-1]).logits.float()
                    tot += torch.nn.functional.cross_entropy(lg[0], t[0, 1:], reduction="sum").item()
                    cnt += S
            res[f"heldout_ppl_ctx{S}"] = math.exp(tot / cnt)
            res[f"heldout_ppl_ctx{S}_tokens"] = cnt
            log(f"held-out ppl (fp32, ctx {S}, {cnt} tokens): {math.exp(tot / cnt):.3f}")
        dump(res)

    if "retrieval" not in skip:
        lengths = [int(x) for x in args.lengths.split(",")]
        kv = kv_retrieval.KvTokens(tok)
        items = retrieval_set(kv, args.kv_seed, lengths, args.per_length)
        acc, acc_kept, by_depth = {}, {}, {}
        for L in lengths:
            sel = [it for it in items if it["target_len"] == L]
            ok = 0
            for j, it in enumerate(sel):
                ids = torch.tensor([it["prompt_ids"]], device=dev)
                with torch.no_grad():
                    out = m.generate(ids, max_new_tokens=len(it["answer_ids"]), do_sample=False)
                got = out[0, ids.shape[1]:].tolist()
                it["correct_dense_hf"] = got == it["answer_ids"]
                ok += it["correct_dense_hf"]
                if j == 0:
                    log(f"  {L}: expected {it['answer']!r} got {tok.decode(got)!r}")
            acc[L] = ok / len(sel)
            kept = sel[:args.keep_per_length]
            acc_kept[L] = sum(it["correct_dense_hf"] for it in kept) / len(kept)
            third = [[it["correct_dense_hf"] for it in sel if lo <= it["depth"] < lo + 1 / 3]
                     for lo in (0, 1 / 3, 2 / 3)]
            by_depth[L] = [round(sum(t) / max(1, len(t)), 3) for t in third]
            log(f"retrieval accuracy at {L} tokens: {ok}/{len(sel)} = {acc[L]:.3f} "
                f"(first {len(kept)}: {acc_kept[L]:.3f}; by depth thirds {by_depth[L]}; "
                f"mean prompt {np.mean([it['n_tokens'] for it in sel]):.0f} tokens)")
        with open(os.path.join(args.out, "retrieval.jsonl"), "w") as f:
            for L in lengths:
                if L > args.keep_max:
                    continue
                for it in [it for it in items if it["target_len"] == L][:args.keep_per_length]:
                    f.write(json.dumps(it, separators=(",", ":")) + "\n")
        res["retrieval_accuracy_first_kept"] = acc_kept
        res["retrieval_accuracy_by_depth_third"] = by_depth
        res["retrieval_accuracy"] = acc
        res["retrieval_per_length"] = args.per_length
        dump(res)
    if "samples" not in skip:
        samples = []
        for p in SAMPLE_PROMPTS:
            ids = torch.tensor([[BOS] + tok.encode(p, add_special_tokens=False).ids], device=dev)
            with torch.no_grad():
                gr = m.generate(ids, max_new_tokens=60, do_sample=False)
                torch.manual_seed(len(samples))
                sm = m.generate(ids, max_new_tokens=60, do_sample=True, temperature=0.8, top_p=0.9)
            samples.append(dict(prompt=p, greedy=tok.decode(gr[0, ids.shape[1]:].tolist()),
                                sampled_t0_8=tok.decode(sm[0, ids.shape[1]:].tolist())))
            log("sample:", json.dumps(samples[-1]))
        res["samples"] = samples

    dump(res)

    if "golden" not in skip:
        del m
        torch.use_deterministic_algorithms(True)
        m32 = transformers.AutoModelForCausalLM.from_pretrained(
            args.model, dtype=torch.float32, attn_implementation="eager").eval()
        assert m32.model.rotary_emb.inv_freq.dtype == torch.float32
        # an English held-out passage, first golden-prompt-len tokens (BOS first)
        text = next(d for d in held_docs if len(d) > 2000 and d[:1].isalpha())
        ids = [BOS] + tok.encode(text, add_special_tokens=False).ids
        prompt = torch.tensor([ids[:args.golden_prompt_len]])
        logits, greedy, margins = make_golden.reference_outputs(m32, prompt, args.golden_tokens)
        d = os.path.join(args.out, "golden", "demo-trained")
        os.makedirs(d, exist_ok=True)
        # keep every 8th prompt position's logits plus the last (the file stays ~2 MB)
        positions = list(range(0, prompt.shape[1], 8))
        if positions[-1] != prompt.shape[1] - 1:
            positions.append(prompt.shape[1] - 1)
        max_abs = float(logits.abs().max())
        meta = make_golden.write_golden(d, "demo-trained", prompt, logits[positions].contiguous(),
                                        greedy, margins)
        meta["max_abs_logit"] = max_abs
        meta["logit_positions"] = positions
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1)
        log(f"golden: prompt {prompt.shape[1]} tokens, {len(greedy)} greedy, max|logit| "
            f"{meta['max_abs_logit']:.2f}, min margin {min(margins):.4f}; prompt text: "
            f"{tok.decode(prompt[0].tolist())[:120]!r} ... continuation {tok.decode(greedy)!r}")
    log("done")


if __name__ == "__main__":
    main()
