#!/bin/bash
# GPU check for the CUDA paths (issue 6 dense, Double Sparsity), in two halves:
#
#   scripts/gpu-check.sh build   # here (no GPU needed): build every gpu test + dsinfer-bench in
#                                # build-cuda/ and pack them with their libraries into
#                                # .gpu-bundle/pack.txz (must stay under 16 MB: the transfer
#                                # limit with the tree). Left out: CUDA's own libraries (the GPU host has
#                                # CUDA 13; cuBLASLt alone is over 500 MB) and OpenBLAS (36 MB,
#                                # used only for cblas_sgemm in the tests' fp32 CPU references):
#                                # the netlib reference BLAS (450 KB, same cblas ABI) travels
#                                # under OpenBLAS's soname instead.
#   scripts/gpu-check.sh run     # on the GPU host, from the repository root: every gpu test,
#                                # the benchmark and (HF=1) the transformers baseline, each
#                                # bounded by `timeout` and all together by TOTAL_BUDGET seconds
#                                # (default 230), logs, gtest JSON, bench JSON and summary.json
#                                # into $OUT (default ./gpu-check-out).
#
# The lead runs, with device time:  run(command="scripts/gpu-check.sh run",
#                                       carry=[".gpu-bundle/pack.txz"])
set -uo pipefail
mode=${1:-run}
cd "$(dirname "$0")/.."

