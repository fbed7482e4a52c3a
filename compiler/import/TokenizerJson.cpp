//===- TokenizerJson.cpp - Hugging Face tokenizer.json to TokenizerSpec ---===//
//
// Reads the byte-level BPE tokenizers of the `tokenizers` library: model
// BPE with a ByteLevel pre-tokenizer using the GPT-2 regex (GPT-2, SmolLM2),
// or a Split by Llama 3's or Qwen2's regex before a ByteLevel without its
// own regex (Llama 3, Qwen2).
// Added tokens become control tokens (special) or user-defined ones; bos,
// eos and the chat template come from tokenizer_config.json beside it.
// Anything else is reported, never approximated.
//
//===----------------------------------------------------------------------===//
#include "compiler/import/TokenizerJson.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>

using namespace mlir;

namespace kiln {
namespace {

FailureOr<llvm::json::Value> parseFile(StringRef path, Location loc) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf)
    return emitError(loc) << "cannot read '" << path
                          << "': " << buf.getError().message();
  auto v = llvm::json::parse((*buf)->getBuffer());
  if (!v)
    return emitError(loc) << "'" << path << "' is not valid JSON: "
                          << llvm::toString(v.takeError());
  return std::move(*v);
}

/// A token given as a string or as {"content": string}.
std::optional<std::string> tokenText(const llvm::json::Value *v) {
  if (!v)
    return std::nullopt;
  if (auto s = v->getAsString())
    return s->str();
  if (auto *o = v->getAsObject())
    if (auto s = o->getString("content"))
      return s->str();
  return std::nullopt;
}

/// The regexes of the Split pre-tokenizers Kiln implements, by the name
/// the artifact gives them.
constexpr const char *kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char *kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// The artifact's name for pre-tokenizer `pre`, or "" when Kiln does not
/// implement it: "gpt2" for ByteLevel with its GPT-2 regex, "llama3" /
/// "qwen2" for Sequence[Split(regex, Isolated), ByteLevel without regex].
std::string preTokenizerName(const llvm::json::Object *pre) {
  if (!pre)
    return "";
  auto byteLevel = [](const llvm::json::Object *o, bool regex) {
    return o && o->getString("type") == "ByteLevel" &&
           o->getBoolean("use_regex").value_or(true) == regex &&
           !o->getBoolean("add_prefix_space").value_or(false);
  };
  if (byteLevel(pre, true))
    return "gpt2";
  const llvm::json::Array *seq = pre->getArray("pretokenizers");
  if (pre->getString("type") != "Sequence" || !seq || seq->size() != 2 ||
      !byteLevel((*seq)[1].getAsObject(), false))
    return "";
  const llvm::json::Object *split = (*seq)[0].getAsObject();
  const llvm::json::Object *pattern =
      split ? split->getObject("pattern") : nullptr;
  auto regex = pattern ? pattern->getString("Regex") : std::nullopt;
  if (!split || split->getString("type") != "Split" || !regex ||
      split->getString("behavior") != "Isolated" ||
      split->getBoolean("invert").value_or(false))
    return "";
  if (*regex == kLlama3Regex)
    return "llama3";
  if (*regex == kQwen2Regex)
    return "qwen2";
  return "";
}

} // namespace

