/*===- kiln.h - The Kiln runtime C API ------------------------------------===*
 *
 * Load a compiled artifact (.kiln), open a session on a device, call its
 * functions with tensors. Every call that can fail returns a kiln_status:
 * NULL means success; otherwise it carries a code and a message naming the
 * file, function, tensor or offset at fault, and the caller frees it.
 *
 *===----------------------------------------------------------------------===*/
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KILN_BUILD_SHARED)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

/*--- Status -------------------------------------------------------------*/

typedef enum kiln_status_code {
  KILN_OK = 0,
  KILN_INVALID_ARGUMENT = 1, /* wrong tensor count, shape, dtype, name */
  KILN_NOT_FOUND = 2,        /* missing file, function, device */
  KILN_DATA_LOSS = 3,        /* corrupt or truncated artifact */
  KILN_UNAVAILABLE = 4,      /* device or driver not present */
  KILN_UNIMPLEMENTED = 5,    /* artifact needs a feature this build lacks */
  KILN_INTERNAL = 6,
} kiln_status_code;

typedef struct kiln_status_s *kiln_status;

KILN_API kiln_status_code kiln_status_get_code(kiln_status status);
/* The message; valid until kiln_status_free. "OK" for NULL. */
KILN_API const char *kiln_status_message(kiln_status status);
KILN_API void kiln_status_free(kiln_status status);

/*--- Tensors ------------------------------------------------------------*/

typedef enum kiln_dtype {
  KILN_F32 = 0,
  KILN_F16 = 1,
  KILN_F64 = 2,
  KILN_I8 = 3,
  KILN_I16 = 4,
  KILN_I32 = 5,
  KILN_I64 = 6,
  KILN_BOOL = 7, /* one byte per element, 0 or 1 */
} kiln_dtype;

KILN_API size_t kiln_dtype_size(kiln_dtype dtype);
KILN_API const char *kiln_dtype_name(kiln_dtype dtype);

#define KILN_MAX_RANK 16

/* A dense, row-major tensor in host memory owned by the caller. */
typedef struct kiln_tensor {
  kiln_dtype dtype;
  int32_t rank;
  int64_t shape[KILN_MAX_RANK];
  void *data;
  size_t size_bytes;
} kiln_tensor;

/* A function parameter's declared form. */
typedef struct kiln_tensor_info {
  const char *name;
  kiln_dtype dtype;
  int32_t rank;
  const int64_t *shape; /* -1 for a symbolic dim */
} kiln_tensor_info;

/*--- Artifacts ----------------------------------------------------------*/

typedef struct kiln_artifact_s kiln_artifact;

/* Maps the file and verifies every table, offset and size in it. */
KILN_API kiln_status kiln_artifact_open(const char *path, kiln_artifact **out);
/* Same over memory the caller keeps alive (and 64-byte aligned) until
 * kiln_artifact_release. */
KILN_API kiln_status kiln_artifact_open_memory(const void *data, size_t size,
                                               kiln_artifact **out);
KILN_API void kiln_artifact_release(kiln_artifact *artifact);

KILN_API size_t kiln_artifact_function_count(const kiln_artifact *artifact);
KILN_API const char *kiln_artifact_function_name(const kiln_artifact *artifact,
                                                 size_t index);
/* Metadata value for `key`, or NULL. */
KILN_API const char *kiln_artifact_metadata(const kiln_artifact *artifact,
                                            const char *key);

KILN_API kiln_status kiln_function_arity(const kiln_artifact *artifact,
                                         const char *function,
                                         size_t *num_inputs,
                                         size_t *num_outputs);
KILN_API kiln_status kiln_function_input(const kiln_artifact *artifact,
                                         const char *function, size_t index,
                                         kiln_tensor_info *out);
KILN_API kiln_status kiln_function_output(const kiln_artifact *artifact,
                                          const char *function, size_t index,
                                          kiln_tensor_info *out);

/*--- Sessions -----------------------------------------------------------*/

typedef struct kiln_session_s kiln_session;

/* `device`: "cpu", or "cpu:N" for N threads (default: $KILN_NUM_THREADS,
 * else one per hardware thread); more to come: "vulkan", "cuda". The
 * artifact must stay open while the session lives. */
KILN_API kiln_status kiln_session_create(kiln_artifact *artifact,
                                         const char *device,
                                         kiln_session **out);
KILN_API void kiln_session_release(kiln_session *session);

/* Runs `function`. Inputs and outputs are in the graph's order; every
 * tensor's dtype and shape must match the signature, and output buffers
 * are written in place. */
KILN_API kiln_status kiln_session_call(kiln_session *session,
                                       const char *function,
                                       const kiln_tensor *inputs,
                                       size_t num_inputs, kiln_tensor *outputs,
                                       size_t num_outputs);


