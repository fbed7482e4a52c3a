// A stand-in libcuda.so.1 for testing the runtime's CUDA driver on machines
// without a GPU (test/cuda/fake-driver.test puts it first on
// LD_LIBRARY_PATH). It runs no kernel: it checks how the runtime uses the
// driver API, strictly, and reports what it saw.
//
// - Devices, SM and memory come from the environment: FAKE_CUDA_DEVICES
//   (default 1), FAKE_CUDA_SM (default 90), FAKE_CUDA_MEMORY (bytes,
//   default 1 GiB), FAKE_CUDA_NO_JIT=1 (PTX loads fail as with a driver too
//   old for the PTX's version).
// - Modules: a cubin must be for the device's SM or an earlier minor
//   version of its major (else CUDA_ERROR_NO_BINARY_FOR_GPU, as the real
//   driver); PTX must target an SM no newer than the device's. Each kernel's parameter count is read
//   from the PTX entry or the cubin's .nv.info section.
// - Launches: every parameter must be the base of a live allocation (the
//   bare-pointer convention passes whole buffers), as many as the kernel
//   has; grid and block within CUDA's limits. Copies must lie inside one
//   live allocation. Calls need a current context.
// - Stream capture: launches are recorded, not run; synchronizing a
//   capturing stream fails; a graph launch re-checks its launches.
// - FAKE_CUDA_LOG=FILE: one line per event (load, alloc, free, htod, dtoh,
//   launch, sync, capture, graph-launch), then, when the library is
//   unloaded, a summary with what was never released.
// A broken rule returns an error code and prints "fake libcuda: ..." on
// stderr, so the runtime reports it and the test fails.
#include "drivers/cuda/cuda_api.h"

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace kiln::rt::cuda;

struct CUctx_st { int device; };
struct CUmod_st { std::vector<CUfunction> functions; };
struct CUfunc_st { std::string name; int params; };
struct CUstream_st { bool capturing = false; CUgraph graph = nullptr; };
struct CUevent_st { int recorded = 0; };
struct Launch {
  CUfunction f;
  unsigned grid[3], block[3];
  std::vector<CUdeviceptr> args;
};
struct CUgraph_st { std::vector<Launch> launches; };
struct CUgraphExec_st { std::vector<Launch> launches; };

namespace {

constexpr CUresult kInvalidValue = 1, kNotInitialized = 3,
                   kInvalidContext = 201, kInvalidHandle = 400,
                   kNotFound = 500, kCaptureUnsupported = 900,
                   kCaptureUnmatched = 903;

struct State {
  bool initialized = false;
  int devices = 1, sm = 90;
  size_t memory = size_t(1) << 30, used = 0;
  bool noJit = false;
  FILE *log = nullptr;
  CUctx_st contexts[8];
  int retained[8] = {};
  CUcontext current = nullptr;
  std::map<CUdeviceptr, size_t> allocations;
  std::set<CUmodule> modules;
  std::set<CUstream> streams;
  std::set<CUevent> events;
  std::set<CUgraph> graphs;
  std::set<CUgraphExec> execs;
  uint64_t launches = 0, graphLaunches = 0, syncs = 0, allocs = 0;

  State() {
    if (const char *v = getenv("FAKE_CUDA_DEVICES"))
      devices = atoi(v);
    if (const char *v = getenv("FAKE_CUDA_SM"))
      sm = atoi(v);
    if (const char *v = getenv("FAKE_CUDA_MEMORY"))
      memory = strtoull(v, nullptr, 10);
    noJit = getenv("FAKE_CUDA_NO_JIT") != nullptr;
    if (const char *v = getenv("FAKE_CUDA_LOG"))
      log = fopen(v, "a");
    for (int i = 0; i < 8; ++i)
      contexts[i].device = i;
  }

  ~State() {
    size_t leakedBytes = 0;
    for (auto &[p, n] : allocations)
      leakedBytes += n;
    int contextsHeld = 0;
    for (int r : retained)
      contextsHeld += r;
    note("summary: %llu allocations, %llu launches, %llu graph launches, "
         "%llu synchronizations",
         (unsigned long long)allocs, (unsigned long long)launches,
         (unsigned long long)graphLaunches, (unsigned long long)syncs);
    note("unreleased: %zu allocations (%zu bytes), %zu modules, %zu "
         "streams, %zu events, %zu graphs, %zu graph execs, %d contexts",
         allocations.size(), leakedBytes, modules.size(), streams.size(),
         events.size(), graphs.size(), execs.size(), contextsHeld);
    if (log)
      fclose(log);
  }

