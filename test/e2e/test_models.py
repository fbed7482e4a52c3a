#!/usr/bin/env python3
"""End-to-end: exported transformers through kiln-compile and kiln-run,
compared with onnxruntime running the same .onnx file.

For every output: max |kiln - ort| / max |ort| <= 1e-4 (fp32 through a few
hundred dependent operations; a 1e-4 bound leaves room for a different
summation order and libm, while a wrong op is off by far more).

With --target=vulkan the same artifacts are compiled for Vulkan and run
on its device (lavapipe in CI) under the same bound.

--bundle DIR compiles for --target and keeps each model's artifact, inputs
and onnxruntime's outputs as a case of a GPU check bundle instead of running
it (test/gpu/run_bundle.py runs it on the GPU machine).

Usage: test_models.py --build build [--target cpu|vulkan] [--keep DIR]
                      [--bundle DIR --target cuda:sm_90]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REL_TOL = 1e-4
COMPILE_FLAGS = []  # extra kiln-compile flags (--compile-flag)

# name -> (dims to bind, input generator)
CASES = {
    "bert_tiny": ({"batch": 2, "seq": 16}, lambda rng: {
        "input_ids": rng.integers(0, 1000, (2, 16), dtype=np.int64),
        # The second sequence is padded: its last 5 positions are masked.
        "attention_mask": np.array([[1] * 16, [1] * 11 + [0] * 5], dtype=np.int64),
        "token_type_ids": np.concatenate(
            [np.zeros((2, 8), np.int64), np.ones((2, 8), np.int64)], axis=1),
    }),
    "gpt2_tiny": ({"batch": 1, "seq": 16}, lambda rng: {
        "input_ids": rng.integers(0, 1000, (1, 16), dtype=np.int64),
    }),
}


def run_case(name, build, work, target, bundle=None):
    dims, make_inputs = CASES[name]
    model = os.path.join(HERE, "models", name + ".onnx")
    inputs = make_inputs(np.random.default_rng(0))
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    ref = sess.run(None, {n: inputs[n] for n in names})

    kiln = os.path.join(work, name + ".kiln")
    cmd = [os.path.join(build, "bin", "kiln-compile"), model, "-o", kiln, "--quiet",
           f"--target={target}"] + COMPILE_FLAGS
    cmd += [f"--dim={k}={v}" for k, v in dims.items()]
    subprocess.run(cmd, check=True)
    args = [os.path.join(build, "bin", "kiln-run"), kiln, f"--device={target}"]
    for n in names:
        p = os.path.join(work, f"{name}.{n}.npy")
        np.save(p, inputs[n])
        args.append(f"--input={p}")
    outs = [os.path.join(work, f"{name}.out{i}.npy") for i in range(len(ref))]
    if bundle:
        case = os.path.join(bundle, name)
        os.makedirs(case, exist_ok=True)
        shutil.copy(kiln, os.path.join(case, "model.kiln"))
        for n in names:
            shutil.copy(os.path.join(work, f"{name}.{n}.npy"), case)
        for i, want in enumerate(ref):
            np.save(os.path.join(case, f"want{i}.npy"), want)
        with open(os.path.join(case, "case.json"), "w") as f:
            json.dump({"kind": "run", "artifact": "model.kiln",
                       "inputs": [f"{name}.{n}.npy" for n in names],
                       "outputs": [f"want{i}.npy" for i in range(len(ref))],
                       "tol": {"mode": "relmax", "bound": REL_TOL}}, f)
        print(f"bundled {name} ({target})")
        return True
    args += [f"--output={p}" for p in outs]
    subprocess.run(args, check=True)
    ok = True
    for i, (p, want) in enumerate(zip(outs, ref)):
        got = np.load(p)
        if got.shape != want.shape:
            print(f"FAIL {name} output {i}: shape {got.shape}, expected {want.shape}")
            ok = False
            continue
        scale = float(np.max(np.abs(want)))
        err = float(np.max(np.abs(got - want)))
        rel = err / scale if scale else err
        status = "ok" if rel <= REL_TOL else "FAIL"
        print(f"{status} {name} ({target}) output {i} {list(want.shape)}: max abs error "
              f"{err:.3g}, relative to max |ref| {rel:.3g} (bound {REL_TOL})")
        ok = ok and rel <= REL_TOL
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep", help="keep artifacts and outputs here")
    ap.add_argument("--target", default="cpu", help="cpu or vulkan")
    ap.add_argument("--compile-flag", action="append", default=[],
                    help="an extra kiln-compile flag (repeatable)")
    ap.add_argument("--bundle", help="keep each case for a GPU check bundle here")
    args = ap.parse_args()
    COMPILE_FLAGS.extend(args.compile_flag)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    work = args.keep or tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    passed = failed = 0
    for name in CASES:
        try:
            ok = run_case(name, args.build, work, args.target, args.bundle)
        except subprocess.CalledProcessError as e:
            print(f"FAIL {name}: {e}")
            ok = False
        passed += ok
        failed += not ok
    print(f"e2e: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