/*--- LLM sessions -------------------------------------------------------*/

/* An artifact compiled from a decoder LLM has functions `prefill` and
 * `decode` and a KV cache spec. A kiln_llm owns one sequence's cache (paged
 * blocks taken as tokens arrive) and the logits of its last token. When
 * every layer attends through a sliding window, the cache may be a ring
 * smaller than the context: it keeps the keys the windows (and sinks) can
 * still see and slides block by block (docs/runtime.md). */
typedef struct kiln_llm_s kiln_llm;

/* `context`: most tokens the sequence may hold; 0 means the artifact's
 * maximum, more than that is an error. */
KILN_API kiln_status kiln_llm_create(kiln_artifact *artifact,
                                     const char *device, uint32_t context,
                                     kiln_llm **out);
KILN_API void kiln_llm_release(kiln_llm *llm);

/* Appends `n` tokens (a prompt, or the next tokens) and computes the logits
 * after the last one. Fails, leaving the sequence as it was, when a token is
 * outside the vocabulary or the context would overflow. A device failure
 * after a ring cache has slid empties the sequence instead (the keys it
 * dropped cannot come back). */
KILN_API kiln_status kiln_llm_prefill(kiln_llm *llm, const int32_t *tokens,
                                      size_t n);
/* kiln_llm_prefill of one token (the decode function). */
KILN_API kiln_status kiln_llm_decode(kiln_llm *llm, int32_t token);
/* The logits after the last token (kiln_llm_vocab_size floats); valid
 * until the next prefill/decode/reset. NULL before the first token. */
KILN_API const float *kiln_llm_logits(const kiln_llm *llm);
KILN_API size_t kiln_llm_vocab_size(const kiln_llm *llm);
/* Tokens of the sequence so far (a ring cache holds the last of them). */
KILN_API size_t kiln_llm_position(const kiln_llm *llm);
KILN_API size_t kiln_llm_context_size(const kiln_llm *llm);
/* Bytes of KV cache memory the sequence holds now (whole blocks). */
KILN_API uint64_t kiln_llm_kv_bytes(const kiln_llm *llm);
/* Empties the sequence and gives its cache blocks back. */
KILN_API void kiln_llm_reset(kiln_llm *llm);
/* Keeps the first `n` tokens of the sequence and drops the rest (their
 * blocks go back), so a conversation can continue from a shared prefix.
 * The logits are gone until the next prefill. Fails when `n` is more than
 * the sequence holds, or when a ring cache has slid (reset instead). */
KILN_API kiln_status kiln_llm_truncate(kiln_llm *llm, size_t n);

/*--- Sampling -----------------------------------------------------------*/

typedef struct kiln_sampler_params {
  float temperature;        /* <= 0: greedy (argmax, lowest id on ties) */
  int32_t top_k;            /* keep the k most likely; <= 0: all */
  float top_p;              /* keep the smallest set with mass >= p; >= 1: all */
  float repetition_penalty; /* > 1 penalizes tokens in the history; 1: off */
  uint64_t seed;
} kiln_sampler_params;

typedef struct kiln_sampler_s kiln_sampler;

KILN_API kiln_status kiln_sampler_create(const kiln_sampler_params *params,
                                         kiln_sampler **out);
KILN_API void kiln_sampler_release(kiln_sampler *sampler);
/* Picks the next token from `logits` (not modified); `history` holds the
 * tokens the repetition penalty looks at. */
KILN_API kiln_status kiln_sampler_sample(kiln_sampler *sampler,
                                         const float *logits, size_t vocab,
                                         const int32_t *history,
                                         size_t history_len, int32_t *token);


/*--- Tokenizer ----------------------------------------------------------*/

/* The artifact's tokenizer (from the GGUF file or the tokenizer.json it was
 * compiled with): byte-level BPE (GPT-2 style) or SentencePiece BPE (GGUF
 * model "llama"). KILN_NOT_FOUND when it has none. */
typedef struct kiln_tokenizer_s kiln_tokenizer;

KILN_API kiln_status kiln_tokenizer_create(const kiln_artifact *artifact,
                                           kiln_tokenizer **out);
KILN_API void kiln_tokenizer_release(kiln_tokenizer *tokenizer);
/* Encodes `length` bytes of UTF-8 `text` (invalid bytes are kept as byte
 * tokens). `special` != 0: control-token texts such as "<|im_start|>"
 * become those tokens. Writes at most `capacity` ids and sets *count to
 * the full count (call again with a larger buffer if it is bigger). */
KILN_API kiln_status kiln_tokenizer_encode(kiln_tokenizer *tokenizer,
                                           const char *text, size_t length,
                                           int special, int32_t *ids,
                                           size_t capacity, size_t *count);
