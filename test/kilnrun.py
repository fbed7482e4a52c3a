"""kiln-run from the test scripts: one place that knows its command lines.

  run(kiln_run, artifact, device, inputs, outputs, env=None) -> [arrays]
  generate(kiln_run, artifact, prompt_ids, steps, device="cpu",
           logits_out=None, teacher=None, env=None) -> [greedy ids]

Both raise KilnRunError (the last line kiln-run printed on stderr) when it
fails. `env` adds to the environment. Needs numpy only (the GPU check runs
it on the lent machine).
"""
import os
import subprocess

import numpy as np


class KilnRunError(RuntimeError):
    pass


def _call(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, **(env or {})))
    if r.returncode:
        raise KilnRunError((r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1])
    return r.stdout


def run(kiln_run, artifact, device, inputs, outputs, env=None):
    """Runs the artifact's main function on .npy inputs; the outputs."""
    _call([kiln_run, artifact, f"--device={device}"] +
          [f"--input={p}" for p in inputs] + [f"--output={p}" for p in outputs], env)
    return [np.load(p) for p in outputs]


def generate(kiln_run, artifact, prompt_ids, steps, device="cpu", logits_out=None,
             teacher=None, env=None):
    """Greedy generation of `steps` tokens after `prompt_ids`; with
    `logits_out`, the logits after the prompt and each step go there."""
    cmd = [kiln_run, "generate", artifact, f"--device={device}",
           "--prompt-ids=" + ",".join(map(str, prompt_ids)), "-n", str(steps),
           "--temp=0", "--print-ids"]
    if logits_out:
        cmd.append(f"--logits-out={logits_out}")
    if teacher is not None:
        cmd.append("--teacher-ids=" + ",".join(map(str, teacher)))
    return [int(t) for t in _call(cmd, env).split()]
