#!/usr/bin/env python3
"""Renders every template in templates/ over every conversation in
cases.json with transformers' own chat-template environment (the jinja2
sandbox, options and globals apply_chat_template uses) and writes
reference/rendered.json: {template: {case: {"text": ...} | {"error": ...}}}.

The committed reference was made with transformers 5.24.0 and jinja2 3.1.6:
  python -m venv /tmp/v && /tmp/v/bin/pip install transformers==5.24.0 jinja2==3.1.6
  /tmp/v/bin/python test/llm/chat/make_references.py
strftime_now is pinned to EPOCH (UTC); check_templates.py sets
SOURCE_DATE_EPOCH to the same instant for Kiln.
"""
import datetime
import json
import os
import sys

import jinja2
import transformers
from transformers.utils.chat_template_utils import _compile_jinja_template

from chat_cases import EPOCH, TOKENS, context

HERE = os.path.dirname(os.path.abspath(__file__))

def main():
    cases = json.load(open(os.path.join(HERE, "cases.json")))
    now = datetime.datetime.fromtimestamp(EPOCH, datetime.timezone.utc)
    out = {}
    for name in sorted(os.listdir(os.path.join(HERE, "templates"))):
        stem = name[: -len(".jinja")]
        source = open(os.path.join(HERE, "templates", name), encoding="utf-8").read()
        compiled = _compile_jinja_template(source)
        compiled.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
        out[stem] = {}
        for case_name, case in cases.items():
            try:
                text = compiled.render(**context(stem, case))
                out[stem][case_name] = {"text": text}
            except jinja2.exceptions.TemplateError as e:
                # raise_exception and jinja2's own errors (undefined ...).
                out[stem][case_name] = {"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError}
            except Exception as e:  # TypeError and the like: still an error
                out[stem][case_name] = {"error": f"{type(e).__name__}: {e}", "raised": False}
    # The language corpus: each snippet over the "multi_turn" case.
    snippets = json.load(open(os.path.join(HERE, "snippets.json"), encoding="utf-8"))
    out_snippets = {}
    for sname, source in snippets.items():
        try:
            compiled = _compile_jinja_template(source)
            compiled.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
            out_snippets[sname] = {"text": compiled.render(**context("snippet", cases["multi_turn"]))}
        except jinja2.exceptions.TemplateError as e:
            out_snippets[sname] = {"error": str(e), "raised": type(e) is jinja2.exceptions.TemplateError}
        except Exception as e:
            out_snippets[sname] = {"error": f"{type(e).__name__}: {e}", "raised": False}
    meta = {"transformers": transformers.__version__, "jinja2": jinja2.__version__,
            "epoch": EPOCH}
    with open(os.path.join(HERE, "reference", "rendered.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "tokens": TOKENS, "rendered": out, "snippets": out_snippets}, f,
                  ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")
    n = sum(len(v) for v in out.values())
    errors = sum(1 for v in out.values() for r in v.values() if "error" in r)
    print(f"{len(out_snippets)} snippets, {sum('error' in r for r in out_snippets.values())} errors")
    print(f"{len(out)} templates x {len(cases)} cases: {n} renders, {errors} errors")


if __name__ == "__main__":
    sys.exit(main())
