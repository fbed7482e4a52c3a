#!/usr/bin/env python3
"""Run the ONNX backend node tests through kiln-compile and kiln-run.

Each test folder holds model.onnx and test_data_set_*/{input,output}_N.pb
(made by onnx's reference implementation). A test passes when kiln-compile
compiles the model, kiln-run runs it on the inputs, and every output has the
expected dtype, shape and values (onnx's backend tolerance: rtol 1e-3,
atol 1e-7; float16 gets atol 1e-3).

Graph inputs that decide shapes (Reshape's shape, Expand's shape, ...) must
be compile-time constants for Kiln: when kiln-compile says an input must be
a compile-time constant, the runner binds it with --const-input and retries.

Usage:
  run_node_tests.py --build build [--expected test/node/expected_cpu.txt]
                    [--filter REGEX] [--write-passing FILE] [-j N]
                    [--target T [--compile-only | --bundle DIR]]

--bundle DIR compiles the tests (those in --expected, if given) and keeps,
per test, the artifact, its inputs and the expected outputs as a case of a
GPU check bundle (test/gpu/run_bundle.py runs it on the GPU machine).

With --expected, every test listed there must pass (the list only grows);
a listed test that fails fails the run.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gpu"))
from run_bundle import compare  # noqa: E402

DATA = "/usr/share/libonnx-testdata/data/node"
COMPILE_FLAGS = []  # extra kiln-compile flags (--compile-flag)
CONST_RE = re.compile(r"input '([^']+)' \([^)]*\) must be a compile-time constant")


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def tolerance(dtype):
    """onnx's backend tolerance."""
    return {"mode": "allclose", "rtol": 1e-3,
            "atol": 1e-3 if dtype == np.float16 else 1e-7}


