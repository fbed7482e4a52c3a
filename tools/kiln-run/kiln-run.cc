// kiln-run: run a function of a compiled artifact on .npy inputs, or
// generate with / benchmark an LLM artifact.
//
//   kiln-run OUT.kiln [--function=main] --input=a.npy ... --output=y.npy ...
//            [--device=cpu] [--repeat=N] [--print-signature]
//   kiln-run generate OUT.kiln (-p TEXT [--chat] [--chat-template=FILE]
//            [--system=TEXT] |
//            --prompt-ids=ID,ID,...) [-n N] [--temp=T] [--top-k=K]
//            [--top-p=P] [--repeat-penalty=R] [--seed=S] [--ignore-eos]
//            [--print-ids] [--logits-out=FILE.npy] [--context=N] [--device=]
//            [--teacher-ids=ID,...]
//   kiln-run bench OUT.kiln [-p 128] [-n 64] [-r 5] [-d 0] [--device=]
//   kiln-run tokenize OUT.kiln (--text=TEXT | --file=FILE) [--special]
//            [--roundtrip]
//   kiln-run tokenize OUT.kiln --info
//   kiln-run tokenize OUT.kiln --chat [--chat-template=FILE] [--system=TEXT]
//            --text=TEXT
//   kiln-run chat OUT.kiln [--system=TEXT] [--chat-template=FILE] [-n N]
//            [--fresh] [--temp=T ...] [--device=]  (a user turn per stdin line)
//   kiln-run chat-template [OUT.kiln] [--template=FILE] --context=FILE.json
//            [--ids]
//   kiln-run tool-calls [--format=auto|hermes|llama3|mistral|phi4]
//            (--text=TEXT | --file=FILE)
//
// Inputs and outputs are in the graph's order. Errors are one line on
// stderr and a non-zero exit. `generate --print-ids` prints the generated
// ids, space-separated, as the only line on stdout; `--logits-out` writes
// float32 [1 + N, vocab]: the logits after the prompt, then after each
// generated token is fed back. A text prompt (-p) streams text and stops at
// an end-of-generation token (eos, end of turn: kiln_tokenizer_is_eog;
// unless --ignore-eos); --prompt-ids generates
// exactly N tokens. --teacher-ids feeds those tokens instead of the picks
// (teacher forcing) while still printing the picks: per-position agreement
// with another engine's sequence. `tokenize --file` encodes each NUL-separated item of
// FILE and prints its ids on one line. --chat renders the model's Jinja chat
// template (or FILE's) over the turn, as transformers' apply_chat_template;
// `chat-template` prints what a template renders for a JSON object of its
// variables ({"messages": [...], "add_generation_prompt": true, ...}).
#include "kiln/kiln.h"
#include "npy.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int fail(const std::string &msg) {
  std::fprintf(stderr, "kiln-run: error: %s\n", msg.c_str());
  return 1;
}

int failStatus(kiln_status s) {
  int rc = fail(kiln_status_message(s));
  kiln_status_free(s);
  return rc;
}

bool startsWith(const char *arg, const char *prefix, const char **value) {
  size_t n = std::strlen(prefix);
  if (std::strncmp(arg, prefix, n) != 0)
    return false;
  *value = arg + n;
  return true;
}

void usage() {
  std::fprintf(stderr,
               "usage: kiln-run ARTIFACT.kiln [--function=main] "
               "[--input=X.npy ...] [--output=Y.npy ...] [--device=cpu] "
               "[--repeat=N] [--print-signature]\n");
}

std::string shapeStr(const int64_t *shape, int32_t rank) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

} // namespace

int generateMain(int argc, char **argv);
int benchMain(int argc, char **argv);
int tokenizeMain(int argc, char **argv);
int chatTemplateMain(int argc, char **argv);
int chatMain(int argc, char **argv);
int toolCallsMain(int argc, char **argv);

