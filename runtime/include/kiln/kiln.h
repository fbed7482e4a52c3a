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

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_H */
