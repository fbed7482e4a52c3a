// A Jinja interpreter for chat templates (see chat_template.h).
//
// It follows jinja2 as transformers configures it (the renderer models'
// templates are written and checked against): trim_blocks, lstrip_blocks,
// no autoescape, the loopcontrols extension, transformers' tojson (no HTML
// escaping, non-ASCII kept) and its raise_exception / strftime_now globals,
// and ImmutableSandboxedEnvironment, which refuses methods that modify a
// list or dict. Values behave as Python's: str() and repr() of None, bools,
// floats, lists and dicts, code-point string lengths and slices, Python's
// truthiness, `and` / `or` returning an operand, floor division and modulo
// with the divisor's sign, jinja2's Undefined (prints as "", iterates as
// empty, fails on attributes and arithmetic).
//
// Errors are C++ exceptions inside this file only: render() catches them
// and returns the message, so none crosses the C API. A model file is
// untrusted input, so output size, steps, nesting and recursion are capped.
#include "chat_template.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

namespace kiln::rt::chat {
namespace {

constexpr size_t kMaxOutput = 16u << 20;   // bytes of rendered text
constexpr uint64_t kMaxSteps = 2'000'000; // nodes, expressions, loop iterations
constexpr int kMaxDepth = 200;             // parser nesting
constexpr int kMaxCallDepth = 64;          // macro recursion
constexpr int64_t kMaxRange = 1'000'000;   // items of one range()

struct Error {
  int line;
  std::string message;
};

[[noreturn]] void fail(int line, std::string message) {
  throw Error{line, std::move(message)};
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

struct Value;
struct Interp;
using List = std::vector<Value>;
struct CallArgs;
using Fn = std::function<Value(Interp &, CallArgs &, int line)>;

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool isNamespace = false;
  Value *find(const std::string &key);
  void set(const std::string &key, Value v);
};

struct Value {
  enum class K { Undefined, None, Bool, Int, Float, Str, List, Dict, Func };
  K k = K::Undefined;
  bool b = false;
  bool tuple = false; // a List that is a Python tuple (prints as (a, b))
  int64_t i = 0;
  double f = 0;
  std::string s; // Str; Func: its name; Undefined: why (for errors)
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;
  std::shared_ptr<Fn> fn;

  static Value undef(std::string why) {
    Value v;
    v.s = std::move(why);
    return v;
  }
  static Value none() { Value v; v.k = K::None; return v; }
  static Value boolean(bool x) { Value v; v.k = K::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.k = K::Int; v.i = x; return v; }
  static Value real(double x) { Value v; v.k = K::Float; v.f = x; return v; }
  static Value str(std::string x) {
    Value v;
    v.k = K::Str;
    v.s = std::move(x);
    return v;
  }
  static Value array(List items = {}) {
    Value v;
    v.k = K::List;
    v.list = std::make_shared<List>(std::move(items));
    return v;
  }
  static Value pair(Value a, Value b) {
    Value v = array({std::move(a), std::move(b)});
    v.tuple = true;
    return v;
  }
  static Value object() {
    Value v;
    v.k = K::Dict;
    v.dict = std::make_shared<Dict>();
    return v;
  }
  static Value func(std::string name, Fn f) {
    Value v;
    v.k = K::Func;
    v.s = std::move(name);
    v.fn = std::make_shared<Fn>(std::move(f));
    return v;
  }
  bool isUndef() const { return k == K::Undefined; }
  bool isNum() const { return k == K::Int || k == K::Float || k == K::Bool; }
  bool isIntLike() const { return k == K::Int || k == K::Bool; }
  int64_t asInt() const { return k == K::Bool ? int64_t(b) : i; }
  double asReal() const { return k == K::Float ? f : double(asInt()); }
};

Value *Dict::find(const std::string &key) {
  for (auto &[k, v] : items)
    if (k == key)
      return &v;
  return nullptr;
}
void Dict::set(const std::string &key, Value v) {
  if (Value *old = find(key))
    *old = std::move(v);
  else
    items.emplace_back(key, std::move(v));
}

const char *typeName(const Value &v) {
  switch (v.k) {
  case Value::K::Undefined: return "undefined";
  case Value::K::None: return "NoneType";
  case Value::K::Bool: return "bool";
  case Value::K::Int: return "int";
  case Value::K::Float: return "float";
  case Value::K::Str: return "str";
  case Value::K::List: return "list";
  case Value::K::Dict: return v.dict->isNamespace ? "Namespace" : "dict";
  case Value::K::Func: return "function";
  }
  return "?";
}

bool truthy(const Value &v) {
  switch (v.k) {
  case Value::K::Undefined:
  case Value::K::None: return false;
  case Value::K::Bool: return v.b;
  case Value::K::Int: return v.i != 0;
  case Value::K::Float: return v.f != 0;
  case Value::K::Str: return !v.s.empty();
  case Value::K::List: return !v.list->empty();
  case Value::K::Dict: return v.dict->isNamespace || !v.dict->items.empty();
  case Value::K::Func: return true;
  }
  return false;
}

//===----------------------------------------------------------------------===//
// UTF-8 code points (invalid bytes kept as themselves, 0x110000 + byte)
//===----------------------------------------------------------------------===//

std::vector<uint32_t> codePoints(const std::string &s) {
  std::vector<uint32_t> out;
  const auto *p = reinterpret_cast<const unsigned char *>(s.data());
  size_t n = s.size();
  for (size_t i = 0; i < n;) {
    unsigned c = p[i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (int j = 1; ok && j < len; ++j) {
      ok = (p[i + j] & 0xc0) == 0x80;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if (ok && len > 1 && (cp < (len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u) || cp > 0x10ffff))
      ok = false;
    if (!ok) {
      out.push_back(0x110000 + c);
      ++i;
    } else {
      out.push_back(cp);
      i += len;
    }
  }
  return out;
}

void appendCp(std::string &out, uint32_t cp) {
  if (cp >= 0x110000) {
    out += char(cp - 0x110000);
  } else if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | cp >> 6);
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | cp >> 12);
    out += char(0x80 | (cp >> 6 & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | cp >> 18);
    out += char(0x80 | (cp >> 12 & 0x3f));
    out += char(0x80 | (cp >> 6 & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

std::string fromCps(const std::vector<uint32_t> &cps, size_t b, size_t e) {
  std::string out;
  for (size_t i = b; i < e; ++i)
    appendCp(out, cps[i]);
  return out;
}

/// Python's str.isspace() for one code point.
bool isPySpace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

/// str.strip / lstrip / rstrip: whitespace, or the code points of `chars`.
std::string pyStrip(const std::string &s, const Value *chars, bool left,
                    bool right) {
  std::vector<uint32_t> cps = codePoints(s);
  std::vector<uint32_t> set;
  bool ws = !chars || chars->k == Value::K::None || chars->isUndef();
  if (!ws)
    set = codePoints(chars->s);
  auto strip = [&](uint32_t c) {
    return ws ? isPySpace(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  while (left && b < e && strip(cps[b]))
    ++b;
  while (right && e > b && strip(cps[e - 1]))
    --e;
  return fromCps(cps, b, e);
}

bool hasNonAscii(const std::string &s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80)
      return true;
  return false;
}

/// upper / lower / title / capitalize: exact for ASCII; other letters are
/// refused rather than left unchanged (Python would map them).
std::string caseMap(const std::string &s, const char *what, int line,
                    int mode /*0 upper 1 lower 2 title 3 capitalize*/) {
  if (hasNonAscii(s))
    fail(line, std::string(what) + " of non-ASCII text is not supported");
  std::string out = s;
  bool prevCased = false;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    bool alpha = std::isalpha(static_cast<unsigned char>(c));
    switch (mode) {
    case 0: out[i] = char(std::toupper(c)); break;
    case 1: out[i] = char(std::tolower(c)); break;
    case 2: out[i] = char(prevCased ? std::tolower(c) : std::toupper(c)); break;
    case 3: out[i] = char(i == 0 ? std::toupper(c) : std::tolower(c)); break;
    }
    prevCased = alpha;
  }
  return out;
}

//===----------------------------------------------------------------------===//
// str(), repr() and JSON, as Python writes them
//===----------------------------------------------------------------------===//

std::string pyFloat(double v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return v < 0 ? "-inf" : "inf";
  char buf[40];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, v);
    if (std::strtod(buf, nullptr) == v)
      break;
  }
  std::string s(buf);
  bool neg = s[0] == '-';
  if (neg)
    s.erase(0, 1);
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i)
    if (s[i] != '.')
      digits += s[i];
  while (digits.size() > 1 && digits.back() == '0')
    digits.pop_back();
  std::string r;
  if (exp >= -4 && exp < 16) {
    if (exp < 0)
      r = "0." + std::string(size_t(-exp - 1), '0') + digits;
    else if (digits.size() <= size_t(exp) + 1)
      r = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    else
      r = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
  } else {
    r = digits.substr(0, 1);
    if (digits.size() > 1)
      r += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    r += eb;
  }
  return neg ? "-" + r : r;
}

std::string pyRepr(const Value &v);

std::string pyStr(const Value &v) {
  switch (v.k) {
  case Value::K::Undefined: return "";
  case Value::K::None: return "None";
  case Value::K::Bool: return v.b ? "True" : "False";
  case Value::K::Int: return std::to_string(v.i);
  case Value::K::Float: return pyFloat(v.f);
  case Value::K::Str: return v.s;
  case Value::K::Func: return "<function " + v.s + ">";
  case Value::K::List: {
    std::string out = v.tuple ? "(" : "[";
    for (size_t i = 0; i < v.list->size(); ++i)
      out += (i ? ", " : "") + pyRepr((*v.list)[i]);
    if (v.tuple)
      return out + (v.list->size() == 1 ? ",)" : ")");
    return out + "]";
  }
  case Value::K::Dict: {
    if (v.dict->isNamespace)
      return "<Namespace>";
    std::string out = "{";
    bool first = true;
    for (auto &[k, x] : v.dict->items) {
      out += (first ? "" : ", ") + pyRepr(Value::str(k)) + ": " + pyRepr(x);
      first = false;
    }
    return out + "}";
  }
  }
  return "";
}

std::string pyRepr(const Value &v) {
  if (v.k != Value::K::Str)
    return pyStr(v);
  bool single = v.s.find('\'') == std::string::npos ||
                v.s.find('"') != std::string::npos;
  char q = single ? '\'' : '"';
  std::string out(1, q);
  for (uint32_t c : codePoints(v.s)) {
    char buf[12];
    if (c == uint32_t(q) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0) || c == 0xad) {
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else if (c >= 0x110000) {
      std::snprintf(buf, sizeof buf, "\\udc%02x", c - 0x110000);
      out += buf;
    } else {
      appendCp(out, c);
    }
  }
  return out + q;
}

} // namespace

std::string jsonQuote(const std::string &s) {
  std::string out = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    default:
      if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += ch;
      }
    }
  }
  return out + "\"";
}

namespace {

/// Python's json.dumps(v, ensure_ascii=False, indent=indent) (transformers'
/// tojson); indent < 0: none.
void toJson(const Value &v, int indent, int level, std::string &out, int line) {
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(size_t(indent) * size_t(lvl), ' ');
  };
  switch (v.k) {
  case Value::K::None: out += "null"; return;
  case Value::K::Bool: out += v.b ? "true" : "false"; return;
  case Value::K::Int: out += std::to_string(v.i); return;
  case Value::K::Float:
    out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f < 0 ? "-Infinity" : "Infinity") : pyFloat(v.f);
    return;
  case Value::K::Str: out += jsonQuote(v.s); return;
  case Value::K::List:
    if (v.list->empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < v.list->size(); ++i) {
      if (i)
        out += indent >= 0 ? "," : ", ";
      if (indent >= 0)
        newline(level + 1);
      toJson((*v.list)[i], indent, level + 1, out, line);
    }
    if (indent >= 0)
      newline(level);
    out += ']';
    return;
  case Value::K::Dict:
    if (!v.dict->isNamespace) {
      if (v.dict->items.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      bool first = true;
      for (auto &[k, x] : v.dict->items) {
        if (!first)
          out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0)
          newline(level + 1);
        out += jsonQuote(k) + ": ";
        toJson(x, indent, level + 1, out, line);
      }
      if (indent >= 0)
        newline(level);
      out += '}';
      return;
    }
    [[fallthrough]];
  default:
    fail(line, std::string("tojson: a ") + typeName(v) + " value is not JSON");
  }
}

//===----------------------------------------------------------------------===//
// JSON input (the render context)
//===----------------------------------------------------------------------===//

struct JsonReader {
  const std::string &s;
  size_t p = 0;
  int depth = 0;