int main(int argc, char **argv) {
  if (argc > 1 && !std::strcmp(argv[1], "generate"))
    return generateMain(argc - 1, argv + 1);
  if (argc > 1 && !std::strcmp(argv[1], "bench"))
    return benchMain(argc - 1, argv + 1);
  if (argc > 1 && !std::strcmp(argv[1], "tokenize"))
    return tokenizeMain(argc - 1, argv + 1);
  if (argc > 1 && !std::strcmp(argv[1], "chat-template"))
    return chatTemplateMain(argc - 1, argv + 1);
  if (argc > 1 && !std::strcmp(argv[1], "tool-calls"))
    return toolCallsMain(argc - 1, argv + 1);
  if (argc > 1 && !std::strcmp(argv[1], "chat"))
    return chatMain(argc - 1, argv + 1);
  std::string artifactPath, function = "main", device = "cpu";
  std::vector<std::string> inputs, outputs;
  int repeat = 1;
  bool printSignature = false;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    if (startsWith(argv[i], "--function=", &v)) function = v;
    else if (startsWith(argv[i], "--input=", &v)) inputs.push_back(v);
    else if (startsWith(argv[i], "--output=", &v)) outputs.push_back(v);
    else if (startsWith(argv[i], "--device=", &v)) device = v;
    else if (startsWith(argv[i], "--repeat=", &v)) repeat = std::atoi(v);
    else if (!std::strcmp(argv[i], "--print-signature")) printSignature = true;
    else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      usage();
      return 0;
    } else if (argv[i][0] == '-') {
      usage();
      return fail(std::string("unknown option '") + argv[i] + "'");
    } else if (artifactPath.empty()) {
      artifactPath = argv[i];
    } else {
      return fail(std::string("unexpected argument '") + argv[i] + "'");
    }
  }
  if (artifactPath.empty()) {
    usage();
    return fail("no artifact given");
  }
  if (repeat < 1)
    return fail("--repeat must be >= 1");

  kiln_artifact *artifact;
  if (kiln_status s = kiln_artifact_open(artifactPath.c_str(), &artifact))
    return failStatus(s);
  size_t nin, nout;
  if (kiln_status s = kiln_function_arity(artifact, function.c_str(), &nin, &nout))
    return failStatus(s);

  if (printSignature) {
    for (size_t i = 0; i < nin + nout; ++i) {
      kiln_tensor_info info;
      kiln_status s = i < nin ? kiln_function_input(artifact, function.c_str(), i, &info)
                              : kiln_function_output(artifact, function.c_str(), i - nin, &info);
      if (s)
        return failStatus(s);
      std::printf("%s %s %s%s\n", i < nin ? "input" : "output", info.name,
                  kiln_dtype_name(info.dtype), shapeStr(info.shape, info.rank).c_str());
    }
    kiln_artifact_release(artifact);
    return 0;
  }
  if (inputs.size() != nin)
    return fail("function '" + function + "' takes " + std::to_string(nin) +
                " inputs, " + std::to_string(inputs.size()) + " --input given");
  if (!outputs.empty() && outputs.size() != nout)
    return fail("function '" + function + "' has " + std::to_string(nout) +
                " outputs, " + std::to_string(outputs.size()) + " --output given");

  std::vector<kiln::npy::Array> inArrays(nin), outArrays(nout);
  std::vector<kiln_tensor> inTensors(nin), outTensors(nout);
  for (size_t i = 0; i < nin; ++i) {
    std::string err;
    if (!kiln::npy::read(inputs[i], inArrays[i], err))
      return fail(err);
    kiln_tensor &t = inTensors[i];
    if (inArrays[i].shape.size() > KILN_MAX_RANK)
      return fail(inputs[i] + ": rank too large");
    t.dtype = static_cast<kiln_dtype>(inArrays[i].dtype);
    t.rank = static_cast<int32_t>(inArrays[i].shape.size());
    for (int32_t d = 0; d < t.rank; ++d)
      t.shape[d] = inArrays[i].shape[d];
    t.data = inArrays[i].data.data();
    t.size_bytes = inArrays[i].data.size();
  }
  for (size_t i = 0; i < nout; ++i) {
    kiln_tensor_info info;
    if (kiln_status s = kiln_function_output(artifact, function.c_str(), i, &info))
      return failStatus(s);
    kiln::npy::Array &a = outArrays[i];
    a.dtype = static_cast<kiln::npy::DType>(info.dtype);
    size_t numel = 1;
    for (int32_t d = 0; d < info.rank; ++d) {
      if (info.shape[d] < 0)
        return fail("output '" + std::string(info.name) + "' has a symbolic dim");
      a.shape.push_back(info.shape[d]);
      numel *= static_cast<size_t>(info.shape[d]);
    }
    a.data.assign(numel * kiln::npy::dtypeSize(a.dtype), 0);
    kiln_tensor &t = outTensors[i];
    t.dtype = info.dtype;
    t.rank = info.rank;
    for (int32_t d = 0; d < t.rank; ++d)
      t.shape[d] = info.shape[d];
    t.data = a.data.data();
    t.size_bytes = a.data.size();
  }

  kiln_session *session;
  if (kiln_status s = kiln_session_create(artifact, device.c_str(), &session))
    return failStatus(s);
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (kiln_status s = kiln_session_call(session, function.c_str(),
                                          inTensors.data(), nin,
                                          outTensors.data(), nout))
      return failStatus(s);
    auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  if (repeat > 1) {
    std::sort(times.begin(), times.end());
    std::fprintf(stderr, "kiln-run: %d runs, median %.3f ms, min %.3f ms\n",
                 repeat, times[times.size() / 2], times[0]);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string err;
    if (!kiln::npy::write(outputs[i], outArrays[i], err))
      return fail(err);
  }
  kiln_session_release(session);
  kiln_artifact_release(artifact);
  return 0;
}

