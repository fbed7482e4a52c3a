//===- HostTensor.cpp - Compile-time tensor values ------------------------===//
#include "compiler/import/HostTensor.h"

#include <cmath>

namespace kiln {

float halfToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);
  return sign ? -v : v;
}

uint16_t floatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t man = x & 0x7fffff;
  if (((x >> 23) & 0xff) == 0xff)
    return sign | 0x7c00 | (man ? 0x200 : 0);
  if (exp >= 31)
    return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10)
      return sign;
    man |= 0x800000;
    uint32_t shift = 14 - exp;
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1)))
      ++half;
    return sign | half;
  }
  uint32_t half = sign | (exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    ++half;
  return half;
}

double HostTensor::getF(int64_t i) const {
  switch (dtype) {
  case kFloat: { float v; std::memcpy(&v, data + 4 * i, 4); return v; }
  case kDouble: { double v; std::memcpy(&v, data + 8 * i, 8); return v; }
  case kFloat16: { uint16_t v; std::memcpy(&v, data + 2 * i, 2); return halfToFloat(v); }
  default: return static_cast<double>(getI(i));
  }
}

int64_t HostTensor::getI(int64_t i) const {
  switch (dtype) {
  case kInt8: return static_cast<int8_t>(data[i]);
  case kUInt8: return static_cast<uint8_t>(data[i]);
  case kBool: return data[i] != 0;
  case kInt16: { int16_t v; std::memcpy(&v, data + 2 * i, 2); return v; }
  case kInt32: { int32_t v; std::memcpy(&v, data + 4 * i, 4); return v; }
  case kInt64: { int64_t v; std::memcpy(&v, data + 8 * i, 8); return v; }
  default: return static_cast<int64_t>(getF(i));
  }
}

HostTensor HostTensor::fromBytes(int32_t dtype, std::vector<int64_t> shape,
                                 std::vector<char> bytes) {
  HostTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  auto owned = std::make_shared<std::vector<char>>(std::move(bytes));
  t.data = owned->data();
  t.size = owned->size();
  t.owned = std::move(owned);
  return t;
}

template <typename T>
static void put(std::vector<char> &out, size_t i, T v) {
  std::memcpy(out.data() + i * sizeof(T), &v, sizeof(T));
}

HostTensor HostTensor::fromDoubles(int32_t dtype, std::vector<int64_t> shape,
                                   const std::vector<double> &values) {
  std::vector<char> bytes(values.size() * dtypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    double v = values[i];
    switch (dtype) {
    case kFloat: put<float>(bytes, i, static_cast<float>(v)); break;
    case kDouble: put<double>(bytes, i, v); break;
    case kFloat16: put<uint16_t>(bytes, i, floatToHalf(static_cast<float>(v))); break;
    case kBool: put<uint8_t>(bytes, i, v != 0); break;
    case kInt8: put<int8_t>(bytes, i, static_cast<int8_t>(v)); break;
    case kInt16: put<int16_t>(bytes, i, static_cast<int16_t>(v)); break;
    case kInt32: put<int32_t>(bytes, i, static_cast<int32_t>(v)); break;
    case kInt64: put<int64_t>(bytes, i, static_cast<int64_t>(v)); break;
    }
  }
  return fromBytes(dtype, std::move(shape), std::move(bytes));
}

HostTensor HostTensor::fromInts(int32_t dtype, std::vector<int64_t> shape,
                                const std::vector<int64_t> &values) {
  if (isFloatDType(dtype)) {
    std::vector<double> d(values.begin(), values.end());
    return fromDoubles(dtype, std::move(shape), d);
  }
  std::vector<char> bytes(values.size() * dtypeSize(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    int64_t v = values[i];
    switch (dtype) {
    case kBool: put<uint8_t>(bytes, i, v != 0); break;
    case kInt8: put<int8_t>(bytes, i, static_cast<int8_t>(v)); break;
    case kInt16: put<int16_t>(bytes, i, static_cast<int16_t>(v)); break;
    case kInt32: put<int32_t>(bytes, i, static_cast<int32_t>(v)); break;
    case kInt64: put<int64_t>(bytes, i, v); break;
    }
  }
  return fromBytes(dtype, std::move(shape), std::move(bytes));
}

} // namespace kiln
