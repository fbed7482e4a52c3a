// The LLM layer: one sequence over an artifact's `prefill` and `decode`
// functions, its paged KV cache, and the sampler.
//
// The cache is a pool of blocks (KvCacheSpec.num_blocks, each holding
// block_size tokens of every layer) reserved as address space up front and
// committed by the OS page by page as blocks are first written, so the
// memory a sequence holds follows its length. The block table maps the
// sequence's logical blocks to pool blocks; blocks come from a free list,
// so a second sequence (batch > 1) is a second table over the same pool.
//
// When every layer attends through a sliding window (of at most W keys
// besides S sink positions) the pool may be smaller than the context: the
// cache is then a ring. Cache positions are virtual (the true position
// minus `shift`); when a call would pass the pool, the oldest block after
// the sink blocks, which no query of the call can see any more, leaves
// the table (rotated to its end, to be overwritten) and every virtual
// position drops by one block. Distances between queries and window keys
// do not change, the sinks keep their positions, and the model still gets
// the true positions (RoPE): the kernels need not know.
#include "session.h"
#include "status.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

using kiln::rt::makeStatus;
namespace fb = kiln::fb;

namespace {

/// One compiled step function: `S` tokens in, the last one's logits out.
struct StepFunction {
  int index = -1;
  const fb::FunctionImpl *impl = nullptr;
  int64_t tokens = 0; // S
};

} // namespace

struct kiln_llm_s {
  kiln_session *session = nullptr;
  const fb::KvCacheSpec *spec = nullptr;
  StepFunction prefill, decode;
  // Further prefill sizes (functions "prefill_N", kiln-compile
  // --prefill-chunk=32,8), ascending.
  std::vector<StepFunction> smallerPrefills;
  // tailFirst[r] (r < prefill's size): the first call of the cheapest plan
  // for r tokens (planTails); the rest of that plan is tailFirst's for
  // what remains.
  std::vector<const StepFunction *> tailFirst;
  size_t vocab = 0;
  uint32_t context = 0;

  uint8_t *pool = nullptr;
  size_t poolBytes = 0, blockBytes = 0;
  std::vector<int32_t> table;      // logical -> pool block
  std::vector<int32_t> freeBlocks; // a stack, lowest id on top
  size_t blocksUsed = 0;
  size_t position = 0;
  // A ring cache: the largest window, the blocks the sinks pin, and how
  // many tokens have slid out (position - shift is the cache position).
  bool ring = false;
  size_t window = 0, sinkBlocks = 0, shift = 0;

  std::vector<float> logits;
  bool haveLogits = false;
  std::vector<int64_t> tokens, positions;

  ~kiln_llm_s() {
    if (pool)
      munmap(pool, poolBytes);
    kiln_session_release(session);
  }
};

struct kiln_sampler_s {
  kiln_sampler_params params;
  uint64_t state;
  std::vector<std::pair<float, int32_t>> candidates;
  std::vector<uint8_t> seen;
};

