// Compiled only where the CUDA toolkit's cuda.h is installed: checks that
// every driver function the runtime looks up by name (cuda_api.h) has the
// signature cuda.h gives that exported symbol. Enums (CUresult,
// CUdevice_attribute, ...) compare as their underlying type, which is how
// the runtime declares them; everything else must match exactly. A wrong
// argument list, order or width is a build error naming the function.
#include <cuda.h>

#include "drivers/cuda/cuda_api.h"

#include <type_traits>

namespace {

template <class T, bool = std::is_enum_v<T>> struct Plain { using type = T; };
template <class T> struct Plain<T, true> {
  using type = std::underlying_type_t<T>;
};
template <class T> using PlainT = typename Plain<T>::type;

template <class F> struct Signature;
template <class R, class... A> struct Signature<R (*)(A...)> {
  using type = PlainT<R> (*)(PlainT<A>...);
};
template <class F> using SignatureT = typename Signature<F>::type;

} // namespace

namespace kiln::rt::cuda {
#define KILN_CU_CHECK(name, type)                                              \
  static_assert(std::is_same_v<SignatureT<decltype(&::name)>, SignatureT<type>>, \
                #name " does not match cuda.h");
KILN_CU_FUNCTIONS(KILN_CU_CHECK)
KILN_CU_OPTIONAL_FUNCTIONS(KILN_CU_CHECK)
#undef KILN_CU_CHECK

static_assert(CUDA_ERROR_OUT_OF_MEMORY == ::CUDA_ERROR_OUT_OF_MEMORY);
static_assert(CUDA_ERROR_NO_DEVICE == ::CUDA_ERROR_NO_DEVICE);
static_assert(CUDA_ERROR_INVALID_IMAGE == ::CUDA_ERROR_INVALID_IMAGE);
static_assert(CUDA_ERROR_NO_BINARY_FOR_GPU == ::CUDA_ERROR_NO_BINARY_FOR_GPU);
static_assert(CUDA_ERROR_INVALID_PTX == ::CUDA_ERROR_INVALID_PTX);
static_assert(CUDA_ERROR_UNSUPPORTED_PTX_VERSION ==
              ::CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
static_assert(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ==
              ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
static_assert(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR ==
              ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
static_assert(CU_STREAM_NON_BLOCKING == ::CU_STREAM_NON_BLOCKING);
static_assert(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL ==
              ::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
static_assert(CU_EVENT_DEFAULT == ::CU_EVENT_DEFAULT);
static_assert(std::is_same_v<CUdeviceptr, ::CUdeviceptr>);
static_assert(std::is_same_v<CUdevice, ::CUdevice>);
} // namespace kiln::rt::cuda
