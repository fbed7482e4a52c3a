#!/usr/bin/env python3
"""Export the small random-weight transformers the end-to-end tests use.

Needs torch and transformers (not needed by CI: the .onnx files are
committed). Rerun to regenerate:

  python3 -m venv .venv-export
  .venv-export/bin/pip install torch transformers onnx onnxscript
  .venv-export/bin/python test/e2e/export_models.py

Each model is built from a transformers config with random weights (seeded)
and exported by torch.onnx (TorchScript exporter, opset 17) with symbolic
batch and sequence dims, which kiln-compile binds with --dim.
"""
import os

import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def export(model, name, inputs, input_names, output_names, dynamic_axes):
    model.eval()
    path = os.path.join(OUT, name + ".onnx")
    with torch.no_grad():
        torch.onnx.export(model, inputs, path, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=17, do_constant_folding=True,
                          dynamo=False)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


class LogitsOnly(torch.nn.Module):
    """Returns the logits tensor alone (no cache outputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        # An explicit all-ones mask keeps the exporter away from packed-
        # sequence detection (aten::diff), which has no ONNX form.
        mask = torch.ones_like(input_ids)
        return self.model(input_ids=input_ids, attention_mask=mask,
                          use_cache=False).logits


class Encoder(torch.nn.Module):
    """Calls the encoder by keyword (its positional order varies)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=1000, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64, attn_implementation="eager"))
    ids = torch.randint(0, 1000, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.int64)
    types = torch.zeros(1, 16, dtype=torch.int64)
    seq = {0: "batch", 1: "seq"}
    export(Encoder(bert), "bert_tiny", (ids, mask, types),
           ["input_ids", "attention_mask", "token_type_ids"],
           ["last_hidden_state", "pooler_output"],
           {"input_ids": seq, "attention_mask": seq, "token_type_ids": seq,
            "last_hidden_state": seq, "pooler_output": {0: "batch"}})

    torch.manual_seed(1)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
        attn_implementation="eager"))
    export(LogitsOnly(gpt2), "gpt2_tiny", (ids,), ["input_ids"], ["logits"],
           {"input_ids": seq, "logits": seq})


if __name__ == "__main__":
    main()