if [ "$mode" = build ]; then
  set -e
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  # Every executable under tests/gpu (the list grows as engineers add tests).
  tests=$(sed -n 's/^foreach(name \([^)]*\)).*/\1/p' tests/gpu/CMakeLists.txt)
  # Benchmarks and the tools the GPU steps run (each only if this tree defines it).
  tools=""
  all_targets=$(ninja -C build-cuda -t targets all 2>/dev/null | sed 's/:.*//')
  for t in dsinfer-bench dsinfer-attention-bench dsinfer-offload-bench dsinfer-read-bench \
           dsinfer-sampling-bench dsinfer-eval dsinfer-calibrate dsinfer-server dsinfer \
           dsinfer-run; do
    grep -qx "$t" <<< "$all_targets" && tools+=" $t"
  done
  ninja -C build-cuda -j"${JOBS:-2}" $tests $tools
  rm -rf .gpu-bundle
  bins=()
  for t in $tests; do bins+=("build-cuda/tests/$t"); done
  for t in $tools; do bins+=("build-cuda/bin/$t"); done
  ../shared/tools/bundle-libs.sh .gpu-bundle "${bins[@]}"
  rm -f .gpu-bundle/lib/libcublas* .gpu-bundle/lib/libcudart* .gpu-bundle/lib/libopenblas* \
    .gpu-bundle/lib/libgfortran* .gpu-bundle/lib/libquadmath*
  netlib=/usr/lib/x86_64-linux-gnu/blas/libblas.so.3
  # (grep without -q: it must read all of nm's output, or pipefail sees nm's SIGPIPE)
  nm -D "$netlib" | grep " T cblas_sgemm" >/dev/null || { echo "no cblas in $netlib" >&2; exit 1; }
  cp -L "$netlib" .gpu-bundle/lib/libopenblas.so.0
  strip --strip-unneeded .gpu-bundle/bin/* .gpu-bundle/lib/* 2>/dev/null || true
  # One compressed file travels (carry: [".gpu-bundle/pack.txz"]): the tree limit is 64 MiB.
  # Every binary statically links the CUDA kernels (~10 MB of fatbin each), so xz with a
  # dictionary larger than the tar stores the shared bytes once: ~9 MB instead of ~43 MB gzip.
  tar cf - -C .gpu-bundle bin lib | xz -9e --lzma2=preset=9e,dict=192MiB -T1 > /tmp/dsinfer-pack.txz
  mv /tmp/dsinfer-pack.txz .gpu-bundle/pack.txz
  size=$(stat -c %s .gpu-bundle/pack.txz)
  echo "pack.txz: $((size / 1024)) KiB ($(ls .gpu-bundle/bin | tr '\n' ' '))"
  # The tracked tree is ~60 MB of the 64 MiB transfer: runs carrying the pack move
  # tests/data/tokenizers (13 MB, unused on the GPU host) out of the tree for the call.
  [ "$size" -le $((16 * 1024 * 1024)) ] || { echo "pack.txz is over 16 MB" >&2; exit 1; }
  exit 0
fi

[ "$mode" = run ] || { echo "usage: $0 build|run" >&2; exit 2; }
start=$(date +%s)
budget=${TOTAL_BUDGET:-230}
rm -rf .gpu-bundle/bin .gpu-bundle/lib
# (python's lzma when the host has no xz binary)
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle 2> /dev/null ||
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    .gpu-bundle/pack.txz .gpu-bundle
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
log=$OUT/gpu-check.log
cuda_lib=$(dirname "$(find /usr/local/cuda/lib64 /usr/local/cuda*/ /opt /usr/lib -name 'libcublasLt.so.13*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:$cuda_lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
status=0
steps_json=""
step() {  # step NAME SECONDS COMMAND...  (SECONDS capped by what is left of the budget)
  local name=$1 secs=$2; shift 2
  local left=$((budget - ($(date +%s) - start)))
  [ "$secs" -le "$left" ] || secs=$left
  if [ "$secs" -le 5 ]; then
    echo "=== $name skipped: the ${budget} s budget is spent" | tee -a "$log"
    steps_json+="{\"name\":\"$name\",\"rc\":null,\"skipped\":true},"
    status=1
    return
  fi
  local t0=$(date +%s)
  echo "=== $name (limit ${secs} s, $(date -u +%H:%M:%S))" | tee -a "$log"
  timeout "$secs" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name rc=$rc ($(( $(date +%s) - t0 )) s)" | tee -a "$log"
  steps_json+="{\"name\":\"$name\",\"rc\":$rc,\"seconds\":$(( $(date +%s) - t0 ))},"
  [ "$rc" = 0 ] || status=1
}
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1)
echo "GPU: $gpu" | tee -a "$log"
ldd $bin/* | grep -i "not found" | sort -u | tee -a "$log"
# STEPS picks the groups (comma list; default tests,bench,offload,smoke), so that a session can
# split its device time into calls of under 10 minutes each:
#   tests     every gpu test binary (kernels first; GPU_TESTS="a_test b_test" picks some)
#   bench     dsinfer-bench (dense; DS_E2E=1 adds the Double Sparsity end-to-end configs,
#             DENSE_BENCH=0 leaves the dense one out),
#             dsinfer-attention-bench (decode operator + prefill kernels), PyTorch SDPA,
#             the Double Sparsity chain in plain PyTorch (scripts/bench_torch_ds_decode.py),
#             dsinfer-read-bench (HBM read rate by load method, and of scattered rows; READ_BENCH=0
#             leaves it out),
#             dsinfer-sampling-bench (the GPU sampler; SAMPLING_BENCH=0 leaves it out),
#             (HF=1) transformers generate
#   offload   dsinfer-offload-bench at 32K/128K (batch 1 and 4) and 256K (batch 1)
#   offload2  the same at the Llama-2-7B shape (32K, 128K, batch 1) and at 128K batch 4
#             (64-69 GB of pinned host memory each); OFFLOAD_ARGS adds bench flags to both
#   offload-tune  TUNE_MODES (default offload-previous) at 256K with GATHER_BLOCKS gather
#             grid caps (default "264 32"), TUNE_GPU=1 gpu mode at 256K, and an nsys summary of
#             offload-previous (if nsys exists)
#   longprefill  scripts/bench-long-prefill.sh: dsinfer-run prefill timing on a random
#             Llama-3.1-8B-shaped checkpoint, 32K (gpu, offload, offload layer-major) and 256K
#             (offload layer-major)
#   profile   nsys summaries of one Double Sparsity end-to-end configuration (if nsys exists)
#   waves     dsinfer-bench (batch 1 and 8, 4K and 32K) per DECODE_WAVES (default "8 4 2 1"):
#             the flash-decoding split count's aim, end to end
#   ncu-decode  ncu's time of every kernel of one eager dense decode step, batch 1, 4K
#             (NCU_MODELS, default both shapes; NCU_LINEAR the linear body, default cublas),
#             as CSV
#   sanitize  compute-sanitizer (if the host has it): memcheck over every gpu test binary (or
#             GPU_TESTS') and over dsinfer-attention-bench at contexts off the KV block and
#             label page grids (where run 30 found the bench reading past its buffers),
#             synccheck and initcheck over the top-k and chain twin tests, racecheck over
#             every top-k kernel at two row lengths. A step fails on any error the tool reports.
#   noise     scripts/golden_bf16_noise.py: transformers' bf16-vs-fp32 error on the golden models
#   smoke     scripts/gpu-server-smoke.sh: dsinfer-server --device cuda end to end, then with
#             every request Double Sparsity (decode graphs on, then off)
#   smoke-offload  the same in offload mode, a longer prompt prefilled layer-major a layer per
#             engine step (--prefill-chunk 16 --layer-major-layers-per-step 1), dense attention
#   accuracy  tools/accuracy/gpu_report.sh (the missing jobs of tools/accuracy/results-gpu;
#             FORCE=1 all) then a tarball of the results into $OUT
steps=",${STEPS:-tests,bench,offload,smoke},"
want() { [[ "$steps" == *",$1,"* ]]; }
# The gpu test binaries, the dense kernels first of all; GPU_TESTS names a subset
# (space-separated binaries) for a call that re-checks one area (the tests and sanitize groups).
gpu_tests=${GPU_TESTS:-kernels_gpu_test cuda_golden_test $(ls $bin | grep -E '_test$' | \
  grep -vE '^(kernels_gpu_test|cuda_golden_test)$')}
if want tests; then
  # Tests first (correctness decides what the timings mean).
  for t in $gpu_tests; do
    [ -x "$bin/$t" ] || continue
    # 120 s each: double_sparsity_gpu_test takes ~70 s on an H200 (run 29: cut at 75 s once).
    step "$t" "${TEST_TIMEOUT:-120}" "$bin/$t" --gtest_output=json:"$OUT/$t.json"
  done
fi
if want bench && [ -z "${TESTS_ONLY:-}" ]; then  # TESTS_ONLY=1: skip the timings
  if [ "${DENSE_BENCH:-1}" = 1 ]; then  # DENSE_BENCH=0: the operator benchmarks only
    step dsinfer-bench "${BENCH_TIMEOUT:-200}" "$bin/dsinfer-bench" --json_out="$OUT/bench.json" \
      ${BENCH_ARGS:-}
  fi
  if [ -n "${DS_E2E:-}" ]; then  # Double Sparsity end to end (issue 7): Llama-3-8B 32K b8
    step dsinfer-bench-ds "${DS_E2E_TIMEOUT:-150}" "$bin/dsinfer-bench" \
      --attention dense,double_sparse --ds_ratio 16 --label_bits 16 --models llama3-8b \
      --batches 8 --contexts 32768 --iters 5 --json_out="$OUT/bench_ds.json" ${DS_E2E_ARGS:-}
  fi
  # Double Sparsity: the attention operator alone (dense vs Double Sparsity), then PyTorch SDPA
  # decode at the same shapes on the same GPU (docs/benchmarks.md, "CUDA Double Sparsity").
  if [ "${ATTN_BENCH:-1}" = 1 ]; then  # ATTN_BENCH=0: dsinfer-bench only
    step dsinfer-attention-bench "${DS_BENCH_TIMEOUT:-80}" "$bin/dsinfer-attention-bench" \
      --json_out="$OUT/attention_bench.json" ${DS_BENCH_ARGS:-}
    step sdpa-decode "${SDPA_TIMEOUT:-40}" env PYTHONUNBUFFERED=1 python3 \
      scripts/bench_sdpa_decode.py --out "$OUT/sdpa_decode.json" \
      --ours "$OUT/attention_bench.json"
    # The Double Sparsity chain in plain PyTorch (label matmul, torch.topk, gather, SDPA).
    step torch-ds-decode "${TORCH_DS_TIMEOUT:-240}" env PYTHONUNBUFFERED=1 python3 \
      scripts/bench_torch_ds_decode.py --out "$OUT/torch_ds_decode.json" \
      --ours "$OUT/attention_bench.json" --sdpa "$OUT/sdpa_decode.json"
  fi
  if [ "${READ_BENCH:-1}" = 1 ] && [ -x "$bin/dsinfer-read-bench" ]; then
    step dsinfer-read-bench "${READ_TIMEOUT:-60}" "$bin/dsinfer-read-bench" \
      --json_out="$OUT/read_bench.json"
  fi
  if [ "${SAMPLING_BENCH:-1}" = 1 ] && [ -x "$bin/dsinfer-sampling-bench" ]; then
    step dsinfer-sampling-bench "${SAMPLING_TIMEOUT:-60}" "$bin/dsinfer-sampling-bench" \
      --json_out="$OUT/sampling_bench.json"
  fi
  if [ -n "${HF:-}" ]; then  # HF=1: transformers generate baseline (about 40 s)
    step transformers "${HF_TIMEOUT:-60}" env PYTHONUNBUFFERED=1 python3 \
      scripts/bench_transformers.py --out "$OUT/transformers.json"
  fi
fi
if want offload && [ -x "$bin/dsinfer-offload-bench" ]; then  # issue 8
  step offload-bench-32k-128k "${OFFLOAD_TIMEOUT:-150}" "$bin/dsinfer-offload-bench" \
    --contexts 32768,131072 --kv_pool_tokens 140000 --json_out="$OUT/offload_a.json" \
    ${OFFLOAD_ARGS:-}
  step offload-bench-256k "${OFFLOAD_TIMEOUT:-150}" "$bin/dsinfer-offload-bench" \
    --contexts 262144 --batches 1 --modes offload,offload-noreuse,offload-previous,dense-offload \
    --json_out="$OUT/offload_b.json" ${OFFLOAD_ARGS:-}
fi
if want offload2 && [ -x "$bin/dsinfer-offload-bench" ]; then  # issue 8: the other shapes
  step offload-bench-llama2 "${OFFLOAD_TIMEOUT:-150}" "$bin/dsinfer-offload-bench" \
    --model llama2-7b --contexts 32768,131072 --batches 1 --kv_pool_tokens 131400 \
    --json_out="$OUT/offload_llama2.json" ${OFFLOAD_ARGS:-}
  step offload-bench-128k-b4 "${OFFLOAD_TIMEOUT:-150}" "$bin/dsinfer-offload-bench" \
    --contexts 131072 --batches 4 --kv_pool_tokens 524500 --json_out="$OUT/offload_c.json" \
    ${OFFLOAD_ARGS:-}
fi
if want offload-tune && [ -x "$bin/dsinfer-offload-bench" ]; then  # issue 8: the reuse path
  # The gather shares the SMs with the layer's compute: its grid cap (--gather_blocks).
  for blocks in ${GATHER_BLOCKS:-264 32}; do
    step "offload-gather-$blocks" "${OFFLOAD_TIMEOUT:-150}" \
      "$bin/dsinfer-offload-bench" --contexts 262144 --batches 1 \
      --modes "${TUNE_MODES:-offload-previous}" \
      --gather_blocks "$blocks" --json_out="$OUT/offload_tune_$blocks.json"
  done
  if [ "${TUNE_GPU:-0}" = 1 ]; then  # gpu mode at 256K: the step's compute without PCIe
    step offload-gpu-256k "${OFFLOAD_TIMEOUT:-150}" "$bin/dsinfer-offload-bench" \
      --contexts 262144 --batches 1 --modes gpu --gpu_max_context 262144 \
      --json_out="$OUT/offload_gpu_256k.json"
  fi
  nsys_bin=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
  if [ -n "$nsys_bin" ]; then
    step nsys-offload-previous "${PROFILE_TIMEOUT:-150}" "$nsys_bin" profile -t cuda \
      --capture-range=cudaProfilerApi --stats=true --force-overwrite true -o "$OUT/offload_prev" \
      "$bin/dsinfer-offload-bench" --contexts 262144 --batches 1 --modes offload-previous \
      --steps 3 ${PROFILE_ARGS:-}
    rm -f "$OUT"/offload_prev.nsys-rep "$OUT"/offload_prev.sqlite
  else
    echo "=== nsys-offload-previous skipped: no nsys on this host" | tee -a "$log"
  fi
fi
if want longprefill && [ -x "$bin/dsinfer-run" ]; then  # issue 8: 256K prefill time
  step long-prefill "${LONGPREFILL_TIMEOUT:-420}" bash scripts/bench-long-prefill.sh "$bin" \
    "$OUT/long_prefill"
fi
if want profile; then  # nsys kernel and API summaries of one DS_E2E configuration (if nsys exists)
  nsys_bin=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
  if [ -n "$nsys_bin" ]; then
    step nsys-ds-e2e "${PROFILE_TIMEOUT:-120}" "$nsys_bin" profile -t cuda --stats=true \
      --force-overwrite true -o "$OUT/ds_e2e" "$bin/dsinfer-bench" --attention double_sparse \
      --models llama3-8b --batches 8 --contexts 32768 --iters 3 --graphs=false \
      --long_prefill_layers 1 ${PROFILE_ARGS:-}
    rm -f "$OUT"/ds_e2e.nsys-rep "$OUT"/ds_e2e.sqlite
  else
    echo "=== profile skipped: no nsys on this host" | tee -a "$log"
  fi
fi
if want waves; then  # the flash-decoding split count end to end (dsinfer-bench --decode_waves)
  for w in ${DECODE_WAVES:-8 4 2 1}; do
    step "dsinfer-bench-waves-$w" "${BENCH_TIMEOUT:-200}" "$bin/dsinfer-bench" \
      --decode_waves "$w" --batches 1,8 --contexts 4096,32768 --linear_algos cublas \
      --json_out="$OUT/bench_waves_$w.json"
  done
fi
if want ncu-decode; then  # per-kernel times of one eager dense decode step (issue 6's 4K floor)
  ncu_bin=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu \
    2>/dev/null | head -1)
  if [ -n "$ncu_bin" ]; then
    for model in ${NCU_MODELS:-llama2-7b llama3-8b}; do
      step "ncu-decode-$model" "${NCU_TIMEOUT:-150}" "$ncu_bin" --profile-from-start off \
        --cache-control none --clock-control none --metrics gpu__time_duration.sum --csv \
        --log-file "$OUT/ncu_decode_$model.csv" "$bin/dsinfer-bench" --models "$model" \
        --batches 1 --contexts 4096 --iters 1 --graphs=false \
        --linear_algos "${NCU_LINEAR:-cublas}" --dependent_launch on
    done
  else
    echo "=== ncu-decode skipped: no ncu on this host" | tee -a "$log"
  fi
fi
if want sanitize; then  # compute-sanitizer over the gpu tests (run 31: all clean on an H200)
  san_bin=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null \
    | head -1)
  if [ -n "$san_bin" ]; then
    san() {  # san NAME SECONDS TOOL COMMAND...: a step failing on any error the tool reports
      local name=$1 secs=$2 tool=$3; shift 3
      step "$name" "$secs" "$san_bin" --tool "$tool" --error-exitcode 99 --print-limit 40 "$@"
    }
    for t in $gpu_tests; do
      [ -x "$bin/$t" ] || continue
      # The pool the offload test makes too large to pin fails its cudaHostAlloc on purpose,
      # an API error memcheck would report.
      filter='*'; [ "$t" = offload_gpu_test ] && filter='-*UnpinnablePoolIsResourceExhausted'
      san "memcheck-$t" "${SAN_TIMEOUT:-200}" memcheck "$bin/$t" --gtest_filter="$filter"
    done
    twins='DoubleSparsityGpu.TopKMatchesTwin:DoubleSparsityGpu.FusedSelectMatchesTwinsOnTies'
    twins+=':DoubleSparsityGpu.ChainMatchesTwinsSmallSweep'
    for tool in synccheck initcheck; do
      san "$tool-double_sparsity" 120 "$tool" "$bin/double_sparsity_gpu_test" \
        --gtest_filter="$twins"
    done
    # 40000 and 100000 tokens: neither a multiple of the 256-token KV block nor of the label page.
    san memcheck-attention-bench 120 memcheck "$bin/dsinfer-attention-bench" --prefill=false \
      --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
      --ds_attention_algos pipelined --ds_other_waves 4 --iters 2 --max_gib 100 \
      --ds_variants "1/16 fp16 r8,1/16 4bit r8" --ds_topk_algos auto --models llama3-8b,llama2-7b \
      --batches 3 --contexts 40000,100000
    # Every top-k kernel over rows of 4099 and 70000 tokens (seven score kinds each), and the
    # fused scorer + cluster select.
    DSINFER_TOPK_TWIN_LENGTHS=4099,70000 san racecheck-topk 300 racecheck \
      --racecheck-report hazard "$bin/double_sparsity_gpu_test" \
      --gtest_filter=DoubleSparsityGpu.TopKMatchesTwin:DoubleSparsityGpu.FusedSelectMatchesTwinsOnTies
  else
    echo "=== sanitize skipped: no compute-sanitizer on this host" | tee -a "$log"
  fi
fi
if want noise; then  # transformers' own bf16 error on the golden models (cuda_golden_test's yardstick)
  step golden-bf16-noise "${NOISE_TIMEOUT:-120}" env PYTHONUNBUFFERED=1 python3 \
    scripts/golden_bf16_noise.py --out "$OUT/golden_bf16_noise.json"
fi
if want smoke && [ -x "$bin/dsinfer-server" ]; then
  step server-smoke "${SMOKE_TIMEOUT:-120}" bash scripts/gpu-server-smoke.sh "$bin" "$OUT/smoke" cuda
  # Every request Double Sparsity (all channels, no config: the decode steps run as CUDA graphs),
  # against the CPU engine with the same attention flags; then the same without graphs.
  ds_args="--attention-mode double_sparse --channels 128"
  step server-smoke-ds "${SMOKE_TIMEOUT:-120}" env SERVER_ARGS="$ds_args" RUN_ARGS="$ds_args" \
    bash scripts/gpu-server-smoke.sh "$bin" "$OUT/smoke-ds" cuda
  step server-smoke-ds-eager "${SMOKE_TIMEOUT:-120}" env \
    SERVER_ARGS="$ds_args --cuda-graphs=false" RUN_ARGS="$ds_args" \
    bash scripts/gpu-server-smoke.sh "$bin" "$OUT/smoke-ds-eager" cuda
fi
if want smoke-offload && [ -x "$bin/dsinfer-server" ]; then
  step server-smoke-offload "${SMOKE_TIMEOUT:-120}" env \
    SERVER_ARGS="--kv-mode offload --prefill-chunk 16 --layer-major-layers-per-step 1 --attention-mode dense" \
    PROMPT="The manual page of a command names it, sums up what it does in one line, shows how it is called, and then describes every option it takes in turn, with examples." \
    bash scripts/gpu-server-smoke.sh "$bin" "$OUT/smoke-offload" cuda
fi
if want accuracy && [ -x "$bin/dsinfer-eval" ]; then  # issue 10
  step accuracy "${ACCURACY_TIMEOUT:-420}" env JOBS="${ACC_JOBS:-8}" bash tools/accuracy/gpu_report.sh \
    "$bin" tools/accuracy/results-gpu
  tar czf "$OUT/results-gpu.tgz" tools/accuracy/results-gpu
fi
# Per-test gtest verdicts, then one summary JSON.
failed=$(grep -hE "^\[  FAILED  \] [A-Za-z].*\(" "$log" | sed 's/ (.*//' | sort -u)
passed=$(grep -cE "^\[       OK \]" "$log")
skipped=$(grep -cE "^\[  SKIPPED \]" "$log")
{
  printf '{"gpu":"%s","seconds":%d,"ok":%s,"gtest_passed":%d,"gtest_skipped":%d,' \
    "${gpu//\"/}" $(( $(date +%s) - start )) "$([ $status = 0 ] && echo true || echo false)" \
    "$passed" "$skipped"
  printf '"gtest_failed":['
  first=1
  while IFS= read -r f; do
    [ -n "$f" ] || continue
    [ $first = 1 ] || printf ','
    printf '"%s"' "$(echo "$f" | sed 's/^\[  FAILED  \] //; s/"/\\"/g')"
    first=0
  done <<< "$failed"
  printf '],"steps":[%s]}\n' "${steps_json%,}"
} > "$OUT/summary.json"
echo "--- summary"; cat "$OUT/summary.json"
# At most 8 files come back from the GPU host: everything but the log and the summary travels
# in one tarball (results.tgz).
(cd "$OUT" && find . -mindepth 1 -maxdepth 1 ! -name gpu-check.log ! -name summary.json \
   ! -name results.tgz -printf '%P\n' | tar czf results.tgz -T - --remove-files) || true
grep -E "max\|dlogit\||TB/s|x floor|^llama|^[0-9]+ +[0-9]+ " "$log" | tail -40
exit $status