namespace {

struct LlmArgs {
  std::string artifactPath, device = "cpu";
  uint32_t context = 0;
};

/// Parses "--device=", "--context=" and the artifact path; false: not one.
bool parseCommon(const char *arg, LlmArgs &a, std::string &err) {
  const char *v;
  if (startsWith(arg, "--device=", &v)) {
    a.device = v;
  } else if (startsWith(arg, "--context=", &v)) {
    a.context = static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
  } else if (arg[0] != '-' && a.artifactPath.empty()) {
    a.artifactPath = arg;
  } else {
    err = std::string("unknown or repeated argument '") + arg + "'";
    return false;
  }
  return true;
}

/// The value of "-x V" / "--x=V" style options.
const char *optionValue(int argc, char **argv, int &i, const char *shortName,
                        const char *longName) {
  const char *v;
  if (startsWith(argv[i], longName, &v))
    return v;
  if (!std::strcmp(argv[i], shortName) && i + 1 < argc)
    return argv[++i];
  return nullptr;
}

struct Llm {
  kiln_artifact *artifact = nullptr;
  kiln_llm *llm = nullptr;
  kiln_tokenizer *tokenizer = nullptr;
  ~Llm() {
    kiln_tokenizer_release(tokenizer);
    kiln_llm_release(llm);
    kiln_artifact_release(artifact);
  }
};

/// The C API's buffer contract (write at most `capacity`, report the full
/// count) into `out`: one call with room for `guess` items, a second only
/// when the result did not fit. `call(data, capacity, &n)`.
template <typename Buffer, typename Call>
kiln_status fillBuffer(Buffer &out, size_t guess, Call call) {
  out.resize(guess);
  size_t n = 0;
  if (kiln_status s = call(out.data(), out.size(), &n))
    return s;
  if (n > out.size()) {
    out.resize(n);
    if (kiln_status s = call(out.data(), out.size(), &n))
      return s;
  }
  out.resize(n);
  return nullptr;
}

kiln_status encode(kiln_tokenizer *tok, const std::string &text, bool special,
                   std::vector<int32_t> &ids) {
  // Most tokens cover a byte or more, so the text's length (+ BOS) mostly
  // fits; a longer answer (SentencePiece's space prefixes) is fetched again.
  return fillBuffer(ids, text.size() + 1, [&](int32_t *d, size_t cap, size_t *n) {
    return kiln_tokenizer_encode(tok, text.data(), text.size(), special, d, cap, n);
  });
}

/// The whole of file `path`.
bool readFile(const std::string &path, std::string &out) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    return false;
  out.clear();
  char buf[65536];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0)
    out.append(buf, got);
  std::fclose(f);
  return true;
}

/// Renders `messages` with the model's chat template (or `tmpl` when not
/// empty), with the generation prompt.
kiln_status chatText(kiln_tokenizer *tok, const std::string &tmpl,
                     const std::vector<kiln_chat_message> &messages,
                     std::string &out) {
  const char *t = tmpl.empty() ? nullptr : tmpl.c_str();
  return fillBuffer(out, 1 << 16, [&](char *d, size_t cap, size_t *n) {
    return kiln_chat_render_messages(tok, t, messages.data(), messages.size(),
                                     1, d, cap, n);
  });
}

/// The ids of rendered chat text (kiln_chat_encode).
kiln_status chatIds(kiln_tokenizer *tok, const std::string &text,
                    std::vector<int32_t> &ids) {
  return fillBuffer(ids, text.size() + 1, [&](int32_t *d, size_t cap, size_t *n) {
    return kiln_chat_encode(tok, text.data(), text.size(), d, cap, n);
  });
}

/// One user turn (after a system message, when given) as chat prompt ids.
kiln_status chatPromptIds(kiln_tokenizer *tok, const std::string &tmpl,
                          const std::string &system, const std::string &user,
                          std::vector<int32_t> &ids) {
  std::vector<kiln_chat_message> messages;
  if (!system.empty())
    messages.push_back({"system", system.c_str()});
  messages.push_back({"user", user.c_str()});
  std::string text;
  if (kiln_status s = chatText(tok, tmpl, messages, text))
    return s;
  return chatIds(tok, text, ids);
}

