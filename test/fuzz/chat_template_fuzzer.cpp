// libFuzzer target for the runtime's chat-template interpreter: a model
// file's template is untrusted, so any bytes must render or fail with a
// message, never crash, hang or exhaust memory (built with ASan + UBSan).
// Input: TEMPLATE, or TEMPLATE NUL CONTEXT-JSON.
#include "runtime/src/chat_template.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = reinterpret_cast<const char *>(data);
  const void *nul = std::memchr(p, 0, size);
  size_t split = nul ? static_cast<const char *>(nul) - p : size;
  std::string source(p, split);
  std::string context =
      nul ? std::string(p + split + 1, size - split - 1)
          : R"({"messages": [{"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a", "tool_calls":
                 [{"function": {"name": "f", "arguments": {"x": 1}}}]},
                {"role": "user", "content": [{"type": "text", "text": "t"}]}],
               "tools": [{"type": "function", "function": {"name": "f"}}],
               "add_generation_prompt": true})";
  std::string out, error;
  kiln::rt::chat::render(source, context, "<s>", "</s>", out, error);
  return 0;
}
