#!/bin/bash
# Run 28 call 1: the fused scorer + top-k with fp16 score bits in shared memory (half the
# room), its selection against the twins (double_sparsity_gpu_test) and its time at long rows
# against the two launches, at several cluster sizes (DSINFER_FUSED_CLUSTER, experiment only),
# beside the committed code's bench (attn-bench-base).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv | tee $OUT/gpu.txt
timeout 240 $B/double_sparsity_gpu_test --gtest_brief=1 > $OUT/ds_test.log 2>&1; echo "ds test rc $?" | tee -a $OUT/ds_test.log
tail -5 $OUT/ds_test.log
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --max_gib 100"
run() {  # name, bin, env, args
  local name=$1 bin=$2 envv=$3; shift 3
  env $envv timeout 150 $B/$bin $common --json_out $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
run l3b8-base attn-bench-base X=1 --models llama3-8b --batches 8 --contexts 16384,32768,65536,131072
run l3b8-auto dsinfer-attention-bench X=1 --models llama3-8b --batches 8 --contexts 16384,32768,65536,131072
for nb in 1 2 4; do
  run l3b8-nb$nb dsinfer-attention-bench DSINFER_FUSED_CLUSTER=$nb --models llama3-8b --batches 8 --contexts 16384,32768,65536,131072
done
run short-base attn-bench-base X=1 --models llama2-7b,llama3-8b --batches 1,8 --contexts 4096
run short-new dsinfer-attention-bench X=1 --models llama2-7b,llama3-8b --batches 1,8 --contexts 4096
run l3b1-base attn-bench-base X=1 --models llama3-8b --batches 1 --contexts 16384,65536,262144
run l3b1-new dsinfer-attention-bench X=1 --models llama3-8b --batches 1 --contexts 16384,65536,262144
grep -h "fused" $OUT/*.log | head -0
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
