//===- GgufReader.h - Validated reading of GGUF files -----------*- C++ -*-===//
//
// GGUF (llama.cpp's model format, versions 2 and 3): a header, typed
// key/value metadata, tensor infos, then aligned tensor data. The reader
// maps the file and checks every count, string, array, dimension, offset and
// size against the file before anything is used, so a truncated or hostile
// file is an error message, never a crash.
//
//===----------------------------------------------------------------------===//
#ifndef KILN_COMPILER_IMPORT_GGUFREADER_H
#define KILN_COMPILER_IMPORT_GGUFREADER_H

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kiln::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char *valueTypeName(ValueType t);

/// ggml tensor types Kiln knows the block layout of.
enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q8_1 = 9, Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ4_NL = 20, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
/// Name ("q4_1") or nullptr for a type Kiln does not know.
const char *tensorTypeName(uint32_t type);
/// Name ("iq2_xs") of a ggml type Kiln knows of but cannot read, else
/// nullptr.
const char *unsupportedTensorTypeName(uint32_t type);
/// Elements per block and bytes per block; false for unknown types.
bool blockLayout(uint32_t type, uint64_t &elements, uint64_t &bytes);

struct Value {
  ValueType type = ValueType::U8;
  uint64_t u = 0;   // unsigned integers and bool
  int64_t i = 0;    // signed integers
  double f = 0;     // floats
  std::string s;    // strings
  ValueType elementType = ValueType::U8; // arrays
  std::vector<Value> array;
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims; // ggml order: dims[0] varies fastest
  uint32_t type = 0;
  uint64_t offset = 0; // absolute file offset of the data
  uint64_t bytes = 0;
};

class File {
public:
  /// Maps and validates `path`; on failure returns null and sets `error`.
  static std::unique_ptr<File> open(llvm::StringRef path, std::string &error);
  /// Same over bytes the caller keeps alive (fuzzing, tests).
  static std::unique_ptr<File> parse(llvm::StringRef bytes,
                                     llvm::StringRef name, std::string &error);

  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t dataOffset = 0;
  /// Metadata in file order, and by key.
  std::vector<std::pair<std::string, Value>> metadata;
  const Value *find(llvm::StringRef key) const;
  std::vector<TensorInfo> tensors;
  const uint8_t *data(const TensorInfo &t) const {
    return reinterpret_cast<const uint8_t *>(bytes.data()) + t.offset;
  }

private:
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  llvm::StringRef bytes;
  llvm::StringMap<size_t> index;
};

} // namespace kiln::gguf

#endif // KILN_COMPILER_IMPORT_GGUFREADER_H
