// .npy reading and writing.
#include "npy.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::npy {

size_t dtypeSize(DType d) {
  switch (d) {
  case DType::F32: case DType::I32: return 4;
  case DType::F16: case DType::I16: return 2;
  case DType::F64: case DType::I64: return 8;
  case DType::I8: case DType::Bool: return 1;
  }
  return 0;
}

static const char *descr(DType d) {
  switch (d) {
  case DType::F32: return "<f4";
  case DType::F16: return "<f2";
  case DType::F64: return "<f8";
  case DType::I8: return "|i1";
  case DType::I16: return "<i2";
  case DType::I32: return "<i4";
  case DType::I64: return "<i8";
  case DType::Bool: return "|b1";
  }
  return "";
}

/// Value of `key` in the header dict, as written by numpy.
static bool field(const std::string &h, const std::string &key,
                  std::string &value) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos)
    return false;
  size_t colon = h.find(':', k);
  if (colon == std::string::npos)
    return false;
  size_t start = h.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos)
    return false;
  size_t end;
  if (h[start] == '(')
    end = h.find(')', start) + 1;
  else if (h[start] == '\'')
    end = h.find('\'', start + 1) + 1;
  else
    end = h.find_first_of(",}", start);
  if (end == std::string::npos || end == 0)
    return false;
  value = h.substr(start, end - start);
  return true;
}

bool read(const std::string &path, Array &out, std::string &error) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    error = "cannot open '" + path + "'";
    return false;
  }
  std::string all((std::istreambuf_iterator<char>(f)),
                  std::istreambuf_iterator<char>());
  if (all.size() < 10 || all.compare(0, 6, "\x93NUMPY") != 0) {
    error = "'" + path + "' is not a .npy file";
    return false;
  }
  int major = static_cast<unsigned char>(all[6]);
  size_t headerLen, pos;
  if (major == 1) {
    headerLen = static_cast<unsigned char>(all[8]) |
                (static_cast<unsigned char>(all[9]) << 8);
    pos = 10;
  } else {
    if (all.size() < 12) {
      error = "'" + path + "' is truncated";
      return false;
    }
    uint32_t l;
    std::memcpy(&l, all.data() + 8, 4);
    headerLen = l;
    pos = 12;
  }
  if (pos + headerLen > all.size()) {
    error = "'" + path + "' has a truncated header";
    return false;
  }
  std::string h = all.substr(pos, headerLen);
  pos += headerLen;
  std::string d, order, shape;
  if (!field(h, "descr", d) || !field(h, "fortran_order", order) ||
      !field(h, "shape", shape)) {
    error = "'" + path + "' has a malformed header";
    return false;
  }
  if (order.find("False") == std::string::npos) {
    error = "'" + path + "' is in Fortran order; save it C-contiguous";
    return false;
  }
  d = d.substr(1, d.size() - 2);
  if (d == "<f4") out.dtype = DType::F32;
  else if (d == "<f2") out.dtype = DType::F16;
  else if (d == "<f8") out.dtype = DType::F64;
  else if (d == "|i1") out.dtype = DType::I8;
  else if (d == "<i2") out.dtype = DType::I16;
  else if (d == "<i4") out.dtype = DType::I32;
  else if (d == "<i8") out.dtype = DType::I64;
  else if (d == "|b1") out.dtype = DType::Bool;
  else {
    error = "'" + path + "' has unsupported dtype '" + d + "'";
    return false;
  }
  out.shape.clear();
  std::string dims = shape.substr(1, shape.size() - 2);
  std::stringstream ss(dims);
  std::string item;
  uint64_t numel = 1;
  while (std::getline(ss, item, ',')) {
    if (item.find_first_not_of(' ') == std::string::npos)
      continue;
    char *end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || v < 0) {
      error = "'" + path + "' has a negative dim";
      return false;
    }
    out.shape.push_back(v);
    numel *= static_cast<uint64_t>(v);
  }
  uint64_t bytes = numel * dtypeSize(out.dtype);
  if (all.size() - pos != bytes) {
    error = "'" + path + "' holds " + std::to_string(all.size() - pos) +
            " data bytes, its shape needs " + std::to_string(bytes);
    return false;
  }
  out.data.assign(all.begin() + pos, all.end());
  return true;
}

bool write(const std::string &path, const Array &a, std::string &error) {
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i)
    shape += std::to_string(a.shape[i]) + ", ";
  if (a.shape.size() > 1)
    shape.erase(shape.size() - 2);
  else if (a.shape.size() == 1)
    shape.erase(shape.size() - 1);
  shape += ")";
  std::string h = std::string("{'descr': '") + descr(a.dtype) +
                  "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) {
    error = "cannot write '" + path + "'";
    return false;
  }
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(h.size());
  f.write(reinterpret_cast<const char *>(&len), 2);
  f.write(h.data(), h.size());
  f.write(a.data.data(), a.data.size());
  if (!f) {
    error = "writing '" + path + "' failed";
    return false;
  }
  return true;
}

} // namespace kiln::npy