  [[noreturn]] void bad(const char *what) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "context JSON: %s at byte %zu", what, p);
    fail(0, buf);
  }
  void ws() {
    while (p < s.size() && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r'))
      ++p;
  }
  unsigned hex4() {
    if (p + 4 > s.size())
      bad("a truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s[p++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else bad("a bad \\u escape");
    }
    return v;
  }
  std::string string() {
    ++p; // "
    std::string out;
    while (true) {
      if (p >= s.size())
        bad("an unterminated string");
      char c = s[p++];
      if (c == '"')
        return out;
      if (static_cast<unsigned char>(c) < 0x20)
        bad("a control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= s.size())
        bad("an unterminated string");
      char e = s[p++];
      switch (e) {
      case '"': out += '"'; break;
      case '\\': out += '\\'; break;
      case '/': out += '/'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'u': {
        uint32_t cp = hex4();
        if (cp >= 0xd800 && cp < 0xdc00 && p + 1 < s.size() && s[p] == '\\' && s[p + 1] == 'u') {
          size_t save = p;
          p += 2;
          uint32_t lo = hex4();
          if (lo >= 0xdc00 && lo < 0xe000)
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          else
            p = save;
        }
        if (cp >= 0xd800 && cp < 0xe000)
          bad("an unpaired surrogate");
        appendCp(out, cp);
        break;
      }
      default: bad("a bad escape");
      }
    }
  }
  Value value() {
    if (++depth > kMaxDepth)
      bad("nesting too deep");
    ws();
    if (p >= s.size())
      bad("a missing value");
    Value out;
    char c = s[p];
    if (c == '{') {
      out = Value::object();
      ++p;
      ws();
      if (p < s.size() && s[p] == '}') {
        ++p;
      } else {
        while (true) {
          ws();
          if (p >= s.size() || s[p] != '"')
            bad("an object key that is not a string");
          std::string key = string();
          ws();
          if (p >= s.size() || s[p] != ':')
            bad("a missing ':'");
          ++p;
          out.dict->set(key, value());
          ws();
          if (p < s.size() && s[p] == ',') { ++p; continue; }
          if (p < s.size() && s[p] == '}') { ++p; break; }
          bad("a missing ',' or '}'");
        }
      }
    } else if (c == '[') {
      out = Value::array();
      ++p;
      ws();
      if (p < s.size() && s[p] == ']') {
        ++p;
      } else {
        while (true) {
          out.list->push_back(value());
          ws();
          if (p < s.size() && s[p] == ',') { ++p; continue; }
          if (p < s.size() && s[p] == ']') { ++p; break; }
          bad("a missing ',' or ']'");
        }
      }
    } else if (c == '"') {
      out = Value::str(string());
    } else if (!s.compare(p, 4, "true")) {
      p += 4;
      out = Value::boolean(true);
    } else if (!s.compare(p, 5, "false")) {
      p += 5;
      out = Value::boolean(false);
    } else if (!s.compare(p, 4, "null")) {
      p += 4;
      out = Value::none();
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      size_t b = p;
      if (s[p] == '-') ++p;
      bool real = false;
      while (p < s.size() && (std::isdigit(static_cast<unsigned char>(s[p])) || s[p] == '.' || s[p] == 'e' || s[p] == 'E' || ((s[p] == '+' || s[p] == '-') && (s[p - 1] == 'e' || s[p - 1] == 'E')))) {
        real |= !std::isdigit(static_cast<unsigned char>(s[p]));
        ++p;
      }
      std::string num = s.substr(b, p - b);
      char *end = nullptr;
      if (real) {
        out = Value::real(std::strtod(num.c_str(), &end));
      } else {
        errno = 0;
        out = Value::integer(std::strtoll(num.c_str(), &end, 10));
        if (errno)
          bad("an integer out of range");
      }
      if (!end || *end)
        bad("a malformed number");
    } else {
      bad("an unexpected character");
    }
    --depth;
    return out;
  }
};

//===----------------------------------------------------------------------===//
// Lexer
//===----------------------------------------------------------------------===//

struct Tok {
  enum T { Name, Str, Int, Float, Op, End } t;
  std::string s;
  int64_t i = 0;
  double f = 0;
  int line = 0;
};

/// A piece of the template: text, an output `{{ }}` or a statement `{% %}`.
struct Piece {
  enum T { Text, Output, Stmt } t;
  std::string text;
  std::vector<Tok> toks; // ends with an End token
  int line;
};

/// Python's unicode-escape decoding of a string literal's body (as jinja2).
std::string unescape(const std::string &body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out += c;
      continue;
    }
    char e = body[++i];
    auto hex = [&](int n) {
      uint32_t v = 0;
      for (int k = 0; k < n; ++k) {
        if (i + 1 >= body.size())
          fail(line, "a truncated escape in a string literal");
        char h = body[++i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= uint32_t(h - '0');
        else if (h >= 'a' && h <= 'f') v |= uint32_t(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= uint32_t(h - 'A' + 10);
        else fail(line, "a bad escape in a string literal");
      }
      return v;
    };
    switch (e) {
    case '\n': break;
    case '\\': out += '\\'; break;
    case '\'': out += '\''; break;
    case '"': out += '"'; break;
    case 'a': out += '\a'; break;
    case 'b': out += '\b'; break;
    case 'f': out += '\f'; break;
    case 'n': out += '\n'; break;
    case 'r': out += '\r'; break;
    case 't': out += '\t'; break;
    case 'v': out += '\v'; break;
    case 'x': appendCp(out, hex(2)); break;
    case 'u': appendCp(out, hex(4)); break;
    case 'U': {
      uint32_t v = hex(8);
      if (v > 0x10ffff)
        fail(line, "a bad \\U escape in a string literal");
      appendCp(out, v);
      break;
    }
    default:
      if (e >= '0' && e <= '7') {
        uint32_t v = uint32_t(e - '0');
        for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
          v = v * 8 + uint32_t(body[++i] - '0');
        appendCp(out, v);
      } else if (e == 'N') {
        fail(line, "\\N{...} escapes in string literals are not supported");
      } else {
        out += '\\';
        out += e;
      }
    }
  }
  return out;
}

struct Lexer {
  std::string src;
  size_t p = 0;
  int line = 1;

  [[noreturn]] void bad(const std::string &m) { fail(line, m); }

  void advance(size_t n) {
    for (size_t k = 0; k < n && p < src.size(); ++k)
      line += src[p++] == '\n';
  }

  /// The tokens of one tag up to its closing `close` ("}}" or "%}"), with
  /// whether it ended with '-' (strip what follows) or '+'.
  std::vector<Tok> tagTokens(const char *close, char &sign) {
    std::vector<Tok> toks;
    int depth = 0;
    while (true) {
      while (p < src.size() && std::isspace(static_cast<unsigned char>(src[p])))
        advance(1);
      if (p >= src.size())
        bad(std::string("a tag that is never closed with '") + close + "'");
      if (depth == 0) {
        if (!src.compare(p, 2, close)) {
          sign = 0;
          advance(2);
          break;
        }
        if ((src[p] == '-' || src[p] == '+') && !src.compare(p + 1, 2, close)) {
          sign = src[p];
          advance(3);
          break;
        }
      }
      Tok t;
      t.line = line;
      char c = src[p];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = p;
        while (p < src.size() && (std::isalnum(static_cast<unsigned char>(src[p])) || src[p] == '_'))
          ++p;
        t.t = Tok::Name;
        t.s = src.substr(b, p - b);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = p;
        bool real = false;
        while (p < src.size() && (std::isdigit(static_cast<unsigned char>(src[p])) || src[p] == '_'))
          ++p;
        if (p + 1 < src.size() && src[p] == '.' && std::isdigit(static_cast<unsigned char>(src[p + 1]))) {
          real = true;
          ++p;
          while (p < src.size() && (std::isdigit(static_cast<unsigned char>(src[p])) || src[p] == '_'))
            ++p;
        }
        if (p < src.size() && (src[p] == 'e' || src[p] == 'E')) {
          size_t q = p + 1;
          if (q < src.size() && (src[q] == '+' || src[q] == '-'))
            ++q;
          if (q < src.size() && std::isdigit(static_cast<unsigned char>(src[q]))) {
            real = true;
            p = q;
            while (p < src.size() && std::isdigit(static_cast<unsigned char>(src[p])))
              ++p;
          }
        }
        std::string num;
        for (size_t k = b; k < p; ++k)
          if (src[k] != '_')
            num += src[k];
        if (real) {
          t.t = Tok::Float;
          t.f = std::strtod(num.c_str(), nullptr);
        } else {
          t.t = Tok::Int;
          errno = 0;
          t.i = std::strtoll(num.c_str(), nullptr, 10);
          if (errno)
            bad("an integer literal out of range");
        }
      } else if (c == '\'' || c == '"') {
        size_t b = ++p;
        while (p < src.size() && src[p] != c) {
          if (src[p] == '\\')
            ++p;
          ++p;
        }
        if (p >= src.size())
          bad("a string literal that is never closed");
        std::string body = src.substr(b, p - b);
        int startLine = line;
        for (char ch : body)
          line += ch == '\n';
        ++p;
        t.t = Tok::Str;
        t.s = unescape(body, startLine);
      } else {
        static const char *ops[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/",
                                    "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
                                    ",", ".", ":", "|"};
        const char *op = nullptr;
        for (const char *o : ops)
          if (!src.compare(p, std::strlen(o), o)) {
            op = o;
            break;
          }
        if (!op)
          bad(std::string("an unexpected character '") + c + "' in a tag");
        t.t = Tok::Op;
        t.s = op;
        p += std::strlen(op);
        if (t.s == "(" || t.s == "[" || t.s == "{")
          ++depth;
        else if (t.s == ")" || t.s == "]" || t.s == "}") {
          if (--depth < 0)
            bad("an unbalanced '" + t.s + "'");
        }
      }
      toks.push_back(std::move(t));
    }
    Tok end;
    end.t = Tok::End;
    end.line = line;
    toks.push_back(end);
    return toks;
  }

  std::vector<Piece> run() {
    // As jinja2: newlines normalised, one trailing newline dropped.
    std::string norm;
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\r') {
        norm += '\n';
        if (i + 1 < src.size() && src[i + 1] == '\n')
          ++i;
      } else {
        norm += src[i];
      }
    }
    if (!norm.empty() && norm.back() == '\n')
      norm.pop_back();
    src = std::move(norm);

    std::vector<Piece> out;
    bool stripNext = false; // the previous tag ended with '-'
    while (p < src.size()) {
      size_t start = p;
      int textLine = line;
      size_t tag = src.find('{', p);
      while (tag != std::string::npos && tag + 1 < src.size() &&
             src[tag + 1] != '{' && src[tag + 1] != '%' && src[tag + 1] != '#')
        tag = src.find('{', tag + 1);
      if (tag != std::string::npos && tag + 1 >= src.size())
        tag = std::string::npos;
      size_t textEnd = tag == std::string::npos ? src.size() : tag;
      std::string text = src.substr(start, textEnd - start);
      advance(textEnd - start);
      if (stripNext) {
        size_t b = 0;
        while (b < text.size() && std::isspace(static_cast<unsigned char>(text[b])))
          ++b;
        text.erase(0, b);
      }
      stripNext = false;
      if (tag == std::string::npos) {
        if (!text.empty())
          out.push_back({Piece::Text, text, {}, textLine});
        break;
      }
      char kind = src[tag + 1];
      char open = tag + 2 < src.size() ? src[tag + 2] : 0;
      if (open == '-') {
        size_t e = text.size();
        while (e > 0 && std::isspace(static_cast<unsigned char>(text[e - 1])))
          --e;
        text.resize(e);
      } else if (open != '+' && kind != '{') {
        // lstrip_blocks: spaces and tabs from the start of the line.
        size_t nl = text.rfind('\n');
        size_t from = nl == std::string::npos ? 0 : nl + 1;
        bool lineStart = nl != std::string::npos || start == 0 || src[start - 1] == '\n';
        bool blank = true;
        for (size_t k = from; k < text.size(); ++k)
          blank &= text[k] == ' ' || text[k] == '\t' || text[k] == '\f' || text[k] == '\v';
        if (lineStart && blank)
          text.resize(from);
      }
      if (!text.empty())
        out.push_back({Piece::Text, text, {}, textLine});
      int tagLine = line;
      advance(2 + (open == '-' || open == '+'));
      char sign = 0;
      if (kind == '#') {
        size_t e = src.find("#}", p);
        if (e == std::string::npos)
          bad("a comment that is never closed with '#}'");
        sign = e > p && (src[e - 1] == '-' || src[e - 1] == '+') ? src[e - 1] : 0;
        advance(e + 2 - p);
      } else if (kind == '{') {
        Piece piece{Piece::Output, "", tagTokens("}}", sign), tagLine};
        out.push_back(std::move(piece));
        stripNext = sign == '-';
        continue; // trim_blocks does not apply to {{ }}
      } else {
        std::vector<Tok> toks = tagTokens("%}", sign);
        if (toks.size() == 2 && toks[0].t == Tok::Name && toks[0].s == "raw") {
          trimAfter(sign);
          stripNext = rawBlock(out) == '-';
          continue;
        }
        out.push_back({Piece::Stmt, "", std::move(toks), tagLine});
      }
      trimAfter(sign);
      stripNext = sign == '-';
    }
    return out;
  }

  /// trim_blocks: the first newline after a block or comment tag.
  void trimAfter(char sign) {
    if (sign == 0 && p < src.size() && src[p] == '\n')
      advance(1);
  }

  /// `{% raw %}` up to `{% endraw %}`, as text; the closing tag's sign.
  char rawBlock(std::vector<Piece> &out) {
    size_t q = p;
    while (true) {
      size_t b = src.find("{%", q);
      if (b == std::string::npos)
        bad("a {% raw %} block that is never closed with {% endraw %}");
      size_t k = b + 2;
      if (k < src.size() && (src[k] == '-' || src[k] == '+'))
        ++k;
      while (k < src.size() && std::isspace(static_cast<unsigned char>(src[k])))
        ++k;
      if (src.compare(k, 6, "endraw")) {
        q = b + 2;
        continue;
      }
      std::string text = src.substr(p, b - p);
      if (src[b + 2] == '-') {
        size_t e = text.size();
        while (e > 0 && std::isspace(static_cast<unsigned char>(text[e - 1])))
          --e;
        text.resize(e);
      }
      out.push_back({Piece::Text, text, {}, line});
      advance(k + 6 - p);
      char sign = 0;
      if (tagTokens("%}", sign).size() != 1)
        bad("unexpected tokens after endraw");
      trimAfter(sign);
      return sign;
    }
  }
};

