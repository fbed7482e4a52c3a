// Internal status helpers.
#ifndef KILN_RUNTIME_STATUS_H
#define KILN_RUNTIME_STATUS_H

#include "kiln/kiln.h"

#include <string>

namespace kiln::rt {

/// A new status with `code` and a printf-style message.
kiln_status makeStatus(kiln_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

} // namespace kiln::rt

#define KILN_RETURN_IF_ERROR(expr)                                             \
  do {                                                                         \
    kiln_status _s = (expr);                                                   \
    if (_s)                                                                    \
      return _s;                                                               \
  } while (0)

#endif
