#!/bin/bash
# Run 43 call 3 (an experiment build, `l2-trigger-experiment.patch` against `1e816c9`): the
# chain with the scorer's label loads evict-first in L2 (e: ld.global.cs, so the score rows it
# writes stay in L2 for the top-k), with the dependents' launch triggered early (t: the scorer
# at a warp's last run, the top-k before its shared-memory finish), both (et), and neither
# (base, `1e816c9`'s bench), alternated three times in one call: batch 8, 1/16 fp16 r 8 and
# 4-bit r 8, Llama-2 heads at 64K / 128K, Llama-3 heads at 64K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
OUT=$PWD/out3
mkdir -p "$OUT"
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
: > "$OUT/rcs.txt"
step() {  # name timeout command...
  local name=$1 t=$2; shift 2
  timeout "$t" "$@" 2>&1 | tee "$OUT/$name.log" > /dev/null
  echo "$name ${PIPESTATUS[0]}" >> "$OUT/rcs.txt"
}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
for pass in 1 2 3; do
  for v in base e t et; do
    for m in llama2-7b:65536,131072 llama3-8b:65536; do
      step "op_${v}_${m%%:*}_$pass" 60 $B/bench_$v --models "${m%%:*}" --batches 8 \
        --contexts "${m#*:}" --prefill=false --dense_algos pipelined --dense_waves 4 \
        --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
        --ds_other_waves 4 --ds_variants "1/16 fp16 r8,1/16 4bit r8" --max_gib 100 --iters 20 \
        --json_out "$OUT/op_${v}_${m%%:*}_$pass.json"
    done
  done
done
python3 - "$OUT" > "$OUT/summary.txt" <<'PY'
import glob, json, sys, collections
rows = collections.defaultdict(list)
for f in sorted(glob.glob(sys.argv[1] + "/op_*.json")):
    v = f.split("/op_")[1].split("_")[0]
    for r in json.load(open(f))["results"]:
        if r["op"] == "dense": continue
        key = (r["model"], r["context"], r["op"])
        rows[key].append((v, r["us"], r["us_score"], r["us_topk"], r["us_attention"]))
for key, vals in sorted(rows.items()):
    print(key)
    for v in ("base", "e", "t", "et"):
        xs = [x for x in vals if x[0] == v]
        print("  %-4s chain %s | score %s | topk %s" % (v,
              " ".join("%.1f" % x[1] for x in xs), " ".join("%.1f" % x[2] for x in xs),
              " ".join("%.1f" % x[3] for x in xs)))
PY
cd "$OUT/.." && tar czf "$FINAL/call3.tgz" out3
cat "$OUT/rcs.txt" | awk '$2 != 0'
cat "$OUT/summary.txt"
