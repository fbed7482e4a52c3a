/* Embedding Kiln from C: open an artifact, inspect its `main`, fill every
 * f32 input with a ramp, run it on the CPU and print the first outputs.
 *
 *   cc embed.c -Iruntime/include -Lbuild/runtime -lkiln -o embed
 *   ./embed model.kiln
 */
#include <kiln/kiln.h>

#include <stdio.h>
#include <stdlib.h>

static int check(kiln_status s) {
  if (!s)
    return 0;
  fprintf(stderr, "embed: %s\n", kiln_status_message(s));
  kiln_status_free(s);
  return 1;
}

static size_t fill_tensor(kiln_tensor *t, const kiln_tensor_info *info) {
  size_t n = 1;
  t->dtype = info->dtype;
  t->rank = info->rank;
  for (int d = 0; d < info->rank; ++d) {
    t->shape[d] = info->shape[d];
    n *= (size_t)info->shape[d];
  }
  t->size_bytes = n * kiln_dtype_size(info->dtype);
  t->data = calloc(1, t->size_bytes ? t->size_bytes : 1);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: embed MODEL.kiln\n");
    return 2;
  }
  kiln_artifact *art;
  if (check(kiln_artifact_open(argv[1], &art)))
    return 1;
  size_t nin, nout;
  if (check(kiln_function_arity(art, "main", &nin, &nout)))
    return 1;
  kiln_tensor *in = calloc(nin, sizeof *in), *out = calloc(nout, sizeof *out);
  for (size_t i = 0; i < nin; ++i) {
    kiln_tensor_info info;
    if (check(kiln_function_input(art, "main", i, &info)))
      return 1;
    size_t n = fill_tensor(&in[i], &info);
    if (info.dtype != KILN_F32) {
      fprintf(stderr, "embed: input '%s' is %s; this example fills f32 only\n",
              info.name, kiln_dtype_name(info.dtype));
      return 1;
    }
    for (size_t j = 0; j < n; ++j)
      ((float *)in[i].data)[j] = 0.5f * (float)j;
  }
  for (size_t i = 0; i < nout; ++i) {
    kiln_tensor_info info;
    if (check(kiln_function_output(art, "main", i, &info)))
      return 1;
    fill_tensor(&out[i], &info);
  }
  kiln_session *session;
  if (check(kiln_session_create(art, "cpu", &session)) ||
      check(kiln_session_call(session, "main", in, nin, out, nout)))
    return 1;
  for (size_t i = 0; i < nout; ++i) {
    kiln_tensor_info info;
    kiln_function_output(art, "main", i, &info);
    printf("%s:", info.name);
    size_t n = out[i].size_bytes / kiln_dtype_size(out[i].dtype);
    for (size_t j = 0; j < n && j < 8; ++j)
      if (out[i].dtype == KILN_F32)
        printf(" %g", ((float *)out[i].data)[j]);
    printf("\n");
    free(out[i].data);
  }
  for (size_t i = 0; i < nin; ++i)
    free(in[i].data);
  free(in);
  free(out);
  kiln_session_release(session);
  kiln_artifact_release(art);
  return 0;
}
