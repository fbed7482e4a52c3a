/* Embedding the LLM API: load an LLM artifact, make the prompt a user turn
 * of the model's chat template when it has one (kiln_chat_render_messages),
 * encode it with its tokenizer, prefill, then sample and decode until
 * end-of-generation or N tokens, printing the text as it comes. Plain C
 * against libkiln.so.
 *
 *   kiln_chat_example MODEL.kiln "prompt" [N] [temperature] [seed]
 */
#include "kiln/kiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(kiln_status s, const char *what) {
  if (!s)
    return 0;
  fprintf(stderr, "chat: %s: %s\n", what, kiln_status_message(s));
  kiln_status_free(s);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.kiln PROMPT [N] [TEMP] [SEED]\n", argv[0]);
    return 2;
  }
  int n = argc > 3 ? atoi(argv[3]) : 32;
  kiln_sampler_params params = {argc > 4 ? (float)atof(argv[4]) : 0.0f, 40,
                                0.95f, 1.0f,
                                argc > 5 ? strtoull(argv[5], NULL, 10) : 1};
  kiln_artifact *art = NULL;
  kiln_llm *llm = NULL;
  kiln_tokenizer *tok = NULL;
  kiln_sampler *smp = NULL;
  int32_t *ids = NULL;
  char *text = NULL;
  int rc = 1;
  /* The device: "cpu" unless $KILN_DEVICE names another ("vulkan", "cuda"). */
  const char *device = getenv("KILN_DEVICE") ? getenv("KILN_DEVICE") : "cpu";
  if (check(kiln_artifact_open(argv[1], &art), "cannot open artifact") ||
      check(kiln_llm_create(art, device, 0, &llm), "cannot create the LLM") ||
      check(kiln_tokenizer_create(art, &tok), "no tokenizer") ||
      check(kiln_sampler_create(&params, &smp), "bad sampler"))
    goto done;

  /* The prompt as the user turn of the model's chat template, if any. */
  const char *prompt = argv[2];
  size_t len = strlen(prompt), count = 0;
  int chat = kiln_tokenizer_chat_template(tok)[0] != '\0';
  if (chat) {
    kiln_chat_message turn = {"user", argv[2]};
    if (check(kiln_chat_render_messages(tok, NULL, &turn, 1, 1, NULL, 0, &len),
              "chat template"))
      goto done;
    text = malloc(len + 1);
    if (!text || check(kiln_chat_render_messages(tok, NULL, &turn, 1, 1, text,
                                                 len, &len),
                       "chat template"))
      goto done;
    prompt = text;
  }
  /* Chat text: control tokens parse and BOS is not doubled. */
  if (check(chat ? kiln_chat_encode(tok, prompt, len, NULL, 0, &count)
                 : kiln_tokenizer_encode(tok, prompt, len, 1, NULL, 0, &count),
            "encode"))
    goto done;
  /* Room for the prompt and every token we may generate (the history the
   * repetition penalty reads). */
  ids = malloc((count + (size_t)n + 1) * sizeof *ids);
  if (!ids ||
      check(chat ? kiln_chat_encode(tok, prompt, len, ids, count, &count)
                 : kiln_tokenizer_encode(tok, prompt, len, 1, ids, count, &count),
            "encode") ||
      check(kiln_llm_prefill(llm, ids, count), "prefill"))
    goto done;
  for (int i = 0; i < n; ++i) {
    int32_t next;
    if (check(kiln_sampler_sample(smp, kiln_llm_logits(llm),
                                  kiln_llm_vocab_size(llm), ids, count, &next),
              "sample"))
      goto done;
    if (kiln_tokenizer_is_eog(tok, next))
      break;
    const char *piece;
    size_t piece_len;
    if (check(kiln_tokenizer_piece(tok, next, 0, &piece, &piece_len), "piece"))
      goto done;
    fwrite(piece, 1, piece_len, stdout);
    fflush(stdout);
    ids[count++] = next;
    if (check(kiln_llm_decode(llm, next), "decode"))
      goto done;
  }
  printf("\n");
  fprintf(stderr, "chat: %zu tokens in the cache, %llu bytes of KV cache\n",
          kiln_llm_position(llm), (unsigned long long)kiln_llm_kv_bytes(llm));
  rc = 0;
done:
  free(ids);
  free(text);
  kiln_sampler_release(smp);
  kiln_tokenizer_release(tok);
  kiln_llm_release(llm);
  kiln_artifact_release(art);
  return rc;
}
