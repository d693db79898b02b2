/*
 * common.h -- helpers for the MXNet wrappers: attribute parsing, shape and dtype checks,
 * and error reporting through lib_api.h (MX_ERROR_MSG reaches Python as MXNetError).
 */
#ifndef MXOPS_MXNET_COMMON_H_
#define MXOPS_MXNET_COMMON_H_

#include <stdint.h>

#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <mxnet/lib_api.h>
#include "../mxops.h"

namespace mxops_mx {

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using Attrs = std::unordered_map<std::string, std::string>;
using Shapes = std::vector<std::vector<unsigned int>>;

// Records an error for Python and returns MX_FAIL: `return fail(op) << "message";` reads
// naturally thanks to the conversion operator.
class Failure {
 public:
  explicit Failure(const char* op) { msg_ << op << ": "; }
  template <typename T>
  Failure& operator<<(const T& v) { msg_ << v; return *this; }
  operator MXReturnValue() const {  // NOLINT: implicit by design
    MX_ERROR_MSG << msg_.str();
    return MX_FAIL;
  }

 private:
  std::ostringstream msg_;
};
inline Failure fail(const char* op) { return Failure(op); }

// Attribute lookup with defaults. Values arrive as Python's str() of the argument.
double attr_float(const Attrs& attrs, const char* key, double fallback);
int64_t attr_int(const Attrs& attrs, const char* key, int64_t fallback);
bool attr_bool(const Attrs& attrs, const char* key, bool fallback);
std::vector<double> attr_list(const Attrs& attrs, const char* key,
                              const std::vector<double>& fallback);
// Whether a list attribute parses; false and a message otherwise.
bool attr_list_ok(const Attrs& attrs, const char* key, std::string* error);

std::string shape_str(const std::vector<unsigned int>& s);

// Shape checks: `rank` dims with the last equal to `last` (0 means any).
bool has_shape(const std::vector<unsigned int>& s, size_t rank, unsigned last);

const char* dtype_name(int dtype);

// Turns a kernel status into a Python error naming the operator.
MXReturnValue kernel_status(const char* op, int status);

// Device workspace from MXNet's allocator (nullptr when bytes is 0).
void* gpu_workspace(const OpResource& res, size_t bytes, bool* ok);

}  // namespace mxops_mx

#endif  // MXOPS_MXNET_COMMON_H_

namespace mxops_mx {

// None of these operators is differentiable (they build targets and proposals), but a
// hybridized block builds a backward graph all the same: every operator registers a
// backward that writes zero gradients.
MXReturnValue zero_grad_cpu(const Attrs& attrs, std::vector<MXTensor>* in,
                            std::vector<MXTensor>* out, const OpResource& res);
MXReturnValue zero_grad_gpu(const Attrs& attrs, std::vector<MXTensor>* in,
                            std::vector<MXTensor>* out, const OpResource& res);

// Registration helpers: the "gpu" functions exist only in libraries built with CUDA.
#ifdef MXOPS_WITH_CUDA
#define MXOPS_GPU_FORWARD(fn) \
  .setForward(fn, "gpu").setBackward(zero_grad_gpu, "gpu")
#else
#define MXOPS_GPU_FORWARD(fn)
#endif
#define MXOPS_CPU_FORWARD(fn) .setForward(fn, "cpu").setBackward(zero_grad_cpu, "cpu")

// Checks input i has dtype `want` (-1, not yet known, passes).
inline bool dtype_ok(const std::vector<int>& types, size_t i, int want) {
  return types.at(i) == -1 || types.at(i) == want;
}

inline std::vector<unsigned int> dims(std::initializer_list<int64_t> d) {
  std::vector<unsigned int> s;
  for (int64_t v : d) s.push_back((unsigned int)v);
  return s;
}

}  // namespace mxops_mx
