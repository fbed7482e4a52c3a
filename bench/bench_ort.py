#!/usr/bin/env python3
"""Kiln vs onnxruntime on the committed transformer exports, same threads.

For each model and sequence length: kiln-compile (dims bound), then
`kiln-run --repeat=N` (median of N calls, inside one process) against
onnxruntime's CPU provider (median of N session.run calls, after warm-up),
with 1 thread and with all cores. Prints a markdown table.

  .venv/bin/python bench/bench_ort.py --build build [--runs 50]
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "bert_tiny": lambda b, s, rng: {
        "input_ids": rng.integers(0, 1000, (b, s), dtype=np.int64),
        "attention_mask": np.ones((b, s), np.int64),
        "token_type_ids": np.zeros((b, s), np.int64)},
    "gpt2_tiny": lambda b, s, rng: {
        "input_ids": rng.integers(0, 1000, (b, s), dtype=np.int64)},
}


def kiln_time(build, model, inputs, seq, threads, runs, work):
    art = os.path.join(work, f"{os.path.basename(model)}.{seq}.kiln")
    if not os.path.exists(art):
        subprocess.run([f"{build}/bin/kiln-compile", model, "-o", art, "--quiet",
                        "--dim=batch=1", f"--dim=seq={seq}"], check=True)
    args = [f"{build}/bin/kiln-run", art, f"--device=cpu:{threads}", f"--repeat={runs}"]
    for name, arr in inputs.items():
        p = os.path.join(work, f"{name}.{seq}.npy")
        np.save(p, arr)
        args.append(f"--input={p}")
    r = subprocess.run(args, check=True, capture_output=True, text=True)
    return float(re.search(r"median ([0-9.]+) ms", r.stderr).group(1))


def ort_time(model, inputs, threads, runs):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    for _ in range(5):
        sess.run(None, inputs)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seqs", default="16,64")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    print("| model | seq | threads | kiln ms | onnxruntime ms | kiln / ort |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name, make in MODELS.items():
            model = os.path.join(ROOT, "test", "e2e", "models", name + ".onnx")
            for seq in map(int, args.seqs.split(",")):
                inputs = make(1, seq, rng)
                for threads in sorted({1, cores}):
                    k = kiln_time(args.build, model, inputs, seq, threads, args.runs, work)
                    o = ort_time(model, inputs, threads, args.runs)
                    print(f"| {name} | {seq} | {threads} | {k:.3f} | {o:.3f} | {k / o:.2f} |")


if __name__ == "__main__":
    main()
