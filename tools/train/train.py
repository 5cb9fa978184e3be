#!/usr/bin/env python3
"""Trains the demo model: a small Llama (head_dim 128, GQA, RoPE, tied embeddings) on the
Debian English corpus plus synthetic key-value retrieval, and saves a bf16 HF checkpoint.

    python3 tools/train/train.py --data .train-data --out OUT/demo --seed 20261128 \
        --steps N            # fixed step count: the reproducible form
    python3 tools/train/train.py ... --train-seconds 380   # or: fit the steps to a time budget
    python3 tools/train/train.py ... --smoke               # tiny run to check the pipeline

Data order, initialisation and the retrieval documents all derive from --seed. With
--train-seconds the step count is fixed after 30 timed steps (printed as total_steps; pass
it as --steps to repeat the run with the same schedule). GPU kernels (atomics in the
embedding backward) make bit-exactness across runs not guaranteed.
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
             max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True,
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


def kv_sequences(tok, n_seq, seq, rng, text_ids, nprng):
    """n_seq rows of seq tokens, each filled with retrieval documents (BOS doc EOS) of random
    lengths, the tail after the last whole document filled with corpus text."""
    # tokens per pair, measured
    probe = kv_retrieval.training_doc(random.Random(0), 200, 0)
    per_pair = len(tok.encode(probe, add_special_tokens=False).ids) / 200.0
    docs = []
    total = 0
    while total < n_seq * seq:
        target = rng.randint(150, seq - 8)
        nq = rng.randint(1, 8)
        npairs = max(4, int((target - 12 - 14 * nq) / per_pair))
        docs.append(kv_retrieval.training_doc(rng, npairs, nq))
        total += target
    ids = []
    for i in range(0, len(docs), 512):
        for e in tok.encode_batch(docs[i:i + 512], add_special_tokens=False):
            ids.append([BOS] + e.ids[:seq - 2] + [EOS])
    rows = np.zeros((n_seq, seq), dtype=np.uint16)
    r, pos, kv_tokens = 0, 0, 0
    for d in ids:
        if r >= n_seq:
            break
        if pos + len(d) > seq:
            # fill the rest of this row with corpus text, go to the next row
            s = int(nprng.integers(0, len(text_ids) - seq))
            rows[r, pos:] = text_ids[s:s + seq - pos]
            r, pos = r + 1, 0
            if r >= n_seq:
                break
        rows[r, pos:pos + len(d)] = d
        pos += len(d)
        kv_tokens += len(d)
    while r < n_seq:  # leftover rows (not expected)
        s = int(nprng.integers(0, len(text_ids) - seq))
        rows[r, pos:] = text_ids[s:s + seq - pos]
        r, pos = r + 1, 0
    return rows, kv_tokens


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
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--train-seconds", type=float, default=380.0,
                    help="with --steps 0: fit the step count to this much training time")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--kv-frac", type=float, default=0.15, help="fraction of sequences that are retrieval")
    ap.add_argument("--kv-rows", type=int, default=3000, help="retrieval rows generated (reused cyclically)")
    ap.add_argument("--save-every", type=float, default=90.0, help="seconds between checkpoints")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.seq, args.batch, args.steps, args.kv_rows, args.warmup = 512, 4, 20, 16, 5
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
    rng = random.Random(args.seed + 1)
    nprng = np.random.default_rng(args.seed + 2)
    kv_rows, kv_tok = kv_sequences(tok, args.kv_rows, args.seq + 1, rng, text_ids, nprng)
    log(f"retrieval rows {len(kv_rows)}, retrieval tokens {kv_tok / 1e6:.2f} M "
        f"({kv_tok / kv_rows.size:.0%} of those rows)")

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
    S = args.seq
    kv_next = 0

    def batch():
        nonlocal kv_next
        rows = np.empty((args.batch, S + 1), dtype=np.int64)
        nkv = 0
        for b in range(args.batch):
            if data_rng.random() < args.kv_frac:
                rows[b] = kv_rows[kv_next % len(kv_rows)]
                kv_next += 1
                nkv += 1
            else:
                s = int(data_rng.integers(0, len(text_ids) - S - 1))
                rows[b] = text_ids[s:s + S + 1]
        t = torch.from_numpy(rows).to(dev, non_blocking=True)
        return t[:, :-1], t[:, 1:], nkv

    def loss_fn(x, y):
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            h = model.model(input_ids=x, use_cache=False).last_hidden_state
            logits = model.lm_head(h)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1))

    total = args.steps if args.steps else 10 ** 9
    model.train()
    t_start = time.time()
    last_save = time.time()
    ema, seen, seen_kv_rows = None, 0, 0
    hist = []
    step = 0
    while step < total:
        x, y, nkv = batch()
        lr = lr_at(step, total if total < 10 ** 9 else 10 ** 6)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen += x.numel()
        seen_kv_rows += nkv
        if step == 10 and dev == "cuda":
            torch.cuda.synchronize()
            t10 = time.time()
        if not args.steps and step == 40:
            torch.cuda.synchronize()
            per = (time.time() - t10) / 30
            total = int(args.train_seconds / per)
            log(f"step time {per * 1e3:.0f} ms -> total_steps={total} "
                f"(rerun with --steps {total} to reproduce this schedule)")
        if step % 25 == 0 or step == total or step <= 3:
            lv = loss.item()
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            el = time.time() - t_start
            hist.append(dict(step=step, loss=round(lv, 4), lr=lr, tokens=seen, t=round(el, 1)))
            log(f"step {step}/{total if total < 10 ** 9 else '?'} loss {lv:.4f} ema {ema:.4f} lr {lr:.2e} "
                f"gnorm {float(gn):.2f} tokens {seen / 1e6:.1f}M tok/s {seen / max(el, 1e-9) / 1e3:.0f}k")
        if time.time() - last_save > args.save_every and step < total:
            save_checkpoint(model, args.out)
            last_save = time.time()
            log(f"checkpoint saved at step {step}")
    train_time = time.time() - t_start
    model.eval()
    # held-out loss at the training context (bf16 autocast, the same as training)
    with torch.no_grad():
        nwin = min(len(held) // (S + 1), 8 if args.smoke else 64)
        tot, cnt = 0.0, 0
        for i in range(nwin):
            t = torch.from_numpy(held[i * (S + 1):(i + 1) * (S + 1)].astype(np.int64)).to(dev)[None]
            tot += loss_fn(t[:, :-1], t[:, 1:]).item() * S
            cnt += S
    held_loss = tot / max(cnt, 1)
    log(f"done: {step} steps, {seen / 1e6:.1f} M tokens ({seen_kv_rows} retrieval rows), "
        f"{train_time:.0f} s, held-out loss {held_loss:.4f} (ppl {math.exp(held_loss):.2f}) over {cnt} tokens")
    save_checkpoint(model, args.out)
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), "train_summary.json"), "w") as f:
        json.dump(dict(args=vars(args), model=MODEL, params=nparams, steps=step, tokens=seen,
                       train_tokens_available=int(len(text_ids)), heldout_tokens=int(len(held)),
                       retrieval_rows=seen_kv_rows, train_seconds=train_time, heldout_loss_bf16=held_loss,
                       gpu=torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
                       torch=torch.__version__, history=hist), f, indent=1)
    log("saved", args.out)


if __name__ == "__main__":
    main()
