#!/usr/bin/env bash
# The whole training pipeline on the GPU host, in one command (no network needed):
#   OUT=/some/dir bash tools/train/gpu_run.sh [extra train.py args]
# Set DEADLINE=N (seconds from the start) to stop the evaluation in time to pack what exists.
# Needs .train-data/{train,heldout}.txt.xz (tools/train/make_corpus.sh) and python3 with
# torch, transformers, tokenizers, safetensors. Leaves in $OUT:
#   train.log, eval.log            everything both steps printed
#   ckpt/model-*.safetensors       the bf16 checkpoint's shards (each under 16 MiB)
#   logits.f32                     golden logits (tests/data/golden/demo-trained/)
#   small.tar.xz                   config.json, generation_config.json, the shard index,
#                                  train_summary.json, results.json, golden.json,
#                                  retrieval.jsonl, heldout_sample.jsonl
set -u -o pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
W=${WORK:-/tmp/dsinfer-train}
rm -rf "$W"; mkdir -p "$W" "$OUT/ckpt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/train.log"
python3 tools/train/train.py --out "$W/demo" --train-seconds "${TRAIN_SECONDS:-390}" "$@" 2>&1 | tee -a "$OUT/train.log"
rc=$?
cp "$W"/demo/model*.safetensors "$OUT/ckpt/" 2>/dev/null
if [ -f "$W/demo/config.json" ]; then
  left=$(( ${DEADLINE:-100000} - SECONDS - 12 )); [ "$left" -lt 30 ] && left=30
  echo "evaluation time limit ${left}s" | tee "$OUT/eval.log"
  timeout "$left" python3 tools/train/evaluate.py --model "$W/demo" --out "$W/eval" 2>&1 | tee -a "$OUT/eval.log"
  erc=$?
else
  erc=1
fi
[ -f "$W/eval/golden/demo-trained/logits.f32" ] && cp "$W/eval/golden/demo-trained/logits.f32" "$OUT/"
mkdir -p "$W/small"
cp "$W"/demo/*.json "$W/small/" 2>/dev/null
cp "$W/train_summary.json" "$W/eval/results.json" "$W/eval/golden/demo-trained/golden.json" \
   "$W/eval/retrieval.jsonl" "$W/eval/heldout_sample.jsonl" "$W/small/" 2>/dev/null
rm -f "$W/small/tokenizer.json" "$W/small/tokenizer_config.json"
tar -C "$W/small" -cJf "$OUT/small.tar.xz" .
ls -la "$OUT" "$OUT/ckpt"
echo "train rc=$rc eval rc=$erc"
exit $(( rc != 0 || erc != 0 ))
