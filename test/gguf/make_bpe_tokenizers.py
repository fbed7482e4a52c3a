#!/usr/bin/env python3
"""Byte-level BPE tokenizers with Llama 3's and Qwen2's pre-tokenizers, and
their reference ids on the tokenizer corpus.

No package ships either tokenizer, so the `tokenizers` library (the one
their tokenizer.json files are written for) trains a 2,048-token BPE under
each pre-tokenizer, set up as those files set it up: Split(regex,
"isolated") then ByteLevel without its own regex, and ignore_merges for
Llama 3. It trains on Python sources and the sentences of
make_tokenizer_reference.py, so its merges span digits, whitespace runs,
newlines and many scripts. For NAME in llama3, qwen2 this writes:

  models/tok_NAME.gguf       a tiny random-weight model (make_tiny_llama's)
                             carrying the tokenizer as tokenizer.ggml.*,
                             with llama.cpp's pre name ("llama-bpe", "qwen2")
  ../llm/tokenizer/NAME.json.gz  the tokenizers library's tokenizer.json
  reference/tokenizer_ids_NAME_tokenizers.txt  its ids for each item of
                             tokenizer_corpus.bin (special tokens parsed)
  reference/tokenizer_ids_NAME_llamacpp.txt    llama.cpp's ids on the GGUF
                             (llama-cpp-python, vocab only, no BOS, special
                             tokens parsed)

and for the NFC normalizer (Qwen2's tokenizer.json has one; llama.cpp has
none), reference/nfc_corpus.bin (text that NFC changes: decomposed forms
of the corpus, marks in random order, singletons, composition exclusions,
Hangul jamo, and compatibility characters NFC keeps) and
reference/tokenizer_ids_nfc_tokenizers.txt: the ids of the llama3
tokenizer with an NFC normalizer (variants.py's nfc.json) on it, and
reference/tokenizer_ids_nfc_gpt2_tokenizers.txt those of SmolLM2's
tokenizer.json (GPT-2's ByteLevel form) with one (gpt2_nfc.json).

Not CI (needs tokenizers, gguf, llama-cpp-python, numpy):

  .venv-export/bin/python test/gguf/make_bpe_tokenizers.py
"""
import glob
import gzip
import inspect
import json
import os
import sys
import tempfile

import numpy as np
import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "reference")
sys.path.insert(0, HERE)
import make_tiny_llama  # noqa: E402
import make_tokenizer_reference  # noqa: E402

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TOKENIZERS = {
    # name: (regex, ignore_merges, GGUF pre name, special tokens)
    "llama3": (LLAMA3_REGEX, True, "llama-bpe",
               ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]),
    "qwen2": (QWEN2_REGEX, False, "qwen2",
              ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
}
VOCAB = 2048
# The chat templates the GGUFs carry, as their sources publish them (quoted
# in llama-cpp-python's llama_chat_format.py): Meta-Llama-3-8B-Instruct's
# tokenizer_config.json, and ChatML.
CHAT_TEMPLATES = {
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}"
              "{% set content = '<|start_header_id|>' + message['role'] + "
              "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
              "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
              "{{ content }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "qwen2": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
             "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
}
# (user, system) turns for reference/chat_ids.txt: jinja2 renders each
# template, llama.cpp tokenizes the text (special tokens parsed).
CHAT_CASES = [("What is 2+2?", None), ("  A padded question.  ", "You are terse.")]


def training_text():
    import collections, email.message, http.client, string, textwrap, json as js
    texts = [inspect.getsource(m) for m in (collections, email.message,
                                            http.client, string, textwrap, js)]
    texts += make_tokenizer_reference.SENTENCES * 20
    texts += [" ".join(str(n) for n in range(0, 3000, 7)),
              "\n\n".join(f"{i}\t{i * i}\r\n" for i in range(200))]
    return texts


def train(regex, ignore_merges, specials):
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    return tok


