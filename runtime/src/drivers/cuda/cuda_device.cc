// The CUDA driver: libcuda.so.1 through dlopen and a symbol table of the
// driver API (cuda_api.h, so building needs no CUDA toolkit). At load: the
// device's primary context, one stream, a module per kernel — the cubin for
// this GPU's SM when the artifact has one, else its PTX, JIT-compiled by
// the driver — and the weights uploaded once.
//
// A function's device buffers (inputs, outputs, temporaries) and launch
// arguments are made on its first call and kept: a call copies its inputs
// in, launches every dispatch back to back on the stream, copies the
// outputs out and synchronizes once; no allocation after the first call.
// KILN_CUDA_GRAPHS=1 captures the launches into a CUDA graph on the first
// call and replays it after (one launch per call instead of one per
// dispatch). KILN_CUDA_PROFILE=1 times each dispatch with events.
#include "drivers/cuda/cuda_api.h"
#include "device.h"
#include "drivers/gpu_profile.h"
#include "status.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;
using namespace kiln::rt::cuda;

namespace {

template <class T> using Fn = T;

struct Cu {
  void *lib = nullptr;
#define KILN_CU_MEMBER(name, type) Fn<type> name = nullptr;
  KILN_CU_FUNCTIONS(KILN_CU_MEMBER)
  KILN_CU_OPTIONAL_FUNCTIONS(KILN_CU_MEMBER)
#undef KILN_CU_MEMBER
};

/// "sm_XY" as the number XY, or -1.
int smNumber(const std::string &sm) {
  if (sm.rfind("sm_", 0) != 0 || sm.size() < 5)
    return -1;
  char *end = nullptr;
  long n = strtol(sm.c_str() + 3, &end, 10);
  return end && *end == '\0' ? int(n) : -1;
}

bool envFlag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

class CudaDevice final : public kiln::rt::Device {
public:
  ~CudaDevice() override {
    profile.print("cuda", deviceName);
    if (context) {
      cu.cuCtxSetCurrent(context);
      if (stream)
        cu.cuStreamSynchronize(stream);
      for (auto &[impl, p] : prepared)
        release(p);
      for (CUdeviceptr p : constants)
        cu.cuMemFree_v2(p);
      if (kvCache)
        cu.cuMemFree_v2(kvCache);
      for (CUmodule m : modules)
        cu.cuModuleUnload(m);
      if (stream)
        cu.cuStreamDestroy_v2(stream);
      cu.cuDevicePrimaryCtxRelease_v2(device);
    }
    if (cu.lib)
      dlclose(cu.lib);
  }

