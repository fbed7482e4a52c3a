#!/usr/bin/env python3
"""Runs spirv-val (Vulkan 1.1 rules) on every .spv file in the given
folders; prints the failures and one summary line."""
import glob
import os
import subprocess
import sys


def main():
    files = sorted(f for d in sys.argv[1:] for f in glob.glob(os.path.join(d, "*.spv")))
    bad = 0
    for f in files:
        r = subprocess.run(["spirv-val", "--target-env", "vulkan1.1", f],
                           capture_output=True, text=True)
        if r.returncode:
            bad += 1
            print(f"invalid {f}: {r.stderr.strip() or r.stdout.strip()}")
    print(f"spirv-val: {len(files)} modules, {bad} invalid")
    return 1 if bad or not files else 0


if __name__ == "__main__":
    sys.exit(main())