kiln_status openLlm(const LlmArgs &a, Llm &out) {
  if (kiln_status s = kiln_artifact_open(a.artifactPath.c_str(), &out.artifact))
    return s;
  return kiln_llm_create(out.artifact, a.device.c_str(), a.context, &out.llm);
}

/// --temp, --top-k, --top-p, --repeat-penalty, --seed into `sp`.
bool parseSampling(const char *arg, kiln_sampler_params &sp) {
  const char *v;
  if (startsWith(arg, "--temp=", &v))
    sp.temperature = std::strtof(v, nullptr);
  else if (startsWith(arg, "--top-k=", &v))
    sp.top_k = std::atoi(v);
  else if (startsWith(arg, "--top-p=", &v))
    sp.top_p = std::strtof(v, nullptr);
  else if (startsWith(arg, "--repeat-penalty=", &v))
    sp.repetition_penalty = std::strtof(v, nullptr);
  else if (startsWith(arg, "--seed=", &v))
    sp.seed = std::strtoull(v, nullptr, 10);
  else
    return false;
  return true;
}

/// "1,2,3" -> ids.
bool parseIds(const char *v, std::vector<int32_t> &ids) {
  for (const char *p = v; *p;) {
    char *end;
    long id = std::strtol(p, &end, 10);
    if (end == p || (*end && *end != ','))
      return false;
    ids.push_back(static_cast<int32_t>(id));
    p = *end ? end + 1 : end;
  }
  return true;
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
      .count();
}

} // namespace

int generateMain(int argc, char **argv) {
  LlmArgs a;
  std::vector<int32_t> prompt, teacher;
  bool havePrompt = false, printIds = false, chat = false, ignoreEos = false;
  std::string text, system, chatTemplate;
  bool haveText = false;
  int n = 32;
  std::string logitsOut;
  kiln_sampler_params sp{0.0f, 0, 1.0f, 1.0f, 0};
  for (int i = 1; i < argc; ++i) {
    const char *v;
    std::string err;
    if (startsWith(argv[i], "--prompt-ids=", &v)) {
      havePrompt = true;
      if (!parseIds(v, prompt))
        return fail(std::string("--prompt-ids: bad list '") + v + "'");
    } else if (startsWith(argv[i], "--teacher-ids=", &v)) {
      if (!parseIds(v, teacher))
        return fail(std::string("--teacher-ids: bad list '") + v + "'");
    } else if ((v = optionValue(argc, argv, i, "-p", "--prompt="))) {
      text = v;
      haveText = true;
    } else if (!std::strcmp(argv[i], "--chat")) {
      chat = true;
    } else if (startsWith(argv[i], "--chat-template=", &v)) {
      chat = true;
      if (!readFile(v, chatTemplate))
        return fail(std::string("generate: cannot read '") + v + "'");
    } else if (startsWith(argv[i], "--system=", &v)) {
      system = v;
    } else if (!std::strcmp(argv[i], "--ignore-eos")) {
      ignoreEos = true;
    } else if ((v = optionValue(argc, argv, i, "-n", "--n-predict="))) {
      n = std::atoi(v);
    } else if (parseSampling(argv[i], sp)) {
    } else if (!std::strcmp(argv[i], "--print-ids")) {
      printIds = true;
    } else if (startsWith(argv[i], "--logits-out=", &v)) {
      logitsOut = v;
    } else if (!parseCommon(argv[i], a, err)) {
      return fail("generate: " + err);
    }
  }
  if (a.artifactPath.empty())
    return fail("generate: no artifact given");
  if (havePrompt == haveText)
    return fail("generate: give the prompt as -p TEXT or --prompt-ids=ID,...");
  if (havePrompt && prompt.empty())
    return fail("generate: --prompt-ids is empty");
  if (n < 0)
    return fail("generate: -n must be >= 0");
  if (!teacher.empty() && teacher.size() < static_cast<size_t>(n))
    return fail("generate: --teacher-ids has fewer than -n tokens");

  auto t0 = std::chrono::steady_clock::now();
  Llm m;
  if (kiln_status s = openLlm(a, m))
    return failStatus(s);
  double loadS = seconds(t0);
  kiln_status ts = kiln_tokenizer_create(m.artifact, &m.tokenizer);
  if (ts && haveText)
    return failStatus(ts);
  kiln_status_free(ts);
  bool stopAtEog = false;
  if (haveText) {
    kiln_status s = chat ? chatPromptIds(m.tokenizer, chatTemplate, system, text, prompt)
                         : encode(m.tokenizer, text, true, prompt);
    if (s)
      return failStatus(s);
    if (prompt.empty())
      return fail("generate: the prompt encodes to no tokens");
    stopAtEog = !ignoreEos;
  }
  kiln_sampler *sampler;
  if (kiln_status s = kiln_sampler_create(&sp, &sampler))
    return failStatus(s);
  size_t vocab = kiln_llm_vocab_size(m.llm);
  kiln::npy::Array logits;
  logits.dtype = kiln::npy::DType::F32;
  auto keepLogits = [&] {
    if (logitsOut.empty())
      return;
    const char *p = reinterpret_cast<const char *>(kiln_llm_logits(m.llm));
    logits.data.insert(logits.data.end(), p, p + vocab * sizeof(float));
  };

  t0 = std::chrono::steady_clock::now();
  if (kiln_status s = kiln_llm_prefill(m.llm, prompt.data(), prompt.size()))
    return failStatus(s);
  double promptS = seconds(t0);
  keepLogits();
  std::vector<int32_t> history = prompt, generated;
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    int32_t next;
    if (kiln_status s = kiln_sampler_sample(sampler, kiln_llm_logits(m.llm),
                                            vocab, history.data(),
                                            history.size(), &next))
      return failStatus(s);
    if (stopAtEog && kiln_tokenizer_is_eog(m.tokenizer, next))
      break;
    generated.push_back(next);
    int32_t fed = teacher.empty() ? next : teacher[i];
    history.push_back(fed);
    if (!printIds) {
      if (m.tokenizer) {
        const char *piece;
        size_t len;
        if (kiln_status s = kiln_tokenizer_piece(m.tokenizer, next, 0, &piece, &len))
          return failStatus(s);
        std::fwrite(piece, 1, len, stdout);
      } else {
        std::printf("%s%d", i ? " " : "", next);
      }
      std::fflush(stdout);
    }
    if (kiln_status s = kiln_llm_decode(m.llm, fed))
      return failStatus(s);
    keepLogits();
  }
  double genS = seconds(t0);
  if (printIds) {
    for (size_t i = 0; i < generated.size(); ++i)
      std::printf("%s%d", i ? " " : "", generated[i]);
  }
  std::printf("\n");
  std::fflush(stdout); // the text ends before the statistics on stderr
  if (!logitsOut.empty()) {
    logits.shape = {static_cast<int64_t>(logits.data.size() / (vocab * 4)),
                    static_cast<int64_t>(vocab)};
    std::string err;
    if (!kiln::npy::write(logitsOut, logits, err))
      return fail(err);
  }
  std::fprintf(stderr,
               "kiln-run: load %.2f s; prompt %zu tokens in %.3f s (%.1f t/s); "
               "%d tokens in %.3f s (%.1f t/s); KV cache %.1f KiB\n",
               loadS, prompt.size(), promptS, prompt.size() / promptS,
               static_cast<int>(generated.size()), genS,
               generated.empty() ? 0.0 : generated.size() / genS,
               kiln_llm_kv_bytes(m.llm) / 1024.0);
  kiln_sampler_release(sampler);
  return 0;
}

