#!/usr/bin/env bash
# The README's main job: set up, compile the bundled GPT-2-architecture
# model (random weights, test/e2e/models/gpt2_tiny.onnx) for the CPU, run it
# on a 16-token prompt and print the model's next-token prediction, checked
# against onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

model=test/e2e/models/gpt2_tiny.onnx
echo "== kiln-compile $model"
build/bin/kiln-compile "$model" -o "$work/gpt2_tiny.kiln" --dim batch=1 --dim seq=16
ls -l "$work/gpt2_tiny.kiln" | awk '{print "artifact: " $5 " bytes"}'
build/bin/kiln-run "$work/gpt2_tiny.kiln" --print-signature

.venv/bin/python - "$work" <<'PY'
import sys, numpy as np
ids = np.array([[464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13,
                 383, 318, 257, 1332, 286, 262]], dtype=np.int64) % 1000
np.save(f"{sys.argv[1]}/ids.npy", ids)
print("prompt ids:", " ".join(map(str, ids[0])))
PY
echo "== kiln-run --device=cpu (10 runs)"
build/bin/kiln-run "$work/gpt2_tiny.kiln" --input="$work/ids.npy" \
  --output="$work/logits.npy" --repeat=10
.venv/bin/python - "$work" "$model" <<'PY'
import sys, numpy as np, onnxruntime as ort
work, model = sys.argv[1:]
logits = np.load(f"{work}/logits.npy")
ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
    None, {"input_ids": np.load(f"{work}/ids.npy")})[0]
print("kiln next-token prediction:", int(logits[0, -1].argmax()),
      "| onnxruntime:", int(ref[0, -1].argmax()),
      "| max abs logit difference: %.2g" % np.abs(logits - ref).max())
PY
