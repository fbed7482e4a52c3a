// Status values of the C API.
#include "status.h"

#include <cstdarg>
#include <cstdio>
#include <new>

struct kiln_status_s {
  kiln_status_code code;
  std::string message;
};

namespace {
// Reported when there is no memory left for a status of its own.
kiln_status_s outOfMemory{KILN_INTERNAL, "out of memory"};
} // namespace

namespace kiln::rt {

kiln_status makeStatus(kiln_status_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  auto *s = new (std::nothrow) kiln_status_s{code, buf};
  return s ? s : &outOfMemory;
}

} // namespace kiln::rt

extern "C" {

KILN_API kiln_status_code kiln_status_get_code(kiln_status s) {
  return s ? s->code : KILN_OK;
}
KILN_API const char *kiln_status_message(kiln_status s) {
  return s ? s->message.c_str() : "OK";
}
KILN_API void kiln_status_free(kiln_status s) {
  if (s != &outOfMemory)
    delete s;
}

KILN_API size_t kiln_dtype_size(kiln_dtype d) {
  switch (d) {
  case KILN_F32: case KILN_I32: return 4;
  case KILN_F16: case KILN_I16: return 2;
  case KILN_F64: case KILN_I64: return 8;
  case KILN_I8: case KILN_BOOL: return 1;
  }
  return 0;
}

KILN_API const char *kiln_dtype_name(kiln_dtype d) {
  switch (d) {
  case KILN_F32: return "f32";
  case KILN_F16: return "f16";
  case KILN_F64: return "f64";
  case KILN_I8: return "i8";
  case KILN_I16: return "i16";
  case KILN_I32: return "i32";
  case KILN_I64: return "i64";
  case KILN_BOOL: return "bool";
  }
  return "?";
}

} // extern "C"
