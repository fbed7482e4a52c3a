// Runtime unit tests. Without arguments: the C API's behaviour on bad
// input. With an artifact path: every single-byte corruption of its header
// and a sweep of truncations must be rejected with a status (or accepted,
// when the byte does not matter) and never crash.
#include "kiln/kiln.h"
#include "kiln_artifact_generated.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

static int passed = 0, failed = 0;

#define EXPECT(cond)                                                           \
  do {                                                                         \
    if (cond) {                                                                \
      ++passed;                                                                \
    } else {                                                                   \
      ++failed;                                                                \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
    }                                                                          \
  } while (0)

static bool contains(kiln_status s, const char *text) {
  return s && std::strstr(kiln_status_message(s), text) != nullptr;
}

/// 64-byte aligned copy, as kiln_artifact_open_memory requires.
struct Aligned {
  explicit Aligned(const std::vector<char> &bytes) : size(bytes.size()) {
    data = static_cast<char *>(std::aligned_alloc(64, (size + 64) / 64 * 64));
    if (size)
      std::memcpy(data, bytes.data(), size);
  }
  ~Aligned() { std::free(data); }
  char *data;
  size_t size;
};

static void testBasics() {
  EXPECT(kiln_status_get_code(nullptr) == KILN_OK);
  EXPECT(std::strcmp(kiln_status_message(nullptr), "OK") == 0);
  EXPECT(kiln_dtype_size(KILN_F32) == 4 && kiln_dtype_size(KILN_I64) == 8 &&
         kiln_dtype_size(KILN_BOOL) == 1 && kiln_dtype_size(KILN_F16) == 2);
  EXPECT(std::strcmp(kiln_dtype_name(KILN_BOOL), "bool") == 0);

  kiln_artifact *a = reinterpret_cast<kiln_artifact *>(1);
  kiln_status s = kiln_artifact_open("/nonexistent/model.kiln", &a);
  EXPECT(kiln_status_get_code(s) == KILN_NOT_FOUND);
  EXPECT(contains(s, "/nonexistent/model.kiln"));
  EXPECT(a == nullptr);
  kiln_status_free(s);

  s = kiln_artifact_open("/", &a);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);

  std::vector<char> garbage(256, 'x');
  Aligned g(garbage);
  s = kiln_artifact_open_memory(g.data, g.size, &a);
  EXPECT(kiln_status_get_code(s) == KILN_DATA_LOSS);
  EXPECT(contains(s, "<memory>"));
  kiln_status_free(s);

  s = kiln_artifact_open_memory(g.data + 1, g.size - 1, &a);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  EXPECT(contains(s, "64-byte aligned"));
  kiln_status_free(s);

  s = kiln_artifact_open_memory(g.data, 4, &a);
  EXPECT(kiln_status_get_code(s) == KILN_DATA_LOSS);
  EXPECT(contains(s, "too small"));
  kiln_status_free(s);
}