def gguf_tokenizer(tok, pre, specials):
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    types = [3 if t in specials else 1 for t in tokens]

    def write(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        # Llama 3: <|begin_of_text|> / <|end_of_text|>; Qwen2: <|endoftext|>
        # / <|im_end|>, as their instruct models' files have them.
        w.add_bos_token_id(tokens.index(specials[0]))
        w.add_eos_token_id(tokens.index(specials[1 if pre != "qwen2" else 2]))
        w.add_add_bos_token(False)
        w.add_chat_template(CHAT_TEMPLATES["llama3" if pre != "qwen2" else "qwen2"])
    return write, len(tokens)


def nfc_corpus(items):
    import random
    import unicodedata
    out = [unicodedata.normalize("NFD", s) for s in items
           if unicodedata.normalize("NFD", s) != s][:300]
    # Marks Unicode 3.2 already had: the tokenizers library's NFC tables
    # (its unicode-normalization fork) predate Unicode 14, Python's and
    # Kiln's, and give newer marks class 0.
    old = unicodedata.ucd_3_2_0
    marks = [chr(c) for c in list(range(0x300, 0x2000)) + list(range(0x20D0, 0x20F1))
             if unicodedata.combining(chr(c)) and old.category(chr(c)) != "Cn"]
    bases = ("aeiouAEIOUnNcCsSzZyY" + "αεηιοωΑΕΙΩ" + "аеиоуАЕИ"
             + "कखगजडढफय" + "ᄀᄂᄃᄅ")
    rng = random.Random(77)
    for _ in range(300):
        s = []
        for _ in range(rng.randint(1, 6)):
            s.append(rng.choice(bases))
            if s[-1] in "ᄀᄂᄃᄅ":  # Hangul L, then V, maybe T
                s.append(chr(rng.randint(0x1161, 0x1175)))
                if rng.random() < 0.5:
                    s.append(chr(rng.randint(0x11A8, 0x11C2)))
            for _ in range(rng.randint(0, 4)):
                s.append(rng.choice(marks))
            if rng.random() < 0.3:
                s.append(rng.choice([" ", "  ", "\n", "1", "12", "-"]))
        out.append("".join(s))
    out += [
        "\u212b \u2126 \u0340\u0341 a\u0343 \u0374\u037e\u0387 K\u212a",  # singletons
        "\u0958\u0959 \u095a \u0915\u093c \ufb1d \u05d9\u05b4 \u2adc",  # exclusions
        "\ufb01 \u2460 \u00bd \u2126\u0301 \u1e9b\u0323 \u0071\u0307\u0323",
        "\u1100\u1161\u11a8 \uac00\u11a8 \u1100\u1161 \u110b\u1167\u11ab",
        "e\u0301\u0327 e\u0327\u0301 a\u0328\u0301\u0308 \u00e9\u0300",
        "Zo\u0308e\u0301 cafe\u0301 re\u0301sume\u0301 na\u0131\u0308ve",
        "\u0b47\u0b3e \u0b47\u0b57 \u0dd9\u0dcf\u0dca \u1025\u102e",
    ]
    return [s for s in out if "\0" not in s]


def main():
    with open(os.path.join(REF, "tokenizer_corpus.bin"), "rb") as f:
        items = [s.decode("utf-8") for s in f.read().split(b"\0")]
    import jinja2
    import llama_cpp
    chat_lines = []
    for seed, (name, (regex, ignore, pre, specials)) in enumerate(TOKENIZERS.items()):
        tok = train(regex, ignore, specials)
        with open(os.path.join(HERE, "..", "llm", "tokenizer", f"{name}.json.gz"),
                  "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(tok.to_str().encode())
        write, n = gguf_tokenizer(tok, pre, specials)
        path = os.path.join(HERE, "models", f"tok_{name}.gguf")
        make_tiny_llama.write_gguf(path, np.random.default_rng(20 + seed),
                                   arch="qwen2" if name == "qwen2" else "llama",
                                   vocab=n, tokenizer=write, tied=True)
        refs = {"tokenizers": [tok.encode(s, add_special_tokens=False).ids for s in items]}
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        refs["llamacpp"] = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=True)
                            for s in items]
        for k, (user, system) in enumerate(CHAT_CASES):
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": user}]
            text = jinja2.Environment().from_string(CHAT_TEMPLATES[name]).render(
                messages=messages, add_generation_prompt=True, bos_token=specials[0])
            ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            chat_lines.append(f"{name} {k}: {' '.join(map(str, ids))}")
        for tool, ids in refs.items():
            with open(os.path.join(REF, f"tokenizer_ids_{name}_{tool}.txt"), "w") as f:
                for row in ids:
                    f.write(" ".join(map(str, row)) + "\n")
        same = sum(a == b for a, b in zip(refs["llamacpp"], refs["tokenizers"]))
        multi = sum(len(t) > 1 for t in json.loads(tok.to_str())["model"]["vocab"])
        print(f"{name}: {n} tokens ({multi} of several chars), {os.path.getsize(path)} "
              f"bytes; llama.cpp and tokenizers agree on {same}/{len(items)} items")
        for a, b, s in zip(refs["llamacpp"], refs["tokenizers"], items):
            if a != b and same > len(items) - 20:
                print("  differ:", repr(s)[:80])
        if name == "llama3":
            nfc_items = nfc_corpus(items)
            with open(os.path.join(REF, "nfc_corpus.bin"), "wb") as f:
                f.write(b"\0".join(s.encode("utf-8") for s in nfc_items))
            tok.normalizer = tokenizers.normalizers.NFC()
            with open(os.path.join(REF, "tokenizer_ids_nfc_tokenizers.txt"), "w") as f:
                for s in nfc_items:
                    f.write(" ".join(map(str, tok.encode(s, add_special_tokens=False).ids))
                            + "\n")
            # NFC before the GPT-2 ByteLevel pre-tokenizer: SmolLM2's
            # tokenizer.json with the normalizer (variants.py's gpt2_nfc.json).
            with gzip.open(os.path.join(HERE, "..", "llm", "tokenizer",
                                        "tokenizer.json.gz"), "rt") as f:
                smol = tokenizers.Tokenizer.from_str(f.read())
            smol.normalizer = tokenizers.normalizers.NFC()
            with open(os.path.join(REF, "tokenizer_ids_nfc_gpt2_tokenizers.txt"), "w") as f:
                for s in nfc_items:
                    f.write(" ".join(map(str, smol.encode(s, add_special_tokens=False).ids))
                            + "\n")
            print(f"nfc: {len(nfc_items)} items")
    with open(os.path.join(REF, "chat_ids.txt"), "w") as f:
        f.write("\n".join(chat_lines) + "\n")


if __name__ == "__main__":
    main()
