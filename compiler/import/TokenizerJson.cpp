//===- TokenizerJson.cpp - Hugging Face tokenizer.json to TokenizerSpec ---===//
//
// Reads the byte-level BPE tokenizers of the `tokenizers` library: model
// BPE with a ByteLevel pre-tokenizer using the GPT-2 regex (GPT-2, SmolLM2),
// or a Split by Llama 3's or Qwen2's regex before a ByteLevel without its
// own regex (Llama 3, Qwen2); and the SentencePiece kind (Llama 2,
// Mistral, TinyLlama, Phi-3): BPE with byte_fallback after a Prepend("▁") +
// Replace(" ", "▁") normalizer or a Metaspace pre-tokenizer, which becomes
// the runtime's SentencePiece tokenizer with merge ranks as scores.
// Added tokens become control tokens (special) or user-defined ones; bos,
// eos and the chat template come from tokenizer_config.json beside it.
// Anything else is reported, never approximated.
//
//===----------------------------------------------------------------------===//
#include "compiler/import/TokenizerJson.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <cctype>
#include <limits>

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
  // The SentencePiece kind: byte fallback to <0xXX> tokens, spaces as
  // U+2581 with a space prefix.
  bool spm = model->getBoolean("byte_fallback").value_or(false);
  TokenizerSpec t;
  if (spm) {
    t.model = "llama";
    t.addSpacePrefix = true;
    auto str = [](const llvm::json::Object *o, StringRef k) {
      auto v = o ? o->getString(k) : std::nullopt;
      return v ? v->str() : std::string();
    };
    const llvm::json::Value *norm = top->get("normalizer");
    const llvm::json::Object *normObj = norm ? norm->getAsObject() : nullptr;
    const llvm::json::Object *preObj = top->getObject("pre_tokenizer");
    const llvm::json::Array *normSeq =
        normObj ? normObj->getArray("normalizers") : nullptr;
    auto isLegacy = [&] {
      // Sequence[Prepend("▁"), Replace(" " -> "▁")]: each text between
      // added tokens gets the prefix.
      if (!normSeq || normSeq->size() != 2 || preObj)
        return false;
      const llvm::json::Object *p0 = (*normSeq)[0].getAsObject();
      const llvm::json::Object *p1 = (*normSeq)[1].getAsObject();
      const llvm::json::Object *pat = p1 ? p1->getObject("pattern") : nullptr;
      return str(p0, "type") == "Prepend" && str(p0, "prepend") == "\u2581" &&
             str(p1, "type") == "Replace" && str(pat, "String") == " " &&
             str(p1, "content") == "\u2581";
    };
    if (isLegacy()) {
    } else if ((!norm || norm->kind() == llvm::json::Value::Null) && preObj &&
               str(preObj, "type") == "Metaspace" &&
               str(preObj, "replacement") == "\u2581" &&
               !preObj->getBoolean("split").value_or(true)) {
      // Metaspace prefixes text that does not start with "▁" already:
      // "always" every text between added tokens, "first" the text at
      // offset 0, "never" none (older files: add_prefix_space).
      std::string scheme = str(preObj, "prepend_scheme");
      if (scheme.empty())
        scheme = preObj->getBoolean("add_prefix_space").value_or(true)
                     ? "always"
                     : "never";
      if (scheme != "always" && scheme != "first" && scheme != "never")
        return fail("Metaspace prepend_scheme '") << scheme << "' is not supported";
      t.addSpacePrefix = scheme != "never";
      t.spacePrefixFirstOnly = scheme == "first";
      t.spacePrefixUnlessSpace = true;
    } else {
      return fail("a byte_fallback BPE is supported after a Prepend(\u2581) + "
                  "Replace(' ', \u2581) normalizer or a Metaspace "
                  "pre-tokenizer (split false), the SentencePiece forms");
    }
  }
  std::string pre = spm ? "sentencepiece" : preTokenizerName(top->getObject("pre_tokenizer"));
  if (pre.empty())
    return fail("only the ByteLevel pre-tokenizer with the GPT-2 regex and "
                "no prefix space, or a Split by Llama 3's or Qwen2's regex "
                "before a ByteLevel without one, is supported");
  std::string normalizer;
  if (const llvm::json::Value *norm = top->get("normalizer");
      !spm && norm && norm->kind() != llvm::json::Value::Null) {
    const llvm::json::Object *o = norm->getAsObject();
    if (!o || o->getString("type") != "NFC")
      return fail("normalizer '")
             << (o && o->getString("type") ? o->getString("type")->str() : "?")
             << "' is not supported (supported: NFC)";
    normalizer = "nfc";
  }

  if (!spm) {
    t.model = "gpt2";
    t.pre = pre;
  }
  t.normalizer = normalizer;
  t.ignoreMerges = model->getBoolean("ignore_merges").value_or(false);
  if (spm && t.ignoreMerges)
    return fail("ignore_merges with byte_fallback is not supported");
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
  if (spm) {
    // The runtime merges the adjacent pair whose concatenation scores
    // best: a token's score is minus the rank of the first merge that
    // makes it (the converter orders merges by the piece's score), -inf
    // for one no merge makes. Byte tokens <0xXX> and the unknown token get
    // their GGUF types.
    llvm::StringMap<int32_t> ids;
    for (size_t i = 0; i < t.tokens.size(); ++i)
      ids.try_emplace(t.tokens[i], static_cast<int32_t>(i));
    t.scores.assign(t.tokens.size(), -std::numeric_limits<float>::infinity());
    for (size_t r = 0; r < t.merges.size(); ++r) {
      StringRef m = t.merges[r];
      size_t sp = m.find(' ');
      if (sp == StringRef::npos)
        return fail("merge '") << m << "' has no space";
      auto it = ids.find((m.substr(0, sp) + m.substr(sp + 1)).str());
      if (it == ids.end())
        continue; // a merge into no token: never applies
      float &score = t.scores[it->second];
      score = std::max(score, -static_cast<float>(r));
    }
    t.merges.clear();
    for (size_t i = 0; i < t.tokens.size(); ++i) {
      const std::string &s = t.tokens[i];
      if (t.types[i] == 1 && s.size() == 6 && s.compare(0, 3, "<0x") == 0 &&
          s[5] == '>' && std::isxdigit(s[3]) && std::isxdigit(s[4]))
        t.types[i] = 6;
    }
    if (auto unk = model->getString("unk_token"))
      for (size_t i = 0; i < t.tokens.size(); ++i)
        if (t.tokens[i] == *unk && t.types[i] == 1)
          t.types[i] = 2;
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
