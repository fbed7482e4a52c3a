//===- kiln-gguf.cpp - Inspect GGUF files ---------------------------------===//
//
//   kiln-gguf FILE.gguf      prints the header, metadata and tensor table
//
// Lines (stable, used by tests):
//   version N | alignment N | data_offset N
//   kv KEY TYPE VALUE            (arrays: kv KEY array[TYPE] COUNT)
//   tensor NAME TYPE [d0,d1,..] offset=N bytes=N
//
//===----------------------------------------------------------------------===//
#include "compiler/import/GgufReader.h"

#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

using namespace kiln::gguf;

static void printScalar(llvm::raw_ostream &os, const Value &v) {
  switch (v.type) {
  case ValueType::U8: case ValueType::U16: case ValueType::U32:
  case ValueType::U64: os << v.u; break;
  case ValueType::Bool: os << (v.u ? "true" : "false"); break;
  case ValueType::I8: case ValueType::I16: case ValueType::I32:
  case ValueType::I64: os << v.i; break;
  case ValueType::F32: case ValueType::F64: os << llvm::format("%g", v.f); break;
  case ValueType::String: {
    // One line per key: escape what would break it.
    for (char ch : v.s) {
      if (ch == '\n') os << "\\n";
      else if (ch == '\\') os << "\\\\";
      else os << ch;
    }
    break;
  }
  case ValueType::Array: break;
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    llvm::errs() << "usage: kiln-gguf FILE.gguf\n";
    return 2;
  }
  std::string error;
  auto file = File::open(argv[1], error);
  if (!file) {
    llvm::errs() << "kiln-gguf: error: " << error << "\n";
    return 1;
  }
  auto &os = llvm::outs();
  os << "version " << file->version << "\n";
  os << "alignment " << file->alignment << "\n";
  os << "data_offset " << file->dataOffset << "\n";
  for (const auto &[key, v] : file->metadata) {
    os << "kv " << key << " ";
    if (v.type == ValueType::Array) {
      os << "array[" << valueTypeName(v.elementType) << "] " << v.array.size();
    } else {
      os << valueTypeName(v.type) << " ";
      printScalar(os, v);
    }
    os << "\n";
  }
  for (const TensorInfo &t : file->tensors) {
    os << "tensor " << t.name << " " << tensorTypeName(t.type) << " [";
    for (size_t i = 0; i < t.dims.size(); ++i)
      os << (i ? "," : "") << t.dims[i];
    os << "] offset=" << t.offset << " bytes=" << t.bytes << "\n";
  }
  return 0;
}
