#!/bin/bash
# Run 27 call 6: the GEMV's tensor-core body, second form (x as B fragments in registers, six
# 33 KiB stages of weights, ldmatrix): the twins and the engine tests, then dsinfer-bench
# --linear_algos auto,cublas,gemv as call 4.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
for t in kernels_gpu_test cuda_golden_test double_sparsity_graph_gpu_test; do
  timeout 150 $B/$t > $OUT/$t-call6.log 2>&1; echo "$t rc=$?"; grep -E "FAILED|PASSED" $OUT/$t-call6.log | head -5
done
for cfg in llama3-8b:8:32768 llama2-7b:8:30720 llama3-8b:4:65536; do
  IFS=: read model b ctx <<< "$cfg"
  n=e2e_${model}_b${b}_${ctx}
  timeout 110 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches $b --contexts $ctx --iters 7 --linear_algos auto,cublas,gemv \
    --dependent_launch on --long_prefill_layers 1 --json_out $OUT/$n-call6.json > $OUT/$n-call6.log 2>&1
  echo "$n rc=$?"; grep -E "^(dense|double_sparse)" $OUT/$n-call6.log | cut -c1-100
done
python3 - <<'PY'
import json,glob
for f in sorted(glob.glob("out6/e2e_*.json"))[:2]:
    d=json.load(open(f))
    for m,v in d['models'].items():
        for x in v['linear']['matrices']:
            if x['rows'] in (4,8): print(m,x['rows'],x['weight'],'cublas %.3f gemv %.3f ms (%.0f / %.0f GB/s)'%(x['cublas_ms'],x['gemv_ms'],x['cublas_GBps'],x['gemv_GBps']))
        for s in v['linear']['step']: print(m,'step',s)
PY
tar czf $FINAL/call6.tgz -C $OUT .