def run_one(name, build, workdir, target="cpu", compile_only=False, bundle=None):
    """Returns (name, ok, message)."""
    folder = os.path.join(DATA, name)
    model_path = os.path.join(folder, "model.onnx")
    sets = sorted(d for d in os.listdir(folder) if d.startswith("test_data_set_"))
    if not sets:
        return name, False, "no test data"
    model = onnx.load(model_path)
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = [i.name for i in model.graph.input if i.name not in inits]
    tmp = os.path.join(workdir, name)
    os.makedirs(tmp, exist_ok=True)
    data_dir = os.path.join(folder, sets[0])
    inputs = []
    declared = {i.name: i for i in model.graph.input}
    for i, gname in enumerate(graph_inputs):
        p = os.path.join(data_dir, f"input_{i}.pb")
        if not os.path.exists(p):
            return name, False, f"missing {p}"
        arr = load_pb(p)
        # Some test data stores a declared scalar as shape [1]; give the
        # tensor the shape the model declares when the element count agrees.
        dims = declared[gname].type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shape = tuple(d.dim_value for d in dims)
            if shape != arr.shape and int(np.prod(shape)) == arr.size:
                arr = arr.reshape(shape)
        inputs.append(arr)
    expected = []
    i = 0
    while os.path.exists(os.path.join(data_dir, f"output_{i}.pb")):
        expected.append(load_pb(os.path.join(data_dir, f"output_{i}.pb")))
        i += 1
    for arr in inputs:
        if arr.dtype == object or arr.dtype.kind in "UOSc" or arr.dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
            return name, False, f"input dtype {arr.dtype} not supported"
    npys = []
    for i, arr in enumerate(inputs):
        p = os.path.join(tmp, f"in{i}.npy")
        np.save(p, np.array(arr, order="C"))  # keeps 0-d arrays 0-d
        npys.append(p)

    kiln = os.path.join(tmp, "model.kiln")
    bound = {}
    for _ in range(len(graph_inputs) + 1):
        cmd = [os.path.join(build, "bin", "kiln-compile"), model_path, "-o", kiln, "--quiet",
               f"--target={target}"] + COMPILE_FLAGS
        cmd += [f"--const-input={n}={npys[graph_inputs.index(n)]}" for n in bound]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode == 0:
            break
        m = CONST_RE.search(r.stderr)
        if not m or m.group(1) not in graph_inputs or m.group(1) in bound:
            return name, False, "compile: " + (r.stderr.strip().splitlines() or ["?"])[-1]
        bound[m.group(1)] = True
    else:
        return name, False, "compile: too many constant inputs"

    run_inputs = [npys[i] for i, n in enumerate(graph_inputs) if n not in bound]
    if bundle:
        case = os.path.join(bundle, name)
        os.makedirs(case, exist_ok=True)
        shutil.copy(kiln, os.path.join(case, "model.kiln"))
        for p in run_inputs:
            shutil.copy(p, case)
        for i, want in enumerate(expected):
            np.save(os.path.join(case, f"want{i}.npy"), want)
        with open(os.path.join(case, "case.json"), "w") as f:
            json.dump({"kind": "run", "artifact": "model.kiln",
                       "inputs": [os.path.basename(p) for p in run_inputs],
                       "outputs": [f"want{i}.npy" for i in range(len(expected))],
                       "tol": [tolerance(w.dtype) for w in expected]},
                      f)
    if compile_only or bundle:
        shutil.rmtree(tmp, ignore_errors=True)
        return name, True, ""
    outs = [os.path.join(tmp, f"out{i}.npy") for i in range(len(expected))]
    cmd = [os.path.join(build, "bin", "kiln-run"), kiln, f"--device={target}"]
    cmd += [f"--input={p}" for p in run_inputs] + [f"--output={p}" for p in outs]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return name, False, "run: " + (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
    for i, (p, want) in enumerate(zip(outs, expected)):
        why = compare(np.load(p), want, tolerance(want.dtype))
        if why:
            return name, False, f"output {i}: {why}"
    shutil.rmtree(tmp, ignore_errors=True)
    return name, True, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--expected", help="tests that must pass")
    ap.add_argument("--filter", default="")
    ap.add_argument("--write-passing", help="write the passing tests here")
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("-v", action="store_true", help="print every failure")
    ap.add_argument("--target", default="cpu",
                    help="cpu, vulkan, or cuda:sm_80,sm_90 (with --compile-only)")
    ap.add_argument("--compile-flag", action="append", default=[],
                    help="an extra kiln-compile flag (repeatable)")
    ap.add_argument("--bundle", help="keep each compiled test as a GPU check "
                    "case here (test/gpu/run_bundle.py)")
    ap.add_argument("--compile-only", action="store_true",
                    help="only compile (for targets without a device here; "
                         "for cuda, ptxas checks every kernel)")
    args = ap.parse_args()
    COMPILE_FLAGS.extend(args.compile_flag)
    # The Vulkan loader wants a runtime dir; lavapipe needs nothing else.
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

    names = sorted(n for n in os.listdir(DATA) if re.search(args.filter, n))
    expected = set()
    if args.expected:
        with open(args.expected) as f:
            expected = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        if args.bundle:
            names = [n for n in names if n in expected]
        missing = expected - set(names)
        if missing and not args.filter:
            print(f"expected tests not in the test data: {sorted(missing)}")
            return 1
    results = {}
    with tempfile.TemporaryDirectory() as work:
        with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
            futs = [ex.submit(run_one, n, args.build, work, args.target,
                              args.compile_only, args.bundle)
                    for n in names]
            for f in concurrent.futures.as_completed(futs):
                try:
                    n, ok, msg = f.result()
                except Exception as e:  # a test harness error is a failure
                    n, ok, msg = "?", False, repr(e)
                results[n] = (ok, msg)
    passing = sorted(n for n, (ok, _) in results.items() if ok)
    failing = sorted(n for n, (ok, _) in results.items() if not ok)
    if args.v:
        for n in failing:
            print(f"FAIL {n}: {results[n][1]}")
    if args.write_passing:
        with open(args.write_passing, "w") as f:
            f.write(f"# ONNX node tests that pass on the {args.target} target; this list only grows.\n")
            f.write("# Regenerate: test/node/run_node_tests.py --write-passing FILE\n")
            for n in passing:
                f.write(n + "\n")
    regressions = sorted(n for n in expected if n in results and not results[n][0])
    for n in regressions:
        print(f"REGRESSION {n}: {results[n][1]}")
    new = sorted(set(passing) - expected) if expected else []
    if new:
        print(f"{len(new)} tests pass that are not in the expected list: {' '.join(new)}")
    print(f"node tests: {len(passing)} of {len(results)} pass "
          f"({len(expected)} expected)" if expected else
          f"node tests: {len(passing)} of {len(results)} pass")
    if expected:
        print(f"node: {len(expected) - len(regressions)} passed, {len(regressions)} failed")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