int benchMain(int argc, char **argv) {
  LlmArgs a;
  int pp = 128, tg = 64, reps = 5, depth = 0;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    std::string err;
    if ((v = optionValue(argc, argv, i, "-p", "--n-prompt=")))
      pp = std::atoi(v);
    else if ((v = optionValue(argc, argv, i, "-d", "--depth=")))
      depth = std::atoi(v);
    else if ((v = optionValue(argc, argv, i, "-n", "--n-gen=")))
      tg = std::atoi(v);
    else if ((v = optionValue(argc, argv, i, "-r", "--repetitions=")))
      reps = std::atoi(v);
    else if (!parseCommon(argv[i], a, err))
      return fail("bench: " + err);
  }
  if (a.artifactPath.empty())
    return fail("bench: no artifact given");
  if (pp < 1 || tg < 1 || reps < 1 || depth < 0)
    return fail("bench: -p, -n and -r must be >= 1, -d >= 0");
  Llm m;
  if (kiln_status s = openLlm(a, m))
    return failStatus(s);
  size_t vocab = kiln_llm_vocab_size(m.llm);
  // Fixed pseudo-random tokens, as llama-bench does; the first `depth` of
  // them fill the cache (untimed) before each timed run.
  std::vector<int32_t> tokens(std::max(pp, depth));
  uint32_t x = 12345;
  for (int32_t &t : tokens) {
    x = x * 1664525u + 1013904223u;
    t = static_cast<int32_t>((x >> 8) % vocab);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<double> ppRate, tgRate;
  auto fill = [&]() -> kiln_status {
    kiln_llm_reset(m.llm);
    return depth ? kiln_llm_prefill(m.llm, tokens.data(), depth) : nullptr;
  };
  for (int r = 0; r <= reps; ++r) { // the first run warms up
    if (kiln_status s = fill())
      return failStatus(s);
    auto t0 = std::chrono::steady_clock::now();
    if (kiln_status s = kiln_llm_prefill(m.llm, tokens.data(), pp))
      return failStatus(s);
    double s1 = seconds(t0);
    if (kiln_status s = fill())
      return failStatus(s);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < tg; ++i)
      if (kiln_status s = kiln_llm_decode(m.llm, tokens[i % pp]))
        return failStatus(s);
    double s2 = seconds(t0);
    if (r > 0) {
      ppRate.push_back(pp / s1);
      tgRate.push_back(tg / s2);
    }
  }
  std::printf("| artifact | device | test | t/s |\n");
  std::printf("| --- | --- | --- | ---: |\n");
  std::string at = depth ? " @ d" + std::to_string(depth) : "";
  std::printf("| %s | %s | pp%d%s | %.2f |\n", a.artifactPath.c_str(),
              a.device.c_str(), pp, at.c_str(), median(ppRate));
  std::printf("| %s | %s | tg%d%s | %.2f |\n", a.artifactPath.c_str(),
              a.device.c_str(), tg, at.c_str(), median(tgRate));
  return 0;
}

