#!/bin/bash
# Run 27 call 9: the GEMV's tensor-core body, fourth form (v4: v3 with 4 KiB pieces of 8
# weight rows a stage, six stages): its GEMV twins, then the linear section beside call 7's v2,
# alternated.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out9; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && tar xJf .gpu-bundle/gv4.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
timeout 120 .gpu-bundle/kernels-v4 --gtest_filter='*Gemv*:*AutoLinear*' > $OUT/kernels_v4-call9.log 2>&1
echo "kernels-v4 rc=$?"; grep -E "FAILED|PASSED|Failure" $OUT/kernels_v4-call9.log | head
for r in 1 2; do for v in 4 2; do for m in llama3-8b llama2-7b; do
  n=lin_${m}_v${v}_r${r}
  timeout 60 .gpu-bundle/bench-v$v --attention dense --models $m --batches 1 --contexts 1024 \
    --iters 2 --linear_algos gemv --dependent_launch on --json_out $OUT/$n-call9.json > $OUT/$n-call9.log 2>&1
done; done; done
python3 - <<'PY'
import json,glob
for f in sorted(glob.glob("out9/lin_*.json")):
    d=json.load(open(f))
    for m,v in d['models'].items():
        out=[]
        for x in v['linear']['matrices']:
            if x['rows'] in (4,8): out.append('%d %s %.3f/%.3f'%(x['rows'],x['weight'][:6],x['cublas_ms'],x['gemv_ms']))
        print(f.split('/')[-1][:-11], ' | '.join(out))
PY
tar czf $FINAL/call9.tgz -C $OUT .