/// The LLM API on an artifact with prefill/decode and a KV cache.
static void testLlm(kiln_artifact *a, kiln_llm *llm) {
  size_t vocab = kiln_llm_vocab_size(llm);
  EXPECT(vocab > 4);
  EXPECT(kiln_llm_logits(llm) == nullptr);
  EXPECT(kiln_llm_position(llm) == 0 && kiln_llm_kv_bytes(llm) == 0);
  int32_t prompt[3] = {1, 2, 3};
  EXPECT(kiln_llm_prefill(llm, prompt, 3) == nullptr);
  EXPECT(kiln_llm_position(llm) == 3 && kiln_llm_logits(llm) != nullptr);
  uint64_t oneBlock = kiln_llm_kv_bytes(llm);
  EXPECT(oneBlock > 0);
  std::vector<float> first(kiln_llm_logits(llm), kiln_llm_logits(llm) + vocab);

  // Greedy sampling is the argmax; a seed reproduces a sampled sequence.
  kiln_sampler_params greedy = {0.0f, 0, 1.0f, 1.0f, 0};
  kiln_sampler *g;
  EXPECT(kiln_sampler_create(&greedy, &g) == nullptr);
  int32_t pick = -1;
  EXPECT(kiln_sampler_sample(g, first.data(), vocab, prompt, 3, &pick) == nullptr);
  EXPECT(pick == std::max_element(first.begin(), first.end()) - first.begin());
  kiln_sampler_release(g);
  kiln_sampler_params warm = {0.9f, 20, 0.9f, 1.2f, 7};
  int32_t seqA[8], seqB[8];
  for (int32_t *seq : {seqA, seqB}) {
    kiln_sampler *sm;
    EXPECT(kiln_sampler_create(&warm, &sm) == nullptr);
    for (int i = 0; i < 8; ++i)
      EXPECT(kiln_sampler_sample(sm, first.data(), vocab, seq, i, &seq[i]) == nullptr);
    kiln_sampler_release(sm);
  }
  EXPECT(std::equal(seqA, seqA + 8, seqB));
  kiln_sampler_params bad = {0.5f, 0, 1.0f, 0.0f, 0};
  kiln_sampler *none;
  kiln_status s = kiln_sampler_create(&bad, &none);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);

  // A bad token leaves the sequence as it was.
  s = kiln_llm_decode(llm, static_cast<int32_t>(vocab));
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);
  EXPECT(kiln_llm_position(llm) == 3);
  EXPECT(kiln_llm_decode(llm, pick) == nullptr && kiln_llm_position(llm) == 4);

  // Reset empties the cache; the same prompt gives the same logits.
  kiln_llm_reset(llm);
  EXPECT(kiln_llm_position(llm) == 0 && kiln_llm_kv_bytes(llm) == 0);
  EXPECT(kiln_llm_prefill(llm, prompt, 3) == nullptr);
  EXPECT(std::equal(first.begin(), first.end(), kiln_llm_logits(llm)));

  // Truncating to a prefix and prefilling the same tokens again gives the
  // logits of the whole sequence; the dropped tokens' blocks go back.
  int32_t longer[6] = {prompt[0], prompt[1], prompt[2], 4, 5, 6};
  kiln_llm_reset(llm);
  EXPECT(kiln_llm_prefill(llm, longer, 6) == nullptr);
  std::vector<float> full(kiln_llm_logits(llm), kiln_llm_logits(llm) + vocab);
  EXPECT(kiln_llm_truncate(llm, 2) == nullptr);
  EXPECT(kiln_llm_position(llm) == 2 && kiln_llm_logits(llm) == nullptr);
  EXPECT(kiln_llm_kv_bytes(llm) == oneBlock);
  EXPECT(kiln_llm_prefill(llm, longer + 2, 4) == nullptr);
  EXPECT(std::equal(full.begin(), full.end(), kiln_llm_logits(llm)));
  EXPECT(kiln_llm_truncate(llm, 6) == nullptr && kiln_llm_position(llm) == 6);
  s = kiln_llm_truncate(llm, 7);
  EXPECT(contains(s, "cannot truncate to 7 tokens: the sequence has 6"));
  kiln_status_free(s);
  EXPECT(kiln_llm_truncate(llm, 0) == nullptr && kiln_llm_kv_bytes(llm) == 0);
  EXPECT(kiln_llm_prefill(llm, prompt, 3) == nullptr);
  EXPECT(std::equal(first.begin(), first.end(), kiln_llm_logits(llm)));

  // A small context overflows with a clear error.
  kiln_llm *small;
  EXPECT(kiln_llm_create(a, "cpu", 4, &small) == nullptr);
  int32_t five[5] = {1, 2, 3, 4, 5};
  s = kiln_llm_prefill(small, five, 5);
  EXPECT(contains(s, "context full"));
  kiln_status_free(s);
  EXPECT(kiln_llm_position(small) == 0);
  kiln_llm_release(small);
  s = kiln_llm_create(a, "cpu", 1u << 30, &small);
  EXPECT(contains(s, "larger than the artifact's maximum"));
  kiln_status_free(s);
  // Its functions cannot be called without the cache.
  kiln_session *session;
  EXPECT(kiln_session_create(a, "cpu", &session) == nullptr);
  s = kiln_session_call(session, "decode", nullptr, 0, nullptr, 0);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);
  kiln_session_release(session);
  std::printf("llm api: vocab %zu, %llu bytes per cache block\n", vocab,
              static_cast<unsigned long long>(oneBlock));
}

