#!/usr/bin/env bash
# The GPU accuracy run's CPU-testable parts (issue 10): expand_retrieval.py makes well-formed,
# answerable retrieval prompts, and dsinfer-eval / dsinfer-calibrate refuse an unknown or
# unavailable --device with a clear error.
#   accuracy_tools_test.sh BIN_DIR WORK_DIR       (run from anywhere; finds the repo by path)
set -uo pipefail
BIN=$1
WORK=$2/accuracy_tools_$$
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0
check() { if eval "$2"; then passed=$((passed + 1)); else echo "FAILED: $1"; failed=$((failed + 1)); fi; }

# 1. 25 prompts per class: the committed 20 first, unchanged, then 5 new well-formed ones.
/usr/bin/python3 "$ROOT/tools/accuracy/expand_retrieval.py" --out "$WORK/r.jsonl" --per-length 25 > /dev/null
check "expand_retrieval.py output" "/usr/bin/python3 - '$WORK/r.jsonl' '$ROOT/tests/data/eval/retrieval.jsonl' <<'PY'
import json, sys
out = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
COLON, QMARK, SP = 28747, 28804, 28705
for L in (1024, 2048, 4096, 8192):
    o = [x for x in out if x['target_len'] == L]
    r = [x for x in ref if x['target_len'] == L]
    assert len(o) == 25, (L, len(o))
    assert [x['prompt_ids'] for x in o[:20]] == [x['prompt_ids'] for x in r[:20]]
    for x in o[20:]:
        p, a = x['prompt_ids'], x['answer_ids']
        assert len(p) + len(a) <= max(len(y['prompt_ids']) + len(y['answer_ids']) for y in r)
        assert p[0] == 1 and p[-1] == COLON and a[0] == SP and len(a) == 6
        # The asked pair '- KEY: VALUE' is in the list exactly once, with the asked key.
        line = [COLON] + a
        at = [i for i in range(len(p) - len(line)) if p[i:i + len(line)] == line]
        assert len(at) == 1, at
        dash = max(i for i in range(at[0]) if p[i] == 28733)
        key = p[dash + 1:at[0]]
        assert key and p[-1 - len(key):-1] == key
        assert x['prompt_ids'] not in [y['prompt_ids'] for y in r]
PY"

# 2. The model answers a generated 1K prompt (dense and 1/4) through dsinfer-eval.
sed -n 21p "$WORK/r.jsonl" > "$WORK/one.jsonl"
"$BIN/dsinfer-eval" --model "$ROOT/models/demo" --retrieval-file "$WORK/one.jsonl" --ratios 0.25 \
  --bits 16 --aggs sum --json > "$WORK/one.json" 2> "$WORK/one.err"
check "dsinfer-eval on a generated prompt" "/usr/bin/python3 -c \"import json; j=json.load(open('$WORK/one.json')); r=j['retrieval'][0]['by_length']['1024']; assert r['correct'] == 1 == r['total'], r\""

# 3. --device errors: unknown names, and cuda without a GPU or without CUDA in the build.
for tool in dsinfer-eval dsinfer-calibrate; do
  extra=()
  [ $tool = dsinfer-calibrate ] && extra=(--out "$WORK/c.json")
  out=$("$BIN/$tool" --model "$ROOT/models/demo" --ids-file /dev/null "${extra[@]}" --device tpu 2>&1)
  rc=$?
  check "$tool --device tpu: exit 1, names the device" "[ $rc -eq 1 ] && grep -q \"unknown device 'tpu'\" <<< \"\$out\""
  if ! nvidia-smi -L > /dev/null 2>&1; then
    out=$("$BIN/$tool" --model "$ROOT/models/demo" --ids-file /dev/null "${extra[@]}" --device cuda:0 2>&1)
    rc=$?
    check "$tool --device cuda:0 without a GPU: clear error" "[ $rc -eq 1 ] && grep -q -- '--device cuda:0' <<< \"\$out\""
  fi
done
echo "$passed passed, $failed failed"
exit $((failed > 0))
