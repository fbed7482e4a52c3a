#!/usr/bin/env python3
"""An LLM artifact (GGUF weights dequantized to f32 by kiln-compile, LLM
form: prefill/decode over the runtime's paged KV cache) against transformers
running the same GGUF (reference/NAME_refs.npz, made by
make_smollm2_reference.py or make_tiny_llama.py):

- the logits after each prompt, and after each greedy step when the
  reference has them: max abs error <= --tol and the same argmax;
- the greedy tokens: identical, through `kiln-run generate --temp=0
  --print-ids` (the machine-readable contract).

  check_generate.py ARTIFACT.kiln --refs smollm2 --build build [--tol 1e-3]
                    [--device vulkan] [--prompts N] [--steps N]

--prompts / --steps check only the first prompts and greedy steps (a slow
device such as lavapipe running the real model).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kilnrun import generate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    ap.add_argument("--refs", required=True,
                    help="smollm2, tiny_llama, ... or a .npz file")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--prompts", type=int, default=0, help="0: all")
    ap.add_argument("--steps", type=int, default=0, help="0: all")
    args = ap.parse_args()
    refs = np.load(args.refs if args.refs.endswith(".npz") else
                   os.path.join(HERE, "reference", f"{args.refs}_refs.npz"))
    passed = failed = 0
    with tempfile.TemporaryDirectory() as work:
        i = 0
        while f"ids{i}" in refs and (args.prompts <= 0 or i < args.prompts):
            ids, want, greedy = refs[f"ids{i}"], refs[f"logits{i}"], refs[f"greedy{i}"]
            if args.steps > 0:
                greedy = greedy[:args.steps]
                want = want.reshape(-1, want.shape[-1])[:args.steps + 1]
            n = len(greedy)
            tokens = generate(f"{args.build}/bin/kiln-run", args.artifact, ids, n,
                              args.device, f"{work}/logits.npy")
            logits = np.load(f"{work}/logits.npy")
            want = want.reshape(-1, want.shape[-1])  # [prompt (+ steps), vocab]
            rows = len(want)
            shape_ok = logits.shape == (n + 1, want.shape[1])
            got = logits[:rows] if shape_ok else np.zeros_like(want)
            err = float(np.abs(got - want).max())
            same_arg = bool((got.argmax(1) == want.argmax(1)).all())
            agree = sum(int(a == b) for a, b in zip(tokens, greedy))
            ok = err <= args.tol and same_arg and shape_ok and tokens == list(greedy)
            what = "prefill" if rows == 1 else f"prefill + {rows - 1} steps"
            print(f"{'ok' if ok else 'FAIL'} prompt {i} ({len(ids)} tokens): {what} "
                  f"max abs logit error {err:.2e} (bound {args.tol}), same argmax "
                  f"{same_arg}; greedy tokens {agree}/{n} identical")
            if not ok and tokens != list(greedy):
                print(f"  kiln:         {tokens}\n  transformers: {list(greedy)}")
            passed += ok
            failed += not ok
            i += 1
    print(f"{args.refs}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
