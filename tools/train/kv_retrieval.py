#!/usr/bin/env python3
"""Synthetic key-value retrieval: many `key: value` lines, then questions about some keys.

A document looks like

    The following is a list of keys and their values. Remember them.
    tovarin: 48213
    kel-mosu: riventa
    ...
    Question: What is the value of tovarin?
    Answer: 48213

Keys are random word-like strings (2-4 syllables, unique in the document); values are
random 5-digit numbers or random words. Training documents carry several questions;
evaluation prompts end with "Answer:" and the expected answer is the value with its
leading space (" 48213").

    python3 tools/train/kv_retrieval.py --seed 7 --sample     # print a small document

The generator is pure Python (random.Random), deterministic for a seed; token counts
need a tokenizer and are handled by the callers (train.py, evaluate.py).
"""
import argparse
import random

CONS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
        "br", "ch", "dr", "gl", "kr", "pl", "sh", "st", "th", "tr"]
VOWS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
CODA = ["", "", "", "n", "r", "l", "s", "k", "m"]
HEADERS = [
    "The following is a list of keys and their values. Remember them.",
    "Here is a table of keys and values.",
    "Below are key-value pairs. Each line gives a key, a colon and its value.",
    "Memorize the value of every key in this list.",
]


def syllable(rng):
    return rng.choice(CONS) + rng.choice(VOWS) + rng.choice(CODA)


def word(rng, lo=2, hi=3):
    return "".join(syllable(rng) for _ in range(rng.randint(lo, hi)))


def make_key(rng):
    if rng.random() < 0.25:
        return word(rng, 1, 2) + "-" + word(rng, 1, 2)
    return word(rng, 2, 4)


def make_value(rng):
    if rng.random() < 0.6:
        return str(rng.randint(10000, 99999))
    return word(rng, 2, 3)


def make_pairs(rng, n):
    keys, seen = [], set()
    while len(keys) < n:
        k = make_key(rng)
        if k not in seen:
            seen.add(k)
            keys.append(k)
    return [(k, make_value(rng)) for k in keys]


def context_text(header, pairs):
    return header + "\n" + "\n".join(f"{k}: {v}" for k, v in pairs)


def question(key):
    return f"\nQuestion: What is the value of {key}?\nAnswer:"


def training_doc(rng, n_pairs, n_questions):
    """A training document: context, then n_questions question/answer pairs."""
    pairs = make_pairs(rng, n_pairs)
    text = context_text(rng.choice(HEADERS), pairs)
    for _ in range(n_questions):
        k, v = pairs[rng.randrange(len(pairs))]
        text += question(k) + " " + v
    return text


def eval_item(rng, n_pairs):
    """An evaluation item: (prompt ending in 'Answer:', answer text with leading space,
    depth of the asked key as a fraction of the context)."""
    pairs = make_pairs(rng, n_pairs)
    i = rng.randrange(len(pairs))
    k, v = pairs[i]
    return context_text(rng.choice(HEADERS), pairs) + question(k), " " + v, i / len(pairs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sample", action="store_true")
    a = ap.parse_args()
    r = random.Random(a.seed)
    print(training_doc(r, 12, 3))
    print("----")
    p, ans, depth = eval_item(r, 8)
    print(p + ans, "\n(depth %.2f)" % depth)
