"""What make_references.py and check_templates.py share: the render
context of a template and a case, as transformers' apply_chat_template
builds it (tools and documents None, add_generation_prompt False unless
the case sets them, the tokenizer's bos/eos texts)."""

EPOCH = 1764633600  # strftime_now's instant: 2025-12-02 00:00:00 UTC

# The special-token texts each family's tokenizer gives the template.
TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>"),
    "qwen2_5": (None, "<|im_end|>"),
    "qwen3": (None, "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "phi3_5": ("<s>", "<|endoftext|>"),
    "phi4": ("<|endoftext|>", "<|endoftext|>"),
    "deepseek_r1": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "gemma2": ("<bos>", "<eos>"),
    "kimi_k2": ("[BOS]", "[EOS]"),
    "glm4_6": (None, "<|endoftext|>"),
}


def context(template, case):
    bos, eos = TOKENS.get(template, ("<s>", "</s>"))
    ctx = {"tools": None, "documents": None, "add_generation_prompt": False}
    if bos is not None:
        ctx["bos_token"] = bos
    if eos is not None:
        ctx["eos_token"] = eos
    ctx.update(case)
    return ctx
