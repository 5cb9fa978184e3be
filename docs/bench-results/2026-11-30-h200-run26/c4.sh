#!/bin/bash
# Run 26 call 4: the GEMV on tensor cores from two rows (AccumulateStageMma: the x rows as A,
# the group's 8 weight rows as B of mma.m16n8k16). kernels_gpu_test (the GEMV twins at 1-8
# rows); dsinfer-bench with --linear_algos gemv,cublas (both bodies timed in the same run,
# its linear section per matrix and row count): Llama-3-8B batch 8 at 32K and batch 4 at 64K,
# Llama-2-7B batch 8 at 30K, dense and Double Sparsity (1/16 fp16 r 8).
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
STEPS=tests GPU_TESTS="kernels_gpu_test" TOTAL_BUDGET=120 TEST_TIMEOUT=110 timeout 130 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for cfg in llama3-8b:8:32768 llama2-7b:8:30720 llama3-8b:4:65536; do
  IFS=: read model b ctx <<< "$cfg"
  n=e2e_${model}_b${b}_${ctx}
  timeout 120 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos gemv,cublas \
    --dependent_launch on --long_prefill_layers 1 --json_out $OUT/$n.json > $OUT/$n.log 2>&1
  echo "$n rc=$?"; grep -E "^(dense|double_sparse)" $OUT/$n.log | cut -c1-100
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
