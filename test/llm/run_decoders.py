#!/usr/bin/env python3
"""Compiles every test/llm/models/*_kv.onnx with `kiln-compile --llm` and
checks it against onnxruntime with check_ort.py; one summary line each.

  run_decoders.py MODELS_DIR WORK_DIR --build build
"""
import argparse
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models")
    ap.add_argument("work")
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    status = 0
    for model in sorted(glob.glob(os.path.join(args.models, "*_kv.onnx"))):
        name = os.path.basename(model)[:-len("_kv.onnx")]
        art = os.path.join(args.work, name + ".kiln")
        subprocess.run([f"{args.build}/bin/kiln-compile", model, "--llm",
                        "--prefill-chunk=16", "--max-context=256", "-o", art,
                        "--quiet"], check=True)
        run = subprocess.run([sys.executable, os.path.join(HERE, "check_ort.py"),
                              model, art, "--build", args.build],
                             stdout=subprocess.PIPE, text=True)
        print(run.stdout, end="")
        passed = run.stdout.strip().splitlines()[-1].split()[-2] if run.stdout else "0/3"
        print(f"{'ok' if run.returncode == 0 else 'FAIL'} {name}: {passed} prompts")
        status |= run.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
