#!/bin/bash
# Run 28 call 5: the fused kernel's high-byte histogram counted from ballot bit planes in
# registers (no shared-memory atomic per key), register loads (no ring); 1024-thread blocks
# for fp16 r 8 (bench-t1024) against 512 everywhere (bench-t512); phase traces; ncu at 128K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --max_gib 100"
run() {  # name, bin, env, args
  local name=$1 bin=$2 envv=$3; shift 3
  env $envv timeout 150 $B/$bin $common --json_out $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
for t in 1024 512; do
  run t$t-nb2 bench-t$t "DSINFER_FUSED_TRACE=1 DSINFER_FUSED_CLUSTER=2" --models llama3-8b --batches 8 --contexts 32768,65536,131072
done
run t1024-auto bench-t1024 "DSINFER_FUSED_TRACE=1" --models llama3-8b --batches 8 --contexts 65536,131072
DSINFER_FUSED_CLUSTER=2 timeout 200 /usr/local/cuda/bin/ncu --clock-control none --kernel-name-base mangled -k regex:ScoreSelectClusterKernelI6__halfLi16ELi8E --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis --section SchedulerStats --section SourceCounters $B/bench-t1024 $common --models llama3-8b --batches 8 --contexts 131072 > $OUT/ncu-nb2-128k.txt 2>&1
echo "ncu rc $?" >> $OUT/rcs.txt
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