namespace {

kiln_status findStep(kiln_llm_s *llm, const char *name, StepFunction &out) {
  const kiln_artifact *a = llm->session->artifact;
  out.index = a->findFunction(name);
  if (out.index < 0)
    return makeStatus(KILN_NOT_FOUND,
                      "artifact '%s' has a KV cache but no '%s' function",
                      a->path.c_str(), name);
  out.impl = kiln::rt::findImpl(llm->session, out.index);
  if (!out.impl)
    return makeStatus(KILN_NOT_FOUND, "device '%s' has no code for '%s'",
                      llm->session->target->device()->c_str(), name);
  // tokens[1, S] i64, positions[1, S] i64, block_table[blocks] i32,
  // step[2] i64 -> logits[1, vocab] f32.
  const fb::Function *f = a->model->functions()->Get(out.index);
  auto shapeIs = [](const fb::TensorSig *t, fb::DType dt,
                    std::initializer_list<int64_t> dims) {
    if (t->dtype() != dt || t->shape()->size() != dims.size())
      return false;
    size_t i = 0;
    for (int64_t d : dims)
      if (d >= 0 && t->shape()->Get(i++) != d)
        return false;
    return true;
  };
  bool ok = f->inputs()->size() == 4 && f->outputs()->size() == 1;
  if (ok) {
    const fb::TensorSig *tok = f->inputs()->Get(0);
    ok = shapeIs(tok, fb::DType::I64, {1, -1}) && tok->shape()->Get(1) > 0;
    out.tokens = ok ? tok->shape()->Get(1) : 0;
    ok = ok && shapeIs(f->inputs()->Get(1), fb::DType::I64, {1, out.tokens}) &&
         shapeIs(f->inputs()->Get(2), fb::DType::I32,
                 {int64_t(llm->spec->num_blocks())}) &&
         shapeIs(f->inputs()->Get(3), fb::DType::I64, {2}) &&
         shapeIs(f->outputs()->Get(0), fb::DType::F32, {1, -1}) &&
         f->outputs()->Get(0)->shape()->Get(1) > 0;
  }
  if (!ok)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "artifact '%s': function '%s' does not have the LLM step "
                      "signature (tokens, positions, block_table, step) -> "
                      "logits[1, vocab]",
                      a->path.c_str(), name);
  size_t vocab = static_cast<size_t>(f->outputs()->Get(0)->shape()->Get(1));
  if (llm->vocab && llm->vocab != vocab)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "artifact '%s': prefill and decode disagree on the "
                      "vocabulary size",
                      a->path.c_str());
  llm->vocab = vocab;
  return nullptr;
}

kiln_tensor tensorOf(kiln_dtype dt, std::initializer_list<int64_t> shape,
                     void *data, size_t bytes) {
  kiln_tensor t{};
  t.dtype = dt;
  t.rank = static_cast<int32_t>(shape.size());
  int32_t i = 0;
  for (int64_t d : shape)
    t.shape[i++] = d;
  t.data = data;
  t.size_bytes = bytes;
  return t;
}

/// Fills llm->tailFirst: the cheapest plan for each tail of r tokens (r <
/// prefill's size) of decode steps, calls of the smaller prefill sizes and
/// one padded call. A call of S tokens is counted as S + 2 (its padded
/// tokens plus, in tokens, what a call costs on its own: reading every
/// weight once; measured on SmolLM2 on the CPU: decode ~6.7 ms, an 8-token
/// call ~20 ms, a 32-token one ~77 ms, ratios 1 : 3 : 11.5 against this
/// model's 3 : 10 : 34). So 3 tokens take 3 decode steps rather than a
/// padded 32-token call, and 12 take two 8-token calls when the artifact
/// has prefill_8.
void planTails(kiln_llm_s *llm) {
  std::vector<const StepFunction *> steps = {&llm->decode};
  for (const StepFunction &f : llm->smallerPrefills)
    steps.push_back(&f);
  steps.push_back(&llm->prefill);
  constexpr size_t kCallCost = 2;
  size_t chunk = static_cast<size_t>(llm->prefill.tokens);
  std::vector<size_t> cost(chunk, 0); // the least cost of r tokens
  llm->tailFirst.assign(chunk, nullptr);
  for (size_t r = 1; r < chunk; ++r) {
    cost[r] = SIZE_MAX;
    for (const StepFunction *f : steps) {
      size_t s = static_cast<size_t>(f->tokens);
      size_t c = s + kCallCost + (s >= r ? 0 : cost[r - s]);
      if (c < cost[r]) {
        cost[r] = c;
        llm->tailFirst[r] = f;
      }
    }
  }
}

/// Runs `fn` on tokens[begin, begin + n) at the current position.
kiln_status runStep(kiln_llm_s *llm, const StepFunction &fn,
                    const int32_t *tokens, size_t n) {
  size_t s = static_cast<size_t>(fn.tokens);
  llm->tokens.assign(s, 0);
  llm->positions.resize(s);
  for (size_t i = 0; i < s; ++i) {
    if (i < n)
      llm->tokens[i] = tokens[i];
    // Padding rows get a valid position; their results are never used.
    llm->positions[i] =
        static_cast<int64_t>(std::min(llm->position + i, size_t(llm->context) - 1));
  }
  int64_t step[2] = {static_cast<int64_t>(llm->position - llm->shift),
                     static_cast<int64_t>(n)};
  kiln_tensor in[4] = {
      tensorOf(KILN_I64, {1, int64_t(s)}, llm->tokens.data(), s * 8),
      tensorOf(KILN_I64, {1, int64_t(s)}, llm->positions.data(), s * 8),
      tensorOf(KILN_I32, {int64_t(llm->table.size())}, llm->table.data(),
               llm->table.size() * 4),
      tensorOf(KILN_I64, {2}, step, sizeof step),
  };
  kiln_tensor out = tensorOf(KILN_F32, {1, int64_t(llm->vocab)},
                             llm->logits.data(), llm->vocab * 4);
  return llm->session->device->run(
      fn.impl, {in, &out, &llm->session->constants, llm->session->scratch.get(),
                llm->pool});
}

