//===- ArtifactWriter.h - Write the .kiln artifact --------------*- C++ -*-===//
#ifndef KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H
#define KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H

#include "compiler/WeightStore.h"
#include "targets/cpu/CpuTarget.h"
#include "targets/cuda/CudaTarget.h"
#include "targets/vulkan/VulkanTarget.h"

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <string>
#include <vector>

namespace kiln {

/// A byte-level BPE tokenizer to embed (schema table Tokenizer).
struct TokenizerSpec {
  std::string model, pre, chatTemplate;
  std::vector<std::string> tokens, merges;
  std::vector<uint8_t> types;
  int32_t bos = -1, eos = -1;
  bool addBos = false;
  /// A whole pre-token piece in the vocabulary is taken without merges.
  bool ignoreMerges = false;
  /// "" or "nfc" (the tokenizers library's NFC normalizer).
  std::string normalizer;
  /// End-of-generation ids besides eos (a GGUF's eot / eom ids); the
  /// writer adds eos and the control tokens whose text ends a turn.
  std::vector<int32_t> eog;
  /// model "llama" (SentencePiece BPE): the tokens' scores and whether a
  /// space is put before text at the start and after special tokens.
  std::vector<float> scores;
  bool addSpacePrefix = false;
  /// The prefix only at the text's start / not on text starting with a
  /// space (tokenizer.json's Metaspace forms).
  bool spacePrefixFirstOnly = false, spacePrefixUnlessSpace = false;
};

/// Writes `module`'s functions (kiln dialect: signatures and weight types),
/// the weights they use and the executables of each target given to `path`.
mlir::LogicalResult
writeArtifact(llvm::StringRef path, mlir::ModuleOp module,
              const WeightStore &weights, const CpuExecutable *cpu,
              llvm::ArrayRef<VulkanExecutable> vulkanVariants,
              const CudaExecutable *cuda,
              const std::map<std::string, std::string> &metadata,
              const TokenizerSpec *tokenizer = nullptr);

} // namespace kiln

#endif // KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H
