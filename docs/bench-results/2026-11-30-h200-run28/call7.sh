#!/bin/bash
# Run 28 call 7: the 16-bit select's compaction with plain 16-bit compares (the SIMD-video
# __vcmpgtu2 / __vcmpeq2 are emulated on sm_90); the fused kernel's ring at 80 KB (bench-s80)
# and 128 KB (bench-s128), 1024 threads; the twins test on the 80 KB build.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
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
for t in s80 s128; do
  run $t-nb2 bench-$t "DSINFER_FUSED_TRACE=1 DSINFER_FUSED_CLUSTER=2" --models llama3-8b --batches 8 --contexts 16384,32768,65536,131072
done
timeout 240 $B/dstest-s80 --gtest_brief=1 > $OUT/ds_test.log 2>&1; echo "ds test rc $?" | tee -a $OUT/ds_test.log
tail -3 $OUT/ds_test.log
DSINFER_FUSED_CLUSTER=2 timeout 200 /usr/local/cuda/bin/ncu --clock-control none --kernel-name-base mangled -k regex:ScoreSelectClusterKernelI6__halfLi16ELi8E --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis --section SchedulerStats --section SourceCounters $B/bench-s80 $common --models llama3-8b --batches 8 --contexts 131072 > $OUT/ncu-nb2-128k.txt 2>&1
echo "ncu rc $?" >> $OUT/rcs.txt
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