int tokenizeMain(int argc, char **argv) {
  LlmArgs a;
  std::vector<std::string> items;
  bool special = false, roundtrip = false, info = false, chat = false;
  std::string system, chatTemplate;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    std::string err;
    if (!std::strcmp(argv[i], "--info")) {
      info = true;
    } else if (!std::strcmp(argv[i], "--chat")) {
      chat = true;
    } else if (startsWith(argv[i], "--chat-template=", &v)) {
      chat = true;
      if (!readFile(v, chatTemplate))
        return fail(std::string("tokenize: cannot read '") + v + "'");
    } else if (startsWith(argv[i], "--system=", &v)) {
      system = v;
    } else if (startsWith(argv[i], "--text=", &v)) {
      items.push_back(v);
    } else if (startsWith(argv[i], "--file=", &v)) {
      std::string all;
      if (!readFile(v, all))
        return fail(std::string("cannot read '") + v + "'");
      size_t start = 0;
      for (size_t k = 0; k <= all.size(); ++k)
        if (k == all.size() || all[k] == '\0') {
          if (k > start || k < all.size())
            items.push_back(all.substr(start, k - start));
          start = k + 1;
        }
    } else if (!std::strcmp(argv[i], "--special")) {
      special = true;
    } else if (!std::strcmp(argv[i], "--roundtrip")) {
      roundtrip = true;
    } else if (!parseCommon(argv[i], a, err)) {
      return fail("tokenize: " + err);
    }
  }
  if (a.artifactPath.empty())
    return fail("tokenize: no artifact given");
  kiln_artifact *artifact;
  if (kiln_status s = kiln_artifact_open(a.artifactPath.c_str(), &artifact))
    return failStatus(s);
  kiln_tokenizer *tok;
  if (kiln_status s = kiln_tokenizer_create(artifact, &tok))
    return failStatus(s);
  if (info) {
    // The vocabulary and the ids that matter to generation.
    size_t n = kiln_tokenizer_vocab_size(tok);
    std::string eog;
    for (size_t id = 0; id < n; ++id)
      if (kiln_tokenizer_is_eog(tok, int32_t(id)))
        eog += (eog.empty() ? "" : ",") + std::to_string(id);
    std::printf("vocab %zu bos %d eos %d eog %s\n", n, kiln_tokenizer_bos(tok),
                kiln_tokenizer_eos(tok), eog.empty() ? "-" : eog.c_str());
  }
  // --chat: each item as the user turn of a chat prompt, the ids
  // `generate --chat` would prefill.
  if (chat) {
    special = true;
    roundtrip = false;
  }
  size_t addsBos = 0;
  if (kiln_status s = kiln_tokenizer_encode(tok, "", 0, 0, nullptr, 0, &addsBos))
    return failStatus(s);
  int bad = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    std::vector<int32_t> ids;
    kiln_status s = chat ? chatPromptIds(tok, chatTemplate, system, items[k], ids)
                         : encode(tok, items[k], special, ids);
    if (s)
      return failStatus(s);
    std::string line, back;
    for (size_t i = 0; i < ids.size(); ++i)
      line += (i ? " " : "") + std::to_string(ids[i]);
    // The text comes back from the ids after the BOS the tokenizer adds.
    size_t skip = addsBos && !ids.empty() && ids[0] == kiln_tokenizer_bos(tok);
    size_t len = 0;
    if (kiln_status s = kiln_tokenizer_decode(tok, ids.data() + skip,
                                              ids.size() - skip, special,
                                              nullptr, 0, &len))
      return failStatus(s);
    back.resize(len);
    if (kiln_status s = kiln_tokenizer_decode(tok, ids.data() + skip,
                                              ids.size() - skip, special,
                                              back.data(), len, &len))
      return failStatus(s);
    std::printf("%s\n", line.c_str());
    if (roundtrip && back != items[k]) {
      std::fprintf(stderr, "kiln-run: item %zu does not decode to itself\n", k);
      ++bad;
    }
  }
  kiln_tokenizer_release(tok);
  kiln_artifact_release(artifact);
  return bad ? 1 : 0;
}