//===----------------------------------------------------------------------===//
// Syntax tree
//===----------------------------------------------------------------------===//

struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum K { Lit, Name, Attr, Item, Slice, Call, Filter, Test, Neg, Pos, Not,
           Binary, Compare, And, Or, Cond, ListLit, DictLit } k;
  int line = 0;
  Value lit;
  std::string name;               // Name/Attr/Filter/Test; Binary: op
  std::vector<std::string> ops;   // Compare: one per pair
  std::vector<ExprP> args;        // operands (Dict: key, value, key, ...)
  std::vector<std::pair<std::string, ExprP>> kwargs;
  bool negated = false;           // Test: `is not`
  bool tuple = false;             // ListLit written as a tuple
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;
struct Node {
  enum K { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue,
           Scope /*generation, with*/, FilterBlock } k;
  int line = 0;
  std::string text;                            // Text; Macro: name
  ExprP expr;                                  // Output, Set value, For iterable
  std::vector<std::pair<ExprP, Body>> branches; // If (null condition: else)
  std::vector<std::string> targets;            // For/Set names; Set ns.attr: {ns, attr}
  bool attrTarget = false;
  ExprP cond;                                  // For: `if` filter
  Body body, elseBody;
  std::vector<std::pair<std::string, ExprP>> params; // Macro params, With assignments
  ExprP filter;                                // FilterBlock: Filter with null subject
};

//===----------------------------------------------------------------------===//
// Parser
//===----------------------------------------------------------------------===//

struct ExprParser {
  const std::vector<Tok> &t;
  size_t p = 0;
  int depth = 0;

