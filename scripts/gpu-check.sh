#!/bin/bash
# GPU check for the CUDA dense path (issue 6), in two halves:
#
#   scripts/gpu-check.sh build   # here (no GPU needed): build the gpu tests + dsinfer-bench in
#                                # build-cuda/ and bundle them with their libraries into
#                                # .gpu-bundle/ (CUDA's own libraries are left out: the GPU
#                                # host has CUDA 13, and cuBLASLt alone is over 500 MB)
#   scripts/gpu-check.sh run     # on the GPU host, from the repository root: every `gpu` test,
#                                # the benchmark and the transformers baseline, each bounded by
#                                # `timeout`, logs and JSON into $OUT (default ./gpu-check-out)
set -uo pipefail
mode=${1:-run}
cd "$(dirname "$0")/.."

if [ "$mode" = build ]; then
  set -e
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C build-cuda kernels_gpu_test cuda_golden_test dsinfer-bench
  rm -rf .gpu-bundle
  ../shared/tools/bundle-libs.sh .gpu-bundle build-cuda/tests/kernels_gpu_test \
    build-cuda/tests/cuda_golden_test build-cuda/bin/dsinfer-bench
  rm -f .gpu-bundle/lib/libcublas* .gpu-bundle/lib/libcudart*
  # One compressed file travels (carry: [".gpu-bundle/pack.tgz"]): the tree limit is 64 MiB.
  tar czf /tmp/dsinfer-pack.tgz -C .gpu-bundle bin lib && mv /tmp/dsinfer-pack.tgz .gpu-bundle/pack.tgz
  du -sh .gpu-bundle/pack.tgz
  exit 0
fi

[ -x .gpu-bundle/bin/dsinfer-bench ] || tar xzf .gpu-bundle/pack.tgz -C .gpu-bundle
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
log=$OUT/gpu-check.log
cuda_lib=$(dirname "$(find /usr/local/cuda/lib64 /usr/local/cuda*/ /opt /usr/lib -name 'libcublasLt.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:$cuda_lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
status=0
step() {  # step NAME SECONDS COMMAND...
  local name=$1 secs=$2; shift 2
  echo "=== $name ($(date -u +%H:%M:%S))" | tee -a "$log"
  timeout "$secs" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name rc=$rc" | tee -a "$log"
  [ "$rc" = 0 ] || status=1
}
nvidia-smi -L 2>&1 | tee -a "$log"
ldd $bin/dsinfer-bench | grep -i "not found" | tee -a "$log"
step kernels_gpu_test 120 $bin/kernels_gpu_test --gtest_output=json:$OUT/kernels_gpu_test.json
step cuda_golden_test 60 $bin/cuda_golden_test --gtest_output=json:$OUT/cuda_golden_test.json
if [ -n "${TESTS_ONLY:-}" ]; then exit $status; fi  # TESTS_ONLY=1: skip the timings
step dsinfer-bench "${BENCH_TIMEOUT:-200}" $bin/dsinfer-bench --json_out=$OUT/bench.json ${BENCH_ARGS:-}
step transformers "${HF_TIMEOUT:-150}" env PYTHONUNBUFFERED=1 python3 scripts/bench_transformers.py \
  --out $OUT/transformers.json
grep -E "^\[  (PASSED|FAILED) |SKIPPED \]|rc=" "$log" | tail -20
exit $status
