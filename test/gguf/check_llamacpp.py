#!/usr/bin/env python3
"""Kiln's greedy tokens on SmolLM2 (packed Q4_1/Q8_0 kernels) against
llama.cpp's on the same file (reference/smollm2_llamacpp.npz, made by
make_llamacpp_reference.py).

By default Kiln dequantizes each weight block exactly and computes in f32
(as transformers does); llama.cpp rounds activations to 8-bit blocks before
integer dot products and keeps K, V, q and the attention probabilities in
f16. An artifact compiled with --llamacpp-numerics does the same (its
matmul arithmetic equals ggml's to float rounding, test/cpu/quant-q8.test),
but not bit for bit: the order of float sums and the exp/rsqrt
approximations differ, and 8-bit rounding turns differences of one ulp into
whole rounding steps, so long free-running sequences still drift apart
where two candidates are close. (llama.cpp does not agree with itself
either: its flash-attention path, same weights, matches its default path
on 106 of these 128 free-running positions; llamacpp_self_agreement.py.)
Two numbers are reported per prompt:
  free:           positions equal when each engine feeds its own picks;
  teacher-forced: positions where Kiln, fed llama.cpp's tokens, picks what
                  llama.cpp picked (the per-position agreement; must be
                  >= --min-agreement over all prompts).

--reference transformers takes transformers' greedy tokens on the same
file (reference/smollm2_refs.npz) instead: the per-position measure for
artifacts whose numerics are meant to differ from both engines by 8-bit
rounding (an int8 KV cache), where logits cannot be held to 1e-3.

  check_llamacpp.py ARTIFACT.kiln --build build [--reference transformers]
                    [--llamacpp-refs NPZ]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kilnrun import generate as kiln_generate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def generate(build, artifact, ids, n, teacher=None):
    return kiln_generate(f"{build}/bin/kiln-run", artifact, ids, n, teacher=teacher)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    ap.add_argument("--min-agreement", type=float, default=0.9)
    ap.add_argument("--reference", choices=["llamacpp", "transformers"],
                    default="llamacpp")
    ap.add_argument("--llamacpp-refs",
                    default=os.path.join(HERE, "reference", "smollm2_llamacpp.npz"),
                    help="llama.cpp's tokens (make_llamacpp_reference.py --out)")
    args = ap.parse_args()
    prompts = np.load(os.path.join(HERE, "reference", "smollm2_refs.npz"))
    ref = prompts if args.reference == "transformers" else np.load(args.llamacpp_refs)
    engine = "transformers" if args.reference == "transformers" else "llama.cpp"
    free_total = forced_total = count = 0
    i = 0
    while f"greedy{i}" in ref:
        ids, want = prompts[f"ids{i}"], [int(t) for t in ref[f"greedy{i}"]]
        n = len(want)
        free = generate(args.build, args.artifact, ids, n)
        forced = generate(args.build, args.artifact, ids, n, teacher=want)
        f1 = sum(a == b for a, b in zip(free, want))
        f2 = sum(a == b for a, b in zip(forced, want))
        print(f"prompt {i} ({len(ids)} tokens): free {f1}/{n}, teacher-forced {f2}/{n}")
        free_total += f1
        forced_total += f2
        count += n
        i += 1
    agreement = forced_total / count
    ok = agreement >= args.min_agreement
    print(f"{'ok' if ok else 'FAIL'} {engine} agreement: teacher-forced "
          f"{forced_total}/{count} ({100 * agreement:.1f} %, bound "
          f"{100 * args.min_agreement:.0f} %), free-running {free_total}/{count}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
