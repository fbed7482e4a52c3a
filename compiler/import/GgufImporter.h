//===- GgufImporter.h - GGUF model to the kiln dialect ----------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_GGUFIMPORTER_H
#define KILN_COMPILER_IMPORT_GGUFIMPORTER_H

#include "compiler/WeightStore.h"
#include "compiler/serialize/ArtifactWriter.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <optional>
#include <string>

namespace kiln {

struct GgufImportOptions {
  /// > 0: one whole-sequence function
  /// `main(input_ids[1, seq]) -> logits[1, seq, vocab]`. Otherwise the LLM
  /// form: `prefill` (chunks of `prefillChunk` tokens) and `decode` over a
  /// paged KV cache of `maxContext` tokens in blocks of `blockSize`.
  int64_t seqLen = 0;
  /// 0: the model's trained context, at most 4096.
  int64_t maxContext = 0;
  int64_t prefillChunk = 32;
  /// Further, smaller prefill sizes: functions "prefill_N".
  std::vector<int64_t> smallerPrefillChunks;
  int64_t blockSize = 16;
  /// Keep Q8_0/Q4_0/Q4_1 weights packed (kiln.quant_matmul/quant_gather);
  /// false: dequantize every weight to f32.
  bool keepQuantized = true;
  /// Packed matmuls: "f32" multiplies x as it is; "q8" rounds x to 8-bit
  /// blocks first, as llama.cpp's CPU backend does (kiln.quant_matmul).
  std::string activations = "f32";
  /// Element type of the paged KV cache: "f32", "f16" (half the memory,
  /// llama.cpp's default) or "int8" (Q8_0 blocks along head_dim, a quarter
  /// plus a scale per 32 values).
  std::string kvDtype = "f32";
  /// With an f16 cache: attention rounds its normalized probabilities to
  /// f16 (two passes over the keys), as llama.cpp's CPU attention does.
  bool roundedProbs = false;
};

/// Builds the graph the file's `general.architecture` describes (llama
/// today) with weights dequantized to f32, and, when the file has one and
/// `tokenizer` is given, reads its byte-level BPE tokenizer into it. Errors
/// are emitted on `context`.
mlir::OwningOpRef<mlir::ModuleOp>
importGgufFile(llvm::StringRef path, mlir::MLIRContext &context,
               WeightStore &weights, const GgufImportOptions &options,
               std::optional<TokenizerSpec> *tokenizer = nullptr);

} // namespace kiln

#endif // KILN_COMPILER_IMPORT_GGUFIMPORTER_H
