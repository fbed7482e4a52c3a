#!/usr/bin/env bash
# Makes the GPU check bundle in .gpu/ (git-ignored), for a session lent a
# GPU machine: that machine has Python with numpy but no LLVM/MLIR, so
# everything is compiled here and only kiln-run runs there.
#   .gpu/bin/kiln-run        the runtime CLI built here (glibc 2.36, runs on
#                            the machine's newer one; loads libcuda.so.1)
#   .gpu/node/               every CPU-passing ONNX node test for cuda:SM,
#                            inputs and onnx's expected outputs
#   .gpu/e2e/                tiny BERT and GPT-2, onnxruntime's outputs
#   .gpu/llm/                the LLM test models (cpu + cuda:SM in one
#                            artifact), the CPU's greedy tokens and logits
# Then, on the machine (device tool, carry [".gpu"]):
#   bash scripts/gpu_check.sh      (results in $OUT/gpu_check.md)
# Usage: bash scripts/gpu_bundle.sh [SM]   (default sm_90: H100, H200)
set -euo pipefail
cd "$(dirname "$0")/.."
sm=${1:-sm_90}
py=.venv/bin/python
rm -rf .gpu && mkdir -p .gpu/bin
cp build/bin/kiln-run .gpu/bin/
$py test/node/run_node_tests.py --build build --target "cuda:$sm" \
  --bundle .gpu/node --expected test/node/expected_cpu.txt | tail -1
$py test/e2e/test_models.py --build build --target "cuda:$sm" --bundle .gpu/e2e | tail -1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py test/vulkan/check_llm_devices.py --build build --work "$work" \
  --bundle .gpu/llm --target "cuda:$sm" | tail -1
du -sh .gpu