  const Tok &cur() const { return t[p]; }
  bool isOp(const char *o) const { return t[p].t == Tok::Op && t[p].s == o; }
  bool isName(const char *n) const { return t[p].t == Tok::Name && t[p].s == n; }
  bool atEnd() const { return t[p].t == Tok::End; }
  [[noreturn]] void bad(const std::string &m) const { fail(t[p].line, m); }
  std::string what() const {
    const Tok &k = t[p];
    switch (k.t) {
    case Tok::End: return "the end of the tag";
    case Tok::Str: return "a string";
    case Tok::Int:
    case Tok::Float: return "a number";
    default: return "'" + k.s + "'";
    }
  }
  void expectOp(const char *o) {
    if (!isOp(o))
      bad(std::string("expected '") + o + "', found " + what());
    ++p;
  }
  std::string expectName() {
    if (t[p].t != Tok::Name)
      bad("expected a name, found " + what());
    return t[p++].s;
  }
  ExprP make(Expr::K k) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->line = t[p].line;
    return e;
  }
  struct Guard {
    ExprParser &ps;
    explicit Guard(ExprParser &p) : ps(p) {
      if (++ps.depth > kMaxDepth)
        ps.bad("expression nesting too deep");
    }
    ~Guard() { --ps.depth; }
  };

  /// An expression, or several separated by commas (a tuple).
  ExprP tuple(bool condexpr = true) {
    ExprP first = expression(condexpr);
    if (!isOp(","))
      return first;
    ExprP list = make(Expr::ListLit);
    list->tuple = true;
    list->args.push_back(std::move(first));
    while (isOp(",")) {
      ++p;
      if (atEnd() || isOp(")") || isOp("=") || isName("in") || isName("if"))
        break;
      list->args.push_back(expression(condexpr));
    }
    return list;
  }

  ExprP expression(bool condexpr = true) {
    Guard g(*this);
    ExprP e = orExpr();
    while (condexpr && isName("if")) {
      ExprP c = make(Expr::Cond);
      ++p;
      ExprP test = orExpr();
      ExprP otherwise;
      if (isName("else")) {
        ++p;
        otherwise = expression(true);
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(otherwise));
      e = std::move(c);
    }
    return e;
  }
  /// One left-associative level: operands from `next`, joined by the
  /// operators (keywords or symbols) in `ops`.
  ExprP leftAssoc(std::initializer_list<const char *> ops, ExprP (ExprParser::*next)()) {
    ExprP e = (this->*next)();
    while (true) {
      const char *op = nullptr;
      for (const char *o : ops)
        if (isOp(o) || isName(o))
          op = o;
      if (!op)
        return e;
      ++p;
      ExprP rhs = (this->*next)();
      if (!std::strcmp(op, "or") || !std::strcmp(op, "and")) {
        ExprP n = std::make_unique<Expr>();
        n->k = op[0] == 'o' ? Expr::Or : Expr::And;
        n->line = e->line;
        n->args.push_back(std::move(e));
        n->args.push_back(std::move(rhs));
        e = std::move(n);
      } else {
        e = binary(std::move(e), op, std::move(rhs));
      }
    }
  }
  ExprP orExpr() { return leftAssoc({"or"}, &ExprParser::andExpr); }
  ExprP andExpr() { return leftAssoc({"and"}, &ExprParser::notExpr); }
  ExprP notExpr() {
    Guard g(*this);
    if (isName("not")) {
      ExprP n = make(Expr::Not);
      ++p;
      n->args.push_back(notExpr());
      return n;
    }
    return compare();
  }
  ExprP compare() {
    ExprP first = math1();
    ExprP cmp;
    while (true) {
      std::string op;
      if (t[p].t == Tok::Op && (t[p].s == "==" || t[p].s == "!=" || t[p].s == "<" ||
                                t[p].s == "<=" || t[p].s == ">" || t[p].s == ">=")) {
        op = t[p++].s;
      } else if (isName("in")) {
        ++p;
        op = "in";
      } else if (isName("not") && t[p + 1].t == Tok::Name && t[p + 1].s == "in") {
        p += 2;
        op = "notin";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(Expr::Compare);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprP binary(ExprP lhs, const std::string &op, ExprP rhs) {
    ExprP n = std::make_unique<Expr>();
    n->k = Expr::Binary;
    n->line = lhs->line;
    n->name = op;
    n->args.push_back(std::move(lhs));
    n->args.push_back(std::move(rhs));
    return n;
  }
  ExprP math1() { return leftAssoc({"+", "-"}, &ExprParser::concat); }
  ExprP concat() { return leftAssoc({"~"}, &ExprParser::math2); }
  ExprP math2() { return leftAssoc({"*", "/", "//", "%"}, &ExprParser::power); }
  ExprP power() { return leftAssoc({"**"}, &ExprParser::unaryWithFilters); }
  ExprP unaryWithFilters() { return unary(true); }
  ExprP unary(bool withFilter) {
    Guard g(*this);
    ExprP e;
    if (isOp("-") || isOp("+")) {
      e = make(isOp("-") ? Expr::Neg : Expr::Pos);
      ++p;
      e->args.push_back(unary(false));
    } else {
      e = primary();
    }
    e = postfix(std::move(e));
    if (withFilter)
      e = filters(std::move(e));
    return e;
  }
  ExprP primary() {
    const Tok &k = t[p];
    if (k.t == Tok::Name) {
      ExprP e = make(Expr::Lit);
      ++p;
      if (k.s == "true" || k.s == "True")
        e->lit = Value::boolean(true);
      else if (k.s == "false" || k.s == "False")
        e->lit = Value::boolean(false);
      else if (k.s == "none" || k.s == "None")
        e->lit = Value::none();
      else {
        e->k = Expr::Name;
        e->name = k.s;
      }
      return e;
    }
    if (k.t == Tok::Str) {
      ExprP e = make(Expr::Lit);
      std::string s;
      while (t[p].t == Tok::Str)
        s += t[p++].s;
      e->lit = Value::str(std::move(s));
      return e;
    }
    if (k.t == Tok::Int || k.t == Tok::Float) {
      ExprP e = make(Expr::Lit);
      e->lit = k.t == Tok::Int ? Value::integer(k.i) : Value::real(k.f);
      ++p;
      return e;
    }
    if (isOp("(")) {
      ++p;
      if (isOp(")")) {
        ++p;
        ExprP empty = make(Expr::ListLit);
        empty->tuple = true;
        return empty;
      }
      ExprP e = tuple();
      expectOp(")");
      return e;
    }
    if (isOp("[")) {
      ExprP e = make(Expr::ListLit);
      ++p;
      while (!isOp("]")) {
        e->args.push_back(expression());
        if (!isOp(","))
          break;
        ++p;
      }
      expectOp("]");
      return e;
    }
    if (isOp("{")) {
      ExprP e = make(Expr::DictLit);
      ++p;
      while (!isOp("}")) {
        e->args.push_back(expression());
        expectOp(":");
        e->args.push_back(expression());
        if (!isOp(","))
          break;
        ++p;
      }
      expectOp("}");
      return e;
    }
    bad("expected an expression, found " + what());
  }
  void callArgs(Expr &call) {
    expectOp("(");
    while (!isOp(")")) {
      if (isOp("*") || isOp("**"))
        bad("*args and **kwargs in calls are not supported");
      if (t[p].t == Tok::Name && t[p + 1].t == Tok::Op && t[p + 1].s == "=") {
        std::string key = t[p].s;
        p += 2;
        call.kwargs.emplace_back(key, expression());
      } else {
        if (!call.kwargs.empty())
          bad("a positional argument after a keyword argument");
        call.args.push_back(expression());
      }
      if (!isOp(","))
        break;
      ++p;
    }
    expectOp(")");
  }
  ExprP subscript(ExprP obj) {
    ExprP e = make(Expr::Item);
    ++p; // [
    ExprP parts[3];
    int part = 0;
    bool slice = false;
    while (true) {
      if (isOp(":")) {
        slice = true;
        if (++part > 2)
          bad("a slice with more than two ':'");
        ++p;
        continue;
      }
      if (isOp("]"))
        break;
      if (parts[part])
        bad("expected ']' or ':', found " + what());
      parts[part] = expression();
    }
    expectOp("]");
    e->args.push_back(std::move(obj));
    if (slice) {
      e->k = Expr::Slice;
      for (auto &x : parts)
        e->args.push_back(std::move(x));
    } else {
      if (!parts[0])
        bad("an empty subscript");
      e->args.push_back(std::move(parts[0]));
    }
    return e;
  }
  ExprP postfix(ExprP e) {
    while (true) {
      if (isOp(".")) {
        ExprP a = make(Expr::Attr);
        ++p;
        if (t[p].t == Tok::Int) {
          a->k = Expr::Item;
          ExprP idx = make(Expr::Lit);
          idx->lit = Value::integer(t[p++].i);
          a->args.push_back(std::move(e));
          a->args.push_back(std::move(idx));
        } else {
          a->name = expectName();
          a->args.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (isOp("[")) {
        e = subscript(std::move(e));
      } else if (isOp("(")) {
        ExprP c = make(Expr::Call);
        c->args.push_back(std::move(e));
        callArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  /// One filter, `name` or `name(args)`, applied to `subject` (null in a
  /// {% filter %} block).
  ExprP filter(ExprP subject) {
    ExprP f = make(Expr::Filter);
    f->name = expectName();
    while (isOp(".")) {
      ++p;
      f->name += "." + expectName();
    }
    f->args.push_back(std::move(subject));
    if (isOp("(")) {
      Expr tmp;
      callArgs(tmp);
      for (auto &a : tmp.args)
        f->args.push_back(std::move(a));
      f->kwargs = std::move(tmp.kwargs);
    }
    return f;
  }
  ExprP filters(ExprP e) {
    while (true) {
      if (isOp("|")) {
        ++p;
        e = filter(std::move(e));
      } else if (isName("is")) {
        ExprP test = make(Expr::Test);
        ++p;
        if (isName("not")) {
          test->negated = true;
          ++p;
        }
        test->name = expectName();
        test->args.push_back(std::move(e));
        if (isOp("(")) {
          Expr tmp;
          callArgs(tmp);
          for (auto &a : tmp.args)
            test->args.push_back(std::move(a));
          test->kwargs = std::move(tmp.kwargs);
        } else if ((t[p].t == Tok::Name || t[p].t == Tok::Str || t[p].t == Tok::Int ||
                    t[p].t == Tok::Float || isOp("[") || isOp("{")) &&
                   !isName("else") && !isName("or") && !isName("and") &&
                   !isName("if") && !isName("in") && !isName("is") && !isName("not")) {
          test->args.push_back(postfix(primary()));
        }
        e = std::move(test);
      } else if (isOp("(")) {
        ExprP c = make(Expr::Call);
        c->args.push_back(std::move(e));
        callArgs(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
};

struct Parser {
  std::vector<Piece> pieces;
  size_t p = 0;
  int depth = 0;

  /// Nodes up to a statement whose keyword is in `ends` (returned, its
  /// piece left current); "" at the end of the template (only if allowed).
  std::string body(Body &out, const std::vector<const char *> &ends, const char *opener, int openLine) {
    if (++depth > kMaxDepth)
      fail(openLine, "blocks nested too deep");
    while (p < pieces.size()) {
      Piece &pc = pieces[p];
      if (pc.t == Piece::Text) {
        auto n = std::make_unique<Node>();
        n->k = Node::Text;
        n->line = pc.line;
        n->text = std::move(pc.text);
        out.push_back(std::move(n));
        ++p;
        continue;
      }
      if (pc.t == Piece::Output) {
        ExprParser ep{pc.toks};
        auto n = std::make_unique<Node>();
        n->k = Node::Output;
        n->line = pc.line;
        n->expr = ep.tuple();
        if (!ep.atEnd())
          ep.bad("unexpected " + ep.what() + " in {{ }}");
        out.push_back(std::move(n));
        ++p;
        continue;
      }
      if (pc.toks[0].t != Tok::Name)
        fail(pc.line, "a statement tag must start with a keyword");
      const std::string &kw = pc.toks[0].s;
      for (const char *e : ends)
        if (kw == e) {
          --depth;
          return kw;
        }
      out.push_back(statement());
    }
    if (opener)
      fail(openLine, std::string("{% ") + opener + " %} is never closed");
    --depth;
    return "";
  }

  void expectEnd(ExprParser &ep, const char *tag) {
    if (!ep.atEnd())
      ep.bad(std::string("unexpected ") + ep.what() + " in {% " + tag + " %}");
  }
  /// Consumes the closing statement `kw`, which must have nothing after it.
  void closing(const char *kw) {
    ExprParser ep{pieces[p].toks, 1};
    expectEnd(ep, kw);
    ++p;
  }

  NodeP statement() {
    Piece &pc = pieces[p++];
    ExprParser ep{pc.toks, 1};
    const std::string kw = pc.toks[0].s;
    auto n = std::make_unique<Node>();
    n->line = pc.line;
    if (kw == "if") {
      n->k = Node::If;
      ExprP cond = ep.tuple();
      expectEnd(ep, "if");
      while (true) {
        Body b;
        std::string end = body(b, {"elif", "else", "endif"}, "if", pc.line);
        n->branches.emplace_back(std::move(cond), std::move(b));
        Piece &ec = pieces[p];
        if (end == "endif") {
          closing("endif");
          break;
        }
        ++p;
        ExprParser e2{ec.toks, 1};
        if (end == "elif") {
          cond = e2.tuple();
          expectEnd(e2, "elif");
        } else {
          expectEnd(e2, "else");
          Body eb;
          body(eb, {"endif"}, "if", pc.line);
          closing("endif");
          n->branches.emplace_back(nullptr, std::move(eb));
          break;
        }
      }
      return n;
    }
    if (kw == "for") {
      n->k = Node::For;
      bool paren = ep.isOp("(");
      if (paren)
        ++ep.p;
      n->targets.push_back(ep.expectName());
      while (ep.isOp(",")) {
        ++ep.p;
        n->targets.push_back(ep.expectName());
      }
      if (paren)
        ep.expectOp(")");
      if (!ep.isName("in"))
        ep.bad("expected 'in' in {% for %}, found " + ep.what());
      ++ep.p;
      n->expr = ep.tuple(false);
      if (ep.isName("if")) {
        ++ep.p;
        n->cond = ep.expression(true);
      }
      if (ep.isName("recursive"))
        ep.bad("recursive loops are not supported");
      expectEnd(ep, "for");
      std::string end = body(n->body, {"else", "endfor"}, "for", pc.line);
      if (end == "else") {
        closing("else");
        body(n->elseBody, {"endfor"}, "for", pc.line);
      }
      closing("endfor");
      return n;
    }
    if (kw == "set") {
      n->targets.push_back(ep.expectName());
      if (ep.isOp(".")) {
        ++ep.p;
        n->targets.push_back(ep.expectName());
        n->attrTarget = true;
      } else {
        while (ep.isOp(",")) {
          ++ep.p;
          n->targets.push_back(ep.expectName());
        }
      }
      if (ep.isOp("=")) {
        ++ep.p;
        n->k = Node::Set;
        n->expr = ep.tuple();
        expectEnd(ep, "set");
        return n;
      }
      if (n->attrTarget || n->targets.size() != 1)
        ep.bad("a {% set %} block assigns one name");
      n->k = Node::SetBlock;
      while (ep.isOp("|")) {
        ++ep.p;
        n->filter = ep.filter(std::move(n->filter));
      }
      expectEnd(ep, "set");
      body(n->body, {"endset"}, "set", pc.line);
      closing("endset");
      return n;
    }
    if (kw == "macro") {
      n->k = Node::Macro;
      n->text = ep.expectName();
      ep.expectOp("(");
      while (!ep.isOp(")")) {
        std::string name = ep.expectName();
        ExprP def;
        if (ep.isOp("=")) {
          ++ep.p;
          def = ep.expression();
        }
        n->params.emplace_back(name, std::move(def));
        if (!ep.isOp(","))
          break;
        ++ep.p;
      }
      ep.expectOp(")");
      expectEnd(ep, "macro");
      body(n->body, {"endmacro"}, "macro", pc.line);
      closing("endmacro");
      return n;
    }
    if (kw == "break" || kw == "continue") {
      n->k = kw == "break" ? Node::Break : Node::Continue;
      expectEnd(ep, kw.c_str());
      return n;
    }
    if (kw == "generation") { // transformers' assistant-mask marker
      n->k = Node::Scope;
      expectEnd(ep, "generation");
      body(n->body, {"endgeneration"}, "generation", pc.line);
      closing("endgeneration");
      return n;
    }
    if (kw == "with") {
      n->k = Node::Scope;
      while (!ep.atEnd()) {
        std::string name = ep.expectName();
        ep.expectOp("=");
        n->params.emplace_back(name, ep.expression());
        if (!ep.isOp(","))
          break;
        ++ep.p;
      }
      expectEnd(ep, "with");
      body(n->body, {"endwith"}, "with", pc.line);
      closing("endwith");
      return n;
    }
    if (kw == "filter") {
      n->k = Node::FilterBlock;
      n->filter = ep.filter(nullptr);
      while (ep.isOp("|")) {
        ++ep.p;
        n->filter = ep.filter(std::move(n->filter));
      }
      expectEnd(ep, "filter");
      body(n->body, {"endfilter"}, "filter", pc.line);
      closing("endfilter");
      return n;
    }
    static const char *closers[] = {"endif", "endfor", "endset", "endmacro", "elif",
                                    "else", "endgeneration", "endwith", "endfilter", "endraw"};
    for (const char *c : closers)
      if (kw == c)
        fail(pc.line, "{% " + kw + " %} without its opening tag");
    fail(pc.line, "the {% " + kw + " %} tag is not supported");
  }
};

//===----------------------------------------------------------------------===//
// Interpreter
//===----------------------------------------------------------------------===//

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  const char *fname = "";
  int line = 0;

  /// Argument `i` (or keyword `name`); `def` if neither is given.
  Value get(size_t i, const char *name, Value def = Value::undef("")) {
    for (auto &[k, v] : kw)
      if (k == name)
        return v;
    if (i < pos.size())
      return pos[i];
    return def;
  }
  void atMost(size_t n, std::initializer_list<const char *> names) {
    if (pos.size() > n)
      fail(line, std::string(fname) + ": too many arguments");
    for (auto &[k, v] : kw) {
      bool known = false;
      for (const char *nm : names)
        known |= k == nm;
      if (!known)
        fail(line, std::string(fname) + ": unexpected argument '" + k + "'");
    }
  }
};

using Frame = std::unordered_map<std::string, Value>;

enum class Flow { Normal, Break, Continue };

struct Interp {
  std::vector<Frame *> frames;
  std::string *out = nullptr;
  uint64_t steps = 0;
  int callDepth = 0;
  int loopDepth = 0;

  void step(int line) {
    if (++steps > kMaxSteps)
      fail(line, "the template takes too many steps (a runaway loop?)");
  }
  void emit(const std::string &s, int line) {
    if (out->size() + s.size() > kMaxOutput)
      fail(line, "the rendered text exceeds 16 MiB");
    *out += s;
  }

  Value lookup(const std::string &name) {
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
      auto f = (*it)->find(name);
      if (f != (*it)->end())
        return f->second;
    }
    return Value::undef("'" + name + "' is undefined");
  }
  void assign(const std::string &name, Value v) { (*frames.back())[name] = std::move(v); }

  [[noreturn]] static void undefinedError(const Value &v, int line) {
    fail(line, v.s.empty() ? "an undefined value was used" : v.s);
  }

  //--- attribute and item access ------------------------------------------

  Value method(const Value &self, const std::string &name);

  Value getAttr(const Value &obj, const std::string &name, int line) {
    if (obj.isUndef())
      undefinedError(obj, line);
    if (obj.k == Value::K::Dict) {
      if (!obj.dict->isNamespace) {
        Value m = method(obj, name);
        if (!m.isUndef())
          return m;
      }
      if (Value *v = obj.dict->find(name))
        return *v;
      return Value::undef("'" + std::string(typeName(obj)) + " object' has no attribute '" + name + "'");
    }
    if (obj.k == Value::K::Str || obj.k == Value::K::List) {
      Value m = method(obj, name);
      if (!m.isUndef())
        return m;
    }
    return Value::undef("'" + std::string(typeName(obj)) + " object' has no attribute '" + name + "'");
  }

  Value getItem(const Value &obj, const Value &key, int line) {
    if (obj.isUndef())
      undefinedError(obj, line);
    if (obj.k == Value::K::Dict && key.k == Value::K::Str) {
      if (Value *v = obj.dict->find(key.s))
        return *v;
      return Value::undef("'" + std::string(typeName(obj)) + " object' has no attribute '" + key.s + "'");
    }
    if ((obj.k == Value::K::List || obj.k == Value::K::Str) && key.isIntLike()) {
      int64_t i = key.asInt();
      if (obj.k == Value::K::List) {
        int64_t n = int64_t(obj.list->size());
        if (i < 0)
          i += n;
        if (i >= 0 && i < n)
          return (*obj.list)[size_t(i)];
      } else {
        std::vector<uint32_t> cps = codePoints(obj.s);
        int64_t n = int64_t(cps.size());
        if (i < 0)
          i += n;
        if (i >= 0 && i < n)
          return Value::str(fromCps(cps, size_t(i), size_t(i) + 1));
      }
      return Value::undef(std::string(typeName(obj)) + " index out of range");
    }
    if (key.k == Value::K::Str)
      return getAttr(obj, key.s, line);
    return Value::undef("'" + std::string(typeName(obj)) + " object' has no item " + pyRepr(key));
  }

  /// Python's slice indices for a sequence of `n` items.
  std::vector<size_t> sliceIndices(int64_t n, const Value &b, const Value &e, const Value &s, int line) {
    auto intOr = [&](const Value &v, const char *what) -> std::optional<int64_t> {
      if (v.isUndef() || v.k == Value::K::None)
        return std::nullopt;
      if (!v.isIntLike())
        fail(line, std::string("slice ") + what + " must be an integer");
      return v.asInt();
    };
    int64_t step = intOr(s, "step").value_or(1);
    if (step == 0)
      fail(line, "slice step cannot be zero");
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
      if (!v)
        return def;
      int64_t x = *v;
      if (x < 0)
        x += n;
      if (step > 0)
        return std::clamp<int64_t>(x, 0, n);
      return std::clamp<int64_t>(x, -1, n - 1);
    };
    int64_t start = clamp(intOr(b, "start"), step > 0 ? 0 : n - 1);
    int64_t stop = clamp(intOr(e, "stop"), step > 0 ? n : -1);
    std::vector<size_t> idx;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
      idx.push_back(size_t(i));
    return idx;
  }

  Value slice(const Value &obj, const Value &b, const Value &e, const Value &s, int line) {
    if (obj.isUndef())
      undefinedError(obj, line);
    if (obj.k == Value::K::List) {
      List out;
      for (size_t i : sliceIndices(int64_t(obj.list->size()), b, e, s, line))
        out.push_back((*obj.list)[i]);
      Value v = Value::array(std::move(out));
      v.tuple = obj.tuple;
      return v;
    }
    if (obj.k == Value::K::Str) {
      std::vector<uint32_t> cps = codePoints(obj.s);
      std::string out;
      for (size_t i : sliceIndices(int64_t(cps.size()), b, e, s, line))
        appendCp(out, cps[i]);
      return Value::str(out);
    }
    fail(line, std::string("a ") + typeName(obj) + " cannot be sliced");
  }

  //--- iteration, comparison, arithmetic --------------------------------------

  static List iterate(const Value &v, int line) {
    switch (v.k) {
    case Value::K::Undefined: return {};
    case Value::K::List: return *v.list;
    case Value::K::Dict: {
      if (v.dict->isNamespace)
        break;
      List keys;
      for (auto &kv : v.dict->items)
        keys.push_back(Value::str(kv.first));
      return keys;
    }
    case Value::K::Str: {
      List chars;
      std::vector<uint32_t> cps = codePoints(v.s);
      for (size_t i = 0; i < cps.size(); ++i)
        chars.push_back(Value::str(fromCps(cps, i, i + 1)));
      return chars;
    }
    default: break;
    }
    fail(line, std::string("a ") + typeName(v) + " value is not iterable");
  }

  static bool equal(const Value &a, const Value &b) {
    if (a.isNum() && b.isNum()) {
      if (a.isIntLike() && b.isIntLike())
        return a.asInt() == b.asInt();
      return a.asReal() == b.asReal();
    }
    if (a.k != b.k)
      return false;
    switch (a.k) {
    case Value::K::Undefined:
    case Value::K::None: return true;
    case Value::K::Str: return a.s == b.s;
    case Value::K::List:
      if (a.tuple != b.tuple || a.list->size() != b.list->size())
        return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!equal((*a.list)[i], (*b.list)[i]))
          return false;
      return true;
    case Value::K::Dict:
      if (a.dict == b.dict)
        return true;
      if (a.dict->isNamespace || b.dict->isNamespace || a.dict->items.size() != b.dict->items.size())
        return false;
      for (auto &[k, v] : a.dict->items) {
        Value *o = b.dict->find(k);
        if (!o || !equal(v, *o))
          return false;
      }
      return true;
    case Value::K::Func: return a.fn == b.fn;
    default: return false;
    }
  }

  /// <0, 0, >0 as Python orders numbers, strings and lists; else an error.
  static int order(const Value &a, const Value &b, int line) {
    if (a.isNum() && b.isNum()) {
      if (a.isIntLike() && b.isIntLike())
        return a.asInt() < b.asInt() ? -1 : a.asInt() > b.asInt();
      return a.asReal() < b.asReal() ? -1 : a.asReal() > b.asReal();
    }
    if (a.k == Value::K::Str && b.k == Value::K::Str) {
      std::vector<uint32_t> x = codePoints(a.s), y = codePoints(b.s);
      return x < y ? -1 : x > y;
    }
    if (a.k == Value::K::List && b.k == Value::K::List) {
      size_t n = std::min(a.list->size(), b.list->size());
      for (size_t i = 0; i < n; ++i)
        if (!equal((*a.list)[i], (*b.list)[i]))
          return order((*a.list)[i], (*b.list)[i], line);
      return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size();
    }
    if (a.isUndef())
      undefinedError(a, line);
    if (b.isUndef())
      undefinedError(b, line);
    fail(line, std::string("'<' is not supported between ") + typeName(a) + " and " + typeName(b));
  }

  static bool contains(const Value &container, const Value &item, int line) {
    switch (container.k) {
    case Value::K::Str:
      if (item.k != Value::K::Str)
        fail(line, std::string("'in <string>' requires a string, not ") + typeName(item));
      return container.s.find(item.s) != std::string::npos;
    case Value::K::List:
      for (const Value &v : *container.list)
        if (equal(v, item))
          return true;
      return false;
    case Value::K::Dict:
      return item.k == Value::K::Str && !container.dict->isNamespace && container.dict->find(item.s);
    case Value::K::Undefined: return false;
    default:
      fail(line, std::string("a ") + typeName(container) + " value does not support 'in'");
    }
  }

  Value arith(const std::string &op, const Value &a, const Value &b, int line) {
    if (op == "~")
      return Value::str(pyStr(a) + pyStr(b));
    if (a.isUndef())
      undefinedError(a, line);
    if (b.isUndef())
      undefinedError(b, line);
    if (op == "+") {
      if (a.k == Value::K::Str && b.k == Value::K::Str)
        return Value::str(a.s + b.s);
      if (a.k == Value::K::List && b.k == Value::K::List && a.tuple == b.tuple) {
        List out = *a.list;
        out.insert(out.end(), b.list->begin(), b.list->end());
        Value v = Value::array(std::move(out));
        v.tuple = a.tuple;
        return v;
      }
    }
    if (op == "*" && ((a.k == Value::K::Str || a.k == Value::K::List) && b.isIntLike())) {
      int64_t n = std::max<int64_t>(0, b.asInt());
      if (a.k == Value::K::Str) {
        if (double(a.s.size()) * double(n) > double(kMaxOutput))
          fail(line, "a repeated string exceeds 16 MiB");
        std::string out;
        for (int64_t i = 0; i < n; ++i)
          out += a.s;
        return Value::str(out);
      }
      if (double(a.list->size()) * double(n) > double(kMaxRange))
        fail(line, "a repeated list is too long");
      List out;
      for (int64_t i = 0; i < n; ++i)
        out.insert(out.end(), a.list->begin(), a.list->end());
      return Value::array(std::move(out));
    }
    if (op == "*" && a.isIntLike() && (b.k == Value::K::Str || b.k == Value::K::List))
      return arith(op, b, a, line);
    if (!a.isNum() || !b.isNum()) {
      if (op == "%" && a.k == Value::K::Str)
        fail(line, "'%' string formatting is not supported");
      fail(line, "unsupported operand types for " + op + ": " + typeName(a) + " and " + typeName(b));
    }
    bool ints = a.isIntLike() && b.isIntLike();
    if (op == "/") {
      if (b.asReal() == 0)
        fail(line, "division by zero");
      return Value::real(a.asReal() / b.asReal());
    }
    if (ints) {
      int64_t x = a.asInt(), y = b.asInt();
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if (op == "//" || op == "%") {
        if (y == 0)
          fail(line, "integer division or modulo by zero");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == "//" ? q : r);
      }
      if (op == "**") {
        if (y < 0)
          return Value::real(std::pow(double(x), double(y)));
        int64_t r = 1;
        for (int64_t i = 0; i < y && i < 64; ++i)
          r *= x;
        return Value::integer(r);
      }
    }
    double x = a.asReal(), y = b.asReal();
    if (op == "+") return Value::real(x + y);
    if (op == "-") return Value::real(x - y);
    if (op == "*") return Value::real(x * y);
    if (op == "**") return Value::real(std::pow(x, y));
    if (op == "//" || op == "%") {
      if (y == 0)
        fail(line, "float division or modulo by zero");
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0)))
        m += y;
      return Value::real(op == "%" ? m : std::floor((x - m) / y + 0.5));
    }
    fail(line, "unsupported operator " + op);
  }

  //--- tests and filters ------------------------------------------------------

  bool test(const std::string &name, const Value &v, CallArgs &a, int line) {
    a.fname = name.c_str();
    a.line = line;
    auto arg = [&]() {
      if (a.pos.empty())
        fail(line, "test '" + name + "' needs an argument");
      return a.pos[0];
    };
    if (name == "defined") return !v.isUndef();
    if (name == "undefined") return v.isUndef();
    if (name == "none") return v.k == Value::K::None;
    if (name == "boolean") return v.k == Value::K::Bool;
    if (name == "true") return v.k == Value::K::Bool && v.b;
    if (name == "false") return v.k == Value::K::Bool && !v.b;
    if (name == "integer") return v.k == Value::K::Int;
    if (name == "float") return v.k == Value::K::Float;
    if (name == "number") return v.isNum();
    if (name == "string") return v.k == Value::K::Str;
    if (name == "mapping") return v.k == Value::K::Dict && !v.dict->isNamespace;
    if (name == "iterable") return v.k == Value::K::Str || v.k == Value::K::List || (v.k == Value::K::Dict && !v.dict->isNamespace) || v.isUndef();
    if (name == "sequence") return v.k == Value::K::Str || v.k == Value::K::List || (v.k == Value::K::Dict && !v.dict->isNamespace);
    if (name == "callable") return v.k == Value::K::Func;
    if (name == "lower" || name == "upper") {
      if (v.k != Value::K::Str)
        return false;
      return caseMap(v.s, name.c_str(), line, name == "lower" ? 1 : 0) == v.s;
    }
    if (name == "even" || name == "odd") {
      if (!v.isIntLike())
        fail(line, "test '" + name + "' needs an integer");
      return (v.asInt() % 2 == 0) == (name == "even");
    }
    if (name == "divisibleby") {
      Value d = arg();
      if (!v.isIntLike() || !d.isIntLike() || d.asInt() == 0)
        fail(line, "test 'divisibleby' needs integers");
      return v.asInt() % d.asInt() == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, arg());
    if (name == "ne" || name == "!=") return !equal(v, arg());
    if (name == "lt" || name == "lessthan" || name == "<") return order(v, arg(), line) < 0;
    if (name == "le" || name == "<=") return order(v, arg(), line) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return order(v, arg(), line) > 0;
    if (name == "ge" || name == ">=") return order(v, arg(), line) >= 0;
    if (name == "in") return contains(arg(), v, line);
    if (name == "sameas") {
      Value o = arg();
      if (v.k != o.k)
        return false;
      if (v.k == Value::K::List) return v.list == o.list;
      if (v.k == Value::K::Dict) return v.dict == o.dict;
      return equal(v, o);
    }
    fail(line, "the test '" + name + "' is not supported");
  }

  Value call(const Value &f, CallArgs &a, int line) {
    if (f.isUndef())
      undefinedError(f, line);
    if (f.k != Value::K::Func)
      fail(line, std::string("a ") + typeName(f) + " value is not callable");
    a.fname = f.s.c_str();
    a.line = line;
    return (*f.fn)(*this, a, line);
  }

  Value applyFilter(const std::string &name, const Value &v, CallArgs &a, int line);
  std::vector<Value> selectOrReject(const std::string &name, const Value &v, CallArgs &a, int line);

  //--- evaluation -------------------------------------------------------------

  Value eval(const Expr &e) {
    step(e.line);
    switch (e.k) {
    case Expr::Lit: return e.lit;
    case Expr::Name: return lookup(e.name);
    case Expr::Attr: return getAttr(eval(*e.args[0]), e.name, e.line);
    case Expr::Item: return getItem(eval(*e.args[0]), eval(*e.args[1]), e.line);
    case Expr::Slice: {
      Value obj = eval(*e.args[0]);
      Value part[3];
      for (int i = 0; i < 3; ++i)
        if (e.args[1 + i])
          part[i] = eval(*e.args[1 + i]);
      return slice(obj, part[0], part[1], part[2], e.line);
    }
    case Expr::Call: {
      Value f = eval(*e.args[0]);
      CallArgs a = evalArgs(e, 1);
      return call(f, a, e.line);
    }
    case Expr::Filter: {
      Value v = eval(*e.args[0]);
      CallArgs a = evalArgs(e, 1);
      return applyFilter(e.name, v, a, e.line);
    }
    case Expr::Test: {
      Value v = eval(*e.args[0]);
      CallArgs a = evalArgs(e, 1);
      return Value::boolean(test(e.name, v, a, e.line) != e.negated);
    }
    case Expr::Neg:
    case Expr::Pos: {
      Value v = eval(*e.args[0]);
      if (v.isUndef())
        undefinedError(v, e.line);
      if (!v.isNum())
        fail(e.line, std::string("bad operand type for unary ") + (e.k == Expr::Neg ? "-" : "+") + ": " + typeName(v));
      if (e.k == Expr::Pos)
        return v.isIntLike() ? Value::integer(v.asInt()) : v;
      return v.isIntLike() ? Value::integer(-v.asInt()) : Value::real(-v.f);
    }
    case Expr::Not: return Value::boolean(!truthy(eval(*e.args[0])));
    case Expr::Binary: {
      Value a = eval(*e.args[0]);
      Value b = eval(*e.args[1]);
      return arith(e.name, a, b, e.line);
    }
    case Expr::Compare: {
      Value lhs = eval(*e.args[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value rhs = eval(*e.args[i + 1]);
        const std::string &op = e.ops[i];
        bool r;
        if (op == "==") r = equal(lhs, rhs);
        else if (op == "!=") r = !equal(lhs, rhs);
        else if (op == "in") r = contains(rhs, lhs, e.line);
        else if (op == "notin") r = !contains(rhs, lhs, e.line);
        else {
          int c = order(lhs, rhs, e.line);
          r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
        }
        if (!r)
          return Value::boolean(false);
        lhs = std::move(rhs);
      }
      return Value::boolean(true);
    }
    case Expr::And: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? eval(*e.args[1]) : a;
    }
    case Expr::Or: {
      Value a = eval(*e.args[0]);
      return truthy(a) ? a : eval(*e.args[1]);
    }
    case Expr::Cond:
      if (truthy(eval(*e.args[1])))
        return eval(*e.args[0]);
      return e.args[2] ? eval(*e.args[2]) : Value::undef("the 'else' of an inline if was used");
    case Expr::ListLit: {
      List items;
      for (auto &x : e.args)
        items.push_back(eval(*x));
      Value v = Value::array(std::move(items));
      v.tuple = e.tuple;
      return v;
    }
    case Expr::DictLit: {
      Value d = Value::object();
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        if (k.k != Value::K::Str)
          fail(e.line, "dict keys must be strings");
        d.dict->set(k.s, eval(*e.args[i + 1]));
      }
      return d;
    }
    }
    fail(e.line, "unknown expression");
  }

  CallArgs evalArgs(const Expr &e, size_t from) {
    CallArgs a;
    for (size_t i = from; i < e.args.size(); ++i)
      a.pos.push_back(eval(*e.args[i]));
    for (auto &[k, x] : e.kwargs)
      a.kw.emplace_back(k, eval(*x));
    a.line = e.line;
    return a;
  }

  void assignTargets(const std::vector<std::string> &targets, const Value &v, int line) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return;
    }
    List items = iterate(v, line);
    if (items.size() != targets.size())
      fail(line, "cannot unpack " + std::to_string(items.size()) + " values into " +
                     std::to_string(targets.size()) + " names");
    for (size_t i = 0; i < targets.size(); ++i)
      assign(targets[i], items[i]);
  }

  /// Renders `body` into a string of its own.
  std::string capture(const Body &body) {
    std::string buf;
    std::string *saved = out;
    out = &buf;
    Flow f = exec(body);
    out = saved;
    if (f != Flow::Normal)
      fail(body.empty() ? 0 : body.front()->line, "break or continue outside a loop");
    return buf;
  }

  Value applyFilterChain(const Expr &f, Value subject) {
    // A filter chain of a {% filter %} / {% set | f %} block: the innermost
    // Filter has a null subject, which stands for the block's text.
    if (!f.args[0])
      return applyFilterArgs(f, std::move(subject));
    Value inner = applyFilterChain(*f.args[0], std::move(subject));
    return applyFilterArgs(f, std::move(inner));
  }
  Value applyFilterArgs(const Expr &f, Value v) {
    CallArgs a = evalArgs(f, 1);
    return applyFilter(f.name, v, a, f.line);
  }

  Value makeMacro(const Node &n) {
    const Node *node = &n;
    return Value::func(n.text, [node](Interp &in, CallArgs &a, int line) {
      if (++in.callDepth > kMaxCallDepth)
        fail(line, "macro '" + node->text + "' recurses too deeply");
      Frame local;
      if (a.pos.size() > node->params.size())
        fail(line, "macro '" + node->text + "' takes " + std::to_string(node->params.size()) + " arguments");
      std::vector<Frame *> saved = in.frames;
      in.frames = {saved.front(), &local};
      for (size_t i = 0; i < node->params.size(); ++i) {
        const auto &[pname, def] = node->params[i];
        bool found = false;
        for (auto &[k, v] : a.kw)
          if (k == pname) {
            local[pname] = v;
            found = true;
          }
        if (!found && i < a.pos.size()) {
          local[pname] = a.pos[i];
          found = true;
        }
        if (!found)
          local[pname] = def ? in.eval(*def) : Value::undef("macro argument '" + pname + "' was not given");
      }
      for (auto &[k, v] : a.kw) {
        bool known = false;
        for (auto &pr : node->params)
          known |= pr.first == k;
        if (!known)
          fail(line, "macro '" + node->text + "' has no argument '" + k + "'");
      }
      int savedLoops = in.loopDepth;
      in.loopDepth = 0;
      std::string text = in.capture(node->body);
      in.loopDepth = savedLoops;
      in.frames = saved;
      --in.callDepth;
      return Value::str(text);
    });
  }

  Flow exec(const Body &body) {
    for (const NodeP &n : body) {
      Flow f = exec(*n);
      if (f != Flow::Normal)
        return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Node &n) {
    step(n.line);
    switch (n.k) {
    case Node::Text: emit(n.text, n.line); break;
    case Node::Output: emit(pyStr(eval(*n.expr)), n.line); break;
    case Node::If:
      for (auto &[cond, b] : n.branches)
        if (!cond || truthy(eval(*cond)))
          return exec(b);
      break;
    case Node::For: return execFor(n);
    case Node::Set: {
      Value v = eval(*n.expr);
      if (n.attrTarget) {
        Value ns = lookup(n.targets[0]);
        if (ns.k != Value::K::Dict || !ns.dict->isNamespace)
          fail(n.line, "cannot assign attribute on a " + std::string(typeName(ns)) +
                           " ('" + n.targets[0] + "' is not a namespace())");
        ns.dict->set(n.targets[1], std::move(v));
      } else {
        assignTargets(n.targets, v, n.line);
      }
      break;
    }
    case Node::SetBlock: {
      Value v = Value::str(capture(n.body));
      if (n.filter)
        v = applyFilterChain(*n.filter, std::move(v));
      assign(n.targets[0], std::move(v));
      break;
    }
    case Node::Macro: assign(n.text, makeMacro(n)); break;
    case Node::Break:
    case Node::Continue:
      if (loopDepth == 0)
        fail(n.line, "break or continue outside a loop");
      return n.k == Node::Break ? Flow::Break : Flow::Continue;
    case Node::Scope: {
      Frame local;
      for (auto &[name, x] : n.params)
        local[name] = eval(*x);
      frames.push_back(&local);
      Flow f = exec(n.body);
      frames.pop_back();
      return f;
    }
    case Node::FilterBlock: {
      Value v = applyFilterChain(*n.filter, Value::str(capture(n.body)));
      emit(pyStr(v), n.line);
      break;
    }
    }
    return Flow::Normal;
  }

  Flow execFor(const Node &n) {
    Value seq = eval(*n.expr);
    if (seq.k == Value::K::None || seq.k == Value::K::Bool || seq.isNum() || seq.k == Value::K::Func)
      fail(n.line, std::string("a ") + typeName(seq) + " value is not iterable");
    List items = iterate(seq, n.line);
    if (n.cond) {
      List kept;
      for (Value &v : items) {
        step(n.line);
        Frame f;
        frames.push_back(&f);
        assignTargets(n.targets, v, n.line);
        bool keep = truthy(eval(*n.cond));
        frames.pop_back();
        if (keep)
          kept.push_back(std::move(v));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      if (!n.elseBody.empty()) {
        Frame f;
        frames.push_back(&f);
        Flow fl = exec(n.elseBody);
        frames.pop_back();
        return fl;
      }
      return Flow::Normal;
    }
    ++loopDepth;
    size_t len = items.size();
    for (size_t i = 0; i < len; ++i) {
      step(n.line);
      Frame f;
      frames.push_back(&f);
      Value loop = Value::object();
      Dict &d = *loop.dict;
      d.set("index", Value::integer(int64_t(i) + 1));
      d.set("index0", Value::integer(int64_t(i)));
      d.set("revindex", Value::integer(int64_t(len - i)));
      d.set("revindex0", Value::integer(int64_t(len - i - 1)));
      d.set("first", Value::boolean(i == 0));
      d.set("last", Value::boolean(i + 1 == len));
      d.set("length", Value::integer(int64_t(len)));
      d.set("depth", Value::integer(1));
      d.set("depth0", Value::integer(0));
      d.set("previtem", i ? items[i - 1] : Value::undef("there is no previous item"));
      d.set("nextitem", i + 1 < len ? items[i + 1] : Value::undef("there is no next item"));
      d.set("cycle", Value::func("loop.cycle", [i](Interp &, CallArgs &a, int line) {
        if (a.pos.empty())
          fail(line, "loop.cycle needs at least one value");
        return a.pos[i % a.pos.size()];
      }));
      d.isNamespace = true; // attribute access only, no dict methods
      f["loop"] = loop;
      assignTargets(n.targets, items[i], n.line);
      Flow fl = exec(n.body);
      frames.pop_back();
      if (fl == Flow::Break)
        break;
    }
    --loopDepth;
    return Flow::Normal;
  }
};

//--- methods of str, list and dict ------------------------------------------

Value Interp::method(const Value &self, const std::string &name) {
  auto bound = [&](std::function<Value(CallArgs &, int)> f) {
    return Value::func(name, [f](Interp &, CallArgs &a, int l) { return f(a, l); });
  };
  if (self.k == Value::K::Str) {
    std::string s = self.s;
    if (name == "strip" || name == "lstrip" || name == "rstrip")
      return bound([s, name](CallArgs &a, int) {
        a.atMost(1, {"chars"});
        Value c = a.get(0, "chars");
        return Value::str(pyStrip(s, &c, name != "rstrip", name != "lstrip"));
      });
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize")
      return bound([s, name](CallArgs &a, int l) {
        a.atMost(0, {});
        int mode = name == "upper" ? 0 : name == "lower" ? 1 : name == "title" ? 2 : 3;
        return Value::str(caseMap(s, name.c_str(), l, mode));
      });
    if (name == "startswith" || name == "endswith")
      return bound([s, name](CallArgs &a, int l) {
        a.atMost(1, {});
        Value p = a.get(0, "prefix");
        List opts = p.k == Value::K::List ? *p.list : List{p};
        for (const Value &o : opts) {
          if (o.k != Value::K::Str)
            fail(l, name + " needs a string or a tuple of strings");
          bool hit = name == "startswith"
                         ? s.compare(0, o.s.size(), o.s) == 0
                         : s.size() >= o.s.size() && s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0;
          if (hit)
            return Value::boolean(true);
        }
        return Value::boolean(false);
      });
    if (name == "split" || name == "rsplit")
      return bound([s, name](CallArgs &a, int l) {
        a.atMost(2, {"sep", "maxsplit"});
        Value sep = a.get(0, "sep");
        Value maxv = a.get(1, "maxsplit", Value::integer(-1));
        int64_t max = maxv.isIntLike() ? maxv.asInt() : -1;
        List parts;
        bool rev = name == "rsplit";
        if (sep.isUndef() || sep.k == Value::K::None) {
          std::vector<uint32_t> cps = codePoints(s);
          std::vector<std::pair<size_t, size_t>> words;
          for (size_t i = 0; i < cps.size();) {
            while (i < cps.size() && isPySpace(cps[i]))
              ++i;
            size_t b = i;
            while (i < cps.size() && !isPySpace(cps[i]))
              ++i;
            if (i > b)
              words.push_back({b, i});
          }
          if (max >= 0 && int64_t(words.size()) > max + 1) {
            // The last (first, for rsplit) part keeps the rest of the text
            // from its first character, as Python does.
            if (!rev) {
              for (int64_t k = 0; k < max; ++k)
                parts.push_back(Value::str(fromCps(cps, words[size_t(k)].first, words[size_t(k)].second)));
              size_t e = cps.size();
              while (e > 0 && isPySpace(cps[e - 1]))
                --e;
              parts.push_back(Value::str(fromCps(cps, words[size_t(max)].first, e)));
            } else {
              size_t n = words.size();
              size_t b = 0;
              while (b < cps.size() && isPySpace(cps[b]))
                ++b;
              parts.push_back(Value::str(fromCps(cps, b, words[n - size_t(max) - 1].second)));
              for (size_t k = n - size_t(max); k < n; ++k)
                parts.push_back(Value::str(fromCps(cps, words[k].first, words[k].second)));
            }
          } else {
            for (auto [b, e] : words)
              parts.push_back(Value::str(fromCps(cps, b, e)));
          }
          return Value::array(std::move(parts));
        }
        if (sep.k != Value::K::Str)
          fail(l, name + " needs a string separator");
        if (sep.s.empty())
          fail(l, "empty separator");
        std::vector<std::string> pieces;
        if (!rev) {
          size_t pos = 0;
          while (true) {
            size_t hit = (max < 0 || int64_t(pieces.size()) < max) ? s.find(sep.s, pos) : std::string::npos;
            if (hit == std::string::npos) {
              pieces.push_back(s.substr(pos));
              break;
            }
            pieces.push_back(s.substr(pos, hit - pos));
            pos = hit + sep.s.size();
          }
        } else {
          size_t end = s.size();
          while (true) {
            size_t hit = (max < 0 || int64_t(pieces.size()) < max) && end >= sep.s.size()
                             ? s.rfind(sep.s, end - sep.s.size())
                             : std::string::npos;
            if (hit == std::string::npos) {
              pieces.push_back(s.substr(0, end));
              break;
            }
            pieces.push_back(s.substr(hit + sep.s.size(), end - hit - sep.s.size()));
            end = hit;
          }
          std::reverse(pieces.begin(), pieces.end());
        }
        for (auto &p : pieces)
          parts.push_back(Value::str(p));
        return Value::array(std::move(parts));
      });
    if (name == "replace")
      return bound([s](CallArgs &a, int l) {
        a.atMost(3, {"count"});
        Value from = a.get(0, "old"), to = a.get(1, "new");
        Value cnt = a.get(2, "count", Value::integer(-1));
        if (from.k != Value::K::Str || to.k != Value::K::Str)
          fail(l, "replace needs strings");
        int64_t max = cnt.isIntLike() ? cnt.asInt() : -1;
        std::string out;
        if (from.s.empty()) {
          std::vector<uint32_t> cps = codePoints(s);
          int64_t done = 0;
          for (size_t i = 0; i <= cps.size(); ++i) {
            if (max < 0 || done < max) {
              out += to.s;
              ++done;
            }
            if (i < cps.size())
              appendCp(out, cps[i]);
          }
          return Value::str(out);
        }
        size_t pos = 0;
        int64_t done = 0;
        while (true) {
          size_t hit = (max < 0 || done < max) ? s.find(from.s, pos) : std::string::npos;
          if (hit == std::string::npos) {
            out += s.substr(pos);
            break;
          }
          out += s.substr(pos, hit - pos) + to.s;
          pos = hit + from.s.size();
          ++done;
        }
        return Value::str(out);
      });
    if (name == "find" || name == "rfind" || name == "count" || name == "index")
      return bound([s, name](CallArgs &a, int l) {
        a.atMost(1, {});
        Value sub = a.get(0, "sub");
        if (sub.k != Value::K::Str)
          fail(l, name + " needs a string");
        if (name == "count") {
          if (sub.s.empty())
            return Value::integer(int64_t(codePoints(s).size()) + 1);
          int64_t n = 0;
          for (size_t pos = s.find(sub.s); pos != std::string::npos; pos = s.find(sub.s, pos + sub.s.size()))
            ++n;
          return Value::integer(n);
        }
        size_t at = name == "rfind" ? s.rfind(sub.s) : s.find(sub.s);
        if (at == std::string::npos) {
          if (name == "index")
            fail(l, "substring not found");
          return Value::integer(-1);
        }
        return Value::integer(int64_t(codePoints(s.substr(0, at)).size()));
      });
    if (name == "join")
      return bound([s](CallArgs &a, int l) {
        a.atMost(1, {});
        Value items = a.get(0, "iterable");
        std::string out;
        bool first = true;
        for (const Value &v : Interp::iterate(items, l)) {
          if (v.k != Value::K::Str)
            fail(l, "str.join needs strings, found a " + std::string(typeName(v)));
          out += (first ? "" : s) + v.s;
          first = false;
        }
        return Value::str(out);
      });
    if (name == "splitlines")
      return bound([s](CallArgs &a, int) {
        a.atMost(1, {"keepends"});
        bool keep = truthy(a.get(0, "keepends"));
        List lines;
        size_t b = 0;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s[i] == '\n' || s[i] == '\r') {
            size_t e = i;
            if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')
              ++i;
            lines.push_back(Value::str(s.substr(b, (keep ? i + 1 : e) - b)));
            b = i + 1;
          }
        }
        if (b < s.size())
          lines.push_back(Value::str(s.substr(b)));
        return Value::array(std::move(lines));
      });
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
        name == "isupper" || name == "islower")
      return bound([s, name](CallArgs &a, int l) {
        a.atMost(0, {});
        if (name == "isspace") {
          std::vector<uint32_t> cps = codePoints(s);
          return Value::boolean(!cps.empty() && std::all_of(cps.begin(), cps.end(), isPySpace));
        }
        if (hasNonAscii(s))
          fail(l, name + " of non-ASCII text is not supported");
        bool any = false, all = !s.empty();
        for (char c : s) {
          auto u = static_cast<unsigned char>(c);
          if (name == "isdigit") all &= bool(std::isdigit(u));
          else if (name == "isalpha") all &= bool(std::isalpha(u));
          else if (name == "isalnum") all &= bool(std::isalnum(u));
          else if (name == "isupper") { all &= !std::islower(u); any |= bool(std::isupper(u)); }
          else { all &= !std::isupper(u); any |= bool(std::islower(u)); }
        }
        if (name == "isupper" || name == "islower")
          return Value::boolean(any && all);
        return Value::boolean(all);
      });
    if (name == "format")
      return bound([](CallArgs &, int l) -> Value { fail(l, "str.format is not supported"); });
    return Value::undef("");
  }
  if (self.k == Value::K::List) {
    std::shared_ptr<List> list = self.list;
    if (name == "index" || name == "count")
      return bound([list, name](CallArgs &a, int l) {
        a.atMost(1, {});
        Value x = a.get(0, "value");
        int64_t n = 0;
        for (size_t i = 0; i < list->size(); ++i)
          if (Interp::equal((*list)[i], x)) {
            if (name == "index")
              return Value::integer(int64_t(i));
            ++n;
          }
        if (name == "index")
          fail(l, "the value is not in the list");
        return Value::integer(n);
      });
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
        name == "remove" || name == "clear" || name == "sort" || name == "reverse")
      return bound([name](CallArgs &, int l) -> Value {
        fail(l, "list." + name + "() modifies a list, which the sandbox forbids");
      });
    return Value::undef("");
  }
  if (self.k == Value::K::Dict) {
    std::shared_ptr<Dict> dict = self.dict;
    if (name == "items" || name == "keys" || name == "values")
      return bound([dict, name](CallArgs &a, int) {
        a.atMost(0, {});
        List out;
        for (auto &[k, v] : dict->items) {
          if (name == "items")
            out.push_back(Value::pair(Value::str(k), v));
          else
            out.push_back(name == "keys" ? Value::str(k) : v);
        }
        return Value::array(std::move(out));
      });
    if (name == "get")
      return bound([dict](CallArgs &a, int) {
        a.atMost(2, {});
        Value k = a.get(0, "key");
        Value def = a.get(1, "default", Value::none());
        if (k.k == Value::K::Str)
          if (Value *v = dict->find(k.s))
            return *v;
        return def;
      });
    if (name == "update" || name == "pop" || name == "setdefault" || name == "clear" ||
        name == "popitem")
      return bound([name](CallArgs &, int l) -> Value {
        fail(l, "dict." + name + "() modifies a dict, which the sandbox forbids");
      });
    return Value::undef("");
  }
  return Value::undef("");
}

