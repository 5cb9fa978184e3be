#!/bin/bash
# Run 31 call 4: compute-sanitizer over the GPU tests (HEAD's pack): memcheck over every test
# binary (the three long ones side by side), racecheck / synccheck / initcheck over the top-k
# and chain twin tests, memcheck over the operator bench at off-grid contexts.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out4; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
CS=/usr/local/cuda/bin/compute-sanitizer
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
san() {  # name limit tool binary [args]
  local name=$1 limit=$2 tool=$3; shift 3
  timeout $limit $CS --tool $tool --error-exitcode 99 --print-limit 40 "$@" > $OUT/$name.log 2>&1
  stamp $name $?
}
san mem-ds 500 memcheck $B/double_sparsity_gpu_test &
san mem-kernels 500 memcheck $B/kernels_gpu_test &
san mem-offload 500 memcheck $B/offload_gpu_test &
for t in cuda_golden_test dependent_launch_gpu_test double_sparsity_graph_gpu_test \
         memory_plan_gpu_test token_choice_gpu_test; do
  san mem-$t 150 memcheck $B/$t
done
F='DoubleSparsityGpu.TopKMatchesTwin:DoubleSparsityGpu.FusedSelectMatchesTwinsOnTies:DoubleSparsityGpu.ChainMatchesTwinsSmallSweep'
san race-ds 240 racecheck --racecheck-report hazard $B/double_sparsity_gpu_test --gtest_filter=$F
san sync-ds 150 synccheck $B/double_sparsity_gpu_test --gtest_filter=$F
san init-ds 150 initcheck $B/double_sparsity_gpu_test --gtest_filter=$F
san mem-opbench 120 memcheck $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined \
  --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 \
  --iters 2 --max_gib 100 --ds_variants "1/16 fp16 r8,1/16 4bit r8" --ds_topk_algos auto \
  --models llama3-8b --batches 3 --contexts 40000,100000
wait
for f in $OUT/*.log; do echo "$(basename $f): $(grep -h 'ERROR SUMMARY\|RACECHECK SUMMARY' $f | tail -1) | $(grep -c '^\[       OK' $f) ok, $(grep -c '^\[  FAILED' $f) failed"; done > $OUT/summary.txt
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
