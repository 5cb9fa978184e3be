#!/bin/bash
# Run 27 call 7: three shapes of the GEMV's tensor-core body, each its own dsinfer-bench build
# (gemv_mma.cuh's DSINFER_GEMV_MMA_VARIANT): v0 six stages of 16 rows x 2 KiB, one block an SM
# (call 6's); v1 three such stages, two blocks an SM; v2 three stages of 16 rows x 4 KiB, one
# block. The linear section (every matrix alone, cuBLAS and the GEMV) at Llama-3-8B and
# Llama-2-7B, alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out7; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && tar xJf .gpu-bundle/gv.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
for r in 1 2; do for v in 0 1 2; do for m in llama3-8b llama2-7b; do
  n=lin_${m}_v${v}_r${r}
  timeout 60 .gpu-bundle/bench-v$v --attention dense --models $m --batches 1 --contexts 1024 \
    --iters 2 --linear_algos gemv --dependent_launch on --json_out $OUT/$n-call7.json > $OUT/$n-call7.log 2>&1
done; done; done
python3 - <<'PY'
import json,glob
for f in sorted(glob.glob("out7/lin_*.json")):
    d=json.load(open(f))
    for m,v in d['models'].items():
        out=[]
        for x in v['linear']['matrices']:
            if x['rows'] in (4,8): out.append('%d %s %.3f/%.3f'%(x['rows'],x['weight'][:6],x['cublas_ms'],x['gemv_ms']))
        print(f.split('/')[-1][:-11], ' | '.join(out))
PY
tar czf $FINAL/call7.tgz -C $OUT .