//--- filters -------------------------------------------------------------------

/// `items` ordered by key(item), ties in their original order (Python's
/// sorted(); reverse keeps ties in order too).
template <typename Key>
List stableSorted(const List &items, Key key, bool reverse, int line) {
  std::vector<Value> keys;
  for (const Value &x : items)
    keys.push_back(key(x));
  std::vector<size_t> idx(items.size());
  for (size_t i = 0; i < idx.size(); ++i)
    idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t x, size_t y) {
    int c = Interp::order(keys[x], keys[y], line);
    if (reverse)
      c = -c;
    return c != 0 ? c < 0 : x < y;
  });
  List out;
  for (size_t i : idx)
    out.push_back(items[i]);
  return out;
}

std::vector<Value> Interp::selectOrReject(const std::string &name, const Value &v, CallArgs &a, int line) {
  bool byAttr = name == "selectattr" || name == "rejectattr";
  bool keepIf = name == "select" || name == "selectattr";
  std::string attr;
  size_t t = 0;
  if (byAttr) {
    Value at = a.get(0, "attribute");
    if (at.k != Value::K::Str)
      fail(line, name + " needs an attribute name");
    attr = at.s;
    t = 1;
  }
  std::string testName;
  CallArgs targs;
  if (a.pos.size() > t) {
    if (a.pos[t].k != Value::K::Str)
      fail(line, name + " needs a test name");
    testName = a.pos[t].s;
    targs.pos.assign(a.pos.begin() + long(t) + 1, a.pos.end());
  }
  std::vector<Value> out;
  for (const Value &item : iterate(v, line)) {
    Value subject = item;
    if (byAttr)
      for (size_t b = 0, e; b <= attr.size(); b = e + 1) {
        e = attr.find('.', b);
        if (e == std::string::npos)
          e = attr.size();
        subject = subject.isUndef() ? subject : getItem(subject, Value::str(attr.substr(b, e - b)), line);
      }
    bool r = testName.empty() ? truthy(subject) : test(testName, subject, targs, line);
    if (r == keepIf)
      out.push_back(item);
  }
  return out;
}

