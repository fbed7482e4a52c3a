// The part of the CUDA driver API the runtime uses, declared here so that
// building needs no CUDA toolkit: libcuda.so.1 is opened with dlopen and
// these symbols looked up. The names are the exported (versioned) symbols
// that cuda.h's macros resolve to; test/cuda/check_cuda_api.cc checks every
// signature against the toolkit's cuda.h where one is installed.
#ifndef KILN_RUNTIME_DRIVERS_CUDA_CUDA_API_H
#define KILN_RUNTIME_DRIVERS_CUDA_CUDA_API_H

#include <cstddef>

// The handle types are pointers to these (incomplete) structs, declared at
// global scope as cuda.h declares them, so that the types are the same.
struct CUctx_st;
struct CUmod_st;
struct CUfunc_st;
struct CUstream_st;
struct CUevent_st;
struct CUgraph_st;
struct CUgraphExec_st;

namespace kiln::rt::cuda {

using CUresult = unsigned; // cuda.h: enums (underlying type unsigned int)
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = ::CUctx_st *;
using CUmodule = ::CUmod_st *;
using CUfunction = ::CUfunc_st *;
using CUstream = ::CUstream_st *;
using CUevent = ::CUevent_st *;
using CUgraph = ::CUgraph_st *;
using CUgraphExec = ::CUgraphExec_st *;
using CUdevice_attribute = unsigned;
using CUstreamCaptureMode = unsigned;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
constexpr CUresult CUDA_ERROR_NO_BINARY_FOR_GPU = 209;
constexpr CUresult CUDA_ERROR_INVALID_PTX = 218;
constexpr CUresult CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr CUdevice_attribute CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
constexpr CUstreamCaptureMode CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
constexpr unsigned CU_EVENT_DEFAULT = 0;

#define KILN_CU_FUNCTIONS(X)                                                   \
  X(cuInit, CUresult (*)(unsigned))                                            \
  X(cuDriverGetVersion, CUresult (*)(int *))                                   \
  X(cuDeviceGetCount, CUresult (*)(int *))                                     \
  X(cuDeviceGet, CUresult (*)(CUdevice *, int))                                \
  X(cuDeviceGetName, CUresult (*)(char *, int, CUdevice))                      \
  X(cuDeviceGetAttribute, CUresult (*)(int *, CUdevice_attribute, CUdevice))   \
  X(cuDevicePrimaryCtxRetain, CUresult (*)(CUcontext *, CUdevice))             \
  X(cuDevicePrimaryCtxRelease_v2, CUresult (*)(CUdevice))                      \
  X(cuCtxSetCurrent, CUresult (*)(CUcontext))                                  \
  X(cuModuleLoadData, CUresult (*)(CUmodule *, const void *))                  \
  X(cuModuleUnload, CUresult (*)(CUmodule))                                    \
  X(cuModuleGetFunction, CUresult (*)(CUfunction *, CUmodule, const char *))   \
  X(cuMemGetInfo_v2, CUresult (*)(size_t *, size_t *))                         \
  X(cuMemAlloc_v2, CUresult (*)(CUdeviceptr *, size_t))                        \
  X(cuMemFree_v2, CUresult (*)(CUdeviceptr))                                   \
  X(cuMemcpyHtoDAsync_v2,                                                      \
    CUresult (*)(CUdeviceptr, const void *, size_t, CUstream))                 \
  X(cuMemcpyDtoHAsync_v2,                                                      \
    CUresult (*)(void *, CUdeviceptr, size_t, CUstream))                       \
  X(cuStreamCreate, CUresult (*)(CUstream *, unsigned))                        \
  X(cuStreamDestroy_v2, CUresult (*)(CUstream))                                \
  X(cuStreamSynchronize, CUresult (*)(CUstream))                               \
  X(cuLaunchKernel,                                                            \
    CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned,           \
                 unsigned, unsigned, unsigned, CUstream, void **, void **))    \
  X(cuStreamBeginCapture_v2, CUresult (*)(CUstream, CUstreamCaptureMode))      \
  X(cuStreamEndCapture, CUresult (*)(CUstream, CUgraph *))                     \
  X(cuGraphInstantiateWithFlags,                                               \
    CUresult (*)(CUgraphExec *, CUgraph, unsigned long long))                  \
  X(cuGraphLaunch, CUresult (*)(CUgraphExec, CUstream))                        \
  X(cuGraphExecDestroy, CUresult (*)(CUgraphExec))                             \
  X(cuGraphDestroy, CUresult (*)(CUgraph))                                     \
  X(cuEventCreate, CUresult (*)(CUevent *, unsigned))                          \
  X(cuEventDestroy_v2, CUresult (*)(CUevent))                                  \
  X(cuEventRecord, CUresult (*)(CUevent, CUstream))                            \
  X(cuGetErrorString, CUresult (*)(CUresult, const char **))

/// Looked up but optional: drivers before CUDA 12.8 export the same
/// function unversioned (cuEventElapsedTime).
#define KILN_CU_OPTIONAL_FUNCTIONS(X)                                          \
  X(cuEventElapsedTime_v2, CUresult (*)(float *, CUevent, CUevent))

} // namespace kiln::rt::cuda

#endif
