#!/usr/bin/env bash
# Keeps a device call's transfer under its 64 MiB limit (the tree plus .gpu-bundle/pack.txz):
# moves the tracked test data the GPU steps never read out of the tree before the call, and
# back after it (before building or committing).
#
#   bash scripts/gpu-carry.sh out    # before run(..., carry=[".gpu-bundle/pack.txz"])
#   bash scripts/gpu-carry.sh back   # after it
#
# Moved: tests/data/tokenizers (13 MB) and tests/data/eval (3.6 MB), which only the
# `accuracy` step reads: GPU_CARRY_KEEP_EVAL=1 leaves it in place for a call running that step.
set -euo pipefail
cd "$(dirname "$0")/.."
hold=${GPU_CARRY_HOLD:-/tmp/dsinfer-gpu-carry}
dirs=(tests/data/tokenizers)
[ -n "${GPU_CARRY_KEEP_EVAL:-}" ] || dirs+=(tests/data/eval)
case "${1:-}" in
  out)
    mkdir -p "$hold"
    for d in "${dirs[@]}"; do
      if [ -e "$d" ]; then
        [ ! -e "$hold/$(basename "$d")" ] || { echo "gpu-carry: $hold/$(basename "$d") exists; run 'back' first" >&2; exit 1; }
        mv "$d" "$hold/"
      fi
    done
    echo "gpu-carry: moved ${dirs[*]} to $hold" ;;
  back)
    for d in tests/data/tokenizers tests/data/eval; do
      if [ ! -e "$d" ] && [ -e "$hold/$(basename "$d")" ]; then mv "$hold/$(basename "$d")" "$d"; fi
      [ -e "$d" ] || { echo "gpu-carry: $d is missing (not in $hold either)" >&2; exit 1; }
    done
    echo "gpu-carry: tests/data/tokenizers and tests/data/eval are in place" ;;
  *)
    echo "usage: $0 out|back" >&2; exit 2 ;;
esac