Value Interp::applyFilter(const std::string &name, const Value &v, CallArgs &a, int line) {
  a.fname = name.c_str();
  a.line = line;
  auto needStr = [&](const Value &x) -> std::string {
    if (x.isUndef())
      return "";
    return pyStr(x);
  };
  if (name == "trim") {
    a.atMost(1, {"chars"});
    Value chars = a.get(0, "chars");
    return Value::str(pyStrip(needStr(v), &chars, true, true));
  }
  if (name == "length" || name == "count") {
    a.atMost(0, {});
    switch (v.k) {
    case Value::K::Undefined: return Value::integer(0);
    case Value::K::Str: return Value::integer(int64_t(codePoints(v.s).size()));
    case Value::K::List: return Value::integer(int64_t(v.list->size()));
    case Value::K::Dict:
      if (!v.dict->isNamespace)
        return Value::integer(int64_t(v.dict->items.size()));
      [[fallthrough]];
    default: fail(line, std::string("a ") + typeName(v) + " value has no length");
    }
  }
  if (name == "tojson") {
    a.atMost(1, {"indent", "ensure_ascii", "separators", "sort_keys"});
    Value ind = a.get(0, "indent", Value::none());
    // transformers' defaults: ensure_ascii=False, no separators, unsorted.
    for (const char *k : {"ensure_ascii", "separators", "sort_keys"})
      if (truthy(a.get(99, k)))
        fail(line, std::string("tojson(") + k + "=...) is not supported");
    if (v.isUndef())
      undefinedError(v, line);
    std::string out;
    toJson(v, ind.isIntLike() ? int(ind.asInt()) : -1, 0, out, line);
    return Value::str(out);
  }
  if (name == "string") {
    a.atMost(0, {});
    return Value::str(pyStr(v));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    a.atMost(0, {});
    int mode = name == "upper" ? 0 : name == "lower" ? 1 : name == "title" ? 2 : 3;
    return Value::str(caseMap(needStr(v), name.c_str(), line, mode));
  }
  if (name == "default" || name == "d") {
    a.atMost(2, {"default_value", "boolean"});
    Value def = a.get(0, "default_value", Value::str(""));
    bool boolean = truthy(a.get(1, "boolean"));
    if (v.isUndef() || (boolean && !truthy(v)))
      return def;
    return v;
  }
  if (name == "first" || name == "last") {
    a.atMost(0, {});
    List items = iterate(v, line);
    if (items.empty())
      return Value::undef("no " + name + " item, the sequence is empty");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    a.atMost(2, {"d", "attribute"});
    Value sep = a.get(0, "d", Value::str(""));
    Value attr = a.get(1, "attribute");
    std::string out;
    bool first = true;
    for (Value item : iterate(v, line)) {
      if (!attr.isUndef())
        item = getItem(item, attr, line);
      out += (first ? "" : pyStr(sep)) + pyStr(item);
      first = false;
    }
    return Value::str(out);
  }
  if (name == "replace") {
    a.atMost(3, {"count"});
    Value s = Value::str(needStr(v));
    Value m = method(s, "replace");
    return call(m, a, line);
  }
  if (name == "list") {
    a.atMost(0, {});
    return Value::array(iterate(v, line));
  }
  if (name == "items") {
    a.atMost(0, {});
    if (v.isUndef())
      return Value::array();
    if (v.k != Value::K::Dict || v.dict->isNamespace)
      fail(line, "the items filter needs a mapping");
    CallArgs none;
    return call(method(v, "items"), none, line);
  }
  if (name == "dictsort") {
    a.atMost(3, {"case_sensitive", "by", "reverse"});
    if (v.k != Value::K::Dict || v.dict->isNamespace)
      fail(line, "dictsort needs a mapping");
    bool cs = truthy(a.get(0, "case_sensitive"));
    Value by = a.get(1, "by", Value::str("key"));
    bool rev = truthy(a.get(2, "reverse"));
    List pairs;
    for (auto &[k, x] : v.dict->items)
      pairs.push_back(Value::pair(Value::str(k), x));
    size_t idx = by.k == Value::K::Str && by.s == "value" ? 1 : 0;
    auto key = [&](const Value &p) {
      Value k = (*p.list)[idx];
      if (!cs && k.k == Value::K::Str)
        k.s = caseMap(k.s, "dictsort", line, 1);
      return k;
    };
    return Value::array(stableSorted(pairs, key, rev, line));
  }
  if (name == "sort") {
    a.atMost(3, {"reverse", "case_sensitive", "attribute"});
    bool rev = truthy(a.get(0, "reverse"));
    bool cs = truthy(a.get(1, "case_sensitive"));
    Value attr = a.get(2, "attribute");
    List items = iterate(v, line);
    auto key = [&](const Value &x) {
      Value k = attr.isUndef() ? x : getItem(x, attr, line);
      if (!cs && k.k == Value::K::Str)
        k.s = caseMap(k.s, "sort", line, 1);
      return k;
    };
    return Value::array(stableSorted(items, key, rev, line));
  }
  if (name == "reverse") {
    a.atMost(0, {});
    if (v.k == Value::K::Str) {
      std::vector<uint32_t> cps = codePoints(v.s);
      std::reverse(cps.begin(), cps.end());
      return Value::str(fromCps(cps, 0, cps.size()));
    }
    List items = iterate(v, line);
    std::reverse(items.begin(), items.end());
    return Value::array(std::move(items));
  }
  if (name == "unique") {
    a.atMost(2, {"case_sensitive", "attribute"});
    List out;
    for (const Value &x : iterate(v, line)) {
      bool seen = false;
      for (const Value &y : out)
        seen |= equal(x, y);
      if (!seen)
        out.push_back(x);
    }
    return Value::array(std::move(out));
  }
  if (name == "min" || name == "max") {
    a.atMost(2, {"case_sensitive", "attribute"});
    List items = iterate(v, line);
    if (items.empty())
      return Value::undef("no " + name + " item, the sequence is empty");
    Value best = items[0];
    for (const Value &x : items)
      if ((order(x, best, line) < 0) == (name == "min") && !equal(x, best))
        best = x;
    return best;
  }
  if (name == "sum") {
    a.atMost(2, {"attribute", "start"});
    Value attr = a.get(0, "attribute");
    Value total = a.get(1, "start", Value::integer(0));
    for (Value x : iterate(v, line)) {
      if (!attr.isUndef())
        x = getItem(x, attr, line);
      total = arith("+", total, x, line);
    }
    return total;
  }
  if (name == "map") {
    Value attr = a.get(99, "attribute");
    List out;
    if (!attr.isUndef()) {
      a.atMost(0, {"attribute", "default"});
      Value def = a.get(99, "default");
      for (const Value &x : iterate(v, line)) {
        Value r = getItem(x, attr, line);
        out.push_back(r.isUndef() && !def.isUndef() ? def : r);
      }
      return Value::array(std::move(out));
    }
    if (a.pos.empty() || a.pos[0].k != Value::K::Str)
      fail(line, "map needs a filter name or attribute=");
    std::string f = a.pos[0].s;
    CallArgs rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    for (const Value &x : iterate(v, line)) {
      CallArgs copy = rest;
      out.push_back(applyFilter(f, x, copy, line));
    }
    return Value::array(std::move(out));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr")
    return Value::array(selectOrReject(name, v, a, line));
  if (name == "int") {
    a.atMost(2, {"default", "base"});
    Value def = a.get(0, "default", Value::integer(0));
    if (v.isIntLike())
      return Value::integer(v.asInt());
    if (v.k == Value::K::Float)
      return Value::integer(int64_t(v.f));
    if (v.k == Value::K::Str) {
      std::string s = pyStrip(v.s, nullptr, true, true);
      char *end = nullptr;
      errno = 0;
      long long x = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && end && !*end && !errno)
        return Value::integer(x);
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && !*end)
        return Value::integer(int64_t(d));
    }
    return def;
  }
  if (name == "float") {
    a.atMost(1, {"default"});
    Value def = a.get(0, "default", Value::real(0));
    if (v.isNum())
      return Value::real(v.asReal());
    if (v.k == Value::K::Str) {
      std::string s = pyStrip(v.s, nullptr, true, true);
      char *end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end && !*end)
        return Value::real(d);
    }
    return def;
  }
  if (name == "abs") {
    a.atMost(0, {});
    if (!v.isNum())
      fail(line, "abs needs a number");
    return v.isIntLike() ? Value::integer(std::llabs(v.asInt())) : Value::real(std::fabs(v.f));
  }
  if (name == "round") {
    a.atMost(2, {"precision", "method"});
    Value prec = a.get(0, "precision", Value::integer(0));
    Value meth = a.get(1, "method", Value::str("common"));
    if (!v.isNum())
      fail(line, "round needs a number");
    int64_t digits = prec.isIntLike() ? prec.asInt() : 0;
    if (meth.s == "common" && digits >= 0 && digits <= 30) {
      // Python's round(): correctly rounded, ties to even, as printf is.
      char buf[400];
      std::snprintf(buf, sizeof buf, "%.*f", int(digits), v.asReal());
      return Value::real(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, double(digits));
    double x = v.asReal() * scale;
    double r = meth.s == "floor" ? std::floor(x) : meth.s == "ceil" ? std::ceil(x) : std::nearbyint(x);
    return Value::real(r / scale);
  }
  if (name == "safe") {
    a.atMost(0, {});
    return v;
  }
  if (name == "e" || name == "escape" || name == "forceescape") {
    a.atMost(0, {});
    std::string out;
    for (char c : needStr(v)) {
      switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
      }
    }
    return Value::str(out);
  }
  if (name == "indent") {
    a.atMost(3, {"width", "first", "blank"});
    Value w = a.get(0, "width", Value::integer(4));
    bool first = truthy(a.get(1, "first"));
    bool blank = truthy(a.get(2, "blank"));
    std::string pad = w.k == Value::K::Str ? w.s : std::string(size_t(std::max<int64_t>(0, w.asInt())), ' ');
    std::string s = needStr(v);
    std::string out;
    size_t b = 0;
    bool firstLine = true;
    while (true) {
      size_t e = s.find('\n', b);
      std::string ln = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
      bool indent = firstLine ? first : (blank || !ln.empty());
      if (firstLine && first && !blank && ln.empty())
        indent = true;
      out += (indent ? pad : "") + ln;
      if (e == std::string::npos)
        break;
      out += '\n';
      b = e + 1;
      firstLine = false;
    }
    return Value::str(out);
  }
  if (name == "wordcount") {
    a.atMost(0, {});
    CallArgs none;
    Value parts = call(method(Value::str(needStr(v)), "split"), none, line);
    return Value::integer(int64_t(parts.list->size()));
  }
  fail(line, "the filter '" + name + "' is not supported");
}