FailureOr<TokenizerSpec> readTokenizerJson(StringRef path, Location loc) {
  auto root = parseFile(path, loc);
  if (failed(root))
    return failure();
  auto fail = [&](const Twine &msg) -> InFlightDiagnostic {
    return emitError(loc) << "tokenizer '" << path << "': " << msg;
  };
  const llvm::json::Object *top = root->getAsObject();
  const llvm::json::Object *model = top ? top->getObject("model") : nullptr;
  if (!model || model->getString("type") != "BPE")
    return fail("only BPE models are supported");
  std::string pre = preTokenizerName(top->getObject("pre_tokenizer"));
  if (pre.empty())
    return fail("only the ByteLevel pre-tokenizer with the GPT-2 regex and "
                "no prefix space, or a Split by Llama 3's or Qwen2's regex "
                "before a ByteLevel without one, is supported");
  std::string normalizer;
  if (const llvm::json::Value *norm = top->get("normalizer");
      norm && norm->kind() != llvm::json::Value::Null) {
    const llvm::json::Object *o = norm->getAsObject();
    if (!o || o->getString("type") != "NFC")
      return fail("normalizer '")
             << (o && o->getString("type") ? o->getString("type")->str() : "?")
             << "' is not supported (supported: NFC)";
    normalizer = "nfc";
  }

  TokenizerSpec t;
  t.model = "gpt2";
  t.pre = pre;
  t.normalizer = normalizer;
  t.ignoreMerges = model->getBoolean("ignore_merges").value_or(false);
  if (model->getBoolean("byte_fallback").value_or(false))
    return fail("BPE byte_fallback is not supported");
  for (StringRef key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (auto v = model->getString(key); v && !v->empty())
      return fail("BPE ") << key << " is not supported";
  if (auto dropout = model->getNumber("dropout"); dropout && *dropout > 0)
    return fail("BPE dropout is not supported");
  const llvm::json::Object *vocab = model->getObject("vocab");
  if (!vocab)
    return fail("model.vocab is missing");
  auto place = [&](StringRef text, int64_t id) -> LogicalResult {
    if (id < 0 || id > (1 << 24))
      return fail("token id ") << id << " is out of range";
    if (static_cast<size_t>(id) >= t.tokens.size()) {
      t.tokens.resize(id + 1);
      t.types.resize(id + 1, 0);
    }
    t.tokens[id] = text.str();
    if (!t.types[id])
      t.types[id] = 1;
    return success();
  };
  for (const auto &[text, idv] : *vocab) {
    auto id = idv.getAsInteger();
    if (!id || failed(place(text, *id)))
      return fail("bad id for token '") << text.str() << "'";
  }
  if (const llvm::json::Array *added = top->getArray("added_tokens"))
    for (const llvm::json::Value &a : *added) {
      const llvm::json::Object *o = a.getAsObject();
      auto id = o ? o->getInteger("id") : std::nullopt;
      auto content = o ? o->getString("content") : std::nullopt;
      if (!id || !content || failed(place(*content, *id)))
        return fail("malformed added token");
      t.types[*id] = o->getBoolean("special").value_or(false) ? 3 : 4;
    }
  for (size_t i = 0; i < t.types.size(); ++i)
    if (!t.types[i])
      return fail("token id ") << i << " is missing from the vocabulary";
  const llvm::json::Array *merges = model->getArray("merges");
  if (!merges)
    return fail("model.merges is missing");
  for (const llvm::json::Value &m : *merges) {
    if (auto s = m.getAsString()) {
      t.merges.push_back(s->str());
    } else if (const llvm::json::Array *pair = m.getAsArray();
               pair && pair->size() == 2 && (*pair)[0].getAsString() &&
               (*pair)[1].getAsString()) {
      t.merges.push_back((*(*pair)[0].getAsString() + " " +
                          *(*pair)[1].getAsString())
                             .str());
    } else {
      return fail("a merge is neither \"a b\" nor [a, b]");
    }
  }

  // bos / eos / chat template from tokenizer_config.json, when present.
  llvm::SmallString<256> configPath = llvm::sys::path::parent_path(path);
  llvm::sys::path::append(configPath, "tokenizer_config.json");
  if (llvm::sys::fs::exists(configPath)) {
    auto config = parseFile(configPath, loc);
    if (failed(config))
      return failure();
    const llvm::json::Object *c = config->getAsObject();
    auto idOf = [&](StringRef key, int32_t &dst) -> LogicalResult {
      std::optional<std::string> text = tokenText(c ? c->get(key) : nullptr);
      if (!text)
        return success();
      for (size_t i = 0; i < t.tokens.size(); ++i)
        if (t.tokens[i] == *text) {
          dst = static_cast<int32_t>(i);
          return success();
        }
      return fail(key) << " '" << *text << "' is not a token";
    };
    if (failed(idOf("bos_token", t.bos)) || failed(idOf("eos_token", t.eos)))
      return failure();
    if (c) {
      t.addBos = c->getBoolean("add_bos_token").value_or(false);
      if (auto tmpl = c->getString("chat_template"))
        t.chatTemplate = tmpl->str();
    }
  }
  // The post-processor: ByteLevel changes nothing for ids; a template may
  // put one special token (BOS) before the text, and nothing else.
  std::vector<const llvm::json::Object *> posts;
  if (const llvm::json::Object *post = top->getObject("post_processor")) {
    if (const llvm::json::Array *seq = post->getArray("processors")) {
      for (const llvm::json::Value &v : *seq)
        posts.push_back(v.getAsObject());
    } else {
      posts.push_back(post);
    }
  }
  for (const llvm::json::Object *post : posts) {
    auto type = post ? post->getString("type") : std::nullopt;
    if (type == "ByteLevel")
      continue;
    const llvm::json::Array *single =
        post ? post->getArray("single") : nullptr;
    if (type != "TemplateProcessing" || !single)
      return fail("post-processor '")
             << (type ? type->str() : "?")
             << "' is not supported (supported: ByteLevel, and "
                "TemplateProcessing that puts BOS before the text)";
    std::vector<std::string> before;
    bool text = false;
    for (const llvm::json::Value &piece : *single) {
      const llvm::json::Object *o = piece.getAsObject();
      const llvm::json::Object *special =
          o ? o->getObject("SpecialToken") : nullptr;
      if (o && o->getObject("Sequence") && !text) {
        text = true;
      } else if (special && !text && special->getString("id")) {
        before.push_back(special->getString("id")->str());
      } else {
        return fail("the post-processor's template adds tokens after the "
                    "text; only one BOS before it is supported");
      }
    }
    if (before.size() > 1)
      return fail("the post-processor's template puts ")
             << before.size() << " tokens before the text; only one (BOS) is "
                                 "supported";
    if (before.size() == 1) {
      auto it = std::find(t.tokens.begin(), t.tokens.end(), before[0]);
      if (it == t.tokens.end())
        return fail("the post-processor's token '")
               << before[0] << "' is not a token";
      t.bos = static_cast<int32_t>(it - t.tokens.begin());
      t.addBos = true;
    }
  }
  if (t.chatTemplate.empty()) {
    // Newer transformers write the template to its own file.
    llvm::SmallString<256> jinja = llvm::sys::path::parent_path(path);
    llvm::sys::path::append(jinja, "chat_template.jinja");
    if (auto buf = llvm::MemoryBuffer::getFile(jinja))
      t.chatTemplate = (*buf)->getBuffer().str();
  }
  return t;
}

} // namespace kiln
