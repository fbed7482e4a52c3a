//===- TokenizerJson.h - Hugging Face tokenizer.json ------------*- C++ -*-===//
#ifndef KILN_COMPILER_IMPORT_TOKENIZERJSON_H
#define KILN_COMPILER_IMPORT_TOKENIZERJSON_H

#include "compiler/serialize/ArtifactWriter.h"

#include "mlir/IR/Diagnostics.h"

namespace kiln {

/// Reads a byte-level BPE `tokenizer.json` (and the tokenizer_config.json /
/// chat_template.jinja beside it) for embedding into an artifact. Errors
/// name the file and what is unsupported.
mlir::FailureOr<TokenizerSpec> readTokenizerJson(llvm::StringRef path,
                                                 mlir::Location loc);

} // namespace kiln

#endif // KILN_COMPILER_IMPORT_TOKENIZERJSON_H
