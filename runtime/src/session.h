// A session: one device, one artifact. Shared by the tensor API
// (session.cc) and the LLM API (llm.cc).
#ifndef KILN_RUNTIME_SESSION_H
#define KILN_RUNTIME_SESSION_H

#include "device.h"

#include <cstdlib>
#include <memory>
#include <vector>

struct kiln_session_s {
  kiln_artifact *artifact;
  const kiln::fb::Target *target;
  std::unique_ptr<kiln::rt::Device> device;
  std::vector<const void *> constants;
  // Temporaries of whichever function runs: a session runs one call at a
  // time, so one buffer of the largest size serves them all.
  std::unique_ptr<void, void (*)(void *)> scratch{nullptr, std::free};
};

namespace kiln::rt {
/// The session target's code for function `function`, or null.
const fb::FunctionImpl *findImpl(const kiln_session *s, int function);
/// Whether the function binds the KV cache (only the LLM API calls it).
bool usesKvCache(const fb::FunctionImpl *impl);
} // namespace kiln::rt

#endif
