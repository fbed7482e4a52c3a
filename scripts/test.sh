#!/usr/bin/env bash
# The README's test command: sets up, builds, and runs every test suite.
# Exits non-zero if any suite fails; prints one summary line per suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

status=0
run() {
  local name=$1; shift
  echo "=== $name"
  if ! "$@"; then
    echo "=== $name FAILED"
    status=1
  fi
}
run "lit (importer, dialect, passes, codegen, errors)" \
  .venv/bin/python /usr/lib/llvm-22/bin/lit -sv build/test
run "runtime unit tests" ctest --test-dir build --output-on-failure
run "runtime links no LLVM/MLIR/protobuf" bash test/check_runtime_deps.sh build
run "runtime alone, ASan+UBSan, corruption sweep" \
  bash test/check_runtime_sanitized.sh build build-rt-asan
run "ONNX node tests (cpu)" \
  .venv/bin/python test/node/run_node_tests.py --build build \
    --expected test/node/expected_cpu.txt
run "ONNX node tests (vulkan, lavapipe)" \
  .venv/bin/python test/node/run_node_tests.py --build build --target vulkan \
    --expected test/node/expected_vulkan.txt
if [ -x /usr/local/cuda/bin/ptxas ] || command -v ptxas > /dev/null; then
  rm -rf build/cuda-node
  run "CUDA: every CPU-passing node test compiles for sm_80,sm_90 (ptxas)" \
    .venv/bin/python test/node/run_node_tests.py --build build \
      --target cuda:sm_80,sm_90 --bundle build/cuda-node --expected test/node/expected_cpu.txt
  run "CUDA: ... and runs through the runtime's CUDA driver on the stand-in libcuda (no GPU: API use only)" \
    env LD_LIBRARY_PATH="$PWD/build/fake-cuda" .venv/bin/python test/gpu/run_bundle.py \
      --kiln-run build/bin/kiln-run --device cuda --protocol-only build/cuda-node
else
  echo "=== CUDA compile checks skipped: no ptxas (CUDA toolkit) on this machine"
fi
run "importer fuzzing (mutated models never crash)" \
  .venv/bin/python test/fuzz/fuzz_importer.py --build build --iterations 300 --seed 1
run "GGUF hyperparameter fuzzing (hostile key values: accepted or refused by name)" \
  .venv/bin/python test/fuzz/fuzz_gguf_keys.py --build build --iterations 150 --seed 1
run "GGUF hyperparameter fuzzing through code generation" \
  .venv/bin/python test/fuzz/fuzz_gguf_keys.py --build build --iterations 40 --seed 2 --full
run "GGUF reader and chat-template fuzzing (libFuzzer, ASan+UBSan, 20 s each)" \
  bash test/fuzz/run_fuzzers.sh 20 build-fuzz
run "end-to-end models vs onnxruntime" \
  .venv/bin/python test/e2e/test_models.py --build build
run "end-to-end models vs onnxruntime (vulkan, lavapipe)" \
  .venv/bin/python test/e2e/test_models.py --build build --target vulkan
smol=$(.venv/bin/python test/gguf/gguf_tool.py smollm2-path)
smol_kiln=build/smollm2.kiln
run "SmolLM2-135M GGUF (real weights): compile (packed Q4_1/Q8_0 kernels)" \
  build/bin/kiln-compile "$smol" -o $smol_kiln --max-context=256 --prefill-chunk=16 --quiet
run "SmolLM2: prefill logits and greedy tokens vs transformers" \
  .venv/bin/python test/gguf/check_generate.py $smol_kiln --refs smollm2 --build build
run "SmolLM2: greedy tokens vs llama.cpp" \
  .venv/bin/python test/gguf/check_llamacpp.py $smol_kiln --build build
run "SmolLM2: compile with --llamacpp-numerics (q8 activations, f16 KV)" \
  build/bin/kiln-compile "$smol" -o build/smollm2-llamacpp.kiln --max-context=256 --prefill-chunk=16 --llamacpp-numerics --quiet
run "SmolLM2 (--llamacpp-numerics): greedy tokens vs llama.cpp" \
  .venv/bin/python test/gguf/check_llamacpp.py build/smollm2-llamacpp.kiln --build build
run "SmolLM2: compile with an int8 KV cache (Q8_0 along head_dim)" \
  build/bin/kiln-compile "$smol" -o build/smollm2-kv8.kiln --max-context=256 --prefill-chunk=16 --kv-dtype=int8 --quiet
run "SmolLM2 (int8 KV): per-position greedy agreement with transformers" \
  .venv/bin/python test/gguf/check_llamacpp.py build/smollm2-kv8.kiln --build build --reference transformers
run "SmolLM2 (int8 KV): per-position greedy agreement with llama.cpp" \
  .venv/bin/python test/gguf/check_llamacpp.py build/smollm2-kv8.kiln --build build
run "SmolLM2: tokenizer vs llama.cpp on 1,100 items" \
  .venv/bin/python test/gguf/check_tokenizer.py $smol_kiln --build build
run "SmolLM2: multi-turn kiln-run chat, cached prefix reused = full prefill" \
  bash test/llm/chat/check_chat.sh build/bin/kiln-run $smol_kiln
if [ $status -eq 0 ]; then echo "all test suites passed"; else echo "some test suites FAILED"; fi
exit $status
