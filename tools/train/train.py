#!/usr/bin/env python3
"""Trains the demo model: a small Llama (head_dim 128, GQA, RoPE, tied embeddings) on the
Debian English corpus plus synthetic key-value retrieval, and saves a bf16 HF checkpoint.

    python3 tools/train/train.py --data .train-data --out OUT/demo --seed 20261128 \
        --steps N            # fixed step count: the reproducible form
    python3 tools/train/train.py ... --train-seconds 380   # or: fit the steps to a time budget
    python3 tools/train/train.py ... --smoke               # tiny run to check the pipeline

Recipe (the second run; the first learned text but not key lookup, see README.md):
- Retrieval rows (--kv-frac, default 35 % of sequences) are packed with fresh documents built
  in token ids every step (kv_retrieval.KvTokens), and trained ONLY on their answer tokens:
  the loss is mean CE over text tokens + --kv-weight x mean CE over answer tokens, so the
  unpredictable random keys/values neither dilute the lookup signal nor leak into text.
- Curriculum: retrieval documents start at 96-256 tokens (few pairs) and their longest length
  grows linearly to the row length by --curriculum-frac of the steps; 1-8 questions each.
- Two phases: sequences of --seq (4096) x --batch (16), then from --switch-step (default
  65 % of the steps) sequences of --seq2 (8192) x --batch2 (8), the same tokens per step, so
  positions up to 8K are trained (max_position_embeddings 8192).

Data order, initialisation and the retrieval documents all derive from --seed. With
--train-seconds the step count is fitted to the time after 30 timed steps and refitted 20
steps into phase 2 (printed as total_steps and switch_step; pass --steps N --switch-step S to
repeat the run with the same schedule). GPU kernels (atomics in the embedding backward)
make bit-exactness across runs not guaranteed.
"""
import argparse
import copy
import json
import lzma
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kv_retrieval  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZER_DIR = os.path.join(ROOT, "models", "demo")
BOS, EOS = 1, 2

MODEL = dict(vocab_size=32000, hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
             num_attention_heads=4, num_key_value_heads=2, head_dim=128, rope_theta=10000.0,
             max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
             initializer_range=0.02, bos_token_id=BOS, eos_token_id=EOS)
T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(os.path.join(TOKENIZER_DIR, "tokenizer.json"))


def read_docs(path, limit=None):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        docs = [d.strip("\n") for d in f.read().split("\n\x1e\n")]
    docs = [d for d in docs if d.strip()]
    return docs[:limit] if limit else docs


def encode_docs(tok, docs, time_limit=None):
    """BOS doc EOS, concatenated, as uint16 (stops early, with a note, past time_limit s)."""
    out = []
    B = 256
    t = time.time()
    for i in range(0, len(docs), B):
        if time_limit and time.time() - t > time_limit:
            log(f"NOTE: tokenization time limit hit: used {i} of {len(docs)} documents")
            break
        for e in tok.encode_batch(docs[i:i + B], add_special_tokens=False):
            out.append(np.array([BOS] + e.ids + [EOS], dtype=np.uint16))
    return np.concatenate(out)


class KvRows:
    """Retrieval rows of n tokens: retrieval documents (BOS doc EOS) of curriculum-sized
    lengths packed one after another, the tail after the last whole document filled with
    corpus text. Returns ids and per-token loss groups: 0 = no loss, 1 = text, 2 = answer."""

    def __init__(self, kv, text_ids, rng, nprng):
        self.kv, self.text_ids, self.rng, self.nprng = kv, text_ids, rng, nprng
        self.docs = self.answer_tokens = 0

    def row(self, n, max_doc):
        ids = np.empty(n, dtype=np.int64)
        grp = np.zeros(n, dtype=np.int8)
        pos = 0
        while True:
            room = n - pos
            if room < 96:
                break
            lo = 96
            hi = max(lo + 1, min(max_doc, room))
            # half log-uniform (many short documents), half uniform (enough long ones)
            if self.rng.random() < 0.5:
                target = int(math.exp(self.rng.uniform(math.log(lo), math.log(hi))))
            else:
                target = self.rng.randint(lo, hi)
            nq = self.rng.randint(1, 8)
            npairs = self.kv.n_pairs_for(target - 2, nq)
            while True:
                d, w, _, _ = self.kv.doc(self.rng, npairs, nq)
                if len(d) + 2 <= room or npairs <= 2:
                    break
                npairs = max(2, int(npairs * 0.9))
            if len(d) + 2 > room:
                break
            ids[pos] = BOS
            ids[pos + 1:pos + 1 + len(d)] = d
            ids[pos + 1 + len(d)] = EOS
            grp[pos + 1:pos + 1 + len(d)] = np.asarray(w, dtype=np.int8) * 2
            pos += len(d) + 2
            self.docs += 1
            self.answer_tokens += sum(w)
        if pos < n:
            s = int(self.nprng.integers(0, len(self.text_ids) - n))
            ids[pos:] = self.text_ids[s:s + n - pos]
            grp[pos:] = 1
        return ids, grp


