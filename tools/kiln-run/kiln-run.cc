// kiln-run: run a function of a compiled artifact on .npy inputs.
//
//   kiln-run OUT.kiln [--function=main] --input=a.npy ... --output=y.npy ...
//            [--device=cpu] [--repeat=N] [--print-signature]
//
// Inputs and outputs are in the graph's order. Errors are one line on
// stderr and a non-zero exit.
#include "kiln/kiln.h"
#include "npy.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

int fail(const std::string &msg) {
  std::fprintf(stderr, "kiln-run: error: %s\n", msg.c_str());
  return 1;
}

int failStatus(kiln_status s) {
  int rc = fail(kiln_status_message(s));
  kiln_status_free(s);
  return rc;
}

bool startsWith(const char *arg, const char *prefix, const char **value) {
  size_t n = std::strlen(prefix);
  if (std::strncmp(arg, prefix, n) != 0)
    return false;
  *value = arg + n;
  return true;
}

void usage() {
  std::fprintf(stderr,
               "usage: kiln-run ARTIFACT.kiln [--function=main] "
               "[--input=X.npy ...] [--output=Y.npy ...] [--device=cpu] "
               "[--repeat=N] [--print-signature]\n");
}

std::string shapeStr(const int64_t *shape, int32_t rank) {
  std::string s = "[";
  for (int32_t i = 0; i < rank; ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

} // namespace

int main(int argc, char **argv) {
  std::string artifactPath, function = "main", device = "cpu";
  std::vector<std::string> inputs, outputs;
  int repeat = 1;
  bool printSignature = false;
  for (int i = 1; i < argc; ++i) {
    const char *v;
    if (startsWith(argv[i], "--function=", &v)) function = v;
    else if (startsWith(argv[i], "--input=", &v)) inputs.push_back(v);
    else if (startsWith(argv[i], "--output=", &v)) outputs.push_back(v);
    else if (startsWith(argv[i], "--device=", &v)) device = v;
    else if (startsWith(argv[i], "--repeat=", &v)) repeat = std::atoi(v);
    else if (!std::strcmp(argv[i], "--print-signature")) printSignature = true;
    else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      usage();
      return 0;
    } else if (argv[i][0] == '-') {
      usage();
      return fail(std::string("unknown option '") + argv[i] + "'");
    } else if (artifactPath.empty()) {
      artifactPath = argv[i];
    } else {
      return fail(std::string("unexpected argument '") + argv[i] + "'");
    }
  }
  if (artifactPath.empty()) {
    usage();
    return fail("no artifact given");
  }
  if (repeat < 1)
    return fail("--repeat must be >= 1");

  kiln_artifact *artifact;
  if (kiln_status s = kiln_artifact_open(artifactPath.c_str(), &artifact))
    return failStatus(s);
  size_t nin, nout;
  if (kiln_status s = kiln_function_arity(artifact, function.c_str(), &nin, &nout))
    return failStatus(s);

  if (printSignature) {
    for (size_t i = 0; i < nin + nout; ++i) {
      kiln_tensor_info info;
      kiln_status s = i < nin ? kiln_function_input(artifact, function.c_str(), i, &info)
                              : kiln_function_output(artifact, function.c_str(), i - nin, &info);
      if (s)
        return failStatus(s);
      std::printf("%s %s %s%s\n", i < nin ? "input" : "output", info.name,
                  kiln_dtype_name(info.dtype), shapeStr(info.shape, info.rank).c_str());
    }
    kiln_artifact_release(artifact);
    return 0;
  }
  if (inputs.size() != nin)
    return fail("function '" + function + "' takes " + std::to_string(nin) +
                " inputs, " + std::to_string(inputs.size()) + " --input given");
  if (!outputs.empty() && outputs.size() != nout)
    return fail("function '" + function + "' has " + std::to_string(nout) +
                " outputs, " + std::to_string(outputs.size()) + " --output given");

  std::vector<kiln::npy::Array> inArrays(nin), outArrays(nout);
  std::vector<kiln_tensor> inTensors(nin), outTensors(nout);
  for (size_t i = 0; i < nin; ++i) {
    std::string err;
    if (!kiln::npy::read(inputs[i], inArrays[i], err))
      return fail(err);
    kiln_tensor &t = inTensors[i];
    if (inArrays[i].shape.size() > KILN_MAX_RANK)
      return fail(inputs[i] + ": rank too large");
    t.dtype = static_cast<kiln_dtype>(inArrays[i].dtype);
    t.rank = static_cast<int32_t>(inArrays[i].shape.size());
    for (int32_t d = 0; d < t.rank; ++d)
      t.shape[d] = inArrays[i].shape[d];
    t.data = inArrays[i].data.data();
    t.size_bytes = inArrays[i].data.size();
  }
  for (size_t i = 0; i < nout; ++i) {
    kiln_tensor_info info;
    if (kiln_status s = kiln_function_output(artifact, function.c_str(), i, &info))
      return failStatus(s);
    kiln::npy::Array &a = outArrays[i];
    a.dtype = static_cast<kiln::npy::DType>(info.dtype);
    size_t numel = 1;
    for (int32_t d = 0; d < info.rank; ++d) {
      if (info.shape[d] < 0)
        return fail("output '" + std::string(info.name) + "' has a symbolic dim");
      a.shape.push_back(info.shape[d]);
      numel *= static_cast<size_t>(info.shape[d]);
    }
    a.data.assign(numel * kiln::npy::dtypeSize(a.dtype), 0);
    kiln_tensor &t = outTensors[i];
    t.dtype = info.dtype;
    t.rank = info.rank;
    for (int32_t d = 0; d < t.rank; ++d)
      t.shape[d] = info.shape[d];
    t.data = a.data.data();
    t.size_bytes = a.data.size();
  }

  kiln_session *session;
  if (kiln_status s = kiln_session_create(artifact, device.c_str(), &session))
    return failStatus(s);
  std::vector<double> times;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    if (kiln_status s = kiln_session_call(session, function.c_str(),
                                          inTensors.data(), nin,
                                          outTensors.data(), nout))
      return failStatus(s);
    auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  if (repeat > 1) {
    std::sort(times.begin(), times.end());
    std::fprintf(stderr, "kiln-run: %d runs, median %.3f ms, min %.3f ms\n",
                 repeat, times[times.size() / 2], times[0]);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::string err;
    if (!kiln::npy::write(outputs[i], outArrays[i], err))
      return fail(err);
  }
  kiln_session_release(session);
  kiln_artifact_release(artifact);
  return 0;
}