/// Makes room for `m` more tokens: slides a ring cache until they fit,
/// then takes the blocks they need from the free list.
kiln_status reserve(kiln_llm_s *llm, size_t m) {
  size_t bs = llm->spec->block_size(), capacity = llm->table.size() * bs;
  size_t v = llm->position - llm->shift;
  while (v + m > capacity) {
    // The oldest ring block's last key must be older than the window of
    // the call's first query (at v): (sinkBlocks + 1) bs - 1 < v - W + 1.
    if (!llm->ring || (llm->sinkBlocks + 1) * bs + llm->window > v + 1)
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "the KV cache of %zu tokens cannot take %zu more "
                        "after %zu (window %zu)",
                        capacity, m, v, llm->window);
    std::rotate(llm->table.begin() + llm->sinkBlocks,
                llm->table.begin() + llm->sinkBlocks + 1, llm->table.end());
    llm->shift += bs;
    v -= bs;
  }
  size_t needed = (v + m + bs - 1) / bs;
  while (llm->blocksUsed < needed) {
    if (llm->freeBlocks.empty())
      return makeStatus(KILN_INTERNAL, "the KV cache pool is exhausted");
    llm->table[llm->blocksUsed++] = llm->freeBlocks.back();
    llm->freeBlocks.pop_back();
  }
  return nullptr;
}

} // namespace

extern "C" {

KILN_API kiln_status kiln_llm_create(kiln_artifact *artifact,
                                     const char *device, uint32_t context,
                                     kiln_llm **out) {
  *out = nullptr;
  const fb::KvCacheSpec *spec = artifact->model->kv_cache();
  if (!spec)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "artifact '%s' is not an LLM (it has no KV cache spec; "
                      "compile a decoder model to get prefill and decode)",
                      artifact->path.c_str());
  if (context > spec->max_context())
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "context %u is larger than the artifact's maximum %u",
                      context, spec->max_context());
  auto llm = std::make_unique<kiln_llm_s>();
  llm->spec = spec;
  llm->context = context ? context : spec->max_context();
  KILN_RETURN_IF_ERROR(kiln_session_create(artifact, device, &llm->session));
  KILN_RETURN_IF_ERROR(findStep(llm.get(), "prefill", llm->prefill));
  KILN_RETURN_IF_ERROR(findStep(llm.get(), "decode", llm->decode));
  if (llm->decode.tokens != 1)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "artifact '%s': decode takes %lld tokens, not 1",
                      artifact->path.c_str(),
                      static_cast<long long>(llm->decode.tokens));
  for (uint32_t i = 0; i < artifact->model->functions()->size(); ++i) {
    const char *name = artifact->model->functions()->Get(i)->name()->c_str();
    if (std::strncmp(name, "prefill_", 8) != 0)
      continue;
    char *end = nullptr;
    long long n = std::strtoll(name + 8, &end, 10);
    StepFunction fn;
    KILN_RETURN_IF_ERROR(findStep(llm.get(), name, fn));
    if (*end || n != fn.tokens || n >= llm->prefill.tokens)
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "artifact '%s': function '%s' takes %lld tokens; a "
                        "prefill_N function must take N, fewer than "
                        "prefill's %lld",
                        artifact->path.c_str(), name,
                        static_cast<long long>(fn.tokens),
                        static_cast<long long>(llm->prefill.tokens));
    llm->smallerPrefills.push_back(fn);
  }
  std::sort(llm->smallerPrefills.begin(), llm->smallerPrefills.end(),
            [](const StepFunction &a, const StepFunction &b) {
              return a.tokens < b.tokens;
            });
  planTails(llm.get());

  llm->poolBytes = kiln::rt::kvCachePoolBytes(spec);
  llm->blockBytes = llm->poolBytes / spec->num_blocks();
  // Address space only: pages are committed when a block is first written.
  void *p = mmap(nullptr, llm->poolBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    return makeStatus(KILN_INTERNAL,
                      "cannot reserve %zu bytes for the KV cache of '%s'",
                      llm->poolBytes, artifact->path.c_str());
  llm->pool = static_cast<uint8_t *>(p);
  if ((llm->ring = kiln::rt::kvCacheIsRing(spec))) {
    size_t sinks = 0;
    for (const fb::KvLayerSpec *l : *spec->layers()) {
      llm->window = std::max<size_t>(llm->window, l->window());
      sinks = std::max<size_t>(sinks, l->sinks());
    }
    llm->sinkBlocks = (sinks + spec->block_size() - 1) / spec->block_size();
  }
  llm->table.assign(spec->num_blocks(), 0);
  for (uint32_t b = spec->num_blocks(); b-- > 0;)
    llm->freeBlocks.push_back(static_cast<int32_t>(b));
  llm->logits.assign(llm->vocab, 0.0f);
  *out = llm.release();
  return nullptr;
}