  void note(const char *fmt, ...) {
    if (!log)
      return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log, fmt, ap);
    va_end(ap);
    fputc('\n', log);
    fflush(log);
  }

  CUresult fail(CUresult code, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fake libcuda: %s\n", buf);
    note("error: %s", buf);
    return code;
  }

  /// Whether [p, p + n) lies inside one live allocation.
  bool inside(CUdeviceptr p, size_t n) const {
    auto it = allocations.upper_bound(p);
    if (it == allocations.begin())
      return false;
    --it;
    return p >= it->first && p + n <= it->first + it->second;
  }

  CUresult ready() {
    if (!initialized)
      return fail(kNotInitialized, "called before cuInit");
    if (!current)
      return fail(kInvalidContext, "no current context");
    return CUDA_SUCCESS;
  }

  CUresult checkLaunch(const Launch &l) {
    if (!l.f)
      return fail(kInvalidHandle, "launch of a null function");
    for (int i = 0; i < 3; ++i)
      if (l.grid[i] == 0 || l.block[i] == 0)
        return fail(kInvalidValue, "%s: a zero grid or block dimension",
                    l.f->name.c_str());
    if (l.grid[1] > 65535 || l.grid[2] > 65535 || l.grid[0] > 0x7fffffffu)
      return fail(kInvalidValue, "%s: grid %ux%ux%u past CUDA's limits",
                  l.f->name.c_str(), l.grid[0], l.grid[1], l.grid[2]);
    if (uint64_t(l.block[0]) * l.block[1] * l.block[2] > 1024 ||
        l.block[2] > 64)
      return fail(kInvalidValue, "%s: block %ux%ux%u past CUDA's limits",
                  l.f->name.c_str(), l.block[0], l.block[1], l.block[2]);
    if (l.f->params >= 0 && int(l.args.size()) != l.f->params)
      return fail(kInvalidValue, "%s: %zu arguments for %d parameters",
                  l.f->name.c_str(), l.args.size(), l.f->params);
    for (size_t i = 0; i < l.args.size(); ++i)
      if (!allocations.count(l.args[i]))
        return fail(kInvalidValue,
                    "%s: argument %zu (0x%llx) is not a live allocation",
                    l.f->name.c_str(), i, (unsigned long long)l.args[i]);
    return CUDA_SUCCESS;
  }
};

State &state() {
  static State s;
  return s;
}

/// A PTX entry's name and parameter count: `.entry NAME(` then `.param`s.
void ptxEntries(const char *ptx, CUmodule m) {
  const char *p = ptx;
  while ((p = strstr(p, ".entry "))) {
    p += 7;
    const char *open = strchr(p, '(');
    const char *close = open ? strchr(open, ')') : nullptr;
    if (!open || !close)
      break;
    std::string name(p, open);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\n'))
      name.pop_back();
    int params = 0;
    for (const char *q = open; (q = strstr(q, ".param")) && q < close; q += 6)
      ++params;
    m->functions.push_back(new CUfunc_st{name, params});
    p = close;
  }
}

/// A cubin's SM (ELF e_flags) and kernels with their parameter counts (one
/// EIATTR_KPARAM_INFO record per parameter in .nv.info.NAME, whose records
/// are a format byte, an attribute byte, a 16-bit value or size, then for
/// sized records that many bytes).
bool cubinEntries(const uint8_t *elf, int &sm, CUmodule m) {
  auto u16 = [&](size_t o) { uint16_t v; memcpy(&v, elf + o, 2); return v; };
  auto u32 = [&](size_t o) { uint32_t v; memcpy(&v, elf + o, 4); return v; };
  auto u64 = [&](size_t o) { uint64_t v; memcpy(&v, elf + o, 8); return v; };
  if (elf[4] != 2) // ELFCLASS64
    return false;
  uint32_t flags = u32(48);
  sm = elf[8] >= 7 ? (flags >> 8) & 0xff : flags & 0xff; // by ABI version
  uint64_t shoff = u64(40);
  uint16_t shentsize = u16(58), shnum = u16(60), shstrndx = u16(62);
  uint64_t strtab = u64(shoff + size_t(shstrndx) * shentsize + 24);
  for (uint16_t i = 0; i < shnum; ++i) {
    size_t sh = shoff + size_t(i) * shentsize;
    const char *name = reinterpret_cast<const char *>(elf + strtab + u32(sh));
    if (strncmp(name, ".nv.info.", 9) != 0)
      continue;
    uint64_t off = u64(sh + 24), size = u64(sh + 32);
    int params = 0;
    for (uint64_t o = off; o + 2 <= off + size;) {
      uint8_t format = elf[o], attr = elf[o + 1];
      if (format == 4) { // a sized value
        if (attr == 0x17) // EIATTR_KPARAM_INFO
          ++params;
        o += 4 + u16(o + 2);
      } else if (format >= 1 && format <= 3) { // no value, byte, half
        o += 4;
      } else {
        params = -1; // unknown record: leave the count unchecked
        break;
      }
    }
    m->functions.push_back(new CUfunc_st{name + 9, params});
  }
  return true;
}

} // namespace

