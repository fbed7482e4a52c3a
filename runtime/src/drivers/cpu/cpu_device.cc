// The CPU driver: executables are ELF shared objects produced by the
// compiler. They are loaded without touching the file system: the image is
// copied into a memfd and dlopen-ed through /proc/self/fd.
#include "device.h"
#include "status.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace kiln::rt {
namespace {

namespace fb = kiln::fb;
struct CpuEnv;
using BodyFn = void (*)(void *ctx, int64_t begin, int64_t end);
using ParallelForFn = void (*)(CpuEnv *, BodyFn, void *, int64_t);
using KernelFn = void (*)(void **bindings, CpuEnv *env);

// Calls into the artifact's generated code go through these two. UBSan's
// -fsanitize=function (the sanitizer build, test/check_runtime_sanitized.sh)
// reads a type signature it expects just before an indirect callee; code
// kiln-compile generates has none, and a body that starts a page may have
// nothing readable before it, so the check itself faulted, depending on the
// code's layout. The calls are exempt from that one check.
#if defined(__clang__)
#define KILN_CALLS_GENERATED_CODE __attribute__((no_sanitize("function")))
#else
#define KILN_CALLS_GENERATED_CODE
#endif
KILN_CALLS_GENERATED_CODE inline void callBody(BodyFn fn, void *ctx,
                                               int64_t begin, int64_t end) {
  fn(ctx, begin, end);
}
KILN_CALLS_GENERATED_CODE inline void callKernel(KernelFn fn, void **bindings,
                                                 CpuEnv *env) {
  fn(bindings, env);
}

/// What generated code sees of the runtime (artifact ABI: docs/artifact.md):
/// the first field is the parallel-for it calls for each parallel loop.
struct CpuEnv {
  ParallelForFn parallelFor;
  class ThreadPool *pool;
};

/// A fixed set of workers that split [0, n) of one loop at a time. The
/// caller takes the first share and waits for the rest; workers spin a
/// little before sleeping, as kernels come in quick succession.
class ThreadPool {
public:
  explicit ThreadPool(int threads) : numThreads(threads < 1 ? 1 : threads) {
    for (int t = 1; t < numThreads; ++t)
      workers.emplace_back([this, t] { work(t); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
      ++generation;
    }
    wake.notify_all();
    for (auto &w : workers)
      w.join();
  }
  int size() const { return numThreads; }

  void run(BodyFn fn, void *ctx, int64_t n) {
    int shares = static_cast<int>(std::min<int64_t>(n, numThreads));
    if (shares <= 1) {
      callBody(fn, ctx, 0, n);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex);
      job = {fn, ctx, n, shares};
      pending.store(shares - 1, std::memory_order_relaxed);
      generation.fetch_add(1, std::memory_order_release);
    }
    wake.notify_all();
    runShare(0);
    for (int spin = 0; pending.load(std::memory_order_acquire) != 0; ++spin)
      if (spin > 1000)
        std::this_thread::yield();
  }

private:
  struct Job {
    BodyFn fn;
    void *ctx;
    int64_t n;
    int shares;
  };

  static void runShare(const Job &j, int t) {
    int64_t begin = j.n * t / j.shares, end = j.n * (t + 1) / j.shares;
    if (begin < end)
      callBody(j.fn, j.ctx, begin, end);
  }
  void runShare(int t) { runShare(job, t); }

