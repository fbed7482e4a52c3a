#!/usr/bin/env bash
# Builds the libFuzzer targets (ASan + UBSan) in their own build tree and
# runs each for a bounded time from a seed corpus of valid and broken files.
set -euo pipefail
seconds=${1:-30}
out=${2:-build-fuzz}
cmake -G Ninja -S . -B "$out" -DKILN_FUZZERS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-22 -DCMAKE_CXX_COMPILER=clang++-22 > /dev/null
ninja -C "$out" gguf_fuzzer chat_template_fuzzer > /dev/null
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
.venv/bin/python test/gguf/gguf_tool.py make-bad "$corpus"
smol=$(.venv/bin/python test/gguf/gguf_tool.py smollm2-path)
# The real file's header and metadata (its first 2 MB) as one more seed.
[ -n "$smol" ] && head -c 2000000 "$smol" > "$corpus/smollm2-head.gguf"
"$out/bin/gguf_fuzzer" -max_total_time="$seconds" -max_len=4000000 \
  -rss_limit_mb=4096 "$corpus" 2>&1 | tail -3
echo "gguf fuzzer: no crash in ${seconds}s"

# Chat templates: seeded with the real templates, the language snippets and
# each template followed (after a NUL) by each conversation of the test.
chat=$(mktemp -d)
trap 'rm -rf "$corpus" "$chat"' EXIT
.venv/bin/python - "$chat" <<'PY'
import json, os, sys
out = sys.argv[1]
here = "test/llm/chat"
cases = json.load(open(f"{here}/cases.json"))
snippets = json.load(open(f"{here}/snippets.json"))
n = 0
for name in sorted(os.listdir(f"{here}/templates")):
    t = open(f"{here}/templates/{name}", "rb").read()
    for cname, case in cases.items():
        open(f"{out}/{n}", "wb").write(t + b"\0" + json.dumps(case).encode())
        n += 1
for text in snippets.values():
    open(f"{out}/{n}", "wb").write(text.encode())
    n += 1
# Model replies with tool calls in each format (the parser's input).
for reply in ['<tool_call>\n{"name": "f", "arguments": {"x": [1, 2.5]}}\n</tool_call>',
              '<|python_tag|>{"name": "s", "parameters": {"q": "k"}}; {"name": "t", "parameters": {}}',
              '[TOOL_CALLS][{"name": "a", "arguments": {"b": null}}]',
              '[TOOL_CALLS]add[ARGS]{"a": 1}[TOOL_CALLS]mul[ARGS]{"b": "x"}',
              '<|tool_call|>[{"name": "f", "arguments": "{\\"k\\": 1}"}]<|/tool_call|>']:
    open(f"{out}/{n}", "wb").write(reply.encode())
    n += 1
PY
"$out/bin/chat_template_fuzzer" -max_total_time="$seconds" -max_len=65536 \
  -rss_limit_mb=4096 -timeout=10 "$chat" 2>&1 | tail -3
echo "chat template fuzzer: no crash in ${seconds}s"
