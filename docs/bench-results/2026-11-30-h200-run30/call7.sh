#!/bin/bash
# Run 30 call 7: call 6's illegal address (dsinfer-attention-bench, Llama-2 heads batch 8 at
# 40000 tokens, before its dense line) reproduced alone at contexts around it, dense and Double
# Sparsity separately where possible, then under compute-sanitizer (one iteration).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
for bc in "8 40000" "8 40960" "8 36000" "8 33024" "4 40000" "8 32784"; do
  set -- $bc
  timeout 60 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 \
    --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama2-7b --iters 3 \
    --batches $1 --contexts $2 > $OUT/b$1-$2.log 2>&1
  stamp b$1-$2 $?
done
S=$(ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || which compute-sanitizer)
echo "sanitizer: $S" >> $OUT/rcs.txt
timeout 240 $S --tool memcheck --print-limit 20 $B/dsinfer-attention-bench --prefill=false \
  --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_attention_algos pipelined --ds_other_waves 4 --ds_variants "1/16 fp16 r8" \
  --ds_topk_algos auto --models llama2-7b --iters 1 --batches 8 --contexts 40000 \
  > $OUT/sanitizer-b8-40000.log 2>&1
stamp sanitizer $?
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
