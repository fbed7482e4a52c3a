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
for graphs in 0 1; do
  timeout 240 python3 test/gpu/run_bundle.py --kiln-run $run --device cuda \
    --env KILN_CUDA_GRAPHS=$graphs --report "$report" -j 8 \
    .gpu/node .gpu/e2e .gpu/llm > /dev/null || status=1
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
  echo
  echo "## KILN_CUDA_PROFILE=1, tiny_llama_gguf, 8 decode steps"
  KILN_CUDA_PROFILE=1 timeout 60 $run generate .gpu/llm/tiny_llama_gguf/model.kiln \
    --device=cuda --prompt-ids=1,2,3,4,5 -n 8 --print-ids 2>&1 | head -40
} >> "$report" 2>&1
cat "$report"
exit $status
