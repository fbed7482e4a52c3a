#!/usr/bin/env python3
"""SmolLM2-135M (Q4_1 GGUF, dequantized to f32 by kiln-compile) against
transformers' f32 logits (test/gguf/reference/smollm2_refs.npz, made by
make_smollm2_reference.py).

Each prompt is padded at the end to the compiled length; causal attention
makes the logits at the prompt's last position independent of the padding.

  check_smollm2.py ARTIFACT.kiln --build build [--tol 1e-3]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    refs = np.load(os.path.join(HERE, "reference", "smollm2_refs.npz"))
    passed = failed = 0
    with tempfile.TemporaryDirectory() as work:
        i = 0
        while f"ids{i}" in refs:
            ids, want = refs[f"ids{i}"], refs[f"logits{i}"]
            n = len(ids)
            padded = np.full((1, args.seq), 2, np.int64)
            padded[0, :n] = ids
            np.save(f"{work}/ids.npy", padded)
            subprocess.run([f"{args.build}/bin/kiln-run", args.artifact,
                            f"--input={work}/ids.npy", f"--output={work}/logits.npy"],
                           check=True)
            got = np.load(f"{work}/logits.npy")[0, n - 1]
            err = float(np.abs(got - want).max())
            same = int(got.argmax()) == int(want.argmax())
            ok = err <= args.tol and same
            print(f"{'ok' if ok else 'FAIL'} prompt {i} ({n} tokens): max abs logit "
                  f"error {err:.2e} (bound {args.tol}), argmax {int(got.argmax())} "
                  f"vs {int(want.argmax())}")
            passed += ok
            failed += not ok
            i += 1
    print(f"smollm2: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
