// A verified, mapped artifact.
#ifndef KILN_RUNTIME_ARTIFACT_H
#define KILN_RUNTIME_ARTIFACT_H

#include "kiln/kiln.h"
#include "kiln_artifact_generated.h"

#include <string>
#include <vector>

struct kiln_artifact_s {
  std::string path;          // "<memory>" when opened from memory
  const uint8_t *base = nullptr;
  size_t size = 0;
  bool mapped = false;       // base came from mmap
  const kiln::fb::Model *model = nullptr;
  // Per function: owned copies of the signature shapes for kiln_tensor_info.
  struct Sig {
    std::vector<std::vector<int64_t>> inShapes, outShapes;
  };
  std::vector<Sig> sigs;

  const uint8_t *segment(uint32_t index) const {
    const auto *s = model->segments()->Get(index);
    return base + s->offset();
  }
  uint64_t segmentSize(uint32_t index) const {
    return model->segments()->Get(index)->size();
  }
  /// Index of `name`, or -1.
  int findFunction(const char *name) const;
};

namespace kiln::rt {
/// Current artifact format; the compiler writes the same number.
constexpr uint32_t kFormatVersion = 2;
/// FNV-1a 64: the checksum of the header and of executable images.
uint64_t fnv1a(const uint8_t *p, uint64_t n);
} // namespace kiln::rt

#endif
