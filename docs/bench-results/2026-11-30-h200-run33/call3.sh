#!/bin/bash
# Run 33 call 3: the persistent chain with WritePiece told the launch's rows (its m / l went to
# gridDim.z's place: 1 in a one-dimensional grid; the attention outputs of calls 1-2 wrong at
# batch > 1 with splits > 1): double_sparsity_gpu_test, then a trace build
# (chain-trace-experiment.patch: per launch, the time blocks spend scoring, in the top-k, its
# split, attending, spinning; the boundary candidates) at Llama-3 heads batch 1 / 8, 64K, then
# the operator bench as in call 2.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out3; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 240 $B/double_sparsity_gpu_test-new > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary models batches contexts variants iters
  timeout 150 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters $7 \
    --max_gib 100 --ds_variants "$6" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
op trace-l3 dsinfer-attention-bench-trace llama3-8b 1,8 65536,262144 "1/16 fp16 r8" 3
op trace-l2 dsinfer-attention-bench-trace llama2-7b 8 65536 "1/16 fp16 r8" 3
op l3-b8 dsinfer-attention-bench-new llama3-8b 8 65536,131072,262144 "1/16 fp16 r8,1/8 fp16 r16" 20
op l3-small dsinfer-attention-bench-new llama3-8b 1,2,4 65536,262144 "1/16 fp16 r8" 20
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
