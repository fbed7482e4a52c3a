// libFuzzer target for the GGUF reader: any bytes must parse or fail with
// a message, never crash or read out of bounds (built with ASan).
#include "compiler/import/GgufReader.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string error;
  auto file = kiln::gguf::File::parse(
      llvm::StringRef(reinterpret_cast<const char *>(data), size), "<fuzz>",
      error);
  if (file) {
    // Touch every tensor's bytes: they must lie inside the input.
    volatile uint8_t sink = 0;
    for (const auto &t : file->tensors)
      if (t.bytes)
        sink ^= file->data(t)[t.bytes - 1];
    (void)sink;
  }
  return 0;
}
