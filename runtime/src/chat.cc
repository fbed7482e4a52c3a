// The chat-template C API (kiln.h): the tokenizer's bos/eos texts and the
// model's template around kiln::rt::chat::render (chat_template.cc).
#include "chat_template.h"
#include "status.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using kiln::rt::makeStatus;

namespace {

/// The text of token `id` with control tokens spelled out, or null.
const char *tokenText(kiln_tokenizer *tok, int32_t id, std::string &buf) {
  if (!tok || id < 0)
    return nullptr;
  const char *data;
  size_t len;
  if (kiln_status s = kiln_tokenizer_piece(tok, id, 1, &data, &len)) {
    kiln_status_free(s);
    return nullptr;
  }
  buf.assign(data, len);
  return buf.c_str();
}

kiln_status copyOut(const std::string &text, char *out, size_t capacity,
                    size_t *length) {
  *length = text.size();
  if (out)
    std::memcpy(out, text.data(), std::min(capacity, text.size()));
  return nullptr;
}

} // namespace

extern "C" {

KILN_API kiln_status kiln_chat_render(kiln_tokenizer *tok,
                                      const char *chatTemplate,
                                      const char *contextJson, char *out,
                                      size_t capacity, size_t *length) {
  if (!length || !contextJson)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "kiln_chat_render: context_json and length are required");
  if (!chatTemplate && !tok)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "kiln_chat_render: no chat template and no tokenizer");
  std::string source = chatTemplate ? chatTemplate : kiln_tokenizer_chat_template(tok);
  if (source.empty())
    return makeStatus(KILN_NOT_FOUND,
                      "the model has no chat template (give one, as "
                      "chat_template or kiln-run's --chat-template=FILE)");
  std::string bosBuf, eosBuf, text, error;
  const char *bos = tok ? tokenText(tok, kiln_tokenizer_bos(tok), bosBuf) : nullptr;
  const char *eos = tok ? tokenText(tok, kiln_tokenizer_eos(tok), eosBuf) : nullptr;
  if (!kiln::rt::chat::render(source, contextJson, bos, eos, text, error))
    return makeStatus(KILN_INVALID_ARGUMENT, "%s", error.c_str());
  return copyOut(text, out, capacity, length);
}

KILN_API kiln_status kiln_chat_render_messages(
    kiln_tokenizer *tok, const char *chatTemplate,
    const kiln_chat_message *messages, size_t count,
    int addGenerationPrompt, char *out, size_t capacity, size_t *length) {
  using kiln::rt::chat::jsonQuote;
  std::string json = "{\"messages\": [";
  for (size_t i = 0; i < count; ++i) {
    if (!messages[i].role || !messages[i].content)
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "kiln_chat_render_messages: message %zu has no role "
                        "or content",
                        i);
    json += (i ? ", " : "") + std::string("{\"role\": ") +
            jsonQuote(messages[i].role) +
            ", \"content\": " + jsonQuote(messages[i].content) + "}";
  }
  json += std::string("], \"add_generation_prompt\": ") +
          (addGenerationPrompt ? "true" : "false") +
          ", \"tools\": null, \"documents\": null}";
  return kiln_chat_render(tok, chatTemplate, json.c_str(), out, capacity,
                          length);
}

KILN_API kiln_status kiln_chat_encode(kiln_tokenizer *tok, const char *text,
                                      size_t length, int32_t *ids,
                                      size_t capacity, size_t *count) {
  if (!tok || !count)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "kiln_chat_encode: tokenizer and count are required");
  // One encoding: a token covers at least one byte, so the text's length
  // (+ BOS) is room enough; the second call is only a safeguard.
  std::vector<int32_t> v(length + 1);
  size_t n = 0;
  KILN_RETURN_IF_ERROR(kiln_tokenizer_encode(tok, text, length, 1, v.data(), v.size(), &n));
  if (n > v.size()) {
    v.resize(n);
    KILN_RETURN_IF_ERROR(kiln_tokenizer_encode(tok, text, length, 1, v.data(), n, &n));
  }
  v.resize(n);
  int32_t bos = kiln_tokenizer_bos(tok);
  if (bos >= 0 && v.size() >= 2 && v[0] == bos && v[1] == bos) {
    // The tokenizer added BOS and the template wrote it: keep one, unless
    // the template itself wrote two.
    size_t bosOnly = 0;
    KILN_RETURN_IF_ERROR(kiln_tokenizer_encode(tok, "", 0, 1, nullptr, 0, &bosOnly));
    if (bosOnly == 1)
      v.erase(v.begin());
  }
  *count = v.size();
  if (ids)
    std::memcpy(ids, v.data(), std::min(capacity, v.size()) * sizeof(int32_t));
  return nullptr;
}

} // extern "C"
