// Opening and verifying artifacts. Nothing in the file is trusted: the
// flatbuffer is verified, then every index, offset and size in it is checked
// against the file before any of it is used.
#include "artifact.h"
#include "device.h"
#include "status.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

int kiln_artifact_s::findFunction(const char *name) const {
  const auto *fns = model->functions();
  for (uint32_t i = 0; i < fns->size(); ++i)
    if (std::strcmp(fns->Get(i)->name()->c_str(), name) == 0)
      return static_cast<int>(i);
  return -1;
}

namespace {

kiln_status corrupt(const kiln_artifact_s &a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
kiln_status corrupt(const kiln_artifact_s &a, const char *fmt, ...) {
  char buf[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return makeStatus(KILN_DATA_LOSS, "artifact '%s' is corrupt: %s",
                    a.path.c_str(), buf);
}

bool validDType(fb::DType d) {
  return d >= fb::DType::F32 && d <= fb::DType::Bool;
}

kiln_status verifySig(const kiln_artifact_s &a, const char *fn,
                      const flatbuffers::Vector<flatbuffers::Offset<fb::TensorSig>> *sigs,
                      std::vector<std::vector<int64_t>> &shapes) {
  if (!sigs)
    return corrupt(a, "function '%s' has no signature", fn);
  for (const fb::TensorSig *s : *sigs) {
    if (!s->name() || !s->shape() || !validDType(s->dtype()))
      return corrupt(a, "function '%s' has a malformed tensor signature", fn);
    if (s->shape()->size() > KILN_MAX_RANK)
      return corrupt(a, "tensor '%s' has rank %u > %d", s->name()->c_str(),
                     s->shape()->size(), KILN_MAX_RANK);
    std::vector<int64_t> shape(s->shape()->begin(), s->shape()->end());
    for (int64_t d : shape)
      if (d < -1)
        return corrupt(a, "tensor '%s' has dim %lld", s->name()->c_str(),
                       static_cast<long long>(d));
    shapes.push_back(std::move(shape));
  }
  return nullptr;
}

kiln_status verify(kiln_artifact_s &a) {
  if (a.size < 8)
    return corrupt(a, "%zu bytes is too small for an artifact", a.size);
  uint32_t fbSize;
  std::memcpy(&fbSize, a.base, 4);
  if (static_cast<uint64_t>(fbSize) + 4 > a.size)
    return corrupt(a, "header says %u bytes, file has %zu (truncated?)",
                   fbSize, a.size);
  if (!flatbuffers::BufferHasIdentifier(a.base + 4, fb::ModelIdentifier()))
    return corrupt(a, "no KILN file identifier (not a .kiln file?)");
  uint64_t stored;
  if (static_cast<uint64_t>(fbSize) + 12 > a.size)
    return corrupt(a, "the file ends inside the header checksum (truncated?)");
  std::memcpy(&stored, a.base + 4 + fbSize, 8);
  if (kiln::rt::fnv1a(a.base, 4 + static_cast<uint64_t>(fbSize)) != stored)
    return corrupt(a, "the header does not match its checksum");
  // Verify with the size prefix: alignment is relative to the file start.
  flatbuffers::Verifier verifier(a.base, 4 + static_cast<size_t>(fbSize));
  if (!fb::VerifySizePrefixedModelBuffer(verifier))
    return corrupt(a, "the flatbuffer does not verify");
  a.model = fb::GetModel(a.base + 4);
  const fb::Model *m = a.model;
  if (m->format_version() != kiln::rt::kFormatVersion)
    return makeStatus(KILN_UNIMPLEMENTED,
                      "artifact '%s' has format version %u, this runtime "
                      "reads version %u",
                      a.path.c_str(), m->format_version(),
                      kiln::rt::kFormatVersion);
  if (!m->functions() || !m->segments() || !m->targets() || !m->constants())
    return corrupt(a, "missing functions, segments, targets or constants");

  if (const fb::KvCacheSpec *kv = m->kv_cache()) {
    bool int8 = kv->dtype() == fb::DType::I8;
    if ((kv->dtype() != fb::DType::F32 && kv->dtype() != fb::DType::F16 &&
         !int8) ||
        (int8 && kv->scale_dtype() != fb::DType::F16) ||
        kv->layout() != fb::CacheLayout::BlockHeadToken)
      return makeStatus(KILN_UNIMPLEMENTED,
                        "artifact '%s': KV cache dtype %s (scales %s) / "
                        "layout %s is not supported by this runtime",
                        a.path.c_str(), fb::EnumNameDType(kv->dtype()),
                        fb::EnumNameDType(kv->scale_dtype()),
                        fb::EnumNameCacheLayout(kv->layout()));
    if (int8 && (kv->scale_group() == 0 ||
                 kv->head_dim() % kv->scale_group() != 0))
      return corrupt(a, "the int8 KV cache's scale group %u does not divide "
                        "its head dim %u",
                     kv->scale_group(), kv->head_dim());
    uint64_t elements = 1;
    for (uint64_t d : {uint64_t(kv->num_blocks()), uint64_t(kv->num_layers()),
                       uint64_t(2), uint64_t(kv->num_kv_heads()),
                       uint64_t(kv->block_size()), uint64_t(kv->head_dim())}) {
      if (d == 0 || d > (uint64_t(1) << 24))
        return corrupt(a, "the KV cache spec has a zero or huge dim");
      elements *= d; // at most 2^40 * 2^24: no overflow
      if (elements > (uint64_t(1) << 40))
        return corrupt(a, "the KV cache spec needs more than 2^40 values");
    }
    uint64_t bytes = kiln::rt::kvCachePoolBytes(kv);
    // A context longer than the pool needs every layer windowed (the
    // runtime then slides the cache as a ring).
    if (bytes > (uint64_t(1) << 40) ||
        (kv->max_context() >
             uint64_t(kv->num_blocks()) * kv->block_size() &&
         !kiln::rt::kvCacheIsRing(kv)) ||
        kv->max_context() == 0)
      return corrupt(a, "the KV cache spec is inconsistent (%u blocks of %u "
                        "tokens for a context of %u)",
                     kv->num_blocks(), kv->block_size(), kv->max_context());
  }
  uint64_t dataStart = 4 + static_cast<uint64_t>(fbSize) + 8;
  uint32_t numSegments = m->segments()->size();
  for (uint32_t i = 0; i < numSegments; ++i) {
    const fb::Segment *s = m->segments()->Get(i);
    uint64_t off = s->offset(), len = s->size();
    if (off % 64 || off < dataStart || off > a.size || len > a.size - off)
      return corrupt(a,
                     "segment %u [%llu, +%llu) is misaligned or outside the "
                     "data area [%llu, %zu)",
                     i, static_cast<unsigned long long>(off),
                     static_cast<unsigned long long>(len),
                     static_cast<unsigned long long>(dataStart), a.size);
  }
  uint32_t numConstants = m->constants()->size();
  for (const fb::Constant *c : *m->constants()) {
    if (!c->name() || !c->shape() || !validDType(c->dtype()))
      return corrupt(a, "malformed constant");
    if (c->segment() >= numSegments)
      return corrupt(a, "constant '%s' names segment %u of %u",
                     c->name()->c_str(), c->segment(), numSegments);
    uint64_t n = kiln_dtype_size(static_cast<kiln_dtype>(c->dtype()));
    for (int64_t d : *c->shape()) {
      if (d < 0 || (d && n > UINT64_MAX / static_cast<uint64_t>(d)))
        return corrupt(a, "constant '%s' has a bad shape", c->name()->c_str());
      n *= static_cast<uint64_t>(d);
    }
    if (n != a.segmentSize(c->segment()))
      return corrupt(a, "constant '%s' needs %llu bytes, its segment has %llu",
                     c->name()->c_str(), static_cast<unsigned long long>(n),
                     static_cast<unsigned long long>(a.segmentSize(c->segment())));
  }
  for (const fb::Function *f : *m->functions()) {
    if (!f->name())
      return corrupt(a, "a function has no name");
    kiln_artifact_s::Sig sig;
    KILN_RETURN_IF_ERROR(verifySig(a, f->name()->c_str(), f->inputs(), sig.inShapes));
    KILN_RETURN_IF_ERROR(verifySig(a, f->name()->c_str(), f->outputs(), sig.outShapes));
    a.sigs.push_back(std::move(sig));
  }
  uint32_t numFunctions = m->functions()->size();
  for (const fb::Target *t : *m->targets()) {
    if (!t->device() || !t->executables() || !t->functions())
      return corrupt(a, "malformed target");
    uint32_t numExes = t->executables()->size();
    for (const fb::Executable *e : *t->executables()) {
      if (!e->kernels() || !e->arch() || e->image_segment() >= numSegments)
        return corrupt(a, "malformed executable for target '%s'",
                       t->device()->c_str());
    }
    for (const fb::FunctionImpl *impl : *t->functions()) {
      if (impl->function() >= numFunctions || !impl->dispatches())
        return corrupt(a, "target '%s' implements function %u of %u",
                       t->device()->c_str(), impl->function(), numFunctions);
      if (impl->scratch_size() > (uint64_t(1) << 40))
        return corrupt(a, "function %u asks for %llu bytes of scratch",
                       impl->function(),
                       static_cast<unsigned long long>(impl->scratch_size()));
      const fb::Function *f = m->functions()->Get(impl->function());
      for (const fb::Dispatch *d : *impl->dispatches()) {
        if (d->executable() >= numExes || !d->bindings() ||
            d->kernel() >= t->executables()->Get(d->executable())->kernels()->size())
          return corrupt(a, "function '%s' dispatches a missing kernel",
                         f->name()->c_str());
        for (const fb::Binding *b : *d->bindings()) {
          uint32_t limit = 0;
          switch (b->kind()) {
          case fb::BindingKind::Input: limit = f->inputs()->size(); break;
          case fb::BindingKind::Output: limit = f->outputs()->size(); break;
          case fb::BindingKind::Constant: limit = numConstants; break;
          case fb::BindingKind::Scratch: limit = impl->scratch_size() ? 1 : 0; break;
          case fb::BindingKind::KvCache: limit = m->kv_cache() ? 1 : 0; break;
          case fb::BindingKind::Temporary:
            limit = impl->temporaries() ? impl->temporaries()->size() : 0;
            break;
          default: break;
          }
          if (b->index() >= limit)
            return corrupt(a, "function '%s' binds %s %u of %u",
                           f->name()->c_str(),
                           fb::EnumNameBindingKind(b->kind()), b->index(),
                           limit);
        }
      }
    }
  }
  return nullptr;
}

} // namespace

uint64_t kiln::rt::fnv1a(const uint8_t *p, uint64_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

extern "C" {

KILN_API kiln_status kiln_artifact_open(const char *path, kiln_artifact **out) {
  *out = nullptr;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return makeStatus(errno == ENOENT ? KILN_NOT_FOUND : KILN_INVALID_ARGUMENT,
                      "cannot open artifact '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return makeStatus(KILN_INVALID_ARGUMENT, "'%s' is not a regular file",
                      path);
  }
  auto *a = new kiln_artifact_s;
  a->path = path;
  a->size = static_cast<size_t>(st.st_size);
  if (a->size > 0) {
    void *p = mmap(nullptr, a->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      delete a;
      return makeStatus(KILN_INTERNAL, "cannot map '%s': %s", path,
                        strerror(errno));
    }
    a->base = static_cast<const uint8_t *>(p);
    a->mapped = true;
  }
  close(fd);
  if (kiln_status s = verify(*a)) {
    kiln_artifact_release(a);
    return s;
  }
  *out = a;
  return nullptr;
}

KILN_API kiln_status kiln_artifact_open_memory(const void *data, size_t size,
                                               kiln_artifact **out) {
  *out = nullptr;
  if (!data || reinterpret_cast<uintptr_t>(data) % 64)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "artifact memory must be non-null and 64-byte aligned");
  auto *a = new kiln_artifact_s;
  a->path = "<memory>";
  a->base = static_cast<const uint8_t *>(data);
  a->size = size;
  if (kiln_status s = verify(*a)) {
    kiln_artifact_release(a);
    return s;
  }
  *out = a;
  return nullptr;
}

KILN_API void kiln_artifact_release(kiln_artifact *a) {
  if (!a)
    return;
  if (a->mapped)
    munmap(const_cast<uint8_t *>(a->base), a->size);
  delete a;
}

KILN_API size_t kiln_artifact_function_count(const kiln_artifact *a) {
  return a->model->functions()->size();
}

KILN_API const char *kiln_artifact_function_name(const kiln_artifact *a,
                                                 size_t i) {
  if (i >= kiln_artifact_function_count(a))
    return nullptr;
  return a->model->functions()->Get(i)->name()->c_str();
}

KILN_API const char *kiln_artifact_metadata(const kiln_artifact *a,
                                            const char *key) {
  if (!a->model->metadata())
    return nullptr;
  for (const fb::KeyValue *kv : *a->model->metadata())
    if (kv->key() && kv->value() && std::strcmp(kv->key()->c_str(), key) == 0)
      return kv->value()->c_str();
  return nullptr;
}

static kiln_status lookupFunction(const kiln_artifact *a, const char *name,
                                  int *index) {
  *index = a->findFunction(name);
  if (*index < 0)
    return makeStatus(KILN_NOT_FOUND, "artifact '%s' has no function '%s'",
                      a->path.c_str(), name);
  return nullptr;
}

KILN_API kiln_status kiln_function_arity(const kiln_artifact *a,
                                         const char *function, size_t *nin,
                                         size_t *nout) {
  int i;
  KILN_RETURN_IF_ERROR(lookupFunction(a, function, &i));
  const fb::Function *f = a->model->functions()->Get(i);
  *nin = f->inputs()->size();
  *nout = f->outputs()->size();
  return nullptr;
}

static kiln_status tensorInfo(const kiln_artifact *a, const char *function,
                              size_t index, bool input, kiln_tensor_info *out) {
  int i;
  KILN_RETURN_IF_ERROR(lookupFunction(a, function, &i));
  const fb::Function *f = a->model->functions()->Get(i);
  const auto *sigs = input ? f->inputs() : f->outputs();
  if (index >= sigs->size())
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "function '%s' has %u %s, asked for #%zu", function,
                      sigs->size(), input ? "inputs" : "outputs", index);
  const fb::TensorSig *s = sigs->Get(index);
  const auto &shape = input ? a->sigs[i].inShapes[index]
                            : a->sigs[i].outShapes[index];
  out->name = s->name()->c_str();
  out->dtype = static_cast<kiln_dtype>(s->dtype());
  out->rank = static_cast<int32_t>(shape.size());
  out->shape = shape.data();
  return nullptr;
}

KILN_API kiln_status kiln_function_input(const kiln_artifact *a,
                                         const char *function, size_t index,
                                         kiln_tensor_info *out) {
  return tensorInfo(a, function, index, true, out);
}

KILN_API kiln_status kiln_function_output(const kiln_artifact *a,
                                          const char *function, size_t index,
                                          kiln_tensor_info *out) {
  return tensorInfo(a, function, index, false, out);
}

} // extern "C"
