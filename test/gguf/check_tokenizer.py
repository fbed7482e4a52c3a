#!/usr/bin/env python3
"""The artifact's tokenizer on the corpus of make_tokenizer_reference.py
(1,100 items: code, many scripts, numbers, whitespace runs, emoji, random
Unicode): ids identical to llama.cpp's for every item (required), each item
decoding back to itself (required), and agreement with transformers'
tokenizer reported (it differs from llama.cpp itself on some items: it
splits only ASCII digits and always parses special-token text).

  check_tokenizer.py ARTIFACT.kiln --build build
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "reference")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    run = subprocess.run(
        [f"{args.build}/bin/kiln-run", "tokenize", args.artifact,
         f"--file={REF}/tokenizer_corpus.bin", "--roundtrip"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = run.stdout.split("\n")[:-1]
    roundtrip_ok = run.returncode == 0
    status = 0
    for tool, required in (("llamacpp", True), ("transformers", False)):
        with open(f"{REF}/tokenizer_ids_{tool}.txt") as f:
            want = f.read().split("\n")[:-1]
        same = sum(a == b for a, b in zip(got, want)) if len(got) == len(want) else 0
        ok = same == len(want) or not required
        print(f"{'ok' if ok else 'FAIL'} {tool}: {same}/{len(want)} items identical"
              + ("" if required else " (informational)"))
        status |= not ok
    print(f"{'ok' if roundtrip_ok else 'FAIL'} decode(encode(item)) == item for "
          f"every item{'' if roundtrip_ok else ': ' + run.stderr.strip()}")
    return 1 if status or not roundtrip_ok else 0


if __name__ == "__main__":
    sys.exit(main())
