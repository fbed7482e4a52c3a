// Tool calls in a model's reply (kiln_tool_calls_parse in kiln.h): the
// formats chat templates ask models to write calls in, read into one JSON
// shape, {"content": text, "tool_calls": [{"name", "arguments"}]}.
//
//   hermes   <tool_call>{"name": ..., "arguments": {...}}</tool_call>, any
//            number (Qwen2.5, Qwen3, Hermes, SmolLM3)
//   llama3   a reply that is a call object {"name", "parameters"}, after
//            <|python_tag|> or alone; several separated by ';' (Llama 3.1-3.3)
//   mistral  [TOOL_CALLS] then a JSON array of calls (v3), or
//            name[ARGS]{...} per call (v11 and later)
//   phi4     <|tool_call|>[...]<|/tool_call|> (Phi-4 mini)
//
// "auto" takes the format whose marker the text holds, else a reply that
// is one llama3 call object as a whole, else no calls. Malformed JSON after
// a marker is an error naming the format and byte, never a guess.
#include "chat_template.h"
#include "status.h"

#include <cstring>
#include <string>
#include <vector>

using kiln::rt::makeStatus;
using kiln::rt::chat::ToolCall;

namespace {

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

size_t skipWs(const std::string &s, size_t p) {
  while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\r' || s[p] == '\n'))
    ++p;
  return p;
}

struct Parsed {
  std::string content;
  std::vector<ToolCall> calls;
};

kiln_status bad(const char *format, const std::string &why) {
  return makeStatus(KILN_INVALID_ARGUMENT, "%s tool call: %s", format,
                    why.c_str());
}

/// Calls between `open` and `close` markers (close may be missing at the
/// end of the text, as when generation stopped on it).
kiln_status tagged(const std::string &text, const char *format,
                   const std::string &open, const std::string &close,
                   Parsed &out) {
  size_t p = 0;
  while (true) {
    size_t at = text.find(open, p);
    out.content += text.substr(p, at == std::string::npos ? std::string::npos : at - p);
    if (at == std::string::npos)
      break;
    size_t end;
    std::string error;
    if (!kiln::rt::chat::readToolCalls(text, at + open.size(), end, out.calls, error))
      return bad(format, error);
    end = skipWs(text, end);
    if (!text.compare(end, close.size(), close))
      end += close.size();
    else if (end < text.size())
      return bad(format, "'" + close + "' expected at byte " + std::to_string(end));
    p = end;
  }
  return nullptr;
}

kiln_status mistral(const std::string &text, Parsed &out) {
  const std::string marker = "[TOOL_CALLS]", args = "[ARGS]";
  size_t at = text.find(marker);
  out.content = text.substr(0, at);
  size_t p = at + marker.size();
  while (true) {
    p = skipWs(text, p);
    if (p >= text.size())
      break;
    std::string error;
    size_t end;
    if (text[p] == '[' || text[p] == '{') {
      if (!kiln::rt::chat::readToolCalls(text, p, end, out.calls, error))
        return bad("mistral", error);
    } else {
      // name[ARGS]{...}
      size_t a = text.find(args, p);
      if (a == std::string::npos)
        return bad("mistral", "neither a JSON array nor name[ARGS] at byte " +
                                  std::to_string(p));
      std::string name = trim(text.substr(p, a - p)), json;
      if (name.empty())
        return bad("mistral", "a call without a name at byte " + std::to_string(p));
      if (!kiln::rt::chat::readJsonValue(text, a + args.size(), end, json, error))
        return bad("mistral", error);
      out.calls.push_back({name, json});
    }
    p = skipWs(text, end);
    if (!text.compare(p, marker.size(), marker))
      p += marker.size();
    else if (p < text.size() && text[p] == ',')
      ++p;
  }
  return nullptr;
}

/// Llama 3: the reply (after <|python_tag|>) is call objects separated by
/// ';'. `strict`: malformed JSON is an error (else the text is content).
kiln_status llama3(const std::string &text, bool strict, Parsed &out) {
  const std::string tag = "<|python_tag|>";
  size_t at = text.find(tag);
  size_t p = at == std::string::npos ? 0 : at + tag.size();
  std::string before = at == std::string::npos ? "" : text.substr(0, at);
  p = skipWs(text, p);
  if (p >= text.size() || text[p] != '{') {
    if (at != std::string::npos && strict)
      return bad("llama3", "a call object expected after <|python_tag|>");
    out.content = text;
    return nullptr;
  }
  std::vector<ToolCall> calls;
  while (p < text.size()) {
    size_t end;
    std::string error;
    if (!kiln::rt::chat::readToolCalls(text, p, end, calls, error)) {
      if (!strict) {
        out.content = text;
        return nullptr;
      }
      return bad("llama3", error);
    }
    p = skipWs(text, end);
    if (p < text.size() && text[p] == ';')
      p = skipWs(text, p + 1);
    else if (p < text.size()) {
      if (!strict) {
        out.content = text;
        return nullptr;
      }
      return bad("llama3", "text after the call at byte " + std::to_string(p));
    }
  }
  out.content = before;
  out.calls = std::move(calls);
  return nullptr;
}

} // namespace

extern "C" {

KILN_API kiln_status kiln_tool_calls_parse(const char *text, size_t length,
                                           const char *format, char *json,
                                           size_t capacity, size_t *jsonLength) {
  if ((!text && length) || !jsonLength)
    return makeStatus(KILN_INVALID_ARGUMENT, "kiln_tool_calls_parse: no text or length");
  std::string t(text ? text : "", length), f = format ? format : "auto";
  if (f == "auto") {
    if (t.find("<tool_call>") != std::string::npos)
      f = "hermes";
    else if (t.find("[TOOL_CALLS]") != std::string::npos)
      f = "mistral";
    else if (t.find("<|tool_call|>") != std::string::npos)
      f = "phi4";
    else
      f = "auto-llama3";
  }
  Parsed out;
  kiln_status s = nullptr;
  if (f == "hermes")
    s = tagged(t, "hermes", "<tool_call>", "</tool_call>", out);
  else if (f == "phi4")
    s = tagged(t, "phi4", "<|tool_call|>", "<|/tool_call|>", out);
  else if (f == "mistral")
    s = t.find("[TOOL_CALLS]") == std::string::npos ? (out.content = t, nullptr)
                                                     : mistral(t, out);
  else if (f == "llama3" || f == "auto-llama3")
    s = llama3(t, f == "llama3" || t.find("<|python_tag|>") != std::string::npos, out);
  else
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "tool call format '%s' is not supported (supported: "
                      "auto, hermes, llama3, mistral, phi4)",
                      f.c_str());
  if (s)
    return s;
  std::string r = "{\"content\": " + kiln::rt::chat::jsonQuote(trim(out.content)) +
                  ", \"tool_calls\": [";
  for (size_t i = 0; i < out.calls.size(); ++i)
    r += (i ? ", " : "") + std::string("{\"name\": ") +
         kiln::rt::chat::jsonQuote(out.calls[i].name) +
         ", \"arguments\": " + out.calls[i].arguments + "}";
  r += "]}";
  *jsonLength = r.size();
  if (json)
    std::memcpy(json, r.data(), std::min(capacity, r.size()));
  return nullptr;
}

} // extern "C"
