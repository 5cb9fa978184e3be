#!/usr/bin/env bash
# Copies executables and the shared libraries they load (all but the C/C++ runtime, which
# every base image has) into DEST/bin and DEST/lib, so the runtime image needs none of the
# build image's -dev packages. Used by deploy/Dockerfile.
#
#   bundle-runtime.sh DEST EXECUTABLE...
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DEST EXECUTABLE..." >&2; exit 2; }
dest=$1; shift
mkdir -p "$dest/bin" "$dest/lib"
for exe in "$@"; do
  cp -L "$exe" "$dest/bin/"
  ldd "$exe" | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
    grep -vE '/lib(cuda|nvidia-ml)\.so' |
    while read -r lib; do cp -Lu "$lib" "$dest/lib/"; done
done
