// Sessions: one device, one artifact, calls checked against the signature.
#include "session.h"
#include "status.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

namespace {

std::string shapeString(const int64_t *shape, int32_t rank) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

kiln_status checkTensors(const char *function, const char *role,
                         const flatbuffers::Vector<flatbuffers::Offset<fb::TensorSig>> *sigs,
                         const kiln_tensor *tensors, size_t count) {
  if (count != sigs->size())
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "function '%s' takes %u %ss, got %zu", function,
                      sigs->size(), role, count);
  for (size_t i = 0; i < count; ++i) {
    const fb::TensorSig *s = sigs->Get(i);
    const kiln_tensor &t = tensors[i];
    const char *name = s->name()->c_str();
    auto want = static_cast<kiln_dtype>(s->dtype());
    if (t.dtype != want)
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "%s %zu ('%s') of '%s': dtype %s given, %s expected",
                        role, i, name, function, kiln_dtype_name(t.dtype),
                        kiln_dtype_name(want));
    bool same = t.rank == static_cast<int32_t>(s->shape()->size());
    uint64_t numel = 1;
    for (int32_t d = 0; same && d < t.rank; ++d) {
      same = t.shape[d] == s->shape()->Get(d);
      numel *= static_cast<uint64_t>(t.shape[d]);
    }
    if (!same) {
      std::vector<int64_t> w(s->shape()->begin(), s->shape()->end());
      return makeStatus(
          KILN_INVALID_ARGUMENT, "%s %zu ('%s') of '%s': shape %s given, %s expected",
          role, i, name, function,
          shapeString(t.shape, t.rank > KILN_MAX_RANK ? 0 : t.rank).c_str(),
          shapeString(w.data(), static_cast<int32_t>(w.size())).c_str());
    }
    uint64_t bytes = numel * kiln_dtype_size(want);
    if (t.size_bytes < bytes || (!t.data && bytes))
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "%s %zu ('%s') of '%s': buffer of %zu bytes, %llu needed",
                        role, i, name, function, t.size_bytes,
                        static_cast<unsigned long long>(bytes));
  }
  return nullptr;
}

} // namespace

namespace kiln::rt {

const fb::FunctionImpl *findImpl(const kiln_session *s, int function) {
  for (const fb::FunctionImpl *impl : *s->target->functions())
    if (impl->function() == static_cast<uint32_t>(function))
      return impl;
  return nullptr;
}

bool usesKvCache(const fb::FunctionImpl *impl) {
  for (const fb::Dispatch *d : *impl->dispatches())
    for (const fb::Binding *b : *d->bindings())
      if (b->kind() == fb::BindingKind::KvCache)
        return true;
  return false;
}

} // namespace kiln::rt

extern "C" {

KILN_API kiln_status kiln_session_create(kiln_artifact *artifact,
                                         const char *device,
                                         kiln_session **out) {
  *out = nullptr;
  // "cpu" or "cpu:N" (N threads); "vulkan[:N]", "cuda[:N]" (device N).
  std::string spec = device ? device : "cpu";
  std::string name = spec.substr(0, spec.find(':'));
  int ordinal = 0;
  if (name.size() < spec.size()) {
    char *end = nullptr;
    long v = std::strtol(spec.c_str() + name.size() + 1, &end, 10);
    if (!end || *end || v < 0 || v > 4096 || (v == 0 && name == "cpu"))
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "bad device '%s' (expected NAME or NAME:N)",
                        spec.c_str());
    ordinal = static_cast<int>(v);
  }
  // A device may have several targets (variants, best first): the first
  // the device can run is taken; when none can, the last one's error (the
  // most portable variant's) is reported.
  std::vector<const fb::Target *> candidates;
  std::vector<std::string> devices;
  std::string available;
  for (const fb::Target *t : *artifact->model->targets()) {
    if (std::find(devices.begin(), devices.end(), t->device()->str()) ==
        devices.end()) {
      devices.push_back(t->device()->str());
      available += (available.empty() ? "" : ", ") + devices.back();
    }
    if (t->device()->str() == name)
      candidates.push_back(t);
  }
  if (candidates.empty())
    return makeStatus(KILN_NOT_FOUND,
                      "artifact '%s' has no code for device '%s' (it has: %s)",
                      artifact->path.c_str(), name.c_str(),
                      available.empty() ? "none" : available.c_str());
  auto s = std::make_unique<kiln_session_s>();
  s->artifact = artifact;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const fb::Target *target = candidates[i];
    kiln_status st = nullptr;
    if (name == "cpu") {
      st = kiln::rt::createCpuDevice(artifact, target, ordinal, &s->device);
    } else if (name == "cuda") {
      st = kiln::rt::createCudaDevice(artifact, target, ordinal, &s->device);
#ifdef KILN_HAVE_VULKAN
    } else if (name == "vulkan") {
      st = kiln::rt::createVulkanDevice(artifact, target, ordinal, &s->device);
#endif
    } else {
      return makeStatus(KILN_UNIMPLEMENTED,
                        "device '%s' is not supported by this runtime build",
                        name.c_str());
    }
    if (!st) {
      s->target = target;
      break;
    }
    if (i + 1 == candidates.size() ||
        kiln_status_get_code(st) != KILN_UNAVAILABLE)
      return st;
    kiln_status_free(st);
  }
  for (const fb::Constant *c : *artifact->model->constants())
    s->constants.push_back(artifact->segment(c->segment()));
  uint64_t scratch = 0;
  for (const fb::FunctionImpl *impl : *s->target->functions())
    scratch = std::max<uint64_t>(scratch, impl->scratch_size());
  if (scratch) {
    s->scratch.reset(std::aligned_alloc(64, (scratch + 63) / 64 * 64));
    if (!s->scratch)
      return makeStatus(KILN_INTERNAL,
                        "cannot allocate %llu bytes of scratch for '%s'",
                        static_cast<unsigned long long>(scratch),
                        artifact->path.c_str());
  }
  *out = s.release();
  return nullptr;
}

KILN_API void kiln_session_release(kiln_session *session) { delete session; }

KILN_API kiln_status kiln_session_call(kiln_session *s, const char *function,
                                       const kiln_tensor *inputs,
                                       size_t num_inputs, kiln_tensor *outputs,
                                       size_t num_outputs) {
  int index = s->artifact->findFunction(function);
  if (index < 0)
    return makeStatus(KILN_NOT_FOUND, "artifact '%s' has no function '%s'",
                      s->artifact->path.c_str(), function);
  const fb::Function *f = s->artifact->model->functions()->Get(index);
  KILN_RETURN_IF_ERROR(checkTensors(function, "input", f->inputs(), inputs, num_inputs));
  KILN_RETURN_IF_ERROR(checkTensors(function, "output", f->outputs(), outputs, num_outputs));
  const fb::FunctionImpl *impl = kiln::rt::findImpl(s, index);
  if (!impl)
    return makeStatus(KILN_NOT_FOUND,
                      "device '%s' has no code for function '%s'",
                      s->target->device()->c_str(), function);
  if (kiln::rt::usesKvCache(impl))
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "function '%s' works on the KV cache; call it through "
                      "kiln_llm_prefill/kiln_llm_decode",
                      function);
  return s->device->run(impl, {inputs, outputs, &s->constants,
                               s->scratch.get(), nullptr});
}

} // extern "C"
