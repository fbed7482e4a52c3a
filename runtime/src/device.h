// The interface every device driver implements.
#ifndef KILN_RUNTIME_DEVICE_H
#define KILN_RUNTIME_DEVICE_H

#include "artifact.h"

#include <memory>
#include <vector>

namespace kiln::rt {

/// Host pointers for one call, indexed as the artifact's bindings are.
struct CallBuffers {
  const kiln_tensor *inputs;
  kiln_tensor *outputs;
  const std::vector<const void *> *constants;
  void *scratch; // the function's temporaries, scratch_size bytes
  void *kvCache; // the LLM session's paged KV cache pool, or null
};

/// Bytes of the paged KV cache pool `spec` describes (all its blocks).
/// Bytes of one cache row (one token's keys or values of one KV head):
/// head_dim values, or for an I8 cache head_dim codes and an f16 scale per
/// scale_group values (the artifact verifier checks the group divides).
inline uint64_t kvCacheRowBytes(const kiln::fb::KvCacheSpec *spec) {
  uint64_t d = spec->head_dim();
  switch (spec->dtype()) {
  case kiln::fb::DType::F16: return 2 * d;
  case kiln::fb::DType::I8: return d + 2 * (d / spec->scale_group());
  default: return 4 * d;
  }
}

/// Whether every layer of the cache attends through a sliding window, so
/// no key older than the largest window (besides the sink positions) is
/// ever read and the pool can be a ring (docs/runtime.md).
inline bool kvCacheIsRing(const kiln::fb::KvCacheSpec *spec) {
  if (!spec->layers() || spec->layers()->size() != spec->num_layers())
    return false;
  for (const kiln::fb::KvLayerSpec *l : *spec->layers())
    if (!l || l->window() == 0)
      return false;
  return true;
}

inline uint64_t kvCachePoolBytes(const kiln::fb::KvCacheSpec *spec) {
  return kvCacheRowBytes(spec) * spec->num_layers() * 2 *
         spec->num_kv_heads() * spec->block_size() * spec->num_blocks();
}

/// A GPU driver's buffers for one call, as its bindings name them.
template <class Buffer> struct GpuBuffers {
  const std::vector<Buffer> &inputs, &outputs, &constants, &temporaries;
  /// The session's device copy of the paged KV cache, or null.
  const Buffer *kvCache = nullptr;

  /// The buffer `b` binds, or null when the binding is malformed.
  const Buffer *find(const kiln::fb::Binding *b) const {
    const std::vector<Buffer> *list = nullptr;
    switch (b->kind()) {
    case kiln::fb::BindingKind::Input: list = &inputs; break;
    case kiln::fb::BindingKind::Output: list = &outputs; break;
    case kiln::fb::BindingKind::Constant: list = &constants; break;
    case kiln::fb::BindingKind::Temporary: list = &temporaries; break;
    case kiln::fb::BindingKind::KvCache:
      return b->index() == 0 ? kvCache : nullptr;
    default: return nullptr;
    }
    return b->index() < list->size() ? &(*list)[b->index()] : nullptr;
  }
};

class Device {
public:
  virtual ~Device() = default;
  /// Runs every dispatch of `impl` in order.
  virtual kiln_status run(const kiln::fb::FunctionImpl *impl,
                          const CallBuffers &buffers) = 0;
};

/// Loads the target's executables for the host CPU. `threads` <= 0 means
/// $KILN_NUM_THREADS, else one per hardware thread.
kiln_status createCpuDevice(const kiln_artifact *artifact,
                            const kiln::fb::Target *target, int threads,
                            std::unique_ptr<Device> *out);

/// Opens Vulkan device `ordinal` (libvulkan.so.1 through dlopen) and makes
/// the target's pipelines; weights are uploaded once.
kiln_status createVulkanDevice(const kiln_artifact *artifact,
                               const kiln::fb::Target *target, int ordinal,
                               std::unique_ptr<Device> *out);

/// Opens CUDA device `ordinal` (libcuda.so.1 through dlopen), loads each
/// kernel's cubin for its SM (else the PTX) and uploads the weights.
kiln_status createCudaDevice(const kiln_artifact *artifact,
                             const kiln::fb::Target *target, int ordinal,
                             std::unique_ptr<Device> *out);

} // namespace kiln::rt

#endif
