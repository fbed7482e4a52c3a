// Chat templates: the Jinja subset that models' chat templates are written
// in, rendered the way transformers' apply_chat_template renders them
// (trim_blocks, lstrip_blocks, loop controls, its tojson, raise_exception
// and strftime_now, an immutable sandbox). Internal to the runtime; the C
// API is kiln_chat_render in kiln.h.
#ifndef KILN_RUNTIME_CHAT_TEMPLATE_H
#define KILN_RUNTIME_CHAT_TEMPLATE_H

#include <string>
#include <vector>

namespace kiln::rt::chat {

/// Renders template `source` with the variables of `contextJson`, a JSON
/// object. `bos` / `eos` become bos_token / eos_token unless the object
/// sets them (null: left undefined). False with `error` naming the
/// problem (and its template line) for a malformed template, a construct
/// this renderer does not have, an error the template raises, bad JSON or
/// a template that exceeds the renderer's limits.
bool render(const std::string &source, const std::string &contextJson,
            const char *bos, const char *eos, std::string &out,
            std::string &error);

/// `s` as a JSON string literal (quotes included).
std::string jsonQuote(const std::string &s);

/// A tool call: the function's name and its arguments as compact JSON
/// (Python's json.dumps form, an object).
struct ToolCall {
  std::string name, arguments;
};

/// Reads the JSON value at text[pos] (after whitespace): one tool call
/// object {"name": ..., "arguments" or "parameters": ...} or an array of
/// them (arguments given as a JSON string are parsed). Appends them to
/// `calls` and sets `end` past the value; false with `error` naming the
/// problem and its byte for bad JSON or a call without a string name.
bool readToolCalls(const std::string &text, size_t pos, size_t &end,
                   std::vector<ToolCall> &calls, std::string &error);

/// Reads any JSON value at text[pos] into its compact form (`end` past it).
bool readJsonValue(const std::string &text, size_t pos, size_t &end,
                   std::string &compact, std::string &error);

} // namespace kiln::rt::chat

#endif
