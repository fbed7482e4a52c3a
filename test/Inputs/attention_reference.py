#!/usr/bin/env python3
"""Inputs and numpy reference for test/cpu/attention.test.

  attention_reference.py make DIR      writes q.npy k.npy v.npy
  attention_reference.py check DIR     compares DIR/out.npy with numpy

Shapes: q [1, 4, 3, 8], k/v [1, 2, 5, 8] (grouped-query: 2 query heads per
key/value head), causal with the 3 queries at the last 3 of 5 positions,
window 3 with 1 sink, scale 0.35.
"""
import sys

import numpy as np


def reference(q, k, v, scale=0.35, window=3, sinks=1):
    g = q.shape[1] // k.shape[1]
    k = np.repeat(k, g, axis=1)
    v = np.repeat(v, g, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) * np.float32(scale)
    S, L = s.shape[2], s.shape[3]
    for i in range(S):
        pos = i + L - S
        for j in range(L):
            if j > pos or not (pos - j < window or j < sinks):
                s[:, :, i, j] = -np.inf
    s = s - s.max(axis=-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v


def main():
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "make":
        rng = np.random.default_rng(7)
        np.save(f"{d}/q.npy", rng.standard_normal((1, 4, 3, 8), np.float32))
        np.save(f"{d}/k.npy", rng.standard_normal((1, 2, 5, 8), np.float32))
        np.save(f"{d}/v.npy", rng.standard_normal((1, 2, 5, 8), np.float32))
    else:
        ref = reference(np.load(f"{d}/q.npy"), np.load(f"{d}/k.npy"), np.load(f"{d}/v.npy"))
        got = np.load(f"{d}/out.npy")
        err = float(np.abs(got - ref).max())
        print("attention max abs error %.2g: %s" % (err, "ok" if err < 1e-5 else "MISMATCH"))


if __name__ == "__main__":
    main()