def build_model(cfg_kwargs):
    import transformers
    cfg = transformers.LlamaConfig(attn_implementation="sdpa", **cfg_kwargs)
    return transformers.LlamaForCausalLM(cfg), cfg


def save_checkpoint(model, out_dir):
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.generation_config.bos_token_id = BOS
    m.generation_config.eos_token_id = EOS
    m.generation_config.pad_token_id = None
    m.save_pretrained(tmp, safe_serialization=True, max_shard_size="15MB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOKENIZER_DIR, f), tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)
    del m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(ROOT, ".train-data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--seq", type=int, default=4096, help="phase-1 sequence length")
    ap.add_argument("--batch", type=int, default=16, help="phase-1 sequences per step")
    ap.add_argument("--seq2", type=int, default=8192, help="phase-2 sequence length")
    ap.add_argument("--batch2", type=int, default=8, help="phase-2 sequences per step")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--switch-step", type=int, default=0,
                    help="first phase-2 step; 0 = --switch-frac of the steps")
    ap.add_argument("--switch-frac", type=float, default=0.65)
    ap.add_argument("--train-seconds", type=float, default=390.0,
                    help="with --steps 0: fit the step count to this much training time")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--kv-frac", type=float, default=0.35, help="fraction of sequences that are retrieval")
    ap.add_argument("--kv-weight", type=float, default=1.0, help="weight of the answer-token loss")
    ap.add_argument("--curriculum-frac", type=float, default=0.5,
                    help="share of the steps over which the longest retrieval document grows")
    ap.add_argument("--save-every", type=float, default=90.0, help="seconds between checkpoints")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.seq, args.batch, args.seq2, args.batch2 = 512, 4, 1024, 2
        args.steps, args.warmup = 20, 5
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    log("device", torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "torch", torch.__version__)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    tok = tokenizer()
    docs = read_docs(os.path.join(args.data, "train.txt.xz"), 2000 if args.smoke else None)
    random.Random(args.seed).shuffle(docs)
    log(f"train docs {len(docs)}, {sum(len(d) for d in docs) / 1e6:.1f} M chars")
    text_ids = encode_docs(tok, docs, time_limit=90)
    del docs
    log(f"train tokens {len(text_ids) / 1e6:.2f} M")
    held = encode_docs(tok, read_docs(os.path.join(args.data, "heldout.txt.xz"), 200 if args.smoke else None))
    log(f"held-out tokens {len(held) / 1e6:.3f} M")
    kv = kv_retrieval.KvTokens(tok)
    log(f"retrieval keys {len(kv.keys)}, {kv.pair_tokens:.1f} tokens per pair, "
        f"{kv.question_tokens:.1f} per question (token-built documents match the tokenizer)")
    kv_rows = KvRows(kv, text_ids, random.Random(args.seed + 1), np.random.default_rng(args.seed + 2))

    model, cfg = build_model(MODEL)
    model.to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"params {nparams / 1e6:.2f} M (embedding {model.model.embed_tokens.weight.numel() / 1e6:.2f} M, tied)")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    nodecay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=args.wd),
                             dict(params=nodecay, weight_decay=0.0)],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=(dev == "cuda"))

    def lr_at(step, total):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    data_rng = np.random.default_rng(args.seed + 3)

    def batch(S, B, max_doc):
        rows = np.empty((B, S + 1), dtype=np.int64)
        grps = np.ones((B, S + 1), dtype=np.int8)
        nkv = 0
        for b in range(B):
            if data_rng.random() < args.kv_frac:
                rows[b], grps[b] = kv_rows.row(S + 1, max_doc)
                nkv += 1
            else:
                s = int(data_rng.integers(0, len(text_ids) - S - 1))
                rows[b] = text_ids[s:s + S + 1]
        t = torch.from_numpy(rows).to(dev, non_blocking=True)
        g = torch.from_numpy(grps[:, 1:]).to(dev, non_blocking=True)
        return t[:, :-1], t[:, 1:], g, nkv

    def per_token_ce(x, y):
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            h = model.model(input_ids=x, use_cache=False).last_hidden_state
            logits = model.lm_head(h)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1),
                               reduction="none").view(y.shape)

    def loss_fn(x, y, g):
        ce = per_token_ce(x, y)
        wt, wk = (g == 1).float(), (g == 2).float()
        text = (ce * wt).sum() / wt.sum().clamp(min=1)
        ans = (ce * wk).sum() / wk.sum().clamp(min=1)
        return text + args.kv_weight * ans, text, ans, wk.sum()

    total = args.steps if args.steps else 10 ** 9
    switch = args.switch_step or (int(args.switch_frac * total) if args.steps else 10 ** 9)
    model.train()
    t_start = time.time()
    last_save = time.time()
    ema, ema_ans, seen, seen_kv_rows = None, None, 0, 0
    hist = []
    step = 0
    t10 = t_sw = None
    while step < total:
        phase2 = step >= switch
        S, B = (args.seq2, args.batch2) if phase2 else (args.seq, args.batch)
        cur = min(1.0, step / max(1, args.curriculum_frac * (total if total < 10 ** 9 else 3000)))
        max_doc = int(256 + (S - 256) * cur)
        x, y, g, nkv = batch(S, B, max_doc)
        lr = lr_at(step, total if total < 10 ** 9 else 10 ** 6)
        for grp in opt.param_groups:
            grp["lr"] = lr
        loss, l_text, l_ans, n_ans = loss_fn(x, y, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += x.numel()
        seen_kv_rows += nkv
        if not args.steps and dev == "cuda":
            if step == 10:
                torch.cuda.synchronize()
                t10 = time.time()
            if step == 40:
                torch.cuda.synchronize()
                per = (time.time() - t10) / 30
                # phase 2 has the same tokens per step but twice the attention span: assume
                # 1.3x the step time until measured (refit below)
                left = args.train_seconds - (time.time() - t_start)
                total = 40 + int(left / (per * (args.switch_frac + 1.3 * (1 - args.switch_frac))))
                switch = int(args.switch_frac * total)
                log(f"step time {per * 1e3:.0f} ms -> total_steps={total} switch_step={switch}")
            if step == switch + 5:
                torch.cuda.synchronize()
                t_sw = time.time()
            if step == switch + 25 and t_sw is not None:
                torch.cuda.synchronize()
                per2 = (time.time() - t_sw) / 20
                left = args.train_seconds - (time.time() - t_start)
                total = step + max(0, int(left / per2))
                log(f"phase-2 step time {per2 * 1e3:.0f} ms -> total_steps={total} "
                    f"(rerun with --steps {total} --switch-step {switch} to reproduce this schedule)")
        if step % 25 == 0 or step == total or step <= 3:
            lv, la = l_text.item(), l_ans.item()
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            if n_ans.item() > 0:
                ema_ans = la if ema_ans is None else 0.9 * ema_ans + 0.1 * la
            el = time.time() - t_start
            hist.append(dict(step=step, text_loss=round(lv, 4), answer_loss=round(la, 4), lr=lr,
                             seq=S, max_doc=max_doc, tokens=seen, t=round(el, 1)))
            log(f"step {step}/{total if total < 10 ** 9 else '?'} seq {S} doc<={max_doc} text {lv:.4f} "
                f"(ema {ema:.4f}) answer {la:.4f} (ema {ema_ans if ema_ans is not None else float('nan'):.4f}) "
                f"lr {lr:.2e} gnorm {float(gn):.2f} tokens {seen / 1e6:.1f}M tok/s {seen / max(el, 1e-9) / 1e3:.0f}k")
        if not args.steps and time.time() - t_start > 1.08 * args.train_seconds:
            log(f"NOTE: wall-clock stop at step {step} of {total}")
            total = step
            break
        if time.time() - last_save > args.save_every and step < total:
            save_checkpoint(model, args.out)
            last_save = time.time()
            log(f"checkpoint saved at step {step}")
    train_time = time.time() - t_start
    model.eval()
    # held-out loss at the phase-1 context (bf16 autocast, the same as training)
    S = args.seq
    with torch.no_grad():
        nwin = min(len(held) // (S + 1), 8 if args.smoke else 64)
        tot, cnt = 0.0, 0
        for i in range(nwin):
            t = torch.from_numpy(held[i * (S + 1):(i + 1) * (S + 1)].astype(np.int64)).to(dev)[None]
            tot += per_token_ce(t[:, :-1], t[:, 1:]).sum().item()
            cnt += S
    held_loss = tot / max(cnt, 1)
    log(f"done: {step} steps (switch at {switch}), {seen / 1e6:.1f} M tokens ({seen_kv_rows} retrieval rows, "
        f"{kv_rows.docs} retrieval documents, {kv_rows.answer_tokens} answer tokens), "
        f"{train_time:.0f} s, held-out loss {held_loss:.4f} (ppl {math.exp(held_loss):.2f}) over {cnt} tokens")
    save_checkpoint(model, args.out)
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "train_summary.json"), "w") as f:
        json.dump(dict(args=vars(args), model=MODEL, params=nparams, steps=step, switch_step=switch,
                       tokens=seen, train_tokens_available=int(len(text_ids)), heldout_tokens=int(len(held)),
                       retrieval_rows=seen_kv_rows, retrieval_docs=kv_rows.docs,
                       answer_tokens=kv_rows.answer_tokens, train_seconds=train_time,
                       heldout_loss_bf16=held_loss,
                       gpu=torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
                       torch=torch.__version__, history=hist), f, indent=1)
    log("saved", args.out)


if __name__ == "__main__":
    main()
