// libFuzzer target for the runtime's chat-template interpreter: a model
// file's template is untrusted, so any bytes must render or fail with a
// message, never crash, hang or exhaust memory (built with ASan + UBSan).
// Input: TEMPLATE, or TEMPLATE NUL CONTEXT-JSON. The same bytes go to the
// tool-call parser as a model's reply, in every format (a reply is
// untrusted too).
#include "runtime/src/chat_template.h"
#include "kiln/kiln.h"

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
  for (const char *format : {"auto", "hermes", "llama3", "mistral", "phi4"}) {
    size_t n = 0;
    kiln_status_free(kiln_tool_calls_parse(p, size, format, nullptr, 0, &n));
  }
  return 0;
}