  void work(int t) {
    uint64_t seen = 0;
    while (true) {
      for (int spin = 0; generation.load(std::memory_order_acquire) == seen; ++spin)
        if (spin > 20000) {
          std::unique_lock<std::mutex> lock(mutex);
          wake.wait(lock, [&] { return generation.load() != seen; });
        }
      // The job and its generation are read together: a worker that sat
      // out a job (t >= its shares) may wake after the caller has already
      // published the next one, and must take that one once, not a share of
      // it under the old generation and then again (which let `pending`
      // reach zero while a share was still running).
      Job j;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (stopping)
          return;
        j = job;
        seen = generation.load(std::memory_order_relaxed);
      }
      if (t < j.shares) {
        runShare(j, t);
        pending.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  int numThreads;
  std::vector<std::thread> workers;
  std::mutex mutex;
  std::condition_variable wake;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> pending{0};
  Job job{};
  bool stopping = false;
};

void parallelFor(CpuEnv *env, BodyFn fn, void *ctx, int64_t n) {
  env->pool->run(fn, ctx, n);
}

/// Whether the host can run code built with `feature` (LLVM's name).
bool hostHasFeature(const std::string &f) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (f == "sse4.1") return __builtin_cpu_supports("sse4.1");
  if (f == "sse4.2") return __builtin_cpu_supports("sse4.2");
  if (f == "avx") return __builtin_cpu_supports("avx");
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "bmi") return __builtin_cpu_supports("bmi");
  if (f == "bmi2") return __builtin_cpu_supports("bmi2");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (f == "avxvnni") return __builtin_cpu_supports("avxvnni");
#endif
  (void)f;
  return true; // features the runtime cannot query are assumed present
}

const char *hostArch() {
#if defined(__x86_64__)
  return "x86_64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

/// Checks that an ELF64 shared object's headers and loadable segments lie
/// inside the image, so the dynamic loader never maps past its end.
bool elfInBounds(const uint8_t *image, uint64_t size) {
  if (size < sizeof(Elf64_Ehdr))
    return false;
  Elf64_Ehdr eh;
  std::memcpy(&eh, image, sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
      eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_type != ET_DYN ||
      eh.e_phentsize != sizeof(Elf64_Phdr) ||
      eh.e_phoff > size || eh.e_phnum > (size - eh.e_phoff) / sizeof(Elf64_Phdr))
    return false;
  if (eh.e_shnum && (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > size ||
                     eh.e_shnum > (size - eh.e_shoff) / sizeof(Elf64_Shdr)))
    return false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, image + eh.e_phoff + i * sizeof ph, sizeof ph);
    if (ph.p_offset > size || ph.p_filesz > size - ph.p_offset ||
        ph.p_filesz > ph.p_memsz)
      return false;
  }
  return true;
}

class CpuDevice final : public Device {
public:
  explicit CpuDevice(int threads) : pool(threads) {
    env.parallelFor = parallelFor;
    env.pool = &pool;
  }
  ~CpuDevice() override {
    for (void *h : handles)
      dlclose(h);
  }

  kiln_status load(const kiln_artifact *a, const fb::Target *target) {
    for (uint32_t e = 0; e < target->executables()->size(); ++e) {
      const fb::Executable *exe = target->executables()->Get(e);
      if (exe->format() != fb::ExecutableFormat::ElfSharedObject)
        return makeStatus(KILN_UNIMPLEMENTED,
                          "cpu executable %u has format %s", e,
                          fb::EnumNameExecutableFormat(exe->format()));
      if (std::strcmp(exe->arch()->c_str(), hostArch()) != 0)
        return makeStatus(KILN_UNAVAILABLE,
                          "artifact '%s' has cpu code for %s, this host is %s",
                          a->path.c_str(), exe->arch()->c_str(), hostArch());
      if (exe->features()) {
        std::string all = exe->features()->str();
        size_t pos = 0;
        while (pos < all.size()) {
          size_t end = all.find(',', pos);
          if (end == std::string::npos)
            end = all.size();
          std::string f = all.substr(pos, end - pos);
          if (f.size() > 1 && f[0] == '+' && !hostHasFeature(f.substr(1)))
            return makeStatus(KILN_UNAVAILABLE,
                              "artifact '%s' was compiled for CPU feature %s, "
                              "which this CPU lacks (recompile with --cpu=)",
                              a->path.c_str(), f.c_str() + 1);
          pos = end + 1;
        }
      }
      void *handle;
      KILN_RETURN_IF_ERROR(loadImage(a, exe, e, &handle));
      handles.push_back(handle);
      std::vector<KernelFn> fns;
      for (const auto *name : *exe->kernels()) {
        void *sym = dlsym(handle, name->c_str());
        if (!sym)
          return makeStatus(KILN_DATA_LOSS,
                            "artifact '%s': cpu executable %u lacks kernel '%s'",
                            a->path.c_str(), e, name->c_str());
        fns.push_back(reinterpret_cast<KernelFn>(sym));
      }
      kernels.push_back(std::move(fns));
    }
    return nullptr;
  }