//--- globals -------------------------------------------------------------------

void addGlobals(Frame &g) {
  g["raise_exception"] = Value::func("raise_exception", [](Interp &, CallArgs &a, int line) -> Value {
    Value m = a.get(0, "message");
    throw Error{-line, pyStr(m)}; // negative line: the template's own error
  });
  g["range"] = Value::func("range", [](Interp &, CallArgs &a, int line) {
    a.atMost(3, {});
    for (const Value &x : a.pos)
      if (!x.isIntLike())
        fail(line, "range needs integers");
    int64_t start = 0, stop = 0, step = 1;
    if (a.pos.size() == 1) {
      stop = a.pos[0].asInt();
    } else if (a.pos.size() >= 2) {
      start = a.pos[0].asInt();
      stop = a.pos[1].asInt();
      if (a.pos.size() == 3)
        step = a.pos[2].asInt();
    } else {
      fail(line, "range needs an argument");
    }
    if (step == 0)
      fail(line, "range step cannot be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (int64_t(out.size()) >= kMaxRange)
        fail(line, "range() is longer than 1000000 items");
      out.push_back(Value::integer(i));
    }
    return Value::array(std::move(out));
  });
  // namespace(...) and dict(...): a mapping of the dicts and keyword
  // arguments given; a namespace takes attribute assignment (`set ns.x`).
  for (bool ns : {true, false}) {
    const char *name = ns ? "namespace" : "dict";
    g[name] = Value::func(name, [ns, name](Interp &, CallArgs &a, int line) {
      Value d = Value::object();
      d.dict->isNamespace = ns;
      for (const Value &p : a.pos) {
        if (p.k != Value::K::Dict)
          fail(line, std::string(name) + "() takes keyword arguments or a dict");
        for (auto &[k, v] : p.dict->items)
          d.dict->set(k, v);
      }
      for (auto &[k, v] : a.kw)
        d.dict->set(k, v);
      return d;
    });
  }
  // transformers' strftime_now: the local time; SOURCE_DATE_EPOCH (UTC), when
  // set, makes renders reproducible.
  g["strftime_now"] = Value::func("strftime_now", [](Interp &, CallArgs &a, int line) {
    a.atMost(1, {});
    Value fmt = a.get(0, "format");
    if (fmt.k != Value::K::Str)
      fail(line, "strftime_now needs a format string");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    if (const char *epoch = std::getenv("SOURCE_DATE_EPOCH")) {
      now = std::time_t(std::strtoll(epoch, nullptr, 10));
      gmtime_r(&now, &tm);
    } else {
      localtime_r(&now, &tm);
    }
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, fmt.s.c_str(), &tm);
    return Value::str(std::string(buf, n));
  });
}

} // namespace

