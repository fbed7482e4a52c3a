// The CUDA driver: libcuda.so.1 through dlopen and a symbol table of the
// driver API (declared here, so building needs no CUDA toolkit). At load:
// the device's primary context, one stream, a module per kernel — the
// cubin for this GPU's SM when the artifact has one, else its PTX, JIT-
// compiled by the driver — and the weights uploaded once. A call launches
// every dispatch of the function on the stream back to back and
// synchronizes once.
#include "device.h"
#include "status.h"

#include <dlfcn.h>

#include <cstring>
#include <string>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

namespace {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
constexpr int kComputeCapabilityMajor = 75; // CU_DEVICE_ATTRIBUTE_*
constexpr int kComputeCapabilityMinor = 76;

#define KILN_CU_FUNCTIONS(X)                                                   \
  X(cuInit, CUresult (*)(unsigned))                                            \
  X(cuDeviceGetCount, CUresult (*)(int *))                                     \
  X(cuDeviceGet, CUresult (*)(CUdevice *, int))                                \
  X(cuDeviceGetName, CUresult (*)(char *, int, CUdevice))                      \
  X(cuDeviceGetAttribute, CUresult (*)(int *, int, CUdevice))                  \
  X(cuDevicePrimaryCtxRetain, CUresult (*)(CUcontext *, CUdevice))             \
  X(cuDevicePrimaryCtxRelease, CUresult (*)(CUdevice))                         \
  X(cuCtxSetCurrent, CUresult (*)(CUcontext))                                  \
  X(cuModuleLoadData, CUresult (*)(CUmodule *, const void *))                  \
  X(cuModuleUnload, CUresult (*)(CUmodule))                                    \
  X(cuModuleGetFunction, CUresult (*)(CUfunction *, CUmodule, const char *))   \
  X(cuMemAlloc_v2, CUresult (*)(CUdeviceptr *, size_t))                        \
  X(cuMemFree_v2, CUresult (*)(CUdeviceptr))                                   \
  X(cuMemcpyHtoDAsync_v2,                                                      \
    CUresult (*)(CUdeviceptr, const void *, size_t, CUstream))                 \
  X(cuMemcpyDtoHAsync_v2,                                                      \
    CUresult (*)(void *, CUdeviceptr, size_t, CUstream))                       \
  X(cuStreamCreate, CUresult (*)(CUstream *, unsigned))                        \
  X(cuStreamDestroy_v2, CUresult (*)(CUstream))                                \
  X(cuStreamSynchronize, CUresult (*)(CUstream))                               \
  X(cuLaunchKernel,                                                            \
    CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned,           \
                 unsigned, unsigned, unsigned, CUstream, void **, void **))    \
  X(cuGetErrorString, CUresult (*)(CUresult, const char **))

template <class T> using Fn = T;

struct Cu {
  void *lib = nullptr;
#define KILN_CU_MEMBER(name, type) Fn<type> name = nullptr;
  KILN_CU_FUNCTIONS(KILN_CU_MEMBER)
#undef KILN_CU_MEMBER
};

class CudaDevice final : public kiln::rt::Device {
public:
  ~CudaDevice() override {
    if (context) {
      cu.cuCtxSetCurrent(context);
      if (stream)
        cu.cuStreamSynchronize(stream);
      for (CUdeviceptr p : constants)
        cu.cuMemFree_v2(p);
      if (kvCache)
        cu.cuMemFree_v2(kvCache);
      for (CUmodule m : modules)
        cu.cuModuleUnload(m);
      if (stream)
        cu.cuStreamDestroy_v2(stream);
      cu.cuDevicePrimaryCtxRelease(device);
    }
    if (cu.lib)
      dlclose(cu.lib);
  }