  kiln_status init(const kiln_artifact *a, const fb::Target *target,
                   int ordinal) {
    artifact = a;
    cu.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!cu.lib)
      return makeStatus(KILN_UNAVAILABLE,
                        "no CUDA driver: cannot load libcuda.so.1 (install "
                        "the NVIDIA driver)");
#define KILN_CU_LOAD(name, type)                                               \
  cu.name = reinterpret_cast<type>(dlsym(cu.lib, #name));                      \
  if (!cu.name)                                                                \
    return makeStatus(KILN_UNAVAILABLE,                                        \
                      "libcuda.so.1 lacks " #name " (the NVIDIA driver is "    \
                      "older than CUDA 11.4)");
    KILN_CU_FUNCTIONS(KILN_CU_LOAD)
#undef KILN_CU_LOAD
    cu.cuEventElapsedTime_v2 = reinterpret_cast<decltype(cu.cuEventElapsedTime_v2)>(
        dlsym(cu.lib, "cuEventElapsedTime_v2"));
    if (!cu.cuEventElapsedTime_v2)
      cu.cuEventElapsedTime_v2 = reinterpret_cast<decltype(cu.cuEventElapsedTime_v2)>(
          dlsym(cu.lib, "cuEventElapsedTime"));
    CUresult r = cu.cuInit(0);
    if (r == CUDA_ERROR_NO_DEVICE)
      return makeStatus(KILN_UNAVAILABLE, "no CUDA device (the driver sees "
                                          "no GPU)");
    KILN_RETURN_IF_ERROR(check(r, "cuInit"));
    int count = 0;
    KILN_RETURN_IF_ERROR(check(cu.cuDeviceGetCount(&count), "cuDeviceGetCount"));
    if (count == 0)
      return makeStatus(KILN_UNAVAILABLE, "no CUDA device (the driver sees "
                                          "no GPU)");
    if (ordinal < 0 || ordinal >= count)
      return makeStatus(KILN_NOT_FOUND, "no CUDA device %d (there are %d)",
                        ordinal, count);
    KILN_RETURN_IF_ERROR(check(cu.cuDeviceGet(&device, ordinal), "cuDeviceGet"));
    char name[256] = {};
    cu.cuDeviceGetName(name, sizeof name - 1, device);
    deviceName = name;
    int major = 0, minor = 0;
    cu.cuDeviceGetAttribute(
        &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device);
    cu.cuDeviceGetAttribute(
        &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device);
    const std::string sm = "sm_" + std::to_string(major) + std::to_string(minor);
    std::vector<const fb::Executable *> images; // per kernel: cubin or PTX
    KILN_RETURN_IF_ERROR(pickImages(target, sm, images));
    KILN_RETURN_IF_ERROR(check(cu.cuDevicePrimaryCtxRetain(&context, device),
                               "cuDevicePrimaryCtxRetain"));
    KILN_RETURN_IF_ERROR(check(cu.cuCtxSetCurrent(context), "cuCtxSetCurrent"));
    KILN_RETURN_IF_ERROR(check(cu.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING),
                               "cuStreamCreate"));
    for (size_t e = 0; e < images.size(); ++e) {
      const fb::Executable *image = images[e];
      const uint8_t *bytes = a->segment(image->image_segment());
      uint64_t size = a->segmentSize(image->image_segment());
      if (kiln::rt::fnv1a(bytes, size) != image->image_hash())
        return makeStatus(KILN_DATA_LOSS,
                          "artifact '%s' is corrupt: cuda kernel %zu does not "
                          "match its checksum",
                          a->path.c_str(), e);
      bool isPtx = image->format() == fb::ExecutableFormat::Ptx;
      // PTX must be NUL-terminated for the JIT.
      std::string ptx;
      const void *load = bytes;
      if (isPtx) {
        ptx.assign(reinterpret_cast<const char *>(bytes), size);
        load = ptx.c_str();
      }
      CUmodule m;
      if (CUresult r = cu.cuModuleLoadData(&m, load)) {
        if (isPtx && (r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION ||
                      r == CUDA_ERROR_NO_BINARY_FOR_GPU ||
                      r == CUDA_ERROR_INVALID_PTX))
          return makeStatus(
              KILN_UNAVAILABLE,
              "no code for '%s' (%s): the artifact has no cubin for it and "
              "the driver cannot compile its PTX (%s); recompile with "
              "--target=cuda:%s",
              deviceName.c_str(), sm.c_str(), errorString(r).c_str(),
              sm.c_str());
        return check(r, isPtx ? "loading PTX (no cubin for " + sm + ")"
                              : "loading the cubin for " + sm);
      }
      modules.push_back(m);
      CUfunction f;
      KILN_RETURN_IF_ERROR(check(
          cu.cuModuleGetFunction(&f, m, image->kernels()->Get(0)->c_str()),
          "cuModuleGetFunction"));
      functions.push_back(f);
    }
    for (const fb::Constant *c : *a->model->constants()) {
      uint64_t size = std::max<uint64_t>(4, a->segmentSize(c->segment()));
      CUdeviceptr p;
      KILN_RETURN_IF_ERROR(alloc(size, p, "weights"));
      constants.push_back(p);
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyHtoDAsync_v2(p, a->segment(c->segment()),
                                  a->segmentSize(c->segment()), stream),
          "uploading weights"));
    }
    graphs = envFlag("KILN_CUDA_GRAPHS");
    profiling = envFlag("KILN_CUDA_PROFILE") && cu.cuEventElapsedTime_v2;
    return check(cu.cuStreamSynchronize(stream), "uploading weights");
  }

  kiln_status run(const fb::FunctionImpl *impl,
                  const kiln::rt::CallBuffers &buffers) override {
    KILN_RETURN_IF_ERROR(check(cu.cuCtxSetCurrent(context), "cuCtxSetCurrent"));
    const fb::Function *f = artifact->model->functions()->Get(impl->function());
    size_t numIn = f->inputs()->size(), numOut = f->outputs()->size();
    auto it = prepared.find(impl);
    if (it != prepared.end() &&
        (!sameSizes(it->second.inSizes, buffers.inputs, numIn) ||
         !sameSizes(it->second.outSizes, buffers.outputs, numOut))) {
      release(it->second);
      prepared.erase(it);
      it = prepared.end();
    }
    if (it == prepared.end()) {
      Prepared p;
      if (kiln_status st = prepare(impl, buffers, numIn, numOut, p)) {
        release(p);
        return st;
      }
      it = prepared.emplace(impl, std::move(p)).first;
    }
    Prepared &p = it->second;
    for (size_t i = 0; i < numIn; ++i)
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyHtoDAsync_v2(p.inputs[i], buffers.inputs[i].data,
                                  buffers.inputs[i].size_bytes, stream),
          "copying inputs"));
    if (p.exec)
      KILN_RETURN_IF_ERROR(check(cu.cuGraphLaunch(p.exec, stream),
                                 "cuGraphLaunch"));
    else
      KILN_RETURN_IF_ERROR(launchAll(p, profiling));
    for (size_t i = 0; i < numOut; ++i)
      KILN_RETURN_IF_ERROR(check(
          cu.cuMemcpyDtoHAsync_v2(buffers.outputs[i].data, p.outputs[i],
                                  buffers.outputs[i].size_bytes, stream),
          "copying outputs"));
    KILN_RETURN_IF_ERROR(
        check(cu.cuStreamSynchronize(stream), "running the kernels"));
    for (size_t i = 0; i + 1 < p.events.size(); ++i) {
      float ms = 0;
      if (cu.cuEventElapsedTime_v2(&ms, p.events[i], p.events[i + 1]) == 0)
        profile.add(impl, uint32_t(i), ms);
    }
    return nullptr;
  }

