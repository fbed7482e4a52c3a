#!/usr/bin/env python3
"""Variants of llama3.json.gz (make_bpe_tokenizers.py) for
tokenizer-json.test, written to OUT_DIR:

  ignore.json   one more token, "Ġzzqx" (" zzqx"), that no merge makes;
                ignore_merges as Llama 3 has it, so " zzqx" is that token
  merge.json    the same with ignore_merges off: " zzqx" is merged pieces
  bos.json      Llama 3's post-processor: a template with <|begin_of_text|>
                before the text
  eos.json      a template that also appends <|end_of_text|> (refused)
  regex.json    a Split by another regex (refused)
  nfc.json      Qwen2's NFC normalizer
  lower.json    a Lowercase normalizer (refused)
  gpt2_nfc.json SmolLM2's tokenizer.json (the GPT-2 ByteLevel form) with NFC

  variants.py OUT_DIR
"""
import copy
import gzip
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    out = sys.argv[1]
    with gzip.open(os.path.join(HERE, "llama3.json.gz"), "rt") as f:
        base = json.load(f)
    variants = {}
    t = copy.deepcopy(base)
    t["model"]["vocab"]["\u0120zzqx"] = len(t["model"]["vocab"])
    variants["ignore"] = t
    t = copy.deepcopy(t)
    t["model"]["ignore_merges"] = False
    variants["merge"] = t

    ids = {a["content"]: a["id"] for a in base["added_tokens"]}

    def template(single):
        used = [p["SpecialToken"]["id"] for p in single if "SpecialToken" in p]
        return {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
             "use_regex": True},
            {"type": "TemplateProcessing", "single": single, "pair": single,
             "special_tokens": {k: {"id": k, "ids": [ids[k]], "tokens": [k]}
                                for k in used}}]}
    bos = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    text = {"Sequence": {"id": "A", "type_id": 0}}
    eos = {"SpecialToken": {"id": "<|end_of_text|>", "type_id": 0}}
    t = copy.deepcopy(base)
    t["post_processor"] = template([bos, text])
    variants["bos"] = t
    t = copy.deepcopy(base)
    t["post_processor"] = template([bos, text, eos])
    variants["eos"] = t
    t = copy.deepcopy(base)
    t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+"
    variants["regex"] = t
    t = copy.deepcopy(base)
    t["normalizer"] = {"type": "NFC"}
    variants["nfc"] = t
    t = copy.deepcopy(base)
    t["normalizer"] = {"type": "Lowercase"}
    variants["lower"] = t
    # The GPT-2 ByteLevel form (SmolLM2's tokenizer.json) with NFC.
    with gzip.open(os.path.join(HERE, "tokenizer.json.gz"), "rt") as f:
        t = json.load(f)
    t["normalizer"] = {"type": "NFC"}
    variants["gpt2_nfc"] = t
    for name, v in variants.items():
        with open(os.path.join(out, f"{name}.json"), "w") as f:
            json.dump(v, f)


if __name__ == "__main__":
    main()
