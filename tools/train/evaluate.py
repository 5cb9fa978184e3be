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


def retrieval_set(tok, seed, lengths, per_length):
    rng = random.Random(seed)
    probe = kv_retrieval.context_text("x", kv_retrieval.make_pairs(random.Random(1), 200))
    per_pair = len(tok.encode(probe, add_special_tokens=False).ids) / 200.0
    items = []
    for L in lengths:
        n = 0
        while n < per_length:
            npairs = max(4, int((L - 40) / per_pair))
            state = rng.getstate()
            prompt, ans, depth = kv_retrieval.eval_item(rng, npairs)
            p_ids = [BOS] + tok.encode(prompt, add_special_tokens=False).ids
            if len(p_ids) > L:  # re-draw smaller from the same state
                rng.setstate(state)
                npairs = int(npairs * (L - 8) / len(p_ids))
                prompt, ans, depth = kv_retrieval.eval_item(rng, npairs)
                p_ids = [BOS] + tok.encode(prompt, add_special_tokens=False).ids
            full = [BOS] + tok.encode(prompt + ans, add_special_tokens=False).ids
            if full[:len(p_ids)] != p_ids:
                continue
            items.append(dict(target_len=L, n_tokens=len(p_ids), depth=round(depth, 4),
                              answer=ans, answer_ids=full[len(p_ids):], prompt=prompt,
                              prompt_ids=p_ids))
            n += 1
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=os.path.join(ROOT, ".train-data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--kv-seed", type=int, default=424242)
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--per-length", type=int, default=50)
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
        for S in (1024, 4096):
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

    if "retrieval" not in skip:
        lengths = [int(x) for x in args.lengths.split(",")]
        items = retrieval_set(tok, args.kv_seed, lengths, args.per_length)
        with open(os.path.join(args.out, "retrieval.jsonl"), "w") as f:
            for it in items:
                f.write(json.dumps(it) + "\n")
        acc = {}
        for L in lengths:
            sel = [it for it in items if it["target_len"] == L]
            ok = 0
            for it in sel:
                ids = torch.tensor([it["prompt_ids"]], device=dev)
                with torch.no_grad():
                    out = m.generate(ids, max_new_tokens=len(it["answer_ids"]), do_sample=False)
                ok += out[0, ids.shape[1]:].tolist() == it["answer_ids"]
            acc[L] = ok / len(sel)
            log(f"retrieval accuracy at {L} tokens: {ok}/{len(sel)} = {acc[L]:.3f} "
                f"(mean prompt {np.mean([it['n_tokens'] for it in sel]):.0f} tokens)")
        res["retrieval_accuracy"] = acc
        res["retrieval_per_length"] = args.per_length
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)

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
        meta = make_golden.write_golden(d, "demo-trained", prompt, logits, greedy, margins)
        log(f"golden: prompt {prompt.shape[1]} tokens, {len(greedy)} greedy, max|logit| "
            f"{meta['max_abs_logit']:.2f}, min margin {min(margins):.4f}; prompt text: "
            f"{tok.decode(prompt[0].tolist())[:120]!r} ... continuation {tok.decode(greedy)!r}")
    log("done")


if __name__ == "__main__":
    main()
