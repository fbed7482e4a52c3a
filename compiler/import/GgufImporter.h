//===- GgufImporter.h - GGUF model to the kiln dialect ----------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_GGUFIMPORTER_H
#define KILN_COMPILER_IMPORT_GGUFIMPORTER_H

#include "compiler/WeightStore.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <string>

namespace kiln {

struct GgufImportOptions {
  /// Sequence length of `main(input_ids[1, seq]) -> logits[1, seq, vocab]`.
  int64_t seqLen = 0;
};

/// Builds the graph the file's `general.architecture` describes (llama
/// today) with weights dequantized to f32. Errors are emitted on `context`.
mlir::OwningOpRef<mlir::ModuleOp>
importGgufFile(llvm::StringRef path, mlir::MLIRContext &context,
               WeightStore &weights, const GgufImportOptions &options);

} // namespace kiln

#endif // KILN_COMPILER_IMPORT_GGUFIMPORTER_H
