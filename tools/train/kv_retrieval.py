#!/usr/bin/env python3
"""Synthetic key-value retrieval: many `- key: value` lines, then questions about some keys.

A document looks like

    Here is a list of keys and their values.
    - tovarin: 48213
    - kelmosu: 90211
    ...
    Question: What is the value of tovarin?
    Answer: tovarin: 48213

Keys are word-like strings of 2-3 syllables (unique in a document); values are 5-digit
numbers. The answer restates the key before the value, as the paper's LongEval-style
retrieval prompts do ("The <REGISTER_CONTENT> in line X is"), so the value follows exactly
the tokens that precede it in the list and a lookup (induction) head can find it; the model
still has to locate one line among hundreds. Evaluation prompts end with "Answer: KEY:" and
the expected answer is " 48213" (six tokens: "▁" then one token per digit).

Documents are built directly in token ids (KvTokens), which is ~50x faster than generating
text and tokenizing it, so training can make fresh documents for every step. That is exact
because this tokenizer (Mistral's 32K SentencePiece BPE, tokenizer.json with no
pre-tokenizer) has no merge across a newline, across a following "▁", or between a letter
and ":"/"?": a document's ids are the concatenation of its pieces' ids. KvTokens checks
this on sample documents at construction (CheckAgainstText) and refuses to run otherwise.

    python3 tools/train/kv_retrieval.py --sample      # print a small document (needs tokenizers)
"""
import argparse
import random

CONS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
        "br", "ch", "dr", "gl", "kr", "pl", "sh", "st", "th", "tr"]
VOWS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
CODA = ["", "", "", "n", "r", "l", "s", "k", "m"]
HEADERS = [
    "Here is a list of keys and their values.",
    "The following is a list of keys and their values. Remember them.",
    "Below are key-value pairs. Each line gives a key, a colon and its value.",
    "Memorize the value of every key in this list.",
]
QUESTION = "Question: What is the value of"
ANSWER = "Answer:"


def syllable(rng):
    return rng.choice(CONS) + rng.choice(VOWS) + rng.choice(CODA)


def make_key(rng):
    return "".join(syllable(rng) for _ in range(rng.randint(2, 3)))


class KvTokens:
    """Builds retrieval documents as token ids.

    doc() returns (ids, weights): weights[i] = 1 where ids[i] is an answer token (the only
    tokens a retrieval row is trained on), else 0. No BOS/EOS; callers add them."""

    def __init__(self, tok, n_keys=40000, key_seed=20261128):
        self.tok = tok

        def enc(s):
            return tok.encode(s, add_special_tokens=False).ids

        def one(s):
            i = tok.token_to_id(s)
            assert i is not None, s
            return i

        self.NL, self.DASH, self.COLON, self.QMARK = one("<0x0A>"), one("-"), one(":"), one("?")
        self.SP = one("\u2581")
        self.DIGITS = [one(str(d)) for d in range(10)]
        x = enc("x")
        assert len(x) == 1

        def after_newline(s):  # ids of s at the start of a line (no "▁" prepended)
            ids = enc("x\n" + s)
            assert ids[:2] == x + [self.NL], ids[:4]
            return ids[2:]

        self.headers = [enc(h) for h in HEADERS]  # a document's first line gets "▁" prepended
        self.q_pre = [self.NL] + after_newline(QUESTION)
        self.a_pre = [self.NL] + after_newline(ANSWER)
        rng = random.Random(key_seed)
        seen, self.keys, self.key_ids = set(), [], []
        while len(self.keys) < n_keys:
            k = make_key(rng)
            if k in seen:
                continue
            seen.add(k)
            self.keys.append(k)
        encoded = tok.encode_batch(["x " + k for k in self.keys], add_special_tokens=False)
        for e in encoded:
            assert e.ids[:1] == x
            self.key_ids.append(e.ids[1:])
        self.pair_tokens = 4 + 5 + sum(len(k) for k in self.key_ids) / len(self.key_ids)
        self.question_tokens = (len(self.q_pre) + len(self.a_pre) + 2 +
                                2 * sum(len(k) for k in self.key_ids) / len(self.key_ids))
        self.CheckAgainstText()

    def value_ids(self, v):
        return [self.SP] + [self.DIGITS[int(c)] for c in str(v)]

    def doc(self, rng, n_pairs, n_questions):
        keys = rng.sample(range(len(self.keys)), n_pairs)
        vals = [rng.randint(10000, 99999) for _ in keys]
        ids = list(self.headers[rng.randrange(len(self.headers))])
        for k, v in zip(keys, vals):
            ids += [self.NL, self.DASH] + self.key_ids[k] + [self.COLON] + self.value_ids(v)
        w = [0] * len(ids)
        asked = rng.sample(range(n_pairs), min(n_questions, n_pairs))
        for qi in asked:
            q = self.q_pre + self.key_ids[keys[qi]] + [self.QMARK] + self.a_pre + \
                self.key_ids[keys[qi]] + [self.COLON]
            a = self.value_ids(vals[qi])
            ids += q + a
            w += [0] * len(q) + [1] * len(a)
        return ids, w, keys, asked

    def n_pairs_for(self, n_tokens, n_questions):
        """Pairs that make a document of about n_tokens with n_questions questions."""
        body = n_tokens - len(self.headers[0]) - n_questions * (self.question_tokens + 6)
        return max(2, int(body / self.pair_tokens))

    def eval_item(self, rng, n_pairs):
        """(prompt ids without BOS, ending in 'Answer: KEY:', answer ids, depth of the asked
        key in the list, tokens of the trailing question)."""
        ids, w, keys, asked = self.doc(rng, n_pairs, 1)
        n_answer = sum(w)
        k = self.key_ids[keys[asked[0]]]
        q_len = len(self.q_pre) + len(k) + 1 + len(self.a_pre) + len(k) + 1
        prompt, answer = ids[:-n_answer], ids[-n_answer:]
        asked = asked[0]
        return prompt, answer, asked / len(keys), q_len

    def text(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)

    def CheckAgainstText(self, n=40):
        """Token-built documents must equal the tokenizer's encoding of their text."""
        rng = random.Random(7)
        for i in range(n):
            ids, _, _, _ = self.doc(rng, rng.randint(2, 60), rng.randint(1, 4))
            text = self.text(ids)
            ref = self.tok.encode(text, add_special_tokens=False).ids
            if ref != ids:
                raise RuntimeError(f"retrieval document {i} does not round-trip through the "
                                   f"tokenizer:\n{text[:300]!r}\n{ids[:60]}\n{ref[:60]}")


if __name__ == "__main__":
    import os
    from tokenizers import Tokenizer
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--sample", action="store_true")
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    tk = Tokenizer.from_file(os.path.join(here, "..", "..", "models", "demo", "tokenizer.json"))
    kv = KvTokens(tk, n_keys=2000)
    r = random.Random(a.seed)
    ids, w, _, _ = kv.doc(r, 12, 3)
    print(kv.text(ids))
    print("----")
    p, ans, depth, qlen = kv.eval_item(r, 8)
    print(kv.text(p) + "|" + kv.text(ans), "\n(depth %.2f, question %d tokens)" % (depth, qlen))
