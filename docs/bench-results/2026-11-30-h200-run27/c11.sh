#!/bin/bash
# Run 27 call 11: call 9's GEMV form (v4: the weights as the mma's B, 8 rows x 4 KiB pieces) at
# two blocks an SM: 256 threads (s2 / s3: two / three stages a block, 128 registers, spilling
# 204 / 144 bytes) and 512 threads (w2 / w3, 64 registers, spilling 92 / 124 bytes); their twins
# (s3, w3), then the linear section beside call 7's v2, alternated.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out11; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle && tar xJf .gpu-bundle/gv6.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
for k in w3 s3; do
  timeout 100 .gpu-bundle/kernels-$k --gtest_filter='*Gemv*:*AutoLinear*' > $OUT/kernels_$k-call11.log 2>&1
  echo "kernels-$k rc=$?"; grep -E "FAILED|PASSED|Failure" $OUT/kernels_$k-call11.log | head -3
done
for r in 1 2; do for v in s2 s3 w2 w3 v2; do for m in llama3-8b; do
  n=lin_${m}_${v}_r${r}
  timeout 60 .gpu-bundle/bench-$v --attention dense --models $m --batches 1 --contexts 1024 \
    --iters 2 --linear_algos gemv --dependent_launch on --json_out $OUT/$n-call11.json > $OUT/$n-call11.log 2>&1
done; done; done
python3 - <<'PY'
import json,glob
for f in sorted(glob.glob("out11/lin_*.json")):
    d=json.load(open(f))
    for m,v in d['models'].items():
        out=[]
        for x in v['linear']['matrices']:
            if x['rows'] in (4,8): out.append('%d %s %.3f/%.3f'%(x['rows'],x['weight'][:6],x['cublas_ms'],x['gemv_ms']))
        print(f.split('/')[-1][:-12], ' | '.join(out))
PY
tar czf $FINAL/call11.tgz -C $OUT .
