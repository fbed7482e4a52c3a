#!/usr/bin/env bash
# Runs on a lent GPU machine, over the bundle scripts/gpu_bundle.sh made
# (device tool: carry [".gpu"], command `bash scripts/gpu_check.sh`):
# the node tests, the exported transformers and the LLM greedy-token tests
# with --device=cuda (plain launches, then CUDA graphs), then kiln-run bench
# on the LLM models with and without graphs, and one decode profile.
# Writes everything to ${OUT:-.gpu/out}/gpu_check.md; exits non-zero if a
# check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
# gpu_bundle.sh sends each bundle as one gzip'ed tar (the device tool's
# per-call limit).
for d in .gpu .gpu-vk; do
  if [ -f $d/bundle.tgz ]; then
    tar -xzf $d/bundle.tgz -C $d && rm $d/bundle.tgz
  fi
done
out=${OUT:-.gpu/out}
mkdir -p "$out"
report=$out/gpu_check.md
run=.gpu/bin/kiln-run
status=0
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  echo
} > "$report"
# SmolLM2, when gpu_bundle.sh --smollm2 sent its parts (see there).
suites=".gpu/node .gpu/e2e .gpu/llm"
if [ -f .gpu/smol/case.json ] && [ -f .gpu-smol1/part ] && [ -f .gpu-smol2/part ] &&
   [ -f .gpu-smol3/part ]; then
  cat .gpu-smol1/part .gpu-smol2/part .gpu-smol3/part > .gpu/smol/model.kiln
  if [ "$(sha256sum .gpu/smol/model.kiln | cut -d' ' -f1)" = "$(cat .gpu/smol/model.kiln.sha256)" ]; then
    mkdir -p .gpu/real && ln -sfn ../smol .gpu/real/smollm2
    suites="$suites .gpu/real"
  else
    echo "SmolLM2 parts do not join into the bundled artifact (sha256)" >> "$report"
    status=1
  fi
fi
for graphs in 0 1; do
  timeout 240 python3 test/gpu/run_bundle.py --kiln-run $run --device cuda \
    --env KILN_CUDA_GRAPHS=$graphs --report "$report" -j 8 \
    $suites > /dev/null || status=1
done
{
  echo
  echo "## kiln-run bench (-p 32 -n 32 -r 3)"
  for m in llama tiny_llama_gguf tiny_llama_k_gguf; do
    for graphs in 0 1; do
      echo "### $m, KILN_CUDA_GRAPHS=$graphs"
      KILN_CUDA_GRAPHS=$graphs timeout 60 $run bench .gpu/llm/$m/model.kiln \
        --device=cuda -p 32 -n 32 -r 3 2>&1 | grep -v "^kiln-run: load" || status=1
    done
    echo "### $m, cpu (this machine's CPU, same artifact)"
    timeout 60 $run bench .gpu/llm/$m/model.kiln --device=cpu -p 32 -n 32 -r 3 2>&1 || true
  done
  if [ -f .gpu/smol/model.kiln ]; then
    for graphs in 0 1; do
      echo "### SmolLM2-135M Q4_1, KILN_CUDA_GRAPHS=$graphs (-p 128 -n 64 -r 3)"
      KILN_CUDA_GRAPHS=$graphs timeout 120 $run bench .gpu/smol/model.kiln \
        --device=cuda -p 128 -n 64 -r 3 2>&1 || status=1
    done
    echo "### SmolLM2, KILN_CUDA_PROFILE=1, 16 decode steps"
    KILN_CUDA_PROFILE=1 timeout 60 $run generate .gpu/smol/model.kiln --device=cuda \
      --prompt-ids=1,2,3,4,5 -n 16 --print-ids 2>&1 | head -40
  fi
  echo
  echo "## KILN_CUDA_PROFILE=1, tiny_llama_gguf, 8 decode steps"
  KILN_CUDA_PROFILE=1 timeout 60 $run generate .gpu/llm/tiny_llama_gguf/model.kiln \
    --device=cuda --prompt-ids=1,2,3,4,5 -n 8 --print-ids 2>&1 | head -40
} >> "$report" 2>&1
# Vulkan on the same GPU, when gpu_bundle.sh --vulkan sent .gpu-vk: both
# variants (subgroup reductions; portable ones, subgroup arithmetic hidden).
if [ -d .gpu-vk/node ]; then
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gpu-vk/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f $icd ] && export VK_DRIVER_FILES=$icd
  for hide in "" GroupNonUniformArithmetic; do
    timeout 240 python3 test/gpu/run_bundle.py --kiln-run $run --device vulkan \
      ${hide:+--env KILN_VULKAN_HIDE_FEATURES=$hide} --report "$report" -j 8 \
      .gpu-vk/node .gpu-vk/llm > /dev/null || status=1
  done
  {
    echo
    echo "## Vulkan: kiln-run bench (-p 32 -n 32 -r 3)"
    for m in llama tiny_llama_gguf; do
      timeout 60 $run bench .gpu-vk/llm/$m/model.kiln --device=vulkan -p 32 -n 32 -r 3 2>&1 ||
        status=1
    done
    echo "### KILN_VULKAN_PROFILE=1, tiny_llama_gguf, 8 decode steps"
    KILN_VULKAN_PROFILE=1 timeout 60 $run generate .gpu-vk/llm/tiny_llama_gguf/model.kiln \
      --device=vulkan --prompt-ids=1,2,3,4,5 -n 8 --print-ids 2>&1 | head -30
  } >> "$report" 2>&1
fi
cat "$report"
exit $status
