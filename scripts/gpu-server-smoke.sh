#!/usr/bin/env bash
# Smoke test of dsinfer-server on the GPU engine with the embedded demo model (issue 10):
#
#   bash scripts/gpu-server-smoke.sh BIN_DIR OUT_DIR [DEVICE]      (DEVICE default cuda)
#
# Run from the repository root; BIN_DIR holds dsinfer-server, dsinfer (the CLI) and
# dsinfer-run of one build; LD_LIBRARY_PATH is the caller's. DEVICE=cpu is a dry run of the
# same steps on the CPU engine (any machine). Steps, each bounded by a timeout:
#   1. dsinfer-server --device DEVICE --model models/demo on a free loopback port (port 0 +
#      --port-file), waiting for `dsinfer health` to answer SERVING;
#   2. a streamed text generation (`dsinfer generate --prompt`, greedy);
#   3. a token-id Generate (unary, greedy, --json, top-2 logprobs per position), compared with
#      `dsinfer-run --device cpu` on the same ids: the same tokens are expected. Where they
#      differ, both sequences are printed with the GPU's top-2 logprob gap at the first
#      difference: a gap under NEAR_TIE (default 0.05 nats) is a near-tie that bf16 vs fp32
#      arithmetic may flip, reported and accepted; a larger gap fails;
#   4. a bad request (a prompt longer than the model's context) must be refused with
#      INVALID_ARGUMENT, and the same token-id Generate must then still give the same tokens;
#   5. SIGTERM: the server must exit 0 within its drain grace.
# Logs and outputs in OUT_DIR; prints PASS/FAIL per step and exits non-zero on any failure.
# SERVER_ARGS adds server flags (e.g. an offload kv mode), RUN_ARGS flags of the CPU reference
# run (e.g. the same attention flags), PROMPT replaces the prompt.
set -uo pipefail
BIN=${1:?usage: gpu-server-smoke.sh BIN_DIR OUT_DIR [DEVICE]}
OUT=${2:?usage: gpu-server-smoke.sh BIN_DIR OUT_DIR [DEVICE]}
DEVICE=${3:-cuda}
MODEL=${MODEL:-models/demo}
NEW_TOKENS=${NEW_TOKENS:-32}
NEAR_TIE=${NEAR_TIE:-0.05}
PROMPT=${PROMPT:-A man page describes}
mkdir -p "$OUT"
for b in dsinfer-server dsinfer dsinfer-run; do
  [ -x "$BIN/$b" ] || { echo "FAIL: $BIN/$b is missing (build it first)"; exit 2; }
done
command -v python3 > /dev/null || { echo "FAIL: python3 is needed to read the JSON answers"; exit 2; }
failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ids_of() { python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))[sys.argv[2]])))' "$@"; }

# 1. Start the server and wait for health.
rm -f "$OUT/port"
"$BIN/dsinfer-server" --model "$MODEL" --device "$DEVICE" --listen 127.0.0.1:0 \
  --port-file "$OUT/port" --shutdown-grace-s 10 ${SERVER_ARGS:-} > "$OUT/server.log" 2>&1 &
SERVER=$!
stop_server() { kill -0 "$SERVER" 2> /dev/null && kill -KILL "$SERVER" 2> /dev/null; }
trap stop_server EXIT
start=$SECONDS
until [ -s "$OUT/port" ] && timeout 5 "$BIN/dsinfer" health --server "127.0.0.1:$(cat "$OUT/port")" \
    > "$OUT/health.txt" 2>&1; do
  if ! kill -0 "$SERVER" 2> /dev/null; then
    fail "server exited during start-up (tail of $OUT/server.log below)"; tail -5 "$OUT/server.log"; exit 1
  fi
  if [ $((SECONDS - start)) -gt 120 ]; then fail "server not healthy after 120 s"; exit 1; fi
  sleep 0.5
done
ADDR=127.0.0.1:$(cat "$OUT/port")
pass "server on $ADDR, device $DEVICE, healthy after $((SECONDS - start)) s ($(cat "$OUT/health.txt"))"
CLI=("$BIN/dsinfer" --server "$ADDR" --timeout-s 60)

# 2. Streamed text generation.
if timeout 90 "${CLI[@]}" generate --prompt "$PROMPT" --max-new-tokens "$NEW_TOKENS" --ignore-eos \
    > "$OUT/stream.txt" 2> "$OUT/stream.err" && [ -n "$(tr -d '[:space:]' < "$OUT/stream.txt")" ]; then
  pass "streamed generation: $(head -c 200 "$OUT/stream.txt" | tr '\n' ' ') [$(tail -1 "$OUT/stream.err")]"
else
  fail "streamed generation (see $OUT/stream.err): $(tail -1 "$OUT/stream.err")"
fi