KILN_API void kiln_llm_release(kiln_llm *llm) { delete llm; }

KILN_API kiln_status kiln_llm_prefill(kiln_llm *llm, const int32_t *tokens,
                                      size_t n) {
  if (n == 0 || !tokens)
    return makeStatus(KILN_INVALID_ARGUMENT, "no tokens given");
  for (size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || static_cast<size_t>(tokens[i]) >= llm->vocab)
      return makeStatus(KILN_INVALID_ARGUMENT,
                        "token %zu is %d, outside the vocabulary [0, %zu)", i,
                        tokens[i], llm->vocab);
  if (n > llm->context - llm->position)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "context full: %zu tokens in the cache + %zu new exceed "
                      "the context of %u",
                      llm->position, n, llm->context);
  size_t start = llm->position, startShift = llm->shift;
  // Whole chunks of prefill's size, then the cheapest plan for the tail.
  size_t chunk = static_cast<size_t>(llm->prefill.tokens);
  for (size_t i = 0; i < n;) {
    size_t left = n - i;
    const StepFunction &fn = left >= chunk ? llm->prefill : *llm->tailFirst[left];
    size_t m = std::min(left, static_cast<size_t>(fn.tokens));
    kiln_status s = reserve(llm, m);
    if (!s)
      s = runStep(llm, fn, tokens + i, m);
    if (s) {
      // What was written past `start` is unreachable; but a ring that has
      // slid since has dropped keys the tokens after `start` need, so the
      // sequence starts over.
      if (llm->shift != startShift)
        kiln_llm_reset(llm);
      else
        llm->position = start;
      llm->haveLogits = false;
      return s;
    }
    llm->position += m;
    i += m;
  }
  llm->haveLogits = true;
  return nullptr;
}

KILN_API kiln_status kiln_llm_decode(kiln_llm *llm, int32_t token) {
  return kiln_llm_prefill(llm, &token, 1);
}

KILN_API const float *kiln_llm_logits(const kiln_llm *llm) {
  return llm->haveLogits ? llm->logits.data() : nullptr;
}

KILN_API size_t kiln_llm_vocab_size(const kiln_llm *llm) { return llm->vocab; }
KILN_API size_t kiln_llm_position(const kiln_llm *llm) { return llm->position; }
KILN_API size_t kiln_llm_context_size(const kiln_llm *llm) {
  return llm->context;
}
KILN_API uint64_t kiln_llm_kv_bytes(const kiln_llm *llm) {
  return static_cast<uint64_t>(llm->blocksUsed) * llm->blockBytes;
}

namespace {
/// Gives the blocks past the first `keep` back: their pages to the OS and
/// the blocks to the free list.
void releaseBlocks(kiln_llm_s *llm, size_t keep) {
  while (llm->blocksUsed > keep) {
    int32_t b = llm->table[--llm->blocksUsed];
    madvise(llm->pool + static_cast<size_t>(b) * llm->blockBytes,
            llm->blockBytes, MADV_DONTNEED);
    llm->freeBlocks.push_back(b);
  }
  std::sort(llm->freeBlocks.rbegin(), llm->freeBlocks.rend());
}
} // namespace

