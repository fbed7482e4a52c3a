#!/usr/bin/env python3
"""Hyperparameter fuzzing of the GGUF importer: each iteration takes one of
the tiny architecture models, sets one of its `ARCH.*` metadata keys (or a
tokenizer key) to a hostile value (0, 1, an odd number, a huge one; for
floats 0, negative, NaN, infinity) with gguf_tool.py set-kv, and imports it
(`kiln-compile --compile-to=import`). The importer must accept the file or
refuse it with an error message (fuzz_importer.py's verdict: not an op
verifier's error from a later phase); a signal, a hang or a failure that
says nothing fails the run.

  fuzz_gguf_keys.py --build build [--iterations N] [--seed S] [--full]

--full compiles each file to an artifact (slower; the passes and code
generation see the values too).
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fuzz_importer import outcome_ok  # noqa: E402  (the same verdict as the ONNX fuzzer)
MODELS = os.path.join(HERE, "..", "gguf", "models")
TOOL = os.path.join(HERE, "..", "gguf", "gguf_tool.py")
ARCHS = ["tiny_llama", "tiny_qwen2", "tiny_qwen3", "tiny_gemma2", "tiny_gemma3",
         "tiny_phi3_su", "tiny_stablelm", "tiny_starcoder2", "tiny_nemotron",
         "tiny_gpt2", "tok_spm"]
INT_VALUES = ["0", "1", "2", "3", "7", "15", "17", "4096", "65535", "2147483647",
              "4294967295"]
FLOAT_VALUES = ["0", "-1", "1e-30", "1e30", "nan", "inf", "-inf", "0.5"]


def keys_of(path):
    import gguf
    r = gguf.GGUFReader(path)
    out = []
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name.startswith("general."):
            continue
        t = int(f.types[0])
        if t in (4, 5, 10, 11):  # integers
            out.append((name, "u32"))
        elif t in (6, 12):
            out.append((name, "f32"))
        elif t == 7:
            out.append((name, "bool"))
    # Keys the files do not have but an importer reads.
    arch = r.fields["general.architecture"].contents()
    for extra in ("attention.sliding_window", "rope.dimension_count",
                  "attn_logit_softcapping", "final_logit_softcapping",
                  "rope.scaling.factor", "attention.key_length"):
        out.append((f"{arch}.{extra}", "f32" if "softcapping" in extra or
                    "factor" in extra else "u32"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--full", action="store_true",
                    help="compile to an artifact, not only import")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    keys = {m: keys_of(os.path.join(MODELS, m + ".gguf")) for m in ARCHS}
    bad = accepted = refused = 0
    with tempfile.TemporaryDirectory() as tmp:
        for it in range(args.iterations):
            model = rng.choice(ARCHS)
            key, kind = rng.choice(keys[model])
            value = rng.choice(FLOAT_VALUES if kind == "f32" else
                               ["true", "false"] if kind == "bool" else INT_VALUES)
            src = os.path.join(MODELS, model + ".gguf")
            dst = os.path.join(tmp, f"{it}.gguf")
            subprocess.run([sys.executable, TOOL, "set-kv", src, dst, key, kind, value],
                           check=True, capture_output=True)
            try:
                stage = (["-o", dst + ".kiln", "--quiet"] if args.full
                         else ["--compile-to=import"])
                r = subprocess.run([f"{args.build}/bin/kiln-compile", dst,
                                    "--prefill-chunk=16"] + stage,
                                   capture_output=True, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                print(f"FAIL {model} {key}={value}: no answer in 120 s")
                bad += 1
                continue
            finally:
                os.unlink(dst)
            if r.returncode == 0:
                accepted += 1
            elif outcome_ok(r):
                refused += 1
            else:
                bad += 1
                tail = (r.stderr.strip().splitlines() or ["(nothing)"])[-1]
                print(f"FAIL {model} {key}={value}: exit {r.returncode}: {tail}")
    print(f"gguf key fuzzing: {args.iterations} files, {accepted} accepted, "
          f"{refused} refused with a message, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
