// Byte-level BPE (GPT-2 family) from the artifact's Tokenizer table.
//
// Encoding: split out special tokens (control and user-defined token texts,
// longest first), pre-tokenize the rest with the GPT-2 rules (for "smollm",
// every digit is a piece of its own first) or Llama 3's ("llama3", and
// "qwen2" with single digits), map each piece's bytes to
// GPT-2's printable code points, merge adjacent symbols by merge rank, look
// the symbols up. Decoding maps a token's code points back to bytes.
//
// SentencePiece BPE (model "llama", as llama.cpp runs it): no
// pre-tokenizer; a space goes before the text at the start and after each
// special token when the model adds a space prefix, spaces become U+2581,
// the text splits into UTF-8 characters, and the adjacent pair whose
// concatenation is the best-scored token merges first (ties: leftmost),
// until no pair is a token; a character that is no token falls back to its
// <0xXX> byte tokens.
#include "artifact.h"
#include "status.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

namespace {

struct CodepointRange {
  uint32_t first, last;
};
#include "unicode_tables.inc"

bool inRanges(const CodepointRange *r, size_t n, uint32_t cp) {
  const CodepointRange *end = r + n;
  const CodepointRange *it = std::upper_bound(
      r, end, cp, [](uint32_t c, const CodepointRange &x) { return c < x.first; });
  return it != r && cp <= (it - 1)->last;
}
bool isLetter(uint32_t cp) {
  return inRanges(kLetters, sizeof kLetters / sizeof *kLetters, cp);
}
bool isNumber(uint32_t cp) {
  return inRanges(kNumbers, sizeof kNumbers / sizeof *kNumbers, cp);
}
/// Unicode White_Space (what \s matches).
bool isSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 ||
         cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

/// Decodes UTF-8; an invalid byte becomes a code point of its own
/// (0xDC80 + byte, never a letter, number or space) that re-encodes to
/// the same byte, so no input is lost.
struct Cpt {
  uint32_t cp;
  uint32_t begin, end; // byte range in the text
};
std::vector<Cpt> decodeUtf8(const char *s, size_t n) {
  std::vector<Cpt> out;
  const auto *u = reinterpret_cast<const uint8_t *>(s);
  for (size_t i = 0; i < n;) {
    uint8_t c = u[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                          : (c >> 3) == 30 ? 4 : 0;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (u[i + k] & 0xC0) == 0x80;
      cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    if (!ok) {
      out.push_back({0xDC80u + c, uint32_t(i), uint32_t(i + 1)});
      ++i;
      continue;
    }
    out.push_back({cp, uint32_t(i), uint32_t(i + len)});
    i += len;
  }
  return out;
}

void appendUtf8(std::string &s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
}

// --- NFC (Unicode normalization form C, UAX #15) --------------------------

struct CombiningRange {
  uint32_t first, last;
  uint8_t ccc;
};
struct Decomposition {
  uint32_t cp, first, second; // second 0: a singleton
};
struct Composition {
  uint32_t first, second, composite;
};
#include "nfc_tables.inc"

// Hangul syllables decompose and compose by arithmetic.
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7, kLCount = 19, kVCount = 21, kTCount = 28,
                   kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;
/// Bytes of invalid UTF-8 travel through NFC as this flag plus the byte.
constexpr uint32_t kRawByte = 0x80000000u;

uint8_t combiningClass(uint32_t cp) {
  const CombiningRange *end = kCombining + sizeof kCombining / sizeof *kCombining;
  const CombiningRange *it = std::upper_bound(
      kCombining, end, cp,
      [](uint32_t c, const CombiningRange &r) { return c < r.first; });
  return it != kCombining && cp <= (it - 1)->last ? (it - 1)->ccc : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t> &out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount)
      out.push_back(kTBase + s % kTCount);
    return;
  }
  const Decomposition *end =
      kDecompositions + sizeof kDecompositions / sizeof *kDecompositions;
  const Decomposition *it = std::lower_bound(
      kDecompositions, end, cp,
      [](const Decomposition &d, uint32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second)
    decompose(it->second, out);
}

/// The primary composite of a + b, or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 &&
      b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const Composition *end =
      kCompositions + sizeof kCompositions / sizeof *kCompositions;
  const Composition *it = std::lower_bound(
      kCompositions, end, std::make_pair(a, b),
      [](const Composition &c, std::pair<uint32_t, uint32_t> k) {
        return std::make_pair(c.first, c.second) < k;
      });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

/// `s` in NFC: canonical decomposition, canonical order of the combining
/// marks, then canonical composition. Text without a code point at or
/// above U+0300 (no UTF-8 lead byte from 0xCC) is already NFC.
std::string toNfc(const char *s, size_t n) {
  const auto *u = reinterpret_cast<const uint8_t *>(s);
  if (std::none_of(u, u + n, [](uint8_t b) { return b >= 0xCC; }))
    return std::string(s, n);
  std::vector<uint32_t> d;
  for (const Cpt &c : decodeUtf8(s, n)) {
    if (c.end - c.begin == 1 && u[c.begin] >= 0x80)
      d.push_back(kRawByte | u[c.begin]);
    else
      decompose(c.cp, d);
  }
  auto ccc = [](uint32_t cp) {
    return cp & kRawByte ? uint8_t(0) : combiningClass(cp);
  };
  for (size_t i = 0; i < d.size();) {
    size_t j = i;
    while (j < d.size() && ccc(d[j]))
      ++j;
    // Insertion sort: stable, and runs of marks are short.
    for (size_t k = i + 1; k < j; ++k)
      for (size_t m = k; m > i && ccc(d[m - 1]) > ccc(d[m]); --m)
        std::swap(d[m - 1], d[m]);
    i = j + 1;
  }
  std::vector<uint32_t> r;
  size_t starter = SIZE_MAX;
  int lastClass = -1; // of the last mark kept after the starter; -1: none
  for (uint32_t c : d) {
    int cc = ccc(c);
    if (starter != SIZE_MAX && (lastClass == -1 || lastClass < cc) &&
        !(c & kRawByte) && !(r[starter] & kRawByte)) {
      if (uint32_t comp = compose(r[starter], c)) {
        r[starter] = comp;
        continue;
      }
    }
    if (cc == 0) {
      starter = r.size();
      lastClass = -1;
    } else {
      lastClass = cc;
    }
    r.push_back(c);
  }
  std::string out;
  for (uint32_t c : r) {
    if (c & kRawByte)
      out += char(c & 0xFF);
    else
      appendUtf8(out, c);
  }
  return out;
}


/// The pieces (byte ranges) the GPT-2 regex
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// cuts [begin, end) of `c` into.
void splitGpt2(const std::vector<Cpt> &c, size_t begin, size_t end,
               std::vector<std::pair<uint32_t, uint32_t>> &pieces) {
  auto at = [&](size_t i) -> uint32_t { return i < end ? c[i].cp : 0xFFFFFFFF; };
  auto kind = [&](size_t i) {
    uint32_t cp = at(i);
    if (i >= end) return 0;     // none
    if (isLetter(cp)) return 1; // L
    if (isNumber(cp)) return 2; // N
    if (isSpace(cp)) return 3;  // \s
    return 4;                   // other
  };
  size_t i = begin;
  while (i < end) {
    size_t start = i;
    // Contractions.
    if (at(i) == '\'') {
      static const char *suffixes[] = {"s", "t", "re", "ve", "m", "ll", "d"};
      size_t best = 0;
      for (const char *sfx : suffixes) {
        size_t k = 0;
        while (sfx[k] && at(i + 1 + k) == uint32_t(sfx[k]))
          ++k;
        if (!sfx[k])
          best = std::max(best, k);
      }
      // Leftmost alternative wins: 're before 'r... none overlap but 's
      // vs 'se: the regex takes the listed literal, exactly 1-2 chars.
      if (best) {
        i += 1 + best;
        pieces.push_back({c[start].begin, c[i - 1].end});
        continue;
      }
    }
    size_t j = i + (at(i) == ' ' ? 1 : 0);
    int k = kind(j);
    if (k == 1 || k == 2 || k == 4) {
      while (kind(j) == k)
        ++j;
      pieces.push_back({c[start].begin, c[j - 1].end});
      i = j;
      continue;
    }
    // Whitespace: a run not followed by a non-space is taken whole; one
    // followed by a non-space leaves its last char to the next piece
    // (\s+(?!\S)), unless the run is a single char (then \s+ takes it).
    j = i;
    while (kind(j) == 3)
      ++j;
    if (j > i) {
      if (j < end && j - i > 1)
        --j;
      pieces.push_back({c[start].begin, c[j - 1].end});
      i = j;
      continue;
    }
    // Unreachable for valid kinds; keep progress.
    pieces.push_back({c[i].begin, c[i].end});
    ++i;
  }
}

/// The pieces Llama 3's regex
///   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
///   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
/// cuts `c` into; Qwen2's is the same with \p{N} for \p{N}{1,3}
/// (`maxDigits` 1). At each position the first alternative that matches
/// wins, each taking as much as it can.
void splitLlama3(const std::vector<Cpt> &c, size_t maxDigits,
                 std::vector<std::pair<uint32_t, uint32_t>> &pieces) {
  const size_t end = c.size();
  enum Kind { None, Letter, Number, Space, Other };
  auto at = [&](size_t i) -> uint32_t { return i < end ? c[i].cp : 0xFFFFFFFF; };
  auto kind = [&](size_t i) {
    if (i >= end) return None;
    uint32_t cp = c[i].cp;
    if (isLetter(cp)) return Letter;
    if (isNumber(cp)) return Number;
    if (isSpace(cp)) return Space;
    return Other;
  };
  auto newline = [&](size_t i) { return at(i) == '\r' || at(i) == '\n'; };
  auto lower = [](uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; };
  auto emit = [&](size_t from, size_t to) {
    pieces.push_back({c[from].begin, c[to - 1].end});
  };
  size_t i = 0;
  while (i < end) {
    // Contractions, either case.
    if (at(i) == '\'') {
      uint32_t a = lower(at(i + 1)), b = lower(at(i + 2));
      size_t len = (a == 's' || a == 't' || a == 'm' || a == 'd') ? 2
                   : ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
                      (a == 'l' && b == 'l'))
                       ? 3
                       : 0;
      if (len) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    // Letters, after at most one char that is no letter, number or newline.
    size_t j = i;
    Kind k = kind(i);
    if (k != Letter && k != Number && !newline(i) && kind(i + 1) == Letter)
      ++j;
    if (kind(j) == Letter) {
      while (kind(j) == Letter)
        ++j;
      emit(i, j);
      i = j;
      continue;
    }
    if (k == Number) {
      for (j = i; kind(j) == Number && j - i < maxDigits; ++j) {
      }
      emit(i, j);
      i = j;
      continue;
    }
    // Punctuation and symbols after at most one space, then any newlines.
    j = i + (at(i) == ' ' ? 1 : 0);
    if (kind(j) == Other) {
      while (kind(j) == Other)
        ++j;
      while (newline(j))
        ++j;
      emit(i, j);
      i = j;
      continue;
    }
    // Whitespace: through its last newline if it has one; else all of it
    // at the end of the text or before more whitespace, and otherwise all
    // but its last char (which starts the next piece), unless it is one
    // char (\s+ then takes it).
    j = i;
    size_t lastNewline = end;
    while (kind(j) == Space) {
      if (newline(j))
        lastNewline = j;
      ++j;
    }
    if (lastNewline != end)
      j = lastNewline + 1;
    else if (j < end && j - i > 1)
      --j;
    emit(i, j);
    i = j;
  }
}

} // namespace

