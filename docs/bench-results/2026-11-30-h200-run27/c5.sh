#!/bin/bash
# Run 27 call 5: ncu of the GEMV's tensor-core body (call 4's build) on Llama-3-8B's decode
# matrices at 8 rows (speed of light, memory, warp states, occupancy; clocks not locked).
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out5; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
timeout 200 /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:"GemvMma" \
  --launch-skip 0 --launch-count 10 --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section Occupancy --section LaunchStats --section SchedulerStats \
  $B/dsinfer-bench --attention dense --models llama3-8b --batches 8 --contexts 1024 --iters 2 \
  --linear_algos gemv --dependent_launch on > $OUT/ncu_gemv_mma-call5.txt 2>&1
echo rc=$?; grep -E "GemvMma|GemvKernel|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Issue Slots|No Eligible|Stall" $OUT/ncu_gemv_mma-call5.txt | head -80
tar czf $FINAL/call5.tgz -C $OUT .