/// kiln-run tool-calls [--format=F] (--text=TEXT | --file=FILE): the tool
/// calls in a reply, as kiln_tool_calls_parse's JSON (one line).
int toolCallsMain(int argc, char **argv) {
  std::string text, format = "auto";
  bool have = false;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    if (startsWith(argv[i], "--format=", &v)) {
      format = v;
    } else if (startsWith(argv[i], "--text=", &v)) {
      text = v;
      have = true;
    } else if (startsWith(argv[i], "--file=", &v)) {
      if (!readFile(v, text))
        return fail(std::string("tool-calls: cannot read '") + v + "'");
      have = true;
    } else {
      return fail(std::string("tool-calls: unknown option '") + argv[i] + "'");
    }
  }
  if (!have)
    return fail("tool-calls: give the reply as --text=TEXT or --file=FILE");
  size_t n = 0;
  if (kiln_status s = kiln_tool_calls_parse(text.data(), text.size(), format.c_str(),
                                            nullptr, 0, &n))
    return failStatus(s);
  std::string json(n, '\0');
  if (kiln_status s = kiln_tool_calls_parse(text.data(), text.size(), format.c_str(),
                                            json.data(), n, &n))
    return failStatus(s);
  std::printf("%s\n", json.c_str());
  return 0;
}

/// kiln-run chat-template [ARTIFACT] [--template=FILE] --context=FILE.json
/// [--ids]: the rendered text, exactly (or, with --ids, its prompt ids).
int chatTemplateMain(int argc, char **argv) {
  std::string artifactPath, tmpl, context;
  bool haveTemplate = false, haveContext = false, ids = false;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    if (startsWith(argv[i], "--template=", &v)) {
      if (!readFile(v, tmpl))
        return fail(std::string("chat-template: cannot read '") + v + "'");
      haveTemplate = true;
    } else if (startsWith(argv[i], "--context=", &v)) {
      if (!readFile(v, context))
        return fail(std::string("chat-template: cannot read '") + v + "'");
      haveContext = true;
    } else if (!std::strcmp(argv[i], "--ids")) {
      ids = true;
    } else if (argv[i][0] == '-') {
      return fail(std::string("chat-template: unknown option '") + argv[i] + "'");
    } else if (artifactPath.empty()) {
      artifactPath = argv[i];
    } else {
      return fail(std::string("chat-template: unexpected argument '") + argv[i] + "'");
    }
  }
  if (!haveContext)
    return fail("chat-template: give the variables as --context=FILE.json");
  if (artifactPath.empty() && (!haveTemplate || ids))
    return fail("chat-template: give an artifact (for its template or ids)");
  kiln_artifact *artifact = nullptr;
  kiln_tokenizer *tok = nullptr;
  if (!artifactPath.empty()) {
    if (kiln_status s = kiln_artifact_open(artifactPath.c_str(), &artifact))
      return failStatus(s);
    if (kiln_status s = kiln_tokenizer_create(artifact, &tok))
      return failStatus(s);
  }
  const char *t = haveTemplate ? tmpl.c_str() : nullptr;
  std::string text;
  if (kiln_status s = fillBuffer(text, 1 << 16, [&](char *d, size_t cap, size_t *n) {
        return kiln_chat_render(tok, t, context.c_str(), d, cap, n);
      }))
    return failStatus(s);
  if (ids) {
    std::vector<int32_t> v;
    if (kiln_status e = chatIds(tok, text, v))
      return failStatus(e);
    for (size_t i = 0; i < v.size(); ++i)
      std::printf("%s%d", i ? " " : "", v[i]);
    std::printf("\n");
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  kiln_tokenizer_release(tok);
  kiln_artifact_release(artifact);
  return 0;
}

