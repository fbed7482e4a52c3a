//===- OnnxImporter.h - ONNX model to the kiln dialect ----------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_ONNXIMPORTER_H
#define KILN_COMPILER_IMPORT_ONNXIMPORTER_H

#include "compiler/WeightStore.h"
#include "compiler/import/HostTensor.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <string>

namespace kiln {

struct OnnxImportOptions {
  /// Values for symbolic dims (ONNX dim_param), by name.
  std::map<std::string, int64_t> dims;
  /// Graph inputs turned into compile-time constants; they leave the
  /// function's signature.
  std::map<std::string, HostTensor> constInputs;
  /// Values computed on the host (not initializers) up to this many
  /// elements stay in the IR as constants, where passes can read them
  /// (the LLM form reads folded attention masks).
  int64_t maxInlineFolded = 64;
};

/// Imports a binary .onnx file (external data is read relative to its
/// folder). Errors are emitted as diagnostics on `context`.
mlir::OwningOpRef<mlir::ModuleOp>
importOnnxFile(llvm::StringRef path, mlir::MLIRContext &context,
               WeightStore &weights, const OnnxImportOptions &options);

/// Imports a decoder exported with its KV cache as inputs and outputs
/// (past_key_values.* / present.*) twice: as `prefill` over chunks of
/// `prefillChunk` tokens and as `decode` over one (and as `prefill_N` for
/// each smaller chunk N), with the past length bound to the most a call
/// can see under `maxContext`, for kiln-kv-layout.
mlir::OwningOpRef<mlir::ModuleOp>
importOnnxDecoderFile(llvm::StringRef path, mlir::MLIRContext &context,
                      WeightStore &weights, const OnnxImportOptions &options,
                      int64_t prefillChunk, int64_t maxContext,
                      llvm::ArrayRef<int64_t> smallerPrefillChunks = {});

/// Imports ONNX's textual syntax (onnx/defs/parser.h), used by lit tests.
mlir::OwningOpRef<mlir::ModuleOp>
importOnnxText(llvm::StringRef text, mlir::MLIRContext &context,
               WeightStore &weights, const OnnxImportOptions &options);

} // namespace kiln

#endif // KILN_COMPILER_IMPORT_ONNXIMPORTER_H