bool render(const std::string &source, const std::string &contextJson,
            const char *bos, const char *eos, std::string &out,
            std::string &error) {
  out.clear();
  try {
    Lexer lx{source};
    Parser ps{lx.run()};
    Body body;
    ps.body(body, {}, nullptr, 1);
    JsonReader jr{contextJson};
    Value ctx = jr.value();
    jr.ws();
    if (jr.p != contextJson.size())
      jr.bad("trailing characters");
    if (ctx.k != Value::K::Dict)
      fail(0, "context JSON: the context must be an object");
    Frame globals;
    addGlobals(globals);
    if (bos)
      globals["bos_token"] = Value::str(bos);
    if (eos)
      globals["eos_token"] = Value::str(eos);
    for (auto &[k, v] : ctx.dict->items) {
      if (v.k == Value::K::None && (k == "bos_token" || k == "eos_token"))
        globals.erase(k);
      else
        globals[k] = v;
    }
    Interp in;
    in.frames.push_back(&globals);
    in.out = &out;
    if (in.exec(body) != Flow::Normal)
      fail(0, "break or continue outside a loop");
    return true;
  } catch (const Error &e) {
    out.clear();
    if (e.line < 0)
      error = "the chat template raised an error (line " + std::to_string(-e.line) + "): " + e.message;
    else if (e.line == 0)
      error = e.message;
    else
      error = "chat template line " + std::to_string(e.line) + ": " + e.message;
    return false;
  }
}

/// The reader's message, as about a tool call rather than a render context.
static std::string toolCallError(const Error &e) {
  if (e.message.rfind("context JSON: ", 0) == 0)
    return "tool call JSON: " + e.message.substr(14);
  return e.message;
}

bool readToolCalls(const std::string &text, size_t pos, size_t &end,
                   std::vector<ToolCall> &calls, std::string &error) {
  try {
    JsonReader jr{text};
    jr.p = pos;
    Value v = jr.value();
    end = jr.p;
    std::vector<const Value *> items;
    if (v.k == Value::K::List)
      for (const Value &x : *v.list)
        items.push_back(&x);
    else
      items.push_back(&v);
    for (const Value *x : items) {
      Value *name = x->k == Value::K::Dict ? x->dict->find("name") : nullptr;
      if (!name || name->k != Value::K::Str)
        fail(0, "a tool call is not an object with a string \"name\"");
      // OpenAI's and Hermes' "arguments", Llama 3's "parameters".
      Value *args = x->dict->find("arguments");
      if (!args)
        args = x->dict->find("parameters");
      std::string json = "{}";
      if (args) {
        if (args->k == Value::K::Str) {
          // Arguments given as a JSON string: its object.
          JsonReader inner{args->s};
          Value parsed = inner.value();
          inner.ws();
          if (inner.p != args->s.size())
            inner.bad("trailing characters");
          json.clear();
          toJson(parsed, -1, 0, json, 0);
        } else {
          json.clear();
          toJson(*args, -1, 0, json, 0);
        }
      }
      calls.push_back({name->s, std::move(json)});
    }
    return true;
  } catch (const Error &e) {
    error = toolCallError(e);
    return false;
  }
}

bool readJsonValue(const std::string &text, size_t pos, size_t &end,
                   std::string &compact, std::string &error) {
  try {
    JsonReader jr{text};
    jr.p = pos;
    Value v = jr.value();
    end = jr.p;
    compact.clear();
    toJson(v, -1, 0, compact, 0);
    return true;
  } catch (const Error &e) {
    error = toolCallError(e);
    return false;
  }
}

} // namespace kiln::rt::chat
