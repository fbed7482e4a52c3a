#!/usr/bin/env python3
"""A SentencePiece BPE tokenizer (GGUF tokenizer.ggml.model "llama", the
kind Llama 1/2, Mistral, Gemma and TinyLlama files carry) and its reference
ids on the tokenizer corpus.

The sentencepiece library trains a 2,048-piece BPE model the way those
models were trained: byte fallback (<0x00>..<0xFF>), identity
normalization, spaces kept as they are (no collapsing), a dummy space
prefix, digits split, whitespace-only pieces allowed, and two user-defined
symbols, <start_of_turn> and <end_of_turn>, as Gemma's. It trains on the
text make_bpe_tokenizers.py trains on (Python sources and the
many-script sentences of make_tokenizer_reference.py), with character
coverage below one, so rare characters go to their byte tokens. This
writes:

  models/tok_spm.gguf    a tiny random-weight Llama (make_tiny_llama's)
                         carrying the tokenizer as tokenizer.ggml.*: the
                         pieces, their scores and their types as llama.cpp's
                         converter writes them (normal 1, unknown 2, control
                         3, user-defined 4, byte 6), BOS 1, EOS 2
  reference/tokenizer_ids_spm_sentencepiece.txt  sentencepiece's ids for
                         each item of tokenizer_corpus.bin (BOS first)
  reference/tokenizer_ids_spm_llamacpp.txt       llama.cpp's ids on the
                         GGUF (llama-cpp-python, vocab only, BOS added,
                         special tokens parsed)
  reference/tokenizer_ids_spm_nospace_llamacpp.txt  llama.cpp's with
                         tokenizer.ggml.add_space_prefix false (a copy of
                         the file with that key, not kept)

The two tools differ only around user-defined symbols (none is in the
corpus; three extra items show it): llama.cpp puts a space prefix on the
text after one and none before one at the start, sentencepiece the other
way round. Kiln reads the GGUF as llama.cpp does.

Not CI (needs sentencepiece 0.2.3, tokenizers, gguf, llama-cpp-python 0.3.36,
numpy):

  python test/gguf/make_spm_tokenizer.py
"""
import io
import os
import sys
import tempfile

import numpy as np
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "reference")
sys.path.insert(0, HERE)
import make_bpe_tokenizers  # noqa: E402
import make_tiny_llama  # noqa: E402

VOCAB = 2048
USER = ["<start_of_turn>", "<end_of_turn>"]


def train():
    lines = [line for text in make_bpe_tokenizers.training_text()
             for line in text.split("\n") if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe",
        vocab_size=VOCAB, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, user_defined_symbols=USER,
        character_coverage=0.9999, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def gguf_tokenizer(sp, add_space_prefix=None):
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i)
                     else 6 if sp.is_byte(i) else 4 if tokens[-1] in USER else 1)

    def write(w):
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        if add_space_prefix is not None:
            w.add_add_space_prefix(add_space_prefix)
    return write, len(tokens)


def main():
    import llama_cpp
    with open(os.path.join(REF, "tokenizer_corpus.bin"), "rb") as f:
        items = [s.decode("utf-8") for s in f.read().split(b"\0")]
    # The user-defined symbols inside text, at its start and end, and
    # beside spaces.
    items += ["<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
              "a<start_of_turn>b", "  <end_of_turn>  x <start_of_turn>"]
    sp = train()
    refs = {"sentencepiece": [[sp.bos_id()] + sp.encode(s) for s in items]}
    path = os.path.join(HERE, "models", "tok_spm.gguf")
    write, n = gguf_tokenizer(sp)
    make_tiny_llama.write_gguf(path, np.random.default_rng(30), vocab=n,
                               tokenizer=write, tied=True)

    def llamacpp(gguf_path):
        llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
        return [llm.tokenize(s.encode("utf-8"), add_bos=True, special=True)
                for s in items]
    refs["llamacpp"] = llamacpp(path)
    with tempfile.TemporaryDirectory() as tmp:
        nospace = os.path.join(tmp, "nospace.gguf")
        write, _ = gguf_tokenizer(sp, add_space_prefix=False)
        make_tiny_llama.write_gguf(nospace, np.random.default_rng(30), vocab=n,
                                   tokenizer=write, tied=True)
        refs["nospace_llamacpp"] = llamacpp(nospace)
    # Corpus items only in the files: the last three are for --text tests.
    for tool, ids in refs.items():
        with open(os.path.join(REF, f"tokenizer_ids_spm_{tool}.txt"), "w") as f:
            for row in ids[:-3]:
                f.write(" ".join(map(str, row)) + "\n")
    same = sum(a == b for a, b in zip(refs["llamacpp"], refs["sentencepiece"]))
    fallback = sum(any(sp.is_byte(t) for t in row)
                   for row in refs["llamacpp"])
    print(f"spm: {n} tokens, {os.path.getsize(path)} bytes; llama.cpp and "
          f"sentencepiece agree on {same}/{len(items)} items; {fallback} items use "
          f"byte fallback")
    for a, b, s in zip(refs["llamacpp"], refs["sentencepiece"], items):
        if a != b:
            print("  differ:", repr(s)[:80])
            print("    llama.cpp:    ", a[:20])
            print("    sentencepiece:", b[:20])
    for s, a in zip(items[-3:], refs["llamacpp"][-3:]):
        print(f"  {s!r}: {' '.join(map(str, a))}")


if __name__ == "__main__":
    main()