static void testArtifact(const char *path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)),
                          std::istreambuf_iterator<char>());
  EXPECT(bytes.size() > 8);
  if (bytes.size() <= 8)
    return;
  {
    Aligned good(bytes);
    kiln_artifact *a;
    kiln_status s = kiln_artifact_open_memory(good.data, good.size, &a);
    EXPECT(s == nullptr);
    if (s) {
      std::printf("%s\n", kiln_status_message(s));
      kiln_status_free(s);
      return;
    }
    EXPECT(kiln_artifact_function_count(a) >= 1);
    EXPECT(kiln_artifact_metadata(a, "targets") != nullptr);
    EXPECT(kiln_artifact_metadata(a, "no-such-key") == nullptr);
    kiln_llm *llm;
    if (kiln_status ls = kiln_llm_create(a, "cpu", 0, &llm)) {
      kiln_status_free(ls);
    } else {
      testLlm(a, llm);
      kiln_llm_release(llm);
      kiln_artifact_release(a);
      goto sweep;
    }
    {
    size_t nin, nout;
    s = kiln_function_arity(a, "main", &nin, &nout);
    EXPECT(s == nullptr && nout >= 1);
    kiln_tensor_info info;
    s = kiln_function_input(a, "main", 99, &info);
    EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
    kiln_status_free(s);
    kiln_session *session;
    s = kiln_session_create(a, "cpu", &session);
    EXPECT(s == nullptr);
    if (!s) {
      std::vector<kiln_tensor> none;
      kiln_status c = kiln_session_call(session, "main", nullptr, 0, nullptr, 0);
      EXPECT(kiln_status_get_code(c) == KILN_INVALID_ARGUMENT || nin == 0);
      kiln_status_free(c);
      kiln_session_release(session);
    }
    kiln_status_free(s);
    kiln_artifact_release(a);
    }
  }

sweep:
  uint32_t fbSize;
  std::memcpy(&fbSize, bytes.data(), 4);
  size_t header = std::min<size_t>(bytes.size(), 4 + size_t(fbSize));
  int rejected = 0, accepted = 0;
  auto attempt = [&](const std::vector<char> &b) {
    Aligned m(b);
    kiln_artifact *a;
    kiln_status s = kiln_artifact_open_memory(m.data, m.size, &a);
    if (s) {
      ++rejected;
      kiln_status_free(s);
      return;
    }
    ++accepted;
    kiln_session *session;
    kiln_status cs = kiln_session_create(a, "cpu", &session);
    if (!cs)
      kiln_session_release(session);
    kiln_status_free(cs);
    kiln_llm *llm;
    if (kiln_status ls = kiln_llm_create(a, "cpu", 0, &llm)) {
      kiln_status_free(ls);
    } else {
      int32_t t = 1;
      kiln_status_free(kiln_llm_prefill(llm, &t, 1));
      kiln_llm_release(llm);
    }
    kiln_tokenizer *tok;
    if (kiln_status ts = kiln_tokenizer_create(a, &tok)) {
      kiln_status_free(ts);
    } else {
      size_t n;
      kiln_status_free(kiln_tokenizer_encode(tok, "hi there 42", 11, 1,
                                             nullptr, 0, &n));
      const int32_t ids[] = {0, 1, 2, 300, -1};
      kiln_status_free(kiln_tokenizer_decode(tok, ids, 5, 1, nullptr, 0, &n));
      kiln_tokenizer_release(tok);
    }
    kiln_artifact_release(a);
  };
  for (size_t i = 0; i < header; ++i) {
    std::vector<char> b = bytes;
    b[i] ^= static_cast<char>(0xff);
    attempt(b);
  }
  size_t step = std::max<size_t>(1, bytes.size() / 500);
  for (size_t len = 0; len < bytes.size(); len += step) {
    std::vector<char> b(bytes.begin(), bytes.begin() + len);
    int before = accepted;
    attempt(b);
    EXPECT(accepted == before); // no truncation may verify
  }
  std::printf("corruptions: %d rejected, %d accepted, 0 crashed\n", rejected,
              accepted);
}

