#!/usr/bin/env python3
"""tokenizer.json files of the SentencePiece BPE kind (Llama 2, Mistral,
TinyLlama, Phi-3 exports carry one) and the tokenizers library's ids on the
tokenizer corpus.

The vocabulary is make_spm_tokenizer.py's (the sentencepiece model behind
test/gguf/models/tok_spm.gguf). The tokenizer.json is built the way
transformers' LlamaConverter builds it from a SentencePiece model: a BPE
model with byte_fallback over the pieces, its merges every split (a, b) of
a piece into two pieces, ordered by the piece's score (best first), then by
the ids of a and b; a Metaspace pre-tokenizer (U+2581, split false) with
prepend_scheme "first" (transformers' default, legacy=False) or "always"
(legacy=True: also after each added token); the Replace / ByteFallback /
Fuse / Strip decoder; <s> added first by the TemplateProcessing
post-processor; <start_of_turn> and <end_of_turn> as added tokens. This
writes

  tokenizer/spm_first.json.gz, tokenizer/spm_always.json.gz
  ../gguf/reference/tokenizer_ids_spm_{first,always}_tokenizers.txt
      the tokenizers library's ids (BOS added) for each corpus item

and checks that the "always" form gives sentencepiece's own ids on the
corpus (no item there holds an added token), so the conversion is
faithful.

Not CI (needs sentencepiece, tokenizers, gguf, numpy):

  python test/llm/make_spm_tokenizer_json.py
"""
import gzip
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF = os.path.join(HERE, "..", "gguf")
sys.path.insert(0, GGUF)
import make_spm_tokenizer  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers import AddedToken  # noqa: E402


def build(sp, scheme):
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    scores = [sp.get_score(i) for i in range(n)]
    merges = []
    for piece, i in vocab.items():
        if sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i) or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                merges.append((a, b, i))
    merges.sort(key=lambda m: (-scores[m[2]], vocab[m[0]], vocab[m[1]]))
    bpe = models.BPE(vocab=vocab, merges=[(a, b) for a, b, _ in merges],
                     unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(bpe)
    if scheme == "legacy":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                               normalizers.Replace(" ", "\u2581")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                     prepend_scheme=scheme, split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t in make_spm_tokenizer.USER])
    return tok


def main():
    sp = make_spm_tokenizer.train()
    with open(os.path.join(GGUF, "reference", "tokenizer_corpus.bin"), "rb") as f:
        items = [s.decode("utf-8") for s in f.read().split(b"\0")]
    for scheme in ("legacy", "first", "always"):
        tok = build(sp, scheme)
        with open(os.path.join(HERE, "tokenizer", f"spm_{scheme}.json.gz"), "wb") as f, \
                gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(tok.to_str().encode())
        ids = [tok.encode(s).ids for s in items]
        with open(os.path.join(GGUF, "reference", f"tokenizer_ids_spm_{scheme}_tokenizers.txt"),
                  "w") as f:
            for row in ids:
                f.write(" ".join(map(str, row)) + "\n")
        same = sum(a == [sp.bos_id()] + sp.encode(s) for a, s in zip(ids, items))
        print(f"{scheme}: tokenizers and sentencepiece agree on {same}/{len(items)} items")
        for s in ("a<start_of_turn>b", "<start_of_turn>user\nhi<end_of_turn>"):
            print(f"  {s!r}: {' '.join(map(str, tok.encode(s).ids))}")


if __name__ == "__main__":
    main()
