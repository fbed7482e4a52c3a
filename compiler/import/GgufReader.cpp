//===- GgufReader.cpp - Validated reading of GGUF files -------------------===//
#include "compiler/import/GgufReader.h"

#include <cstring>
#include <utility>

namespace kiln::gguf {

const char *valueTypeName(ValueType t) {
  switch (t) {
  case ValueType::U8: return "u8";
  case ValueType::I8: return "i8";
  case ValueType::U16: return "u16";
  case ValueType::I16: return "i16";
  case ValueType::U32: return "u32";
  case ValueType::I32: return "i32";
  case ValueType::F32: return "f32";
  case ValueType::Bool: return "bool";
  case ValueType::String: return "string";
  case ValueType::Array: return "array";
  case ValueType::U64: return "u64";
  case ValueType::I64: return "i64";
  case ValueType::F64: return "f64";
  }
  return "?";
}

namespace {
struct Layout {
  uint32_t type;
  const char *name;
  uint64_t elements, bytes;
};
// Block layouts from the GGUF specification (elements per block, bytes).
constexpr Layout kLayouts[] = {
    {0, "f32", 1, 4},       {1, "f16", 1, 2},        {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},    {6, "q5_0", 32, 22},     {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},     {10, "q2_k", 256, 84},
    {11, "q3_k", 256, 110}, {12, "q4_k", 256, 144},  {13, "q5_k", 256, 176},
    {14, "q6_k", 256, 210}, {15, "q8_k", 256, 292},  {20, "iq4_nl", 32, 18},
    {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},
    {25, "i16", 1, 2},      {26, "i32", 1, 4},       {27, "i64", 1, 8},
    {28, "f64", 1, 8},      {30, "bf16", 1, 2},
};
} // namespace

// ggml types whose layout Kiln does not read, named in its errors.
constexpr std::pair<uint32_t, const char *> kUnsupported[] = {
    {4, "q4_2"},    {5, "q4_3"},     {16, "iq2_xxs"}, {17, "iq2_xs"},
    {18, "iq3_xxs"}, {19, "iq1_s"},  {21, "iq3_s"},   {22, "iq2_s"},
    {29, "iq1_m"},  {34, "tq1_0"},   {35, "tq2_0"},   {39, "mxfp4"},
};

const char *tensorTypeName(uint32_t type) {
  for (const Layout &l : kLayouts)
    if (l.type == type)
      return l.name;
  return nullptr;
}

const char *unsupportedTensorTypeName(uint32_t type) {
  for (const auto &[t, name] : kUnsupported)
    if (t == type)
      return name;
  return nullptr;
}

bool blockLayout(uint32_t type, uint64_t &elements, uint64_t &bytes) {
  for (const Layout &l : kLayouts)
    if (l.type == type) {
      elements = l.elements;
      bytes = l.bytes;
      return true;
    }
  return false;
}

namespace {

/// A bounds-checked cursor: every read fails cleanly past the end.
class Cursor {
public:
  Cursor(llvm::StringRef bytes, std::string &error)
      : bytes(bytes), error(error) {}
  uint64_t pos = 0;
  uint64_t left() const { return bytes.size() - pos; }