private:
  /// One function's device state, made on its first call and kept.
  struct Prepared {
    std::vector<CUdeviceptr> inputs, outputs, temps;
    std::vector<size_t> inSizes, outSizes;
    /// Per dispatch: its kernel, grid, block and argument pointers.
    struct Launch {
      CUfunction function;
      unsigned grid[3], block[3];
      std::vector<CUdeviceptr> args;
      std::vector<void *> params;
    };
    std::vector<Launch> launches;
    CUgraph graph = nullptr;
    CUgraphExec exec = nullptr;
    std::vector<CUevent> events; // KILN_CUDA_PROFILE: one per dispatch + 1
  };

  /// For each kernel, the cubin closest to this GPU's SM, else the PTX; a
  /// clear error when neither can run on it. The layout (artifact.md): one
  /// PTX per kernel, in kernel order, then for each SM one cubin per kernel
  /// in the same order. Kernels may share a name (each is its own module),
  /// so cubins pair with kernels by position, never by name.
  kiln_status pickImages(const fb::Target *target, const std::string &sm,
                         std::vector<const fb::Executable *> &images) {
    const auto *exes = target->executables();
    uint32_t numKernels = 0;
    while (numKernels < exes->size() &&
           exes->Get(numKernels)->format() == fb::ExecutableFormat::Ptx)
      ++numKernels;
    // A cubin runs on its SM and later minor versions of the same major
    // (sm_80 code on an sm_86 GPU): take the closest.
    std::string cubinSms;
    int have = smNumber(sm), best = -1;
    uint32_t bestFirst = 0;
    for (uint32_t e = numKernels; e < exes->size(); e += numKernels) {
      const fb::Executable *c = exes->Get(e);
      if (c->format() != fb::ExecutableFormat::Cubin || !c->arch() ||
          e + numKernels > exes->size())
        return makeStatus(KILN_DATA_LOSS, "cuda executable %u is malformed", e);
      cubinSms += (cubinSms.empty() ? "" : ", ") + c->arch()->str();
      int n = smNumber(c->arch()->str());
      if (n >= 0 && have >= 0 && n / 10 == have / 10 && n <= have && n > best) {
        best = n;
        bestFirst = e;
      }
    }
    for (uint32_t k = 0; k < numKernels; ++k) {
      const fb::Executable *ptx = exes->Get(k);
      const fb::Executable *image =
          best >= 0 ? exes->Get(bestFirst + k) : nullptr;
      if (!ptx->kernels() || ptx->kernels()->size() != 1 ||
          (image && (!image->kernels() || image->kernels()->size() != 1 ||
                     image->format() != fb::ExecutableFormat::Cubin ||
                     image->kernels()->Get(0)->str() !=
                         ptx->kernels()->Get(0)->str())))
        return makeStatus(KILN_DATA_LOSS, "cuda executable %u is malformed", k);
      if (!image) {
        // PTX for sm_XY runs on sm_XY and newer GPUs only.
        std::string ptxArch = ptx->arch() ? ptx->arch()->str() : "";
        int need = smNumber(ptxArch);
        if (need < 0 || have < 0 || need > have) {
          std::string has = "PTX for " + (ptxArch.empty() ? "?" : ptxArch);
          has = cubinSms.empty() ? has + " only"
                                 : "cubins for " + cubinSms + " and " + has;
          return makeStatus(KILN_UNAVAILABLE,
                            "no code for '%s' (%s): the artifact has %s; "
                            "recompile with --target=cuda:%s",
                            deviceName.c_str(), sm.c_str(), has.c_str(),
                            sm.c_str());
        }
        image = ptx;
      }
      images.push_back(image);
    }
    return nullptr;
  }

  /// Makes `impl`'s buffers and launch arguments; with KILN_CUDA_GRAPHS,
  /// captures its launches into a graph.
  kiln_status prepare(const fb::FunctionImpl *impl,
                      const kiln::rt::CallBuffers &buffers, size_t numIn,
                      size_t numOut, Prepared &p) {
    // A buffer of at least 4 bytes (no zero-size allocations) per tensor.
    auto add = [&](std::vector<CUdeviceptr> &list, uint64_t bytes,
                   const char *what) {
      list.push_back(0);
      return alloc(std::max<uint64_t>(4, bytes), list.back(), what);
    };
    for (size_t i = 0; i < numIn; ++i) {
      p.inSizes.push_back(buffers.inputs[i].size_bytes);
      KILN_RETURN_IF_ERROR(add(p.inputs, p.inSizes.back(), "inputs"));
    }
    for (size_t i = 0; i < numOut; ++i) {
      p.outSizes.push_back(buffers.outputs[i].size_bytes);
      KILN_RETURN_IF_ERROR(add(p.outputs, p.outSizes.back(), "outputs"));
    }
    if (impl->temporaries())
      for (uint64_t bytes : *impl->temporaries())
        KILN_RETURN_IF_ERROR(add(p.temps, bytes, "temporaries"));
    kiln::rt::GpuBuffers<CUdeviceptr> bound{p.inputs, p.outputs, constants,
                                            p.temps};
    // The LLM session's paged KV cache lives on the device (first use).
    if (buffers.kvCache) {
      if (!kvCache) {
        const fb::KvCacheSpec *spec = artifact->model->kv_cache();
        if (!spec)
          return makeStatus(KILN_DATA_LOSS, "a KV cache binding without a "
                                            "KV cache spec");
        KILN_RETURN_IF_ERROR(
            alloc(kiln::rt::kvCachePoolBytes(spec), kvCache, "the KV cache"));
      }
      bound.kvCache = &kvCache;
    }
    if (!impl->dispatches())
      return makeStatus(KILN_DATA_LOSS, "a cuda function has no dispatches");
    uint32_t index = 0;
    for (const fb::Dispatch *d : *impl->dispatches()) {
      if (d->executable() >= functions.size() || !d->bindings() ||
          !d->workgroups() || d->workgroups()->size() != 3 ||
          !d->workgroup_size() || d->workgroup_size()->size() != 3)
        return makeStatus(KILN_DATA_LOSS, "a cuda dispatch is malformed");
      Prepared::Launch l;
      l.function = functions[d->executable()];
      for (int i = 0; i < 3; ++i) {
        l.grid[i] = d->workgroups()->Get(i);
        l.block[i] = d->workgroup_size()->Get(i);
      }
      for (const fb::Binding *b : *d->bindings()) {
        const CUdeviceptr *ptr = bound.find(b);
        if (!ptr || !*ptr)
          return makeStatus(KILN_DATA_LOSS, "a cuda binding is malformed");
        l.args.push_back(*ptr);
      }
      p.launches.push_back(std::move(l));
      if (profiling)
        profile.describe(artifact, impl, index++, d);
    }
    // The argument arrays point into `args`, which no longer moves.
    for (Prepared::Launch &l : p.launches)
      for (CUdeviceptr &a : l.args)
        l.params.push_back(&a);
    if (profiling) {
      p.events.resize(p.launches.size() + 1);
      for (CUevent &e : p.events)
        KILN_RETURN_IF_ERROR(
            check(cu.cuEventCreate(&e, CU_EVENT_DEFAULT), "cuEventCreate"));
    } else if (graphs) {
      KILN_RETURN_IF_ERROR(check(
          cu.cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
          "cuStreamBeginCapture"));
      kiln_status st = launchAll(p, false);
      CUresult r = cu.cuStreamEndCapture(stream, &p.graph);
      KILN_RETURN_IF_ERROR(st);
      KILN_RETURN_IF_ERROR(check(r, "cuStreamEndCapture"));
      KILN_RETURN_IF_ERROR(check(
          cu.cuGraphInstantiateWithFlags(&p.exec, p.graph, 0),
          "cuGraphInstantiate"));
    }
    return nullptr;
  }

  kiln_status launchAll(Prepared &p, bool timed) {
    for (size_t i = 0; i < p.launches.size(); ++i) {
      Prepared::Launch &l = p.launches[i];
      if (timed)
        KILN_RETURN_IF_ERROR(
            check(cu.cuEventRecord(p.events[i], stream), "cuEventRecord"));
      KILN_RETURN_IF_ERROR(check(
          cu.cuLaunchKernel(l.function, l.grid[0], l.grid[1], l.grid[2],
                            l.block[0], l.block[1], l.block[2], 0, stream,
                            l.params.data(), nullptr),
          "cuLaunchKernel"));
    }
    if (timed)
      KILN_RETURN_IF_ERROR(check(cu.cuEventRecord(p.events.back(), stream),
                                 "cuEventRecord"));
    return nullptr;
  }

  void release(Prepared &p) {
    if (p.exec)
      cu.cuGraphExecDestroy(p.exec);
    if (p.graph)
      cu.cuGraphDestroy(p.graph);
    for (CUevent e : p.events)
      if (e)
        cu.cuEventDestroy_v2(e);
    for (auto *l : {&p.inputs, &p.outputs, &p.temps})
      for (CUdeviceptr ptr : *l)
        if (ptr)
          cu.cuMemFree_v2(ptr);
    p = Prepared();
  }

  static bool sameSizes(const std::vector<size_t> &have, const kiln_tensor *t,
                        size_t n) {
    if (have.size() != n)
      return false;
    for (size_t i = 0; i < n; ++i)
      if (have[i] != t[i].size_bytes)
        return false;
    return true;
  }

  std::string errorString(CUresult r) {
    const char *msg = nullptr;
    if (cu.cuGetErrorString)
      cu.cuGetErrorString(r, &msg);
    return std::string(msg ? msg : "unknown") + " (error " +
           std::to_string(r) + ")";
  }

  kiln_status check(CUresult r, const std::string &what) {
    if (r == CUDA_SUCCESS)
      return nullptr;
    return makeStatus(r == CUDA_ERROR_OUT_OF_MEMORY ? KILN_UNAVAILABLE
                                                    : KILN_INTERNAL,
                      "CUDA %s on '%s': %s", what.c_str(), deviceName.c_str(),
                      errorString(r).c_str());
  }

  kiln_status alloc(size_t bytes, CUdeviceptr &p, const char *what) {
    CUresult r = cu.cuMemAlloc_v2(&p, bytes);
    if (r == CUDA_SUCCESS)
      return nullptr;
    p = 0;
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
      size_t free = 0, total = 0;
      cu.cuMemGetInfo_v2(&free, &total);
      return makeStatus(KILN_UNAVAILABLE,
                        "out of memory on CUDA device '%s': %zu bytes for %s, "
                        "%zu of %zu bytes free",
                        deviceName.c_str(), bytes, what, free, total);
    }
    return check(r, "allocating " + std::to_string(bytes) + " bytes for " +
                        what);
  }

  Cu cu;
  const kiln_artifact *artifact = nullptr;
  CUdevice device = 0;
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  std::string deviceName;
  std::vector<CUmodule> modules;
  std::vector<CUfunction> functions;
  std::vector<CUdeviceptr> constants;
  CUdeviceptr kvCache = 0; // the LLM session's paged KV cache (first use)
  std::map<const fb::FunctionImpl *, Prepared> prepared;
  bool graphs = false, profiling = false;
  kiln::rt::DispatchProfile profile;
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