  kiln_status init(const kiln_artifact *a, const fb::Target *target,
                   int ordinal) {
    artifact = a;
    this->target = target;
    cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cu.lib)
      return makeStatus(KILN_UNAVAILABLE,
                        "no CUDA driver: cannot load libcuda.so.1 (install "
                        "the NVIDIA driver)");
#define KILN_CU_LOAD(name, type)                                               \
  cu.name = reinterpret_cast<type>(dlsym(cu.lib, #name));                      \
  if (!cu.name)                                                                \
    return makeStatus(KILN_UNAVAILABLE, "libcuda.so.1 lacks " #name);
    KILN_CU_FUNCTIONS(KILN_CU_LOAD)
#undef KILN_CU_LOAD
    KILN_RETURN_IF_ERROR(check(cu.cuInit(0), "cuInit"));
    int count = 0;
    KILN_RETURN_IF_ERROR(check(cu.cuDeviceGetCount(&count), "cuDeviceGetCount"));
    if (count == 0)
      return makeStatus(KILN_UNAVAILABLE, "no CUDA device");
    if (ordinal < 0 || ordinal >= count)
      return makeStatus(KILN_NOT_FOUND, "no CUDA device %d (there are %d)",
                        ordinal, count);
    KILN_RETURN_IF_ERROR(check(cu.cuDeviceGet(&device, ordinal), "cuDeviceGet"));
    char name[256] = {};
    cu.cuDeviceGetName(name, sizeof name - 1, device);
    deviceName = name;
    int major = 0, minor = 0;
    cu.cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device);
    cu.cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device);
    std::string sm = "sm_" + std::to_string(major) + std::to_string(minor);
    KILN_RETURN_IF_ERROR(check(cu.cuDevicePrimaryCtxRetain(&context, device),
                               "cuDevicePrimaryCtxRetain"));
    KILN_RETURN_IF_ERROR(check(cu.cuCtxSetCurrent(context), "cuCtxSetCurrent"));
    KILN_RETURN_IF_ERROR(check(cu.cuStreamCreate(&stream, 0), "cuStreamCreate"));

    // Executable k (the PTX) names kernel k; a cubin of the same kernel for
    // this SM replaces it.
    for (uint32_t e = 0; e < target->executables()->size(); ++e) {
      const fb::Executable *exe = target->executables()->Get(e);
      if (exe->format() != fb::ExecutableFormat::Ptx)
        break;
      if (exe->kernels()->size() != 1)
        return makeStatus(KILN_DATA_LOSS, "cuda executable %u is malformed", e);
      const fb::Executable *image = exe;
      for (const fb::Executable *c : *target->executables())
        if (c->format() == fb::ExecutableFormat::Cubin && c->arch() &&
            c->arch()->str() == sm && c->kernels()->size() == 1 &&
            c->kernels()->Get(0)->str() == exe->kernels()->Get(0)->str())
          image = c;
      const uint8_t *bytes = a->segment(image->image_segment());
      uint64_t size = a->segmentSize(image->image_segment());
      if (kiln::rt::fnv1a(bytes, size) != image->image_hash())
        return makeStatus(KILN_DATA_LOSS,
                          "artifact '%s' is corrupt: cuda kernel %u does not "
                          "match its checksum",
                          a->path.c_str(), e);
      // PTX must be NUL-terminated for the JIT.
      std::string ptx;
      const void *load = bytes;
      if (image->format() == fb::ExecutableFormat::Ptx) {
        ptx.assign(reinterpret_cast<const char *>(bytes), size);
        load = ptx.c_str();
      }
      CUmodule m;
      if (CUresult r = cu.cuModuleLoadData(&m, load))
        return check(r, image->format() == fb::ExecutableFormat::Ptx
                            ? "loading PTX (no cubin for this GPU's " + sm + ")"
                            : "loading the cubin for " + sm);
      modules.push_back(m);
      CUfunction f;
      KILN_RETURN_IF_ERROR(check(
          cu.cuModuleGetFunction(&f, m, exe->kernels()->Get(0)->c_str()),
          "cuModuleGetFunction"));
      functions.push_back(f);
    }
    for (const fb::Constant *c : *a->model->constants()) {
      uint64_t size = std::max<uint64_t>(4, a->segmentSize(c->segment()));
      CUdeviceptr p;
      KILN_RETURN_IF_ERROR(alloc(size, p));
      constants.push_back(p);
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyHtoDAsync_v2(p, a->segment(c->segment()),
                                  a->segmentSize(c->segment()), stream),
          "uploading weights"));
    }
    return check(cu.cuStreamSynchronize(stream), "uploading weights");
  }

  kiln_status run(const fb::FunctionImpl *impl,
                  const kiln::rt::CallBuffers &buffers) override {
    cu.cuCtxSetCurrent(context);
    const fb::Function *f = artifact->model->functions()->Get(impl->function());
    std::vector<CUdeviceptr> inputs(f->inputs()->size()),
        outputs(f->outputs()->size()), temps;
    struct Free {
      CudaDevice *d;
      std::vector<CUdeviceptr> *lists[3];
      ~Free() {
        for (auto *l : lists)
          for (CUdeviceptr p : *l)
            if (p)
              d->cu.cuMemFree_v2(p);
      }
    } guard{this, {&inputs, &outputs, &temps}};
    for (size_t i = 0; i < inputs.size(); ++i) {
      const kiln_tensor &t = buffers.inputs[i];
      KILN_RETURN_IF_ERROR(alloc(std::max<size_t>(4, t.size_bytes), inputs[i]));
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyHtoDAsync_v2(inputs[i], t.data, t.size_bytes, stream),
          "copying inputs"));
    }
    for (size_t i = 0; i < outputs.size(); ++i)
      KILN_RETURN_IF_ERROR(
          alloc(std::max<size_t>(4, buffers.outputs[i].size_bytes), outputs[i]));
    if (impl->temporaries())
      for (uint64_t bytes : *impl->temporaries()) {
        temps.push_back(0);
        KILN_RETURN_IF_ERROR(alloc(std::max<uint64_t>(4, bytes), temps.back()));
      }
    kiln::rt::GpuBuffers<CUdeviceptr> bound{inputs, outputs, constants, temps};
    // The LLM session's paged KV cache lives on the device (first use).
    if (buffers.kvCache) {
      if (!kvCache) {
        const fb::KvCacheSpec *spec = artifact->model->kv_cache();
        if (!spec)
          return makeStatus(KILN_DATA_LOSS, "a KV cache binding without a "
                                            "KV cache spec");
        KILN_RETURN_IF_ERROR(alloc(kiln::rt::kvCachePoolBytes(spec), kvCache));
      }
      bound.kvCache = &kvCache;
    }
    std::vector<CUdeviceptr> args;
    std::vector<void *> params;
    for (const fb::Dispatch *d : *impl->dispatches()) {
      if (d->executable() >= functions.size() || !d->workgroups() ||
          d->workgroups()->size() != 3 || !d->workgroup_size() ||
          d->workgroup_size()->size() != 3)
        return makeStatus(KILN_DATA_LOSS, "a cuda dispatch is malformed");
      args.clear();
      for (const fb::Binding *b : *d->bindings()) {
        const CUdeviceptr *p = bound.find(b);
        if (!p || !*p)
          return makeStatus(KILN_DATA_LOSS, "a cuda binding is malformed");
        args.push_back(*p);
      }
      params.clear();
      for (CUdeviceptr &p : args)
        params.push_back(&p);
      auto g = d->workgroups();
      auto w = d->workgroup_size();
      KILN_RETURN_IF_ERROR(check(
          cu.cuLaunchKernel(functions[d->executable()], g->Get(0), g->Get(1),
                            g->Get(2), w->Get(0), w->Get(1), w->Get(2), 0,
                            stream, params.data(), nullptr),
          "cuLaunchKernel"));
    }
    for (size_t i = 0; i < outputs.size(); ++i)
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyDtoHAsync_v2(buffers.outputs[i].data, outputs[i],
                                  buffers.outputs[i].size_bytes, stream),
          "copying outputs"));
    return check(cu.cuStreamSynchronize(stream), "running the kernels");
  }

