#!/usr/bin/env python3
"""Splits the committed held-out sample (tests/data/eval/heldout_sample.jsonl: whole
held-out documents, never trained on) into disjoint calibration and evaluation text, so the
channels are never chosen on the text they are scored on.

    /usr/bin/python3 tools/accuracy/prepare_data.py --out DIR [--calib-docs 40]

Writes DIR/calib.txt (the last --calib-docs documents) and DIR/eval.txt (the others, in
order), documents separated by blank lines. Tokenization happens in the engine's tools
(dsinfer-calibrate --text-file, dsinfer-eval --text-file) with the model's tokenizer.
"""
import argparse
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--heldout", default=os.path.join(ROOT, "tests", "data", "eval", "heldout_sample.jsonl"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--calib-docs", type=int, default=40)
    a = ap.parse_args()
    with open(a.heldout, encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f if line.strip()]
    if len(docs) <= a.calib_docs:
        raise SystemExit(f"only {len(docs)} documents; need more than --calib-docs {a.calib_docs}")
    os.makedirs(a.out, exist_ok=True)
    calib, evaluation = docs[-a.calib_docs:], docs[:-a.calib_docs]
    for name, part in (("calib.txt", calib), ("eval.txt", evaluation)):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.write("\n\n".join(d.strip("\n") for d in part) + "\n")
    print(f"{len(calib)} calibration documents ({sum(map(len, calib))} chars), "
          f"{len(evaluation)} evaluation documents ({sum(map(len, evaluation))} chars)")


if __name__ == "__main__":
    main()
