// Per-dispatch GPU time, summed over calls and printed (largest first) when
// a GPU driver closes: KILN_VULKAN_PROFILE=1 / KILN_CUDA_PROFILE=1.
#ifndef KILN_RUNTIME_DRIVERS_GPU_PROFILE_H
#define KILN_RUNTIME_DRIVERS_GPU_PROFILE_H

#include "artifact.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace kiln::rt {

class DispatchProfile {
public:
  /// Notes dispatch `index` of `impl` (kernel, grid and workgroup size).
  void describe(const kiln_artifact *artifact,
                const kiln::fb::FunctionImpl *impl, uint32_t index,
                const kiln::fb::Dispatch *d) {
    Entry &e = entries[{impl, index}];
    e.function =
        artifact->model->functions()->Get(impl->function())->name()->str();
    e.index = index;
    e.kernel = d->executable();
    for (int i = 0; i < 3; ++i)
      e.workgroups[i] = d->workgroups()->Get(i);
    e.size = d->workgroup_size() && d->workgroup_size()->size() == 3
                 ? d->workgroup_size()->Get(0)
                 : 0;
  }

  /// Adds one call's time of dispatch `index` of `impl`.
  void add(const kiln::fb::FunctionImpl *impl, uint32_t index, double ms) {
    Entry &e = entries[{impl, index}];
    e.calls++;
    e.ms += ms;
  }

  void print(const char *driver, const std::string &deviceName) const {
    if (entries.empty())
      return;
    // Per function: its total, then its largest dispatches.
    std::map<std::string, std::vector<const Entry *>> byFunction;
    for (auto &[key, e] : entries)
      byFunction[e.function].push_back(&e);
    fprintf(stderr,
            "kiln %s profile on '%s' (GPU time per dispatch, summed over "
            "calls):\n",
            driver, deviceName.c_str());
    for (auto &[name, list] : byFunction) {
      double total = 0;
      uint64_t calls = 0;
      for (const Entry *e : list) {
        total += e->ms;
        calls = std::max(calls, e->calls);
      }
      std::sort(list.begin(), list.end(),
                [](const Entry *a, const Entry *b) { return a->ms > b->ms; });
      fprintf(stderr, "  %s: %.3f ms in %llu calls of %zu dispatches\n",
              name.c_str(), total, (unsigned long long)calls, list.size());
      fprintf(stderr, "  %10s %6s  %s\n", "ms", "%",
              "#dispatch (kernel, workgroups x size)");
      for (size_t i = 0; i < list.size() && i < 12; ++i) {
        const Entry &e = *list[i];
        fprintf(stderr, "  %10.3f %6.2f  #%u (kernel %u, %ux%ux%u x %u)\n",
                e.ms, total > 0 ? 100.0 * e.ms / total : 0.0, e.index,
                e.kernel, e.workgroups[0], e.workgroups[1], e.workgroups[2],
                e.size);
      }
    }
  }

private:
  struct Entry {
    std::string function;
    uint32_t index = 0, kernel = 0, workgroups[3] = {}, size = 0;
    uint64_t calls = 0;
    double ms = 0;
  };
  std::map<std::pair<const kiln::fb::FunctionImpl *, uint32_t>, Entry> entries;
};

} // namespace kiln::rt

#endif
