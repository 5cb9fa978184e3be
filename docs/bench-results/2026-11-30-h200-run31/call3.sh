#!/bin/bash
# Run 31 call 3: the co-run again, with the top-k on a high-priority stream, and with the
# attention's blocks asking for 20 or 12 KiB more shared memory (one block an SM, room for a
# top-k block beside it), alone and beside the top-k; Llama-3 heads batch 8 / 4.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out3; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name topk models batches contexts [more flags]
  local name=$1 topk=$2 models=$3 batches=$4 ctxs=$5; shift 5
  timeout 120 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos $topk --models $models \
    --batches $batches --contexts $ctxs "$@" \
    --json_out $OUT/$name.json > $OUT/$name.log 2>&1
  stamp $name $?
}
op pad20 auto llama3-8b 8,4 65536,131072,262144 --ds_corun --ds_corun_pad_kib 20
op pad20-striped striped llama3-8b 8 65536,131072,262144 --ds_corun --ds_corun_pad_kib 20
op pad12 auto llama3-8b 8 65536,262144 --ds_corun --ds_corun_pad_kib 12
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