# 3. Token-id Generate vs dsinfer-run --device cpu, greedy.
timeout 30 "${CLI[@]}" tokenize --prompt "$PROMPT" > "$OUT/prompt_ids.txt" 2>&1 || fail "tokenize"
IDS=$(tr -d '[:space:]' < "$OUT/prompt_ids.txt")
generate_ids() {  # $1: output file
  timeout 90 "${CLI[@]}" generate --prompt-ids "$IDS" --max-new-tokens "$NEW_TOKENS" --ignore-eos \
    --temperature 0 --top-logprobs 2 --json > "$1" 2> "$1.err"
}
if generate_ids "$OUT/server_ids.json"; then
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$OUT/server_ids.json" 2> /dev/null ||
    fail "token-id Generate answered no JSON"
else
  fail "token-id Generate: $(tail -1 "$OUT/server_ids.json.err")"
fi
timeout 300 "$BIN/dsinfer-run" --device cpu --model "$MODEL" --prompt-ids "$IDS" \
  --max-new-tokens "$NEW_TOKENS" --ignore-eos --temperature 0 --json ${RUN_ARGS:-} \
  > "$OUT/run_cpu.json" 2> "$OUT/run_cpu.err" ||
  fail "dsinfer-run --device cpu: $(tail -1 "$OUT/run_cpu.err")"
python3 - "$OUT/server_ids.json" "$OUT/run_cpu.json" "$NEAR_TIE" "$DEVICE" > "$OUT/compare.txt" 2>&1 <<'PY'
import json, sys
server, cpu, near_tie, device = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
def ids(j):
    for key in ("token_ids", "tokenIds"):
        if key in j:
            return [int(x) for x in j[key]]
    raise SystemExit(f"no token ids in {sorted(j)}")
s, c = ids(server), ids(cpu)
print(f"server ({device}): {s}")
print(f"dsinfer-run (cpu): {c}")
if s == c:
    print(f"same {len(s)} tokens"); sys.exit(0)
i = next((k for k in range(min(len(s), len(c))) if s[k] != c[k]), min(len(s), len(c)))
print(f"first difference at generated token {i}")
tops = server.get("top_logprobs", server.get("topLogprobs", []))
gap = None
if i < len(tops):
    entries = tops[i].get("entries", tops[i].get("top", tops[i])) if isinstance(tops[i], dict) else tops[i]
    lps = sorted((float(e.get("logprob", e.get("log_prob", 0.0))) for e in entries), reverse=True)
    if len(lps) >= 2:
        gap = lps[0] - lps[1]
print(f"server top-2 logprob gap there: {gap}")
if gap is not None and gap < near_tie:
    print(f"near-tie (< {near_tie} nats): accepted, documented"); sys.exit(0)
sys.exit(1)
PY
cmp_rc=$?
cat "$OUT/compare.txt"
if [ $cmp_rc = 0 ]; then pass "greedy token ids: server ($DEVICE) vs dsinfer-run (cpu)"; else
  fail "greedy token ids differ beyond a near-tie (see $OUT/compare.txt, $OUT/server_ids.json)"; fi

# 4. A bad request: a prompt longer than the model's context; the server must refuse it and
# keep serving.
LONG=$(python3 -c 'import json,sys; n=json.load(open(sys.argv[1]+"/config.json"))["max_position_embeddings"]; print(",".join(["1"] + ["450"] * (n + 16)))' "$MODEL")
if timeout 60 "${CLI[@]}" generate --prompt-ids "$LONG" --max-new-tokens 4 --json > "$OUT/bad.json" 2> "$OUT/bad.err"; then
  fail "an over-long prompt was accepted"
elif grep -q "INVALID_ARGUMENT\|OUT_OF_RANGE\|too long\|exceed" "$OUT/bad.err"; then
  pass "over-long prompt refused: $(tail -1 "$OUT/bad.err")"
else
  fail "over-long prompt: unexpected error: $(tail -1 "$OUT/bad.err")"
fi
if generate_ids "$OUT/server_ids_after.json" &&
   [ "$(ids_of "$OUT/server_ids_after.json" token_ids 2> /dev/null || ids_of "$OUT/server_ids_after.json" tokenIds)" = \
     "$(ids_of "$OUT/server_ids.json" token_ids 2> /dev/null || ids_of "$OUT/server_ids.json" tokenIds)" ]; then
  pass "still serving after the bad request (same greedy tokens)"
else
  fail "after the bad request: $(tail -1 "$OUT/server_ids_after.json.err")"
fi

# 5. SIGTERM: drain and exit 0.
kill -TERM "$SERVER"
rc=124
for _ in $(seq 1 60); do
  if ! kill -0 "$SERVER" 2> /dev/null; then wait "$SERVER"; rc=$?; break; fi
  sleep 0.5
done
if [ $rc = 0 ]; then pass "SIGTERM: exit 0"; else fail "SIGTERM: exit status $rc (124 = still running after 30 s)"; fi
trap - EXIT
stop_server
echo "server log: $OUT/server.log"
[ $failures = 0 ] && echo "gpu-server-smoke: all passed ($DEVICE)" || echo "gpu-server-smoke: $failures failed ($DEVICE)"
exit $((failures > 0))