#define FAKE_API extern "C" __attribute__((visibility("default"))) CUresult

FAKE_API cuInit(unsigned) {
  state().initialized = true;
  return state().devices > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}
FAKE_API cuDriverGetVersion(int *v) {
  *v = 13000;
  return CUDA_SUCCESS;
}
FAKE_API cuDeviceGetCount(int *n) {
  if (!state().initialized)
    return kNotInitialized;
  *n = state().devices;
  return CUDA_SUCCESS;
}
FAKE_API cuDeviceGet(CUdevice *d, int ordinal) {
  if (ordinal < 0 || ordinal >= state().devices || ordinal >= 8)
    return state().fail(kInvalidValue, "no device %d", ordinal);
  *d = ordinal;
  return CUDA_SUCCESS;
}
FAKE_API cuDeviceGetName(char *name, int len, CUdevice) {
  snprintf(name, len, "Fake GPU");
  return CUDA_SUCCESS;
}
FAKE_API cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice) {
  if (a == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
    *v = state().sm / 10;
  else if (a == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
    *v = state().sm % 10;
  else
    return kInvalidValue;
  return CUDA_SUCCESS;
}
FAKE_API cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
  state().retained[d]++;
  *c = &state().contexts[d];
  return CUDA_SUCCESS;
}
FAKE_API cuDevicePrimaryCtxRelease_v2(CUdevice d) {
  if (state().retained[d] == 0)
    return state().fail(kInvalidContext, "releasing an unretained context");
  state().retained[d]--;
  return CUDA_SUCCESS;
}
FAKE_API cuCtxSetCurrent(CUcontext c) {
  state().current = c;
  return CUDA_SUCCESS;
}

FAKE_API cuModuleLoadData(CUmodule *out, const void *image) {
  State &s = state();
  if (CUresult r = s.ready())
    return r;
  const uint8_t *bytes = static_cast<const uint8_t *>(image);
  auto *m = new CUmod_st;
  if (memcmp(bytes, "\x7f" "ELF", 4) == 0) {
    int sm = 0;
    if (!cubinEntries(bytes, sm, m)) {
      delete m;
      return s.fail(CUDA_ERROR_INVALID_IMAGE, "not a 64-bit cubin");
    }
    // A cubin runs on its SM and later minor versions of the same major.
    if (sm / 10 != s.sm / 10 || sm > s.sm) {
      delete m;
      s.note("load cubin sm_%d: no binary for this GPU (sm_%d)", sm, s.sm);
      return CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    s.note("load cubin sm_%d %s(%d)", sm,
           m->functions.empty() ? "?" : m->functions[0]->name.c_str(),
           m->functions.empty() ? -1 : m->functions[0]->params);
  } else {
    const char *ptx = static_cast<const char *>(image);
    const char *target = strstr(ptx, ".target sm_");
    int sm = target ? atoi(target + 11) : 0;
    if (!target) {
      delete m;
      return s.fail(CUDA_ERROR_INVALID_PTX, "PTX without a .target");
    }
    if (s.noJit || sm > s.sm) {
      delete m;
      s.note("load ptx sm_%d: refused", sm);
      return s.noJit ? CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                     : CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    ptxEntries(ptx, m);
    s.note("load ptx sm_%d %s(%d)", sm,
           m->functions.empty() ? "?" : m->functions[0]->name.c_str(),
           m->functions.empty() ? -1 : m->functions[0]->params);
  }
  s.modules.insert(m);
  *out = m;
  return CUDA_SUCCESS;
}
FAKE_API cuModuleUnload(CUmodule m) {
  if (!state().modules.erase(m))
    return state().fail(kInvalidHandle, "unloading an unknown module");
  for (CUfunction f : m->functions)
    delete f;
  delete m;
  return CUDA_SUCCESS;
}
FAKE_API cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
  if (!state().modules.count(m))
    return state().fail(kInvalidHandle, "an unknown module");
  for (CUfunction g : m->functions)
    if (g->name == name) {
      *f = g;
      return CUDA_SUCCESS;
    }
  return state().fail(kNotFound, "no kernel '%s' in the module", name);
}

FAKE_API cuMemGetInfo_v2(size_t *free, size_t *total) {
  *free = state().memory - state().used;
  *total = state().memory;
  return CUDA_SUCCESS;
}
FAKE_API cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
  State &s = state();
  if (CUresult r = s.ready())
    return r;
  if (n == 0)
    return s.fail(kInvalidValue, "a zero-byte allocation");
  if (n > s.memory - s.used) {
    s.note("alloc %zu: out of memory", n);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  void *host = calloc(1, n); // deterministic contents: kernels never run
  if (!host)
    return CUDA_ERROR_OUT_OF_MEMORY;
  *p = reinterpret_cast<CUdeviceptr>(host);
  s.allocations[*p] = n;
  s.used += n;
  s.allocs++;
  s.note("alloc %zu", n);
  return CUDA_SUCCESS;
}
FAKE_API cuMemFree_v2(CUdeviceptr p) {
  State &s = state();
  auto it = s.allocations.find(p);
  if (it == s.allocations.end())
    return s.fail(kInvalidValue, "freeing 0x%llx, not a live allocation",
                  (unsigned long long)p);
  s.used -= it->second;
  s.allocations.erase(it);
  free(reinterpret_cast<void *>(p));
  s.note("free");
  return CUDA_SUCCESS;
}
namespace {
/// A copy between host memory and [device, device + n) on stream `st`.
CUresult copy(const char *what, void *dst, const void *src, CUdeviceptr device,
              size_t n, CUstream st) {
  State &s = state();
  if (CUresult r = s.ready())
    return r;
  if (!s.streams.count(st) || st->capturing)
    return s.fail(kInvalidHandle, "copy on an unknown or capturing stream");
  if (!s.inside(device, n))
    return s.fail(kInvalidValue, "%s copy of %zu bytes at 0x%llx: outside "
                  "every allocation", what, n, (unsigned long long)device);
  memcpy(dst, src, n);
  s.note("%s %zu", what, n);
  return CUDA_SUCCESS;
}
} // namespace

FAKE_API cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n,
                              CUstream st) {
  return copy("htod", reinterpret_cast<void *>(dst), src, dst, n, st);
}
FAKE_API cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n,
                              CUstream st) {
  return copy("dtoh", dst, reinterpret_cast<const void *>(src), src, n, st);
}

