#!/usr/bin/env python3
"""More key-value retrieval prompts than the committed 20 per length, in token ids, with no
tokenizer library: the GPU accuracy run (gpu_report.sh) needs >= 50 per length class.

    /usr/bin/python3 tools/accuracy/expand_retrieval.py --out FILE [--per-length 60] [--seed 7]

tests/data/eval/retrieval.jsonl (made by tools/train/evaluate.py with tools/train/kv_retrieval.py)
holds whole prompts as ids: BOS, a header line, `- key: 5-digit value` lines, then
`Question: What is the value of KEY?` / `Answer: KEY:`. kv_retrieval.py builds its documents
by concatenating the ids of these pieces (the tokenizer merges nothing across a newline, a
following "▁" or a letter and ":"/"?"; it checks that), so new prompts made by concatenating
pieces taken from the committed ones are exactly what kv_retrieval.py would make:
this script parses every committed prompt back into header, (key ids, value) pairs and the
question's fixed parts, asserts that reassembling them reproduces the prompt, then writes the
committed items first and, per length class, fresh items: the header and pair count of a
committed item of that class, keys drawn from all parsed keys (distinct within a prompt), new
random values, a random asked pair. Deterministic for a given --seed.
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

BOS, NL, DASH, COLON, QMARK, SP = 1, 13, 28733, 28747, 28804, 28705  # models/demo/tokenizer.json
DIGITS = [28734, 28740, 28750, 28770, 28781, 28782, 28784, 28787, 28783, 28774]  # "0".."9"


def value_ids(v):
    return [SP] + [DIGITS[int(c)] for c in str(v)]


def split_lines(ids):
    """ids -> lines (lists of ids) split at NL; NL itself dropped."""
    lines, cur = [], []
    for t in ids:
        if t == NL:
            lines.append(cur)
            cur = []
        else:
            cur.append(t)
    lines.append(cur)
    return lines


def parse(item):
    """A committed item -> dict(header, pairs=[(key_ids, value)], q_pre, a_pre, asked)."""
    p = item["prompt_ids"]
    assert p[0] == BOS, "prompt must start with BOS"
    lines = split_lines(p[1:])
    header, body, q_line, a_line = lines[0], lines[1:-2], lines[-2], lines[-1]
    pairs = []
    for ln in body:
        # DASH key... COLON SP d d d d d
        assert ln[0] == DASH and ln[-7] == COLON and ln[-6] == SP, ln
        digits = ln[-5:]
        assert all(d in DIGITS for d in digits), ln
        pairs.append((tuple(ln[1:-7]), int("".join(str(DIGITS.index(d)) for d in digits))))
    answer = int("".join(str(DIGITS.index(d)) for d in item["answer_ids"][1:]))
    asked = [i for i, (k, v) in enumerate(pairs)
             if v == answer and q_line[-1 - len(k):-1] == list(k)]
    assert asked, "asked pair not found"
    key = list(pairs[asked[0]][0])
    assert q_line[-1] == QMARK and a_line[-1] == COLON and a_line[-1 - len(key):-1] == key
    parsed = dict(header=header, pairs=pairs, asked=asked[0],
                  q_pre=[NL] + q_line[:-1 - len(key)], a_pre=[NL] + a_line[:-1 - len(key)])
    prompt, answer_ids, q_tokens = assemble(parsed)
    assert prompt == p and answer_ids == item["answer_ids"], "reassembly differs"
    assert q_tokens == item["question_tokens"], (q_tokens, item["question_tokens"])
    return parsed


def assemble(d):
    """dict as parse() returns -> (prompt ids, answer ids, question tokens)."""
    ids = [BOS] + list(d["header"])
    for k, v in d["pairs"]:
        ids += [NL, DASH] + list(k) + [COLON] + value_ids(v)
    k, v = d["pairs"][d["asked"]]
    q = d["q_pre"] + list(k) + [QMARK] + d["a_pre"] + list(k) + [COLON]
    return ids + q, value_ids(v), len(q)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--retrieval", default=os.path.join(ROOT, "tests", "data", "eval", "retrieval.jsonl"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-length", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    with open(a.retrieval) as f:
        items = [json.loads(line) for line in f if line.strip()]
    parsed = [parse(it) for it in items]
    keys = sorted({k for d in parsed for k, _ in d["pairs"]})
    rng = random.Random(a.seed)
    out = []
    for length in sorted({it["target_len"] for it in items}):
        base = [(it, d) for it, d in zip(items, parsed) if it["target_len"] == length]
        out += [it for it, _ in base][:a.per_length]
        for j in range(a.per_length - len(base)):
            it, d = base[j % len(base)]
            n_pairs = len(d["pairs"])
            new = dict(header=d["header"], q_pre=d["q_pre"], a_pre=d["a_pre"],
                       pairs=[(k, rng.randint(10000, 99999)) for k in rng.sample(keys, n_pairs)],
                       asked=rng.randrange(n_pairs))
            prompt, answer, q_tokens = assemble(new)
            # Keys differ in length: stay within the committed item's size (and the context).
            while len(prompt) + len(answer) > len(it["prompt_ids"]) + len(it["answer_ids"]):
                drop = n_pairs - 1 if new["asked"] != n_pairs - 1 else 0
                del new["pairs"][drop]
                n_pairs -= 1
                new["asked"] -= 1 if drop < new["asked"] else 0
                prompt, answer, q_tokens = assemble(new)
            out.append(dict(target_len=length, n_tokens=len(prompt), depth=round(new["asked"] / n_pairs, 4),
                            question_tokens=q_tokens, answer="".join(map(str, [DIGITS.index(t) for t in answer[1:]])),
                            answer_ids=answer, prompt_ids=prompt, generated=True))
    with open(a.out, "w") as f:
        for it in out:
            f.write(json.dumps(it, separators=(",", ":")) + "\n")
    counts = {}
    for it in out:
        counts[it["target_len"]] = counts.get(it["target_len"], 0) + 1
    print(f"{len(keys)} distinct keys from {len(items)} committed prompts; wrote {a.out}: {counts}")


if __name__ == "__main__":
    main()