/// kiln-run chat ARTIFACT [--system=TEXT] [--chat-template=FILE] [-n N]
/// [--fresh] [sampling]: a conversation, one user turn per line of stdin. Each turn
/// renders the whole conversation with the template and prefills only what
/// follows the longest prefix it shares with the tokens in the cache
/// (kiln_llm_truncate drops the rest; a ring cache that has slid starts
/// over). --fresh prefills everything each turn (the same text, slower: a
/// check of the reuse).
int chatMain(int argc, char **argv) {
  LlmArgs a;
  std::string system, tmpl;
  bool fresh = false; // prefill the whole conversation each turn
  int n = 256;
  kiln_sampler_params sp{0.0f, 0, 1.0f, 1.0f, 0};
  for (int i = 1; i < argc; ++i) {
    const char *v;
    std::string err;
    if (startsWith(argv[i], "--system=", &v)) {
      system = v;
    } else if (!std::strcmp(argv[i], "--fresh")) {
      fresh = true;
    } else if (startsWith(argv[i], "--chat-template=", &v)) {
      if (!readFile(v, tmpl))
        return fail(std::string("chat: cannot read '") + v + "'");
    } else if ((v = optionValue(argc, argv, i, "-n", "--n-predict="))) {
      n = std::atoi(v);
    } else if (parseSampling(argv[i], sp)) {
    } else if (!parseCommon(argv[i], a, err)) {
      return fail("chat: " + err);
    }
  }
  if (a.artifactPath.empty())
    return fail("chat: no artifact given");
  if (n < 1)
    return fail("chat: -n must be >= 1");
  Llm m;
  if (kiln_status s = openLlm(a, m))
    return failStatus(s);
  if (kiln_status s = kiln_tokenizer_create(m.artifact, &m.tokenizer))
    return failStatus(s);
  if (tmpl.empty() && !*kiln_tokenizer_chat_template(m.tokenizer))
    return fail("chat: the model has no chat template (give one with "
                "--chat-template=FILE)");
  kiln_sampler *sampler;
  if (kiln_status s = kiln_sampler_create(&sp, &sampler))
    return failStatus(s);
  size_t vocab = kiln_llm_vocab_size(m.llm);
  // The conversation (texts owned here) and the tokens in the cache.
  std::vector<std::pair<std::string, std::string>> turns;
  if (!system.empty())
    turns.emplace_back("system", system);
  std::vector<int32_t> cached;
  std::string line;
  int turn = 0;
  while (true) {
    std::fprintf(stderr, "> ");
    std::fflush(stderr);
    line.clear();
    int c;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n')
      line += char(c);
    if (c == EOF && line.empty())
      break;
    if (line.empty())
      continue;
    ++turn;
    turns.emplace_back("user", line);
    std::vector<kiln_chat_message> messages;
    for (auto &[role, content] : turns)
      messages.push_back({role.c_str(), content.c_str()});
    std::string text;
    std::vector<int32_t> ids;
    if (kiln_status s = chatText(m.tokenizer, tmpl, messages, text))
      return failStatus(s);
    if (kiln_status s = chatIds(m.tokenizer, text, ids))
      return failStatus(s);
    // Keep the cached tokens the new text starts with (re-encoding a reply
    // need not give the ids that were generated), and at least one token
    // to prefill for the logits.
    size_t keep = 0;
    while (!fresh && keep < cached.size() && keep + 1 < ids.size() && cached[keep] == ids[keep])
      ++keep;
    if (kiln_status s = kiln_llm_truncate(m.llm, keep)) {
      kiln_status_free(s);
      kiln_llm_reset(m.llm);
      keep = 0;
    }
    auto t0 = std::chrono::steady_clock::now();
    if (kiln_status s = kiln_llm_prefill(m.llm, ids.data() + keep, ids.size() - keep))
      return failStatus(s);
    double promptS = seconds(t0);
    cached = ids;
    std::string reply;
    int made = 0;
    t0 = std::chrono::steady_clock::now();
    for (; made < n; ++made) {
      int32_t next;
      if (kiln_status s = kiln_sampler_sample(sampler, kiln_llm_logits(m.llm), vocab,
                                              cached.data(), cached.size(), &next))
        return failStatus(s);
      if (kiln_tokenizer_is_eog(m.tokenizer, next))
        break;
      const char *piece;
      size_t len;
      if (kiln_status s = kiln_tokenizer_piece(m.tokenizer, next, 0, &piece, &len))
        return failStatus(s);
      reply.append(piece, len);
      std::fwrite(piece, 1, len, stdout);
      std::fflush(stdout);
      if (kiln_status s = kiln_llm_decode(m.llm, next))
        return failStatus(s);
      cached.push_back(next);
    }
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr,
                 "kiln-run: turn %d: %zu cached tokens reused, %zu prefilled "
                 "in %.3f s; %d generated in %.3f s; %zu in the cache\n",
                 turn, keep, ids.size() - keep, promptS, made, seconds(t0),
                 kiln_llm_position(m.llm));
    turns.emplace_back("assistant", reply);
  }
  kiln_sampler_release(sampler);
  return 0;
}
