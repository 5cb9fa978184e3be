#!/bin/bash
# Run 28 call 6: the fused kernel with the ballot histogram, fp16 rows through a cp.async ring
# (80 KB), and the 16-bit select's compaction reading its keys twice (no flag arrays): 1024
# threads (bench-r1024) against 512 (bench-r512); the twins test on the 1024 build.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
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
  run r$t-nb2 bench-r$t "DSINFER_FUSED_TRACE=1 DSINFER_FUSED_CLUSTER=2" --models llama3-8b --batches 8 --contexts 32768,65536,131072
done
timeout 240 $B/dstest-r1024 --gtest_brief=1 > $OUT/ds_test.log 2>&1; echo "ds test rc $?" | tee -a $OUT/ds_test.log
tail -3 $OUT/ds_test.log
DSINFER_FUSED_CLUSTER=2 timeout 200 /usr/local/cuda/bin/ncu --clock-control none --kernel-name-base mangled -k regex:ScoreSelectClusterKernelI6__halfLi16ELi8E --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section MemoryWorkloadAnalysis --section SchedulerStats --section SourceCounters $B/bench-r1024 $common --models llama3-8b --batches 8 --contexts 131072 > $OUT/ncu-nb2-128k.txt 2>&1
echo "ncu rc $?" >> $OUT/rcs.txt
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
