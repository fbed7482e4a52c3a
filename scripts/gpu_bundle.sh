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
# (each packed into DIR/bundle.tgz at the end). Then, on the machine
# (device tool, carry [".gpu"]):
#   bash scripts/gpu_check.sh      (results in $OUT/gpu_check.md)
#
# --smollm2 adds the real SmolLM2-135M (Q4_1) for cpu,cuda:SM with the
# CPU's greedy tokens and logits. Its artifact (~115 MB) is over the device
# tool's 64 MiB per call (the tree, ~13 MB, travels every time), so it is
# split into .gpu-smol1/ .gpu-smol2/ .gpu-smol3/ (40 MB each at most), each
# sent in a call of its own to one warm machine (carry [".gpu-smol1"],
# command `true`; then 2, then 3, each within the 30 s the machine stays
# warm), before the call with .gpu; gpu_check.sh joins and hash-checks them.
#
# --vulkan adds .gpu-vk/ (~45 MB, a call of its own before the one with
# .gpu): the Vulkan node tests and LLM models (both variants in each
# artifact) with their references, and Debian's libvulkan1 for a machine
# without a Vulkan loader; gpu_check.sh runs them on the GPU's Vulkan
# driver too.
#
# --cuda-reduction=tree|serial compiles everything with that reduction form
# instead of the default warp shuffles (for a rerun, should they misbehave
# on the GPU: the machine cannot compile).
# Usage: bash scripts/gpu_bundle.sh [--smollm2] [--cuda-reduction=R] [SM]
#        (default sm_90)
set -euo pipefail
cd "$(dirname "$0")/.."
smol=0
vk=0
flags=()
while [ $# -gt 0 ]; do
  case $1 in
    --smollm2) smol=1 ;;
    --vulkan) vk=1 ;;
    --cuda-reduction=*) flags+=("--compile-flag=$1") ;;
    *) break ;;
  esac
  shift
done
sm=${1:-sm_90}
py=.venv/bin/python
rm -rf .gpu && mkdir -p .gpu/bin
cp build/bin/kiln-run .gpu/bin/
$py test/node/run_node_tests.py --build build --target "cuda:$sm" \
  --bundle .gpu/node --expected test/node/expected_cpu.txt ${flags[@]+"${flags[@]}"} | tail -1
$py test/e2e/test_models.py --build build --target "cuda:$sm" --bundle .gpu/e2e \
  ${flags[@]+"${flags[@]}"} | tail -1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$py test/vulkan/check_llm_devices.py --build build --work "$work" \
  --bundle .gpu/llm --target "cuda:$sm" ${flags[@]+"${flags[@]}"} | tail -1
rm -rf .gpu-vk
if [ $vk = 1 ]; then
  mkdir -p .gpu-vk
  (cd .gpu-vk && apt-get download libvulkan1 > /dev/null 2>&1) ||
    echo "could not fetch libvulkan1 (the machine must have a Vulkan loader)"
  $py test/node/run_node_tests.py --build build --target vulkan \
    --bundle .gpu-vk/node --expected test/node/expected_vulkan.txt | tail -1
  $py test/vulkan/check_llm_devices.py --build build --work "$work" \
    --bundle .gpu-vk/llm --target vulkan | tail -1
fi
rm -rf .gpu-smol1 .gpu-smol2 .gpu-smol3
if [ $smol = 1 ]; then
  mkdir -p .gpu/smol
  gguf=$($py test/gguf/gguf_tool.py smollm2-path)
  build/bin/kiln-compile "$gguf" -o "$work/smol.kiln" --max-context=512 \
    --prefill-chunk=32 --target="cpu,cuda:$sm" --quiet \
    ${flags[@]+"${flags[@]#--compile-flag=}"}
  ids=$(build/bin/kiln-run tokenize "$work/smol.kiln" \
    --text="The capital of France is" | tr ' ' ',')
  build/bin/kiln-run generate "$work/smol.kiln" --device=cpu --prompt-ids="$ids" \
    -n 16 --temp=0 --print-ids --logits-out=.gpu/smol/logits.npy > "$work/ids"
  $py - "$ids" "$work/ids" > .gpu/smol/case.json <<'PY'
import json, sys
print(json.dumps({"kind": "generate", "artifact": "model.kiln",
                  "prompt": [int(t) for t in sys.argv[1].split(",")], "steps": 16,
                  "ids": [int(t) for t in open(sys.argv[2]).read().split()],
                  "logits": "logits.npy", "bound": 1e-3}))
PY
  sha256sum "$work/smol.kiln" | cut -d' ' -f1 > .gpu/smol/model.kiln.sha256
  split -n 3 -d -a 1 "$work/smol.kiln" "$work/part"
  for i in 0 1 2; do
    mkdir -p .gpu-smol$((i + 1)) && mv "$work/part$i" .gpu-smol$((i + 1))/part
  done
fi
# The device tool carries at most 64 MiB per call, the tree (~13 MB)
# included: .gpu and .gpu-vk travel as one gzip'ed tar each (the PTX and
# cubins compress ~4x: .gpu 52 MB -> 12 MB), which gpu_check.sh unpacks.
for d in .gpu .gpu-vk; do
  if [ -d $d ]; then
    tar -czf "$work/bundle.tgz" -C $d .
    rm -rf $d && mkdir $d && mv "$work/bundle.tgz" $d/
  fi
done
du -sh $(ls -d .gpu .gpu-vk .gpu-smol* 2>/dev/null)