/// The header checksum (docs/artifact.md): 64-bit FNV-1a over the size
/// prefix and the flatbuffer.
static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

/// Opens a copy of `bytes` whose KV cache spec `edit` changed in place
/// (the generated tables keep their flatbuffers::Table base, whose SetField
/// writes a stored scalar), with the header checksum redone, so that only
/// the verifier's own checks stand between the edit and the kernels; true
/// when it was rejected with a message containing `expect`.
template <class Edit>
static bool rejectsEdit(const std::vector<char> &bytes, Edit edit,
                        const char *expect) {
  std::vector<char> b = bytes;
  auto *spec = const_cast<kiln::fb::KvCacheSpec *>(
      kiln::fb::GetModel(b.data() + 4)->kv_cache());
  EXPECT(edit(spec));
  uint32_t fbSize;
  std::memcpy(&fbSize, b.data(), 4);
  uint64_t h = fnv1a(b.data(), 4 + size_t(fbSize));
  std::memcpy(b.data() + 4 + fbSize, &h, 8);
  Aligned m(b);
  kiln_artifact *a;
  kiln_status s = kiln_artifact_open_memory(m.data, m.size, &a);
  bool rejected = contains(s, expect);
  EXPECT(rejected);
  if (!s)
    kiln_artifact_release(a);
  else if (!rejected)
    std::printf("unexpected: %s\n", kiln_status_message(s));
  kiln_status_free(s);
  return rejected;
}

/// An int8-KV artifact with one KvCacheSpec field edited: each edit must be
/// rejected with a message naming the problem.
static void testKvSpecEdits(const std::vector<char> &bytes) {
  namespace fb = kiln::fb;
  const fb::KvCacheSpec *kv = fb::GetModel(bytes.data() + 4)->kv_cache();
  if (!kv || kv->dtype() != fb::DType::I8)
    return;
  int rejected = 0;
  auto edit = [&](fb::KvCacheSpec::FlatBuffersVTableOffset field, auto value,
                  const char *expect) {
    rejected += rejectsEdit(
        bytes,
        [&](fb::KvCacheSpec *spec) {
          return reinterpret_cast<flatbuffers::Table *>(spec)->SetField(
              field, value, decltype(value)(0));
        },
        expect);
  };
  edit(fb::KvCacheSpec::VT_SCALE_GROUP, uint32_t(0),
       "int8 KV cache's scale group 0 does not divide its head dim");
  edit(fb::KvCacheSpec::VT_SCALE_GROUP, uint32_t(kv->head_dim() + 1),
       "does not divide its head dim");
  edit(fb::KvCacheSpec::VT_SCALE_DTYPE, int8_t(fb::DType::F32),
       "KV cache dtype I8 (scales F32) / layout BlockHeadToken is not "
       "supported");
  edit(fb::KvCacheSpec::VT_DTYPE, int8_t(fb::DType::I16),
       "KV cache dtype I16");
  std::printf("int8 KV spec edits: %d of 4 rejected by name\n", rejected);
}