private:
  kiln_status check(CUresult r, const std::string &what) {
    if (r == 0)
      return nullptr;
    const char *msg = nullptr;
    if (cu.cuGetErrorString)
      cu.cuGetErrorString(r, &msg);
    return makeStatus(r == 2 ? KILN_UNAVAILABLE : KILN_INTERNAL,
                      "CUDA %s on '%s': %s (error %d)", what.c_str(),
                      deviceName.c_str(), msg ? msg : "unknown", r);
  }

  kiln_status alloc(size_t bytes, CUdeviceptr &p) {
    if (CUresult r = cu.cuMemAlloc_v2(&p, bytes)) {
      p = 0;
      return check(r, "allocating " + std::to_string(bytes) +
                          " bytes (out of device memory?)");
    }
    return nullptr;
  }

  Cu cu;
  const kiln_artifact *artifact = nullptr;
  const fb::Target *target = nullptr;
  CUdevice device = 0;
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  std::string deviceName;
  std::vector<CUmodule> modules;
  std::vector<CUfunction> functions;
  std::vector<CUdeviceptr> constants;
  CUdeviceptr kvCache = 0; // the LLM session's paged KV cache (first use)
};

} // namespace

namespace kiln::rt {

kiln_status createCudaDevice(const kiln_artifact *artifact,
                             const fb::Target *target, int ordinal,
                             std::unique_ptr<Device> *out) {
  auto d = std::make_unique<CudaDevice>();
  KILN_RETURN_IF_ERROR(d->init(artifact, target, ordinal));
  *out = std::move(d);
  return nullptr;
}

} // namespace kiln::rt
