#!/usr/bin/env bash
# Builds the runtime on its own (no LLVM, no MLIR: what an embedder builds)
# with AddressSanitizer and UBSan, then runs the runtime unit tests, including
# the header-corruption and truncation sweep, on a real artifact.
set -euo pipefail
build=${1:-build}
out=${2:-build-rt-asan}
cmake -G Ninja -S runtime -B "$out" -DKILN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 > /dev/null
ninja -C "$out" > /dev/null
art=$(mktemp --suffix=.kiln)
llm=$(mktemp --suffix=.kiln)
llm_cuda=$(mktemp --suffix=.kiln)
ring=$(mktemp --suffix=.kiln)
trap 'rm -f "$art" "$llm" "$llm_cuda" "$ring"' EXIT
"$build/bin/kiln-compile" test/e2e/models/gpt2_tiny.onnx -o "$art" --quiet \
  --dim batch=1 --dim seq=8
# A corrupt scratch size may ask for terabytes: the runtime must report the
# failed allocation, which ASan allows only with allocator_may_return_null.
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 "$out/test/runtime_unit_tests" "$art"
# The LLM API, KV cache and tokenizer on the tiny llama, and its sweep.
"$build/bin/kiln-compile" test/gguf/models/tiny_llama.gguf -o "$llm" --quiet \
  --prefill-chunk=8 --max-context=64
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 "$out/test/runtime_unit_tests" "$llm"
# An int8 KV cache in a ring (every layer windowed: 4 blocks for a context
# of 256): the spec edits, the sweep, and a sequence sliding the ring to
# the whole context.
"$build/bin/kiln-compile" test/gguf/models/tiny_llama.gguf -o "$ring" --quiet \
  --prefill-chunk=8 --max-context=256 --kv-dtype=int8 --attention-window=16 \
  --attention-sinks=4
report=$(ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
  "$out/test/runtime_unit_tests" "$ring")
echo "$report"
grep -q "int8 KV spec edits: 4 of 4 rejected by name" <<< "$report"
grep -q "^ring: 256 tokens in 4 blocks" <<< "$report"
# The CUDA driver's host side (buffers kept across calls, CUDA graphs) under
# ASan, against the stand-in libcuda.so.1 of test/cuda/fake_libcuda.cc,
# which fails any call that passes a freed or foreign buffer.
if [ -e "$build/fake-cuda/libcuda.so.1" ]; then
  "$build/bin/kiln-compile" test/gguf/models/tiny_llama.gguf -o "$llm_cuda" \
    --quiet --prefill-chunk=8 --max-context=64 --target=cpu,cuda:sm_80 2> /dev/null
  for graphs in 0 1; do
    LD_LIBRARY_PATH="$build/fake-cuda" KILN_DEVICE=cuda KILN_CUDA_GRAPHS=$graphs \
      ASAN_OPTIONS=detect_leaks=1 "$out/kiln_chat_example" "$llm_cuda" "hello" 8 > /dev/null
  done
  echo "chat example on the stand-in CUDA driver (ASan+UBSan): ok"
fi
