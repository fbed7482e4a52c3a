#!/usr/bin/env python3
"""Renders every template x case of reference/rendered.json with
`kiln-run chat-template` and compares with transformers' rendering: the
text must be identical, and where the reference is an error Kiln must
fail too (with the template's own message, for raise_exception).

  check_templates.py KILN_RUN [--only=TEMPLATE]
"""
import json
import os
import subprocess
import sys
import tempfile

from chat_cases import EPOCH, context

HERE = os.path.dirname(os.path.abspath(__file__))


def run(kiln_run, template, ctx, want, tmp, env):
    """Renders `template` over `ctx` with Kiln: (matches, explanation)."""
    ctx_path = os.path.join(tmp, "ctx.json")
    with open(ctx_path, "w", encoding="utf-8") as f:
        json.dump(ctx, f, ensure_ascii=False)
    p = subprocess.run([kiln_run, "chat-template", "--template=" + template,
                        "--context=" + ctx_path], capture_output=True, env=env)
    got = p.stdout.decode("utf-8", "surrogateescape")
    err = p.stderr.decode("utf-8", "replace").strip()
    if "text" in want:
        if p.returncode:
            return False, err
        return got == want["text"], f"text differs:\n--- kiln\n{got!r}\n--- transformers\n{want['text']!r}"
    if p.returncode == 0:
        return False, f"rendered, but transformers fails with: {want['error']}"
    if want["raised"] and want["error"] not in err:
        return False, f"error differs: {err}\n  transformers: {want['error']}"
    return True, f"kiln: {err}"


def main():
    kiln_run = sys.argv[1]
    only = [a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--only=")]
    ref = json.load(open(os.path.join(HERE, "reference", "rendered.json"), encoding="utf-8"))
    cases = json.load(open(os.path.join(HERE, "cases.json"), encoding="utf-8"))
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH))
    ok = bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for tname, results in sorted(ref["rendered"].items()):
            if only and tname not in only:
                continue
            template = os.path.join(HERE, "templates", tname + ".jinja")
            for cname, want in sorted(results.items()):
                good, why = run(kiln_run, template, context(tname, cases[cname]), want, tmp, env)
                ok += good
                bad += not good
                if not good:
                    print(f"FAIL {tname} / {cname}: {why}")
                elif "error" in want:
                    print(f"  {tname} / {cname}: both fail; {why}")
        snippets = json.load(open(os.path.join(HERE, "snippets.json"), encoding="utf-8"))
        sok = sbad = 0
        for sname, want in sorted(ref["snippets"].items()):
            if only and sname not in only:
                continue
            path = os.path.join(tmp, "snippet.jinja")
            with open(path, "w", encoding="utf-8") as f:
                f.write(snippets[sname])
            good, why = run(kiln_run, path, context("snippet", cases["multi_turn"]), want, tmp, env)
            sok += good
            sbad += not good
            if not good:
                print(f"FAIL snippet {sname}: {why}")
    print(f"chat templates: {ok} of {ok + bad} renders match transformers")
    print(f"language snippets: {sok} of {sok + sbad} match transformers")
    bad += sbad
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