  bool fail(const std::string &msg) {
    if (error.empty())
      error = msg + " (at byte " + std::to_string(pos) + ")";
    return false;
  }
  template <typename T> bool read(T &out, const char *what) {
    if (left() < sizeof(T))
      return fail(std::string("truncated reading ") + what);
    std::memcpy(&out, bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return true;
  }
  bool readString(std::string &out, const char *what) {
    uint64_t n;
    if (!read(n, what))
      return false;
    if (n > left())
      return fail(std::string(what) + " claims " + std::to_string(n) +
                  " bytes, " + std::to_string(left()) + " remain");
    out.assign(bytes.data() + pos, n);
    pos += n;
    return true;
  }

private:
  llvm::StringRef bytes;
  std::string &error;
};

/// Smallest encoding of a value of `t`, to bound counts before allocating.
uint64_t minSize(ValueType t) {
  switch (t) {
  case ValueType::U8: case ValueType::I8: case ValueType::Bool: return 1;
  case ValueType::U16: case ValueType::I16: return 2;
  case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
  case ValueType::String: return 8;
  case ValueType::Array: return 12;
  default: return 8;
  }
}

bool readValue(Cursor &c, ValueType type, Value &v, int depth) {
  v.type = type;
  switch (type) {
  case ValueType::U8: { uint8_t x; if (!c.read(x, "u8")) return false; v.u = x; return true; }
  case ValueType::I8: { int8_t x; if (!c.read(x, "i8")) return false; v.i = x; return true; }
  case ValueType::U16: { uint16_t x; if (!c.read(x, "u16")) return false; v.u = x; return true; }
  case ValueType::I16: { int16_t x; if (!c.read(x, "i16")) return false; v.i = x; return true; }
  case ValueType::U32: { uint32_t x; if (!c.read(x, "u32")) return false; v.u = x; return true; }
  case ValueType::I32: { int32_t x; if (!c.read(x, "i32")) return false; v.i = x; return true; }
  case ValueType::U64: return c.read(v.u, "u64");
  case ValueType::I64: return c.read(v.i, "i64");
  case ValueType::F32: { float x; if (!c.read(x, "f32")) return false; v.f = x; return true; }
  case ValueType::F64: return c.read(v.f, "f64");
  case ValueType::Bool: {
    uint8_t x;
    if (!c.read(x, "bool"))
      return false;
    if (x > 1)
      return c.fail("bool value " + std::to_string(x));
    v.u = x;
    return true;
  }
  case ValueType::String: return c.readString(v.s, "string value");
  case ValueType::Array: {
    if (depth > 2)
      return c.fail("arrays nested too deeply");
    uint32_t et;
    uint64_t n;
    if (!c.read(et, "array type") || !c.read(n, "array count"))
      return false;
    if (et > static_cast<uint32_t>(ValueType::F64))
      return c.fail("unknown array element type " + std::to_string(et));
    v.elementType = static_cast<ValueType>(et);
    if (n > c.left() / minSize(v.elementType))
      return c.fail("array of " + std::to_string(n) +
                    " elements cannot fit in the " + std::to_string(c.left()) +
                    " bytes left");
    v.array.resize(n);
    for (Value &e : v.array)
      if (!readValue(c, v.elementType, e, depth + 1))
        return false;
    return true;
  }
  }
  return c.fail("unknown value type " +
                std::to_string(static_cast<uint32_t>(type)));
}

} // namespace

const Value *File::find(llvm::StringRef key) const {
  auto it = index.find(key);
  return it == index.end() ? nullptr : &metadata[it->second].second;
}

std::unique_ptr<File> File::parse(llvm::StringRef bytes, llvm::StringRef name,
                                  std::string &error) {
  auto file = std::make_unique<File>();
  file->bytes = bytes;
  Cursor c(bytes, error);
  auto failed = [&]() -> std::unique_ptr<File> {
    error = "'" + name.str() + "' is not a valid GGUF file: " + error;
    return nullptr;
  };
  uint32_t magic;
  if (!c.read(magic, "magic"))
    return failed();
  if (magic != 0x46554747) // "GGUF"
    return c.fail("bad magic (not a GGUF file)"), failed();
  if (!c.read(file->version, "version"))
    return failed();
  if (file->version != 2 && file->version != 3)
    return c.fail("unsupported version " + std::to_string(file->version)),
           failed();
  uint64_t numTensors, numKv;
  if (!c.read(numTensors, "tensor count") || !c.read(numKv, "metadata count"))
    return failed();
  // Each entry needs at least a key/name length and a type.
  if (numKv > c.left() / 12 || numTensors > c.left() / 24)
    return c.fail(std::to_string(numKv) + " metadata entries and " +
                  std::to_string(numTensors) + " tensors cannot fit in the file"),
           failed();
  for (uint64_t i = 0; i < numKv; ++i) {
    std::string key;
    uint32_t type;
    if (!c.readString(key, "metadata key") || !c.read(type, "value type"))
      return failed();
    if (type > static_cast<uint32_t>(ValueType::F64))
      return c.fail("key '" + key + "' has unknown value type " +
                    std::to_string(type)),
             failed();
    Value v;
    if (!readValue(c, static_cast<ValueType>(type), v, 0))
      return failed();
    if (file->index.count(key))
      return c.fail("key '" + key + "' appears twice"), failed();
    file->index[key] = file->metadata.size();
    file->metadata.emplace_back(std::move(key), std::move(v));
  }
  if (const Value *a = file->find("general.alignment")) {
    if (a->type != ValueType::U32 || a->u == 0 || (a->u & (a->u - 1)) ||
        a->u > 4096)
      return c.fail("general.alignment must be a u32 power of two <= 4096"),
             failed();
    file->alignment = a->u;
  }
  for (uint64_t i = 0; i < numTensors; ++i) {
    TensorInfo t;
    uint32_t nDims;
    if (!c.readString(t.name, "tensor name") || !c.read(nDims, "dim count"))
      return failed();
    if (nDims == 0 || nDims > 4)
      return c.fail("tensor '" + t.name + "' has " + std::to_string(nDims) +
                    " dims (1 to 4 allowed)"),
             failed();
    uint64_t count = 1;
    for (uint32_t d = 0; d < nDims; ++d) {
      uint64_t dim;
      if (!c.read(dim, "dim"))
        return failed();
      if (dim == 0 || count > (uint64_t(1) << 48) / dim)
        return c.fail("tensor '" + t.name + "' has dim " + std::to_string(dim) +
                      " (zero, or too many elements)"),
               failed();
      count *= dim;
      t.dims.push_back(dim);
    }
    uint64_t relOffset;
    if (!c.read(t.type, "tensor type") || !c.read(relOffset, "tensor offset"))
      return failed();
    uint64_t blockElems, blockBytes;
    if (!blockLayout(t.type, blockElems, blockBytes)) {
      if (const char *name = unsupportedTensorTypeName(t.type))
        return c.fail("tensor '" + t.name + "' has type " + name + " (" +
                      std::to_string(t.type) +
                      "), which Kiln does not support (supported: f32, f16, "
                      "q8_0, q4_0, q4_1, q5_0, q5_1, q2_k to q6_k, iq4_nl, "
                      "iq4_xs)"),
               failed();
      return c.fail("tensor '" + t.name + "' has unknown type " +
                    std::to_string(t.type)),
             failed();
    }
    if (t.dims[0] % blockElems)
      return c.fail("tensor '" + t.name + "': row of " +
                    std::to_string(t.dims[0]) + " is not whole " +
                    tensorTypeName(t.type) + " blocks of " +
                    std::to_string(blockElems)),
             failed();
    t.bytes = count / blockElems * blockBytes;
    t.offset = relOffset;
    file->tensors.push_back(std::move(t));
  }
  uint64_t align = file->alignment;
  file->dataOffset = (c.pos + align - 1) / align * align;
  for (TensorInfo &t : file->tensors) {
    if (t.offset % align)
      return c.fail("tensor '" + t.name + "' data offset " +
                    std::to_string(t.offset) + " is not aligned to " +
                    std::to_string(align)),
             failed();
    if (t.offset > bytes.size() || file->dataOffset > bytes.size() - t.offset ||
        t.bytes > bytes.size() - file->dataOffset - t.offset)
      return c.fail("tensor '" + t.name + "' data [" +
                    std::to_string(t.offset) + ", +" + std::to_string(t.bytes) +
                    ") is past the end of the file (truncated?)"),
             failed();
    t.offset += file->dataOffset;
  }
  return file;
}

std::unique_ptr<File> File::open(llvm::StringRef path, std::string &error) {
  auto buf = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                         /*RequiresNullTerminator=*/false);
  if (!buf) {
    error = "cannot read '" + path.str() + "': " + buf.getError().message();
    return nullptr;
  }
  auto file = parse((*buf)->getBuffer(), path, error);
  if (file)
    file->buffer = std::move(*buf);
  return file;
}

} // namespace kiln::gguf
