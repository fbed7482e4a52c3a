#!/usr/bin/env python3
"""Every test model for CUDA (issue: "every test model ... compiles for
cuda:sm_80,sm_90, and ptxas accepts all PTX"): the committed ONNX decoder
exports (TorchScript and dynamo; Llama also with --quantize-weights=int4),
the generated opset-23 and contrib-op
decoders, the tiny GGUF models (Q8_0/Q4_0/Q4_1, K-quants, IQ4, qwen2) with the
f32, f16 and int8 KV cache, the q8 activation mode and all of llama.cpp's
numerics (rounded attention probabilities), and the tiny BERT and
GPT-2, each compiled with --target=cpu,cuda:sm_80,sm_90 (kiln-compile runs
ptxas on every kernel for both SMs). Then each runs through the runtime's
CUDA driver on the stand-in libcuda.so.1 (fake_libcuda.cc; --fake DIR):
LLMs a 12-token prompt (one prefill call) and 3 greedy steps, the encoders one call, which must
succeed with no driver-API misuse and nothing left unreleased
(check_fake_log.py). One line per model, then a summary.

  all_models.py --build BUILD --fake DIR --work DIR
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from check_fake_log import summarize  # noqa: E402

LLM = ["--llm", "--prefill-chunk=16", "--max-context=256"]
GGUF = ["--prefill-chunk=16", "--max-context=256"]


def models(work):
    for f in sorted(os.listdir(os.path.join(TEST, "llm", "models"))):
        yield f[:-5], os.path.join(TEST, "llm", "models", f), LLM
    yield "llama_kv_int4", os.path.join(TEST, "llm", "models", "llama_kv.onnx"), \
        LLM + ["--quantize-weights=int4"]
    for script, name in (("make_fused_onnx.py", "fused_kv"),
                         ("make_contrib_onnx.py", "contrib_kv")):
        path = os.path.join(work, name + ".onnx")
        subprocess.run([sys.executable, os.path.join(TEST, "llm", script), path],
                       check=True, capture_output=True)
        yield name, path, LLM
    for f in sorted(os.listdir(os.path.join(TEST, "gguf", "models"))):
        path = os.path.join(TEST, "gguf", "models", f)
        if f.startswith("tok_"):  # tokenizer carriers: tiny_llama's shapes
            continue
        yield f[:-5], path, GGUF
        if f == "tiny_llama.gguf":
            yield "tiny_llama_kv16", path, GGUF + ["--kv-dtype=f16"]
            yield "tiny_llama_q8", path, GGUF + ["--activations=q8"]
            yield "tiny_llama_llamacpp", path, GGUF + ["--llamacpp-numerics"]
        if f == "tiny_llama_k.gguf":  # head_dim 64: int8 rows of two groups
            yield "tiny_llama_k_kv8", path, GGUF + ["--kv-dtype=int8"]
            yield "tiny_llama_k_llamacpp", path, GGUF + ["--llamacpp-numerics"]
        if f == "tiny_llama_q5.gguf":
            yield "tiny_llama_q5_q8", path, GGUF + ["--activations=q8"]
        if f == "tiny_llama_iq4.gguf":  # the codebook as scalar selects
            yield "tiny_llama_iq4_llamacpp", path, GGUF + ["--llamacpp-numerics"]
    yield "bert_tiny", os.path.join(TEST, "e2e", "models", "bert_tiny.onnx"), \
        ["--dim=batch=2", "--dim=seq=16"]
    yield "gpt2_tiny", os.path.join(TEST, "e2e", "models", "gpt2_tiny.onnx"), \
        ["--dim=batch=1", "--dim=seq=16"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--fake", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--only", default="", help="models whose name matches")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    bin_ = os.path.join(args.build, "bin")
    failed = total = 0
    for name, path, flags in models(args.work):
        if not re.search(args.only, name):
            continue
        total += 1
        art = os.path.join(args.work, name + ".kiln")
        log = os.path.join(args.work, name + ".log")
        if os.path.exists(log):
            os.remove(log)
        r = subprocess.run([os.path.join(bin_, "kiln-compile"), path, "-o", art, "--quiet",
                            "--target=cpu,cuda:sm_80,sm_90"] + flags,
                           capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL {name}: compile: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
            failed += 1
            continue
        if "bert" in name or "gpt2_tiny" in name:
            sig = subprocess.run([os.path.join(bin_, "kiln-run"), art, "--print-signature"],
                                 capture_output=True, text=True).stdout
            inputs = []
            for i, line in enumerate(l for l in sig.splitlines() if l.startswith("input")):
                shape = line.split("[")[1].split("]")[0]
                p = os.path.join(args.work, f"{name}.in{i}.npy")
                subprocess.run([sys.executable, os.path.join(TEST, "Inputs", "npytool.py"),
                                "make", p, "i8", shape, "1"], check=True)
                inputs.append(f"--input={p}")
            cmd = [os.path.join(bin_, "kiln-run"), art, "--device=cuda"] + inputs
        else:
            cmd = [os.path.join(bin_, "kiln-run"), "generate", art, "--device=cuda",
                   # 12 tokens: one (padded) prefill call, not 12 decode steps
                   "--prompt-ids=1,2,3,4,5,6,7,8,9,10,11,12", "-n", "3", "--print-ids"]
        env = dict(os.environ, LD_LIBRARY_PATH=args.fake, FAKE_CUDA_LOG=log)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        summary = summarize(log) if os.path.exists(log) else "no log"
        ok = (r.returncode == 0 and "misordered=0 errors=0" in summary
              and "unloaded=yes unreleased=0" in summary)
        failed += not ok
        why = "" if r.returncode == 0 else \
            " run: " + (r.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{'ok' if ok else 'FAIL'} {name}: {summary}{why}")
    print(f"cuda models: {total - failed} of {total} compile for sm_80,sm_90 and "
          f"run on the stand-in driver")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