/// A ring cache (every layer windowed, a context longer than the pool):
/// the sequence runs to the whole context in the pool's blocks; and with
/// one layer's window edited away the pool could not hold what that layer
/// reads, which the verifier rejects.
static void testRing(const std::vector<char> &bytes) {
  namespace fb = kiln::fb;
  const fb::KvCacheSpec *kv = fb::GetModel(bytes.data() + 4)->kv_cache();
  if (!kv || !kv->layers() || kv->layers()->size() == 0 ||
      kv->max_context() <= uint64_t(kv->num_blocks()) * kv->block_size())
    return;
  Aligned good(bytes);
  kiln_artifact *a;
  kiln_llm *llm;
  EXPECT(kiln_artifact_open_memory(good.data, good.size, &a) == nullptr);
  EXPECT(kiln_llm_create(a, "cpu", 0, &llm) == nullptr);
  int32_t prompt[3] = {1, 2, 3};
  EXPECT(kiln_llm_prefill(llm, prompt, 3) == nullptr);
  uint64_t block = kiln_llm_kv_bytes(llm), most = 0;
  while (kiln_llm_position(llm) < kiln_llm_context_size(llm)) {
    kiln_status s = kiln_llm_decode(llm, 1);
    EXPECT(s == nullptr);
    kiln_status_free(s);
    if (s)
      break;
    most = std::max(most, kiln_llm_kv_bytes(llm));
  }
  EXPECT(kiln_llm_position(llm) == kv->max_context());
  EXPECT(most == block * kv->num_blocks());
  // A ring that has slid cannot go back to a prefix.
  kiln_status ts = kiln_llm_truncate(llm, 1);
  EXPECT(contains(ts, "the ring cache has slid"));
  kiln_status_free(ts);
  kiln_llm_release(llm);
  kiln_artifact_release(a);
  std::printf("ring: %u tokens in %u blocks of %u (%llu bytes at most)\n",
              kv->max_context(), kv->num_blocks(), kv->block_size(),
              static_cast<unsigned long long>(most));

  bool rejected = rejectsEdit(
      bytes,
      [](fb::KvCacheSpec *spec) {
        auto *layer = const_cast<fb::KvLayerSpec *>(spec->layers()->Get(0));
        return reinterpret_cast<flatbuffers::Table *>(layer)->SetField(
            fb::KvLayerSpec::VT_WINDOW, uint32_t(0), uint32_t(0));
      },
      "the KV cache spec is inconsistent");
  std::printf("ring with a layer's window edited away: %s\n",
              rejected ? "rejected" : "ACCEPTED");
}

/// The chat-template C API without a model: a template and JSON given.
static void testChat() {
  const char *tmpl = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}"
                     "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
  kiln_chat_message msgs[2] = {{"system", " Be brief. "}, {"user", "Hi \"there\""}};
  size_t n = 0;
  EXPECT(kiln_chat_render_messages(nullptr, tmpl, msgs, 2, 1, nullptr, 0, &n) == nullptr);
  std::string out(n, '\0');
  EXPECT(kiln_chat_render_messages(nullptr, tmpl, msgs, 2, 1, out.data(), n, &n) == nullptr);
  EXPECT(out == "<system>Be brief.<user>Hi \"there\"<assistant>");
  // A short buffer gets a prefix and the full length.
  char small[4];
  EXPECT(kiln_chat_render_messages(nullptr, tmpl, msgs, 1, 0, small, 4, &n) == nullptr);
  EXPECT(n == std::strlen("<system>Be brief.") && !std::memcmp(small, "<sys", 4));
  // JSON context, the template's own error, bad JSON, no template.
  EXPECT(kiln_chat_render(nullptr, "{{ x.y | tojson }}", "{\"x\": {\"y\": [1, 2.5, null]}}",
                          small, 0, &n) == nullptr && n == std::strlen("[1, 2.5, null]"));
  kiln_status s = kiln_chat_render(nullptr, "{{ raise_exception('nope') }}", "{}", nullptr, 0, &n);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT && contains(s, "nope"));
  kiln_status_free(s);
  s = kiln_chat_render(nullptr, "x", "{\"messages\": [}", nullptr, 0, &n);
  EXPECT(contains(s, "context JSON"));
  kiln_status_free(s);
  s = kiln_chat_render(nullptr, nullptr, "{}", nullptr, 0, &n);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);
  s = kiln_chat_render_messages(nullptr, tmpl, msgs, 1, 0, nullptr, 0, nullptr);
  EXPECT(kiln_status_get_code(s) == KILN_INVALID_ARGUMENT);
  kiln_status_free(s);
  kiln_chat_message noRole = {nullptr, "x"};
  s = kiln_chat_render_messages(nullptr, tmpl, &noRole, 1, 0, nullptr, 0, &n);
  EXPECT(contains(s, "message 0 has no role or content"));
  kiln_status_free(s);
}

int main(int argc, char **argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0); // progress survives a crash
  testBasics();
  testChat();
  if (argc > 1) {
    testArtifact(argv[1]);
    std::ifstream f(argv[1], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)),
                            std::istreambuf_iterator<char>());
    testKvSpecEdits(bytes);
    testRing(bytes);
  }
  std::printf("runtime unit tests: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