KILN_API void kiln_llm_reset(kiln_llm *llm) {
  releaseBlocks(llm, 0);
  llm->position = 0;
  llm->shift = 0;
  llm->haveLogits = false;
}

KILN_API kiln_status kiln_llm_truncate(kiln_llm *llm, size_t n) {
  if (n > llm->position)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "cannot truncate to %zu tokens: the sequence has %zu", n,
                      llm->position);
  if (n == llm->position)
    return nullptr;
  if (llm->shift != 0)
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "cannot truncate to %zu tokens: the ring cache has "
                      "slid past %zu of them (reset instead)",
                      n, llm->shift);
  // Keys past `n` become unreachable, as after a failed prefill: every
  // step attends only to positions before its own.
  size_t bs = llm->spec->block_size();
  releaseBlocks(llm, (n + bs - 1) / bs);
  llm->position = n;
  llm->haveLogits = false;
  return nullptr;
}

KILN_API kiln_status kiln_sampler_create(const kiln_sampler_params *params,
                                         kiln_sampler **out) {
  *out = nullptr;
  if (!params || std::isnan(params->temperature) || std::isnan(params->top_p) ||
      !(params->repetition_penalty > 0))
    return makeStatus(KILN_INVALID_ARGUMENT,
                      "bad sampler parameters (NaN, or a repetition penalty "
                      "<= 0)");
  auto *s = new kiln_sampler_s;
  s->params = *params;
  s->state = params->seed ^ 0x9e3779b97f4a7c15ull;
  *out = s;
  return nullptr;
}

KILN_API void kiln_sampler_release(kiln_sampler *sampler) { delete sampler; }

KILN_API kiln_status kiln_sampler_sample(kiln_sampler *s, const float *logits,
                                         size_t vocab, const int32_t *history,
                                         size_t history_len, int32_t *token) {
  if (!logits || vocab == 0)
    return makeStatus(KILN_INVALID_ARGUMENT, "no logits to sample from");
  const kiln_sampler_params &p = s->params;
  auto &c = s->candidates;
  c.resize(vocab);
  for (size_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i]))
      return makeStatus(KILN_INTERNAL, "logit %zu is NaN", i);
    c[i] = {logits[i], static_cast<int32_t>(i)};
  }
  if (p.repetition_penalty != 1.0f && history_len) {
    // As llama.cpp and CTRL: shrink positive logits, grow negative ones,
    // once per distinct token.
    s->seen.assign(vocab, 0);
    for (size_t i = 0; i < history_len; ++i) {
      int32_t t = history[i];
      if (t < 0 || static_cast<size_t>(t) >= vocab || s->seen[t])
        continue;
      s->seen[t] = 1;
      float &l = c[t].first;
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.temperature <= 0) {
    size_t best = 0;
    for (size_t i = 1; i < vocab; ++i)
      if (c[i].first > c[best].first)
        best = i;
    *token = c[best].second;
    return nullptr;
  }
  auto byLogit = [](const std::pair<float, int32_t> &a,
                    const std::pair<float, int32_t> &b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = vocab;
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < vocab)
    keep = static_cast<size_t>(p.top_k);
  std::partial_sort(c.begin(), c.begin() + keep, c.end(), byLogit);
  c.resize(keep);
  float maxLogit = c[0].first / p.temperature;
  double sum = 0;
  for (auto &e : c) {
    e.first = std::exp(e.first / p.temperature - maxLogit);
    sum += e.first;
  }
  if (p.top_p < 1.0f) {
    double mass = 0;
    size_t n = 0;
    while (n < c.size() && mass < p.top_p * sum)
      mass += c[n++].first;
    c.resize(std::max<size_t>(n, 1));
    sum = mass > 0 ? mass : c[0].first;
  }
  // splitmix64 -> uniform in [0, sum).
  uint64_t z = (s->state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  double r = static_cast<double>(z >> 11) * 0x1.0p-53 * sum;
  for (const auto &e : c) {
    r -= e.first;
    if (r < 0) {
      *token = e.second;
      return nullptr;
    }
  }
  *token = c.back().second;
  return nullptr;
}

} // extern "C"
