#!/usr/bin/env bash
# The runtime and kiln-run must not link LLVM, MLIR or protobuf: embedding
# Kiln must not drag a compiler along. Fails when any of them is a
# dependency of the built binaries.
set -euo pipefail
build=${1:-build}
bad=0
for bin in "$build/bin/kiln-run" "$build/runtime/libkiln.so"; do
  if [ ! -e "$bin" ]; then echo "missing $bin"; exit 1; fi
  deps=$(readelf -d "$bin" | grep NEEDED || true)
  if echo "$deps" | grep -Eiq "llvm|mlir|protobuf|onnx"; then
    echo "FAIL: $bin needs: $deps"
    bad=1
  else
    echo "ok: $bin needs only: $(echo "$deps" | sed -E 's/.*\[(.*)\]/\1/' | tr '\n' ' ')"
  fi
done
size=$(stat -c %s "$build/runtime/libkiln.so")
echo "libkiln.so: $size bytes"
exit $bad
