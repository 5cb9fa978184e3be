#!/bin/bash
# Run 31 call 7 (the experiment's bench, pipeline-corun-experiment.patch): the co-run with the
# top-k kernels of little shared memory (the one-block kernel: 1024 threads, ~10 KiB; the
# multi-block kernels) beside the attention's two 96 KiB blocks an SM; Llama-3 heads batch 8.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name topk batches
  timeout 120 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos $2 --models llama3-8b \
    --batches $3 --contexts 65536,131072,262144 --ds_corun \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
op one-block one-block 8,4
op multi-block multi-block 8,4
op two-read two-read 8
op auto auto 8
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