FAKE_API cuStreamCreate(CUstream *st, unsigned) {
  if (CUresult r = state().ready())
    return r;
  *st = new CUstream_st;
  state().streams.insert(*st);
  return CUDA_SUCCESS;
}
FAKE_API cuStreamDestroy_v2(CUstream st) {
  if (!state().streams.erase(st))
    return state().fail(kInvalidHandle, "destroying an unknown stream");
  delete st;
  return CUDA_SUCCESS;
}
FAKE_API cuStreamSynchronize(CUstream st) {
  State &s = state();
  if (!s.streams.count(st))
    return s.fail(kInvalidHandle, "synchronizing an unknown stream");
  if (st->capturing)
    return s.fail(kCaptureUnsupported, "synchronizing a capturing stream");
  s.syncs++;
  s.note("sync");
  return CUDA_SUCCESS;
}
FAKE_API cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                        unsigned bx, unsigned by, unsigned bz, unsigned shared,
                        CUstream st, void **params, void **extra) {
  State &s = state();
  if (CUresult r = s.ready())
    return r;
  if (!s.streams.count(st))
    return s.fail(kInvalidHandle, "launch on an unknown stream");
  if (shared || extra)
    return s.fail(kInvalidValue, "unexpected dynamic shared memory or extra");
  Launch l{f, {gx, gy, gz}, {bx, by, bz}, {}};
  for (int i = 0; f && i < f->params; ++i)
    l.args.push_back(*static_cast<CUdeviceptr *>(params[i]));
  if (CUresult r = s.checkLaunch(l))
    return r;
  if (st->capturing) {
    st->graph->launches.push_back(l);
    s.note("capture %s", f->name.c_str());
  } else {
    s.launches++;
    s.note("launch %s", f->name.c_str());
  }
  return CUDA_SUCCESS;
}