struct kiln_tokenizer_s {
  const fb::Tokenizer *t;
  bool splitDigits = false;
  /// 0: the GPT-2 regex; else Llama 3's with runs of up to this many digits.
  size_t llama3Digits = 0;
  /// Text between special tokens is put in NFC first.
  bool nfc = false;
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<std::string, int32_t> mergeRank; // "left right"
  std::vector<int32_t> specials; // control / user-defined, longest first
  /// The same by their first byte (Gemma's vocabulary has thousands).
  std::vector<int32_t> specialsByByte[256];
  uint32_t byteToCp[256];
  std::unordered_map<uint32_t, uint8_t> cpToByte;
  std::string piece;
  /// SentencePiece BPE ("llama"): the scores, the <0xXX> token of each
  /// byte (-1: none), and the space prefix.
  bool spm = false, spacePrefix = false, prefixFirstOnly = false,
       prefixUnlessSpace = false;
  const flatbuffers::Vector<float> *scores = nullptr;
  int32_t byteToken[256];

  void bpe(const std::string &text, std::vector<int32_t> &out) const;
  /// `text` already escaped (U+2581 for spaces); fails naming a byte that
  /// has no token.
  kiln_status spmEncode(const std::string &text, std::vector<int32_t> &out) const;
};

kiln_status kiln_tokenizer_s::spmEncode(const std::string &text,
                                        std::vector<int32_t> &out) const {
  struct Sym {
    int prev, next;
    size_t begin, n;
  };
  struct Bigram {
    int left, right;
    float score;
    size_t size;
  };
  // Highest score first, then the leftmost pair.
  auto worse = [](const Bigram &a, const Bigram &b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Sym> sym;
  // Characters by their lead byte's length (as llama.cpp: a stray
  // continuation byte is a character of its own, a truncated one ends at
  // the text's end).
  for (size_t i = 0; i < text.size();) {
    static const uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1,
                                     1, 1, 1, 1, 2, 2, 3, 4};
    size_t n = std::min<size_t>(kLen[uint8_t(text[i]) >> 4], text.size() - i);
    int idx = int(sym.size());
    sym.push_back({idx - 1, i + n < text.size() ? idx + 1 : -1, i, n});
    i += n;
  }
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto tryPair = [&](int left, int right) {
    if (left < 0 || right < 0)
      return;
    auto it = vocab.find(text.substr(sym[left].begin, sym[left].n + sym[right].n));
    if (it == vocab.end())
      return;
    // -inf: a token no merge makes (tokenizer.json's BPE has no merge
    // for it), never formed.
    float score = scores->Get(it->second);
    if (score == -std::numeric_limits<float>::infinity())
      return;
    queue.push({left, right, score, sym[left].n + sym[right].n});
  };
  for (int i = 1; i < int(sym.size()); ++i)
    tryPair(i - 1, i);
  while (!queue.empty()) {
    Bigram bg = queue.top();
    queue.pop();
    Sym &l = sym[bg.left], &r = sym[bg.right];
    // A pair one of whose symbols has merged since is stale.
    if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size)
      continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0)
      sym[r.next].prev = bg.left;
    tryPair(l.prev, bg.left);
    tryPair(bg.left, l.next);
  }
  for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
    auto it = vocab.find(text.substr(sym[i].begin, sym[i].n));
    if (it != vocab.end()) {
      out.push_back(it->second);
      continue;
    }
    for (size_t k = 0; k < sym[i].n; ++k) {
      uint8_t b = uint8_t(text[sym[i].begin + k]);
      int32_t id = byteToken[b];
      if (id < 0) {
        // llama.cpp's fallback: the byte as a token of its own.
        auto single = vocab.find(std::string(1, char(b)));
        if (single == vocab.end())
          return makeStatus(KILN_INVALID_ARGUMENT,
                            "the text has a character the vocabulary lacks, "
                            "and no token for its byte 0x%02X",
                            unsigned(b));
        id = single->second;
      }
      out.push_back(id);
    }
  }
  return nullptr;
}

