// Chat templates: the Jinja subset that models' chat templates are written
// in, rendered the way transformers' apply_chat_template renders them
// (trim_blocks, lstrip_blocks, loop controls, its tojson, raise_exception
// and strftime_now, an immutable sandbox). Internal to the runtime; the C
// API is kiln_chat_render in kiln.h.
#ifndef KILN_RUNTIME_CHAT_TEMPLATE_H
#define KILN_RUNTIME_CHAT_TEMPLATE_H

#include <string>

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

} // namespace kiln::rt::chat

#endif