FAKE_API cuStreamBeginCapture_v2(CUstream st, CUstreamCaptureMode) {
  State &s = state();
  if (!s.streams.count(st) || st->capturing)
    return s.fail(kInvalidValue, "capture on an unknown or capturing stream");
  st->capturing = true;
  st->graph = new CUgraph_st;
  s.note("begin capture");
  return CUDA_SUCCESS;
}
FAKE_API cuStreamEndCapture(CUstream st, CUgraph *g) {
  State &s = state();
  if (!s.streams.count(st) || !st->capturing)
    return s.fail(kCaptureUnmatched, "end of a capture never begun");
  st->capturing = false;
  *g = st->graph;
  st->graph = nullptr;
  s.graphs.insert(*g);
  s.note("end capture: %zu launches", (*g)->launches.size());
  return CUDA_SUCCESS;
}
FAKE_API cuGraphInstantiateWithFlags(CUgraphExec *e, CUgraph g,
                                     unsigned long long) {
  if (!state().graphs.count(g))
    return state().fail(kInvalidHandle, "instantiating an unknown graph");
  *e = new CUgraphExec_st{g->launches};
  state().execs.insert(*e);
  return CUDA_SUCCESS;
}
FAKE_API cuGraphLaunch(CUgraphExec e, CUstream st) {
  State &s = state();
  if (CUresult r = s.ready())
    return r;
  if (!s.execs.count(e) || !s.streams.count(st))
    return s.fail(kInvalidHandle, "graph launch of an unknown graph/stream");
  for (const Launch &l : e->launches)
    if (CUresult r = s.checkLaunch(l))
      return r;
  s.graphLaunches++;
  s.note("graph-launch %zu", e->launches.size());
  return CUDA_SUCCESS;
}
FAKE_API cuGraphExecDestroy(CUgraphExec e) {
  if (!state().execs.erase(e))
    return state().fail(kInvalidHandle, "destroying an unknown graph exec");
  delete e;
  return CUDA_SUCCESS;
}
FAKE_API cuGraphDestroy(CUgraph g) {
  if (!state().graphs.erase(g))
    return state().fail(kInvalidHandle, "destroying an unknown graph");
  delete g;
  return CUDA_SUCCESS;
}

FAKE_API cuEventCreate(CUevent *e, unsigned) {
  *e = new CUevent_st;
  state().events.insert(*e);
  return CUDA_SUCCESS;
}
FAKE_API cuEventDestroy_v2(CUevent e) {
  if (!state().events.erase(e))
    return state().fail(kInvalidHandle, "destroying an unknown event");
  delete e;
  return CUDA_SUCCESS;
}
FAKE_API cuEventRecord(CUevent e, CUstream st) {
  if (!state().events.count(e) || !state().streams.count(st))
    return state().fail(kInvalidHandle, "recording an unknown event/stream");
  e->recorded++;
  return CUDA_SUCCESS;
}
FAKE_API cuEventElapsedTime_v2(float *ms, CUevent a, CUevent b) {
  if (!a->recorded || !b->recorded)
    return state().fail(kInvalidValue, "elapsed time of unrecorded events");
  *ms = 0.001f;
  return CUDA_SUCCESS;
}
FAKE_API cuGetErrorString(CUresult r, const char **msg) {
  switch (r) {
  case CUDA_ERROR_OUT_OF_MEMORY: *msg = "out of memory"; break;
  case CUDA_ERROR_NO_DEVICE: *msg = "no CUDA-capable device is detected"; break;
  case CUDA_ERROR_NO_BINARY_FOR_GPU:
    *msg = "no kernel image is available for execution on the device";
    break;
  case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
    *msg = "the provided PTX was compiled with an unsupported toolchain.";
    break;
  default: *msg = "fake libcuda error"; break;
  }
  return CUDA_SUCCESS;
}
