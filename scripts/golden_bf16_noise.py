#!/usr/bin/env python3
"""transformers' own bf16 rounding noise on the golden models (run on the GPU host).

For each tests/data/golden/<model>: the prompt's logits from transformers in bf16 (the same
checkpoint, cast on load) against its fp32 logits, as max|dlogit| / max|logit| — the yardstick
for the CUDA engine's bf16 error in tests/gpu/cuda_golden_test.cc (issue 6's bound: 2e-2).
Prints one line per model and writes JSON to --out.
"""
import argparse
import glob
import json
import os

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    results = {}
    for d in sorted(glob.glob("tests/data/golden/*/golden.json")):
        model_dir = os.path.dirname(d)
        config = os.path.join(model_dir, "config.json")
        if not os.path.exists(config) or "model_type" not in json.load(open(config)):
            continue  # a model without a transformers config (the trained demo model's data)
        golden = json.load(open(d))
        ids = torch.tensor([golden["prompt_ids"]], device="cuda")
        logits = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).cuda().eval()
            with torch.no_grad():
                logits[name] = m(ids).logits[0].float()
            del m
        ref = logits["fp32"]
        scale = ref.abs().max().item()
        row = {k: (logits[k] - ref).abs().max().item() / scale for k in ("bf16", "fp16")}
        results[os.path.basename(model_dir)] = row
        print(f"{os.path.basename(model_dir)}: transformers bf16 {row['bf16']:.4f}, "
              f"fp16 {row['fp16']:.5f} of max|logit| (vs its fp32)", flush=True)
    json.dump(results, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