/* The bytes token `id` stands for (possibly part of a UTF-8 character);
 * control tokens give "" unless `special`. Valid until the next call. */
KILN_API kiln_status kiln_tokenizer_piece(kiln_tokenizer *tokenizer,
                                          int32_t id, int special,
                                          const char **data, size_t *length);
/* The text of `n` ids: their pieces, less the space a SentencePiece
 * tokenizer put before the text (the first piece's, after a leading BOS).
 * Writes at most `capacity` bytes and sets *length to the full length. */
KILN_API kiln_status kiln_tokenizer_decode(kiln_tokenizer *tokenizer,
                                           const int32_t *ids, size_t n,
                                           int special, char *text,
                                           size_t capacity, size_t *length);
KILN_API size_t kiln_tokenizer_vocab_size(const kiln_tokenizer *tokenizer);
/* -1 when the model has none. */
KILN_API int32_t kiln_tokenizer_bos(const kiln_tokenizer *tokenizer);
KILN_API int32_t kiln_tokenizer_eos(const kiln_tokenizer *tokenizer);
/// Non-zero when `id` ends generation: eos, the model's end-of-turn and
/// end-of-message tokens, and control tokens such as <|im_end|> and
/// <|eot_id|> (llama.cpp's end-of-generation set).
KILN_API int kiln_tokenizer_is_eog(const kiln_tokenizer *tokenizer, int32_t id);
/* The Jinja chat template from the model, or "". */
KILN_API const char *kiln_tokenizer_chat_template(const kiln_tokenizer *tokenizer);

/*--- Chat templates -----------------------------------------------------*/

/* Renders a chat template as transformers' apply_chat_template(...,
 * tokenize=False) does (Jinja with trim_blocks and lstrip_blocks; see
 * docs/runtime.md for the subset): `chat_template`, or the model's own
 * when it is NULL. `context_json` is a JSON object of the template's
 * variables: "messages" (a list of {"role", "content", ...}) and whatever
 * else the template reads ("add_generation_prompt", "tools",
 * "enable_thinking", ...). bos_token and eos_token are the tokenizer's
 * texts unless the object sets them; `tokenizer` may be NULL when
 * `chat_template` is given. Writes at most `capacity` bytes of the text
 * (no terminating NUL) and sets *length to its full length. Errors name
 * the template line, or carry the message of the template's own
 * raise_exception (say, roles that do not alternate). Encode the text
 * with `special` set; its BOS text, when the template writes one, is the
 * prompt's BOS (kiln_chat_encode does both). */
KILN_API kiln_status kiln_chat_render(kiln_tokenizer *tokenizer,
                                      const char *chat_template,
                                      const char *context_json, char *out,
                                      size_t capacity, size_t *length);

typedef struct kiln_chat_message {
  const char *role; /* "system", "user", "assistant", ... */
  const char *content;
} kiln_chat_message;

/* kiln_chat_render over plain messages, with add_generation_prompt. */
KILN_API kiln_status kiln_chat_render_messages(
    kiln_tokenizer *tokenizer, const char *chat_template,
    const kiln_chat_message *messages, size_t count,
    int add_generation_prompt, char *out, size_t capacity, size_t *length);

/* The token ids of rendered chat text: encoded with control tokens parsed,
 * and one BOS, not two, when the tokenizer adds BOS and the template also
 * wrote it (transformers encodes templates without adding BOS; llama.cpp
 * warns about the double BOS this avoids). Same buffer contract as
 * kiln_tokenizer_encode. */
KILN_API kiln_status kiln_chat_encode(kiln_tokenizer *tokenizer,
                                      const char *text, size_t length,
                                      int32_t *ids, size_t capacity,
                                      size_t *count);

/*--- Tool calls ---------------------------------------------------------*/

/* The tool calls in a model's reply `text` (`length` bytes), in `format`:
 * "hermes" (<tool_call>{...}</tool_call>: Qwen2.5/3, Hermes), "llama3" (a
 * reply that is {"name", "parameters"} objects, after <|python_tag|> or
 * alone), "mistral" ([TOOL_CALLS] then a JSON array, or name[ARGS]{...}),
 * "phi4" (<|tool_call|>[...]<|/tool_call|>), or "auto" (NULL): the format
 * whose marker the text holds, else a reply that is one llama3 call.
 * Writes at most `capacity` bytes of
 *   {"content": "...", "tool_calls": [{"name": "...", "arguments": {...}}]}
 * (content: the text outside the calls, trimmed) and sets *json_length to
 * the full length. Malformed JSON after a marker is KILN_INVALID_ARGUMENT
 * naming the format and byte. */
KILN_API kiln_status kiln_tool_calls_parse(const char *text, size_t length,
                                           const char *format, char *json,
                                           size_t capacity, size_t *json_length);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_H */