void kiln_tokenizer_s::bpe(const std::string &bytes,
                           std::vector<int32_t> &out) const {
  std::vector<std::string> sym;
  for (unsigned char b : bytes) {
    std::string s;
    appendUtf8(s, byteToCp[b]);
    sym.push_back(std::move(s));
  }
  if (t->ignore_merges() && sym.size() > 1) {
    std::string whole;
    for (const std::string &s : sym)
      whole += s;
    if (auto it = vocab.find(whole); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  while (sym.size() > 1) {
    int32_t best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); ++i) {
      auto it = mergeRank.find(sym[i] + " " + sym[i + 1]);
      if (it != mergeRank.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == INT32_MAX)
      break;
    sym[at] += sym[at + 1];
    sym.erase(sym.begin() + at + 1);
  }
  for (const std::string &s : sym) {
    auto it = vocab.find(s);
    if (it != vocab.end()) {
      out.push_back(it->second);
      continue;
    }
    // Not in the vocabulary: fall back to its single-byte symbols.
    for (const Cpt &c : decodeUtf8(s.data(), s.size())) {
      auto b = vocab.find(s.substr(c.begin, c.end - c.begin));
      if (b != vocab.end())
        out.push_back(b->second);
    }
  }
}

extern "C" {

KILN_API kiln_status kiln_tokenizer_create(const kiln_artifact *artifact,
                                           kiln_tokenizer **out) {
  *out = nullptr;
  const fb::Tokenizer *t = artifact->model->tokenizer();
  if (!t)
    return makeStatus(KILN_NOT_FOUND, "artifact '%s' has no tokenizer",
                      artifact->path.c_str());
  std::string model = t->model() ? t->model()->str() : "?";
  bool spm = model == "llama";
  if ((model != "gpt2" && !spm) || !t->pre() || !t->tokens() ||
      (!spm && !t->merges()))
    return makeStatus(KILN_UNIMPLEMENTED,
                      "artifact '%s': tokenizer model '%s' is not supported "
                      "(supported: gpt2 byte-level BPE, llama SentencePiece "
                      "BPE)",
                      artifact->path.c_str(), model.c_str());
  std::string pre = t->pre()->str();
  if (!spm && pre != "gpt2" && pre != "smollm" && pre != "llama3" &&
      pre != "qwen2")
    return makeStatus(KILN_UNIMPLEMENTED,
                      "artifact '%s': pre-tokenizer '%s' is not supported",
                      artifact->path.c_str(), pre.c_str());
  size_t n = t->tokens()->size();
  if ((t->token_types() && t->token_types()->size() != n) ||
      t->bos_id() >= int32_t(n) || t->eos_id() >= int32_t(n))
    return makeStatus(KILN_DATA_LOSS,
                      "artifact '%s': the tokenizer's types or bos/eos ids do "
                      "not match its %zu tokens",
                      artifact->path.c_str(), n);
  if (spm && (!t->scores() || t->scores()->size() != n))
    return makeStatus(KILN_DATA_LOSS,
                      "artifact '%s': the SentencePiece tokenizer needs one "
                      "score per token (%zu tokens)",
                      artifact->path.c_str(), n);
  auto tok = std::make_unique<kiln_tokenizer_s>();
  tok->t = t;
  tok->spm = spm;
  tok->spacePrefix = spm && t->add_space_prefix();
  tok->prefixFirstOnly = t->space_prefix_first_only();
  tok->prefixUnlessSpace = t->space_prefix_unless_space();
  tok->scores = t->scores();
  std::fill(std::begin(tok->byteToken), std::end(tok->byteToken), -1);
  tok->splitDigits = pre == "smollm";
  tok->llama3Digits = pre == "llama3" ? 3 : pre == "qwen2" ? 1 : 0;
  std::string normalizer = t->normalizer() ? t->normalizer()->str() : "";
  if (normalizer != "" && normalizer != "nfc")
    return makeStatus(KILN_UNIMPLEMENTED,
                      "artifact '%s': normalizer '%s' is not supported",
                      artifact->path.c_str(), normalizer.c_str());
  tok->nfc = normalizer == "nfc";
  for (size_t i = 0; i < n; ++i) {
    std::string s = t->tokens()->Get(i)->str();
    uint8_t type = t->token_types() ? t->token_types()->Get(i) : 1;
    if ((type == 3 || type == 4) && !s.empty())
      tok->specials.push_back(int32_t(i));
    unsigned byte;
    char tail;
    // The byte tokens by their text, whatever their type (llama.cpp's
    // byte_to_token looks up "<0xXX>").
    if (spm && s.size() == 6 &&
        std::sscanf(s.c_str(), "<0x%2X%c", &byte, &tail) == 2 && tail == '>')
      tok->byteToken[byte] = int32_t(i);
    if (spm) // llama.cpp's map: the last of equal texts wins
      tok->vocab[std::move(s)] = int32_t(i);
    else
      tok->vocab.emplace(std::move(s), int32_t(i));
  }
  std::sort(tok->specials.begin(), tok->specials.end(),
            [&](int32_t a, int32_t b) {
              uint32_t la = t->tokens()->Get(a)->size();
              uint32_t lb = t->tokens()->Get(b)->size();
              return la != lb ? la > lb : a < b;
            });
  for (int32_t id : tok->specials)
    tok->specialsByByte[uint8_t(t->tokens()->Get(id)->c_str()[0])].push_back(id);
  for (size_t i = 0; t->merges() && i < t->merges()->size(); ++i)
    tok->mergeRank.emplace(t->merges()->Get(i)->str(), int32_t(i));
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
  // the others to 256, 257, ... in byte order.
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
                     (b >= 0xAE && b <= 0xFF);
    tok->byteToCp[b] = printable ? b : next++;
    tok->cpToByte[tok->byteToCp[b]] = uint8_t(b);
  }
  *out = tok.release();
  return nullptr;
}

KILN_API void kiln_tokenizer_release(kiln_tokenizer *tok) { delete tok; }

KILN_API kiln_status kiln_tokenizer_encode(kiln_tokenizer *tok,
                                           const char *text, size_t length,
                                           int special, int32_t *ids,
                                           size_t capacity, size_t *count) {
  std::vector<int32_t> out;
  if (tok->t->add_bos() && tok->t->bos_id() >= 0)
    out.push_back(tok->t->bos_id());
  // Special tokens first: the text between them is ordinary text.
  size_t pos = 0;
  kiln_status failed = nullptr;
  bool afterSpecial = true; // the start counts, as llama.cpp's
  auto ordinary = [&](size_t begin, size_t end) {
    if (begin >= end || failed)
      return;
    if (tok->spm) {
      // The prefix: after the start and each special token (llama.cpp,
      // tokenizer.json's Prepend), or at offset 0 only (Metaspace "first");
      // Metaspace skips it on text that already starts with a space.
      bool prefix = tok->spacePrefix && afterSpecial &&
                    (!tok->prefixFirstOnly || begin == 0) &&
                    (!tok->prefixUnlessSpace || text[begin] != ' ');
      std::string escaped = prefix ? "\xE2\x96\x81" : "";
      for (size_t k = begin; k < end; ++k)
        if (text[k] == ' ')
          escaped += "\xE2\x96\x81";
        else
          escaped += text[k];
      afterSpecial = false;
      failed = tok->spmEncode(escaped, out);
      return;
    }
    std::string normalized;
    const char *seg = text + begin;
    size_t segLen = end - begin;
    if (tok->nfc) {
      normalized = toNfc(seg, segLen);
      seg = normalized.data();
      segLen = normalized.size();
    }
    std::vector<Cpt> c = decodeUtf8(seg, segLen);
    std::vector<std::pair<uint32_t, uint32_t>> pieces;
    if (tok->llama3Digits) {
      splitLlama3(c, tok->llama3Digits, pieces);
    } else {
      size_t runStart = 0;
      for (size_t i = 0; i <= c.size(); ++i) {
        bool digit = tok->splitDigits && i < c.size() && isNumber(c[i].cp);
        if (i == c.size() || digit) {
          splitGpt2(c, runStart, i, pieces);
          if (digit)
            pieces.push_back({c[i].begin, c[i].end});
          runStart = i + 1;
        }
      }
    }
    // The pieces are byte ranges of the (normalized) segment.
    for (auto [b, e] : pieces)
      tok->bpe(std::string(seg + b, e - b), out);
  };
  // As llama.cpp: user-defined tokens always match, control tokens only
  // when `special` is set.
  size_t i = 0;
  while (!tok->specials.empty() && i < length) {
    int32_t match = -1;
    for (int32_t id : tok->specialsByByte[uint8_t(text[i])]) {
      if (!special && tok->t->token_types()->Get(id) == 3)
        continue;
      const flatbuffers::String *s = tok->t->tokens()->Get(id);
      if (s->size() <= length - i && !std::memcmp(text + i, s->data(), s->size())) {
        match = id;
        break;
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    ordinary(pos, i);
    out.push_back(match);
    afterSpecial = true;
    i += tok->t->tokens()->Get(match)->size();
    pos = i;
  }
  ordinary(pos, length);
  if (failed)
    return failed;
  *count = out.size();
  if (ids)
    std::memcpy(ids, out.data(), std::min(capacity, out.size()) * sizeof(int32_t));
  return nullptr;
}

KILN_API kiln_status kiln_tokenizer_piece(kiln_tokenizer *tok, int32_t id,
                                          int special, const char **data,
                                          size_t *length) {
  const auto *tokens = tok->t->tokens();
  if (id < 0 || static_cast<size_t>(id) >= tokens->size())
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "token %d is outside the vocabulary [0, %u)", id,
                      tokens->size());
  const flatbuffers::String *s = tokens->Get(id);
  uint8_t type = tok->t->token_types() ? tok->t->token_types()->Get(id) : 1;
  tok->piece.clear();
  if (type == 3 || type == 4) {
    if (type == 4 || special)
      tok->piece.assign(s->data(), s->size());
  } else if (tok->spm) {
    // llama.cpp's: a byte token is its byte, an unknown one U+2585, a
    // normal one its text with U+2581 as a space.
    unsigned byte;
    if (type == 6 && std::sscanf(s->c_str(), "<0x%2X>", &byte) == 1) {
      tok->piece = char(byte);
    } else if (type == 2) {
      tok->piece = "\xE2\x96\x85";
    } else {
      for (size_t k = 0; k < s->size(); ++k) {
        if (k + 2 < s->size() && !std::memcmp(s->data() + k, "\xE2\x96\x81", 3)) {
          tok->piece += ' ';
          k += 2;
        } else {
          tok->piece += s->data()[k];
        }
      }
    }
  } else {
    for (const Cpt &c : decodeUtf8(s->data(), s->size())) {
      auto it = tok->cpToByte.find(c.cp);
      if (it != tok->cpToByte.end())
        tok->piece += char(it->second);
      else
        tok->piece.append(s->data() + c.begin, c.end - c.begin);
    }
  }
  *data = tok->piece.data();
  *length = tok->piece.size();
  return nullptr;
}

KILN_API kiln_status kiln_tokenizer_decode(kiln_tokenizer *tok,
                                           const int32_t *ids, size_t n,
                                           int special, char *text,
                                           size_t capacity, size_t *length) {
  std::string out;
  // The space prefix the encoder put before the text comes off again (as
  // SentencePiece's decoder does): from the first piece after a leading
  // BOS.
  bool strip = tok->spacePrefix;
  for (size_t i = 0; i < n; ++i) {
    const char *data;
    size_t len;
    KILN_RETURN_IF_ERROR(kiln_tokenizer_piece(tok, ids[i], special, &data, &len));
    if (i == 0 && ids[i] == tok->t->bos_id()) {
      out.append(data, len);
      continue;
    }
    if (strip && len > 0 && data[0] == ' ') {
      ++data;
      --len;
    }
    strip = false;
    out.append(data, len);
  }
  *length = out.size();
  if (text)
    std::memcpy(text, out.data(), std::min(capacity, out.size()));
  return nullptr;
}

KILN_API size_t kiln_tokenizer_vocab_size(const kiln_tokenizer *tok) {
  return tok->t->tokens()->size();
}
KILN_API int32_t kiln_tokenizer_bos(const kiln_tokenizer *tok) {
  return tok->t->bos_id();
}
KILN_API int32_t kiln_tokenizer_eos(const kiln_tokenizer *tok) {
  return tok->t->eos_id();
}
KILN_API int kiln_tokenizer_is_eog(const kiln_tokenizer *tok, int32_t id) {
  if (!tok->t->eog_ids())
    return id >= 0 && id == tok->t->eos_id();
  for (int32_t e : *tok->t->eog_ids())
    if (e == id)
      return 1;
  return 0;
}
KILN_API const char *kiln_tokenizer_chat_template(const kiln_tokenizer *tok) {
  return tok->t->chat_template() ? tok->t->chat_template()->c_str() : "";
}

} // extern "C"
