// Reading and writing NumPy .npy files (format 1.0-3.0, little-endian,
// C order). Plain C++: used by kiln-run (runtime side) and kiln-compile.
#ifndef KILN_TOOLS_COMMON_NPY_H
#define KILN_TOOLS_COMMON_NPY_H

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::npy {

/// Element kinds, numbered as kiln_dtype in kiln.h.
enum class DType { F32 = 0, F16, F64, I8, I16, I32, I64, Bool };

struct Array {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<char> data;
};

size_t dtypeSize(DType d);
/// Reads `path`; on failure returns false and sets `error`.
bool read(const std::string &path, Array &out, std::string &error);
bool write(const std::string &path, const Array &a, std::string &error);

} // namespace kiln::npy

#endif
