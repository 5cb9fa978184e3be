#!/bin/bash
# Run 27 call 4: the GEMV's tensor-core body with x resident in shared memory (gemv_mma.cuh)
# at 3-8 rows, kAuto taking it on the 4096-wide inputs. kernels_gpu_test (the GEMV twins,
# the rule), cuda_golden_test and the graph tests; dsinfer-bench with --linear_algos
# auto,cublas,gemv (each body timed in the same run; its linear section per matrix and row
# count): Llama-3-8B batch 8 at 32K and batch 4 at 64K, Llama-2-7B batch 8 at 30K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
STEPS=tests GPU_TESTS="kernels_gpu_test cuda_golden_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for cfg in llama3-8b:8:32768 llama2-7b:8:30720 llama3-8b:4:65536; do
  IFS=: read model b ctx <<< "$cfg"
  n=e2e_${model}_b${b}_${ctx}
  timeout 110 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto,cublas,gemv \
    --dependent_launch on --long_prefill_layers 1 --json_out $OUT/$n.json > $OUT/$n.log 2>&1
  echo "$n rc=$?"; grep -E "^(dense|double_sparse)" $OUT/$n.log | cut -c1-120
done
python3 - <<'PY'
import json,glob
for f in sorted(glob.glob("out4/e2e_*.json")):
    d=json.load(open(f))
    for m,v in d['models'].items():
        for x in v['linear']['matrices']:
            if x['rows'] in (2,4,8): print(m,x['rows'],x['weight'],'cublas %.3f gemv %.3f ms (%.0f / %.0f GB/s)'%(x['cublas_ms'],x['gemv_ms'],x['cublas_GBps'],x['gemv_GBps']))
        for s in v['linear']['step']: print(m,'step',s)
PY
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
