#!/bin/bash
# Run 28 call 2: where the fused kernel's time goes (score phase / select phase, per block,
# %globaltimer, experiment-only tracing) at cluster sizes 2 and the default; the cluster top-k
# beside; ncu of one fused launch at 128K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --max_gib 100"
run() {  # name, bin, env, args
  local name=$1 bin=$2 envv=$3; shift 3
  env $envv timeout 150 $B/$bin $common --json_out $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
run trace-nb2 dsinfer-attention-bench "DSINFER_FUSED_TRACE=1 DSINFER_FUSED_CLUSTER=2" --ds_topk_algos auto,cluster --models llama3-8b --batches 8 --contexts 16384,65536,131072
run trace-auto dsinfer-attention-bench "DSINFER_FUSED_TRACE=1" --ds_topk_algos auto --models llama3-8b --batches 8 --contexts 65536,131072
DSINFER_FUSED_CLUSTER=2 timeout 200 /usr/local/cuda/bin/ncu --clock-control none -k regex:ScoreSelectCluster --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis $B/dsinfer-attention-bench $common --ds_topk_algos auto --models llama3-8b --batches 8 --contexts 131072 > $OUT/ncu-nb2-128k.txt 2>&1
echo "ncu rc $?" >> $OUT/rcs.txt
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