  kiln_status run(const fb::FunctionImpl *impl,
                  const CallBuffers &buffers) override {
    std::vector<void *> args;
    for (const fb::Dispatch *d : *impl->dispatches()) {
      args.clear();
      for (const fb::Binding *b : *d->bindings()) {
        switch (b->kind()) {
        case fb::BindingKind::Input:
          args.push_back(buffers.inputs[b->index()].data);
          break;
        case fb::BindingKind::Output:
          args.push_back(buffers.outputs[b->index()].data);
          break;
        case fb::BindingKind::Constant:
          args.push_back(const_cast<void *>((*buffers.constants)[b->index()]));
          break;
        case fb::BindingKind::Scratch:
          args.push_back(buffers.scratch);
          break;
        case fb::BindingKind::KvCache:
          if (!buffers.kvCache)
            return makeStatus(KILN_INVALID_ARGUMENT,
                              "a kernel needs the KV cache, none was given");
          args.push_back(buffers.kvCache);
          break;
        default:
          return makeStatus(KILN_UNIMPLEMENTED, "binding kind %s",
                            fb::EnumNameBindingKind(b->kind()));
        }
      }
      callKernel(kernels[d->executable()][d->kernel()], args.data(), &env);
    }
    return nullptr;
  }

private:
  static kiln_status loadImage(const kiln_artifact *a, const fb::Executable *exe,
                               uint32_t index, void **handle) {
    const uint8_t *image = a->segment(exe->image_segment());
    uint64_t size = a->segmentSize(exe->image_segment());
    // Code is never loaded unless it is exactly what the compiler wrote.
    if (kiln::rt::fnv1a(image, size) != exe->image_hash() || !elfInBounds(image, size))
      return makeStatus(KILN_DATA_LOSS,
                        "artifact '%s' is corrupt: cpu executable %u does not "
                        "match its checksum",
                        a->path.c_str(), index);
    // For profilers: KILN_CPU_IMAGE_DIR=DIR loads the code from a real file
    // there, so perf and gdb can name the kernels.
    const char *dumpDir = std::getenv("KILN_CPU_IMAGE_DIR");
    std::string dumpPath;
    int fd;
    if (dumpDir && *dumpDir) {
      dumpPath = std::string(dumpDir) + "/kiln-cpu-" + std::to_string(index) + ".so";
      fd = open(dumpPath.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
      fd = memfd_create("kiln-cpu", MFD_CLOEXEC);
    }
    if (fd < 0)
      return makeStatus(KILN_INTERNAL, "memfd_create failed: %s",
                        strerror(errno));
    uint64_t done = 0;
    while (done < size) {
      ssize_t n = write(fd, image + done, size - done);
      if (n <= 0) {
        close(fd);
        return makeStatus(KILN_INTERNAL, "writing cpu executable failed");
      }
      done += static_cast<uint64_t>(n);
    }
    std::string path =
        dumpPath.empty() ? "/proc/self/fd/" + std::to_string(fd) : dumpPath;
    *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    close(fd);
    if (!*handle)
      return makeStatus(KILN_DATA_LOSS,
                        "artifact '%s': cpu executable %u does not load: %s",
                        a->path.c_str(), index, dlerror());
    return nullptr;
  }

  ThreadPool pool;
  CpuEnv env;
  std::vector<void *> handles;
  std::vector<std::vector<KernelFn>> kernels;
};

} // namespace

kiln_status createCpuDevice(const kiln_artifact *artifact,
                            const fb::Target *target, int threads,
                            std::unique_ptr<Device> *out) {
  if (threads <= 0) {
    const char *env = std::getenv("KILN_NUM_THREADS");
    threads = env ? std::atoi(env) : 0;
    if (threads <= 0)
      threads = static_cast<int>(std::thread::hardware_concurrency());
  }
  auto device = std::make_unique<CpuDevice>(threads);
  KILN_RETURN_IF_ERROR(device->load(artifact, target));
  *out = std::move(device);
  return nullptr;
}

} // namespace kiln::rt
