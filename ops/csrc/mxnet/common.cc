/*
 * common.cc -- see common.h.
 */
#include "common.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <limits>

namespace mxops_mx {

static const std::string* find(const Attrs& attrs, const char* key) {
  auto it = attrs.find(key);
  return it == attrs.end() ? nullptr : &it->second;
}

double attr_float(const Attrs& attrs, const char* key, double fallback) {
  const std::string* v = find(attrs, key);
  if (!v) return fallback;
  if (*v == "True") return 1.0;
  if (*v == "False") return 0.0;
  return strtod(v->c_str(), nullptr);
}

int64_t attr_int(const Attrs& attrs, const char* key, int64_t fallback) {
  const std::string* v = find(attrs, key);
  if (!v) return fallback;
  if (*v == "True") return 1;
  if (*v == "False") return 0;
  return strtoll(v->c_str(), nullptr, 10);
}

bool attr_bool(const Attrs& attrs, const char* key, bool fallback) {
  return attr_int(attrs, key, fallback ? 1 : 0) != 0;
}

// "(1, 2.5)", "[1,2.5]", "1" -> {1, 2.5}; false if a token is not a number.
static bool parse_list(const std::string& text, std::vector<double>* out) {
  std::string s = text;
  std::replace(s.begin(), s.end(), '(', ' ');
  std::replace(s.begin(), s.end(), ')', ' ');
  std::replace(s.begin(), s.end(), '[', ' ');
  std::replace(s.begin(), s.end(), ']', ' ');
  std::replace(s.begin(), s.end(), ',', ' ');
  std::istringstream in(s);
  std::string tok;
  out->clear();
  while (in >> tok) {
    char* end = nullptr;
    double d = strtod(tok.c_str(), &end);
    if (end == tok.c_str() || *end != '\0') return false;
    out->push_back(d);
  }
  return true;
}

std::vector<double> attr_list(const Attrs& attrs, const char* key,
                              const std::vector<double>& fallback) {
  const std::string* v = find(attrs, key);
  std::vector<double> out;
  if (!v || !parse_list(*v, &out)) return fallback;
  return out;
}

bool attr_list_ok(const Attrs& attrs, const char* key, std::string* error) {
  const std::string* v = find(attrs, key);
  std::vector<double> out;
  if (!v || parse_list(*v, &out)) return true;
  *error = std::string("attribute ") + key + "='" + *v + "' is not a list of numbers";
  return false;
}

std::string shape_str(const std::vector<unsigned int>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

bool has_shape(const std::vector<unsigned int>& s, size_t rank, unsigned last) {
  return s.size() == rank && (last == 0 || s.back() == last);
}

const char* dtype_name(int dtype) {
  switch (dtype) {
    case mxnet::ext::kFloat32: return "float32";
    case mxnet::ext::kFloat64: return "float64";
    case mxnet::ext::kFloat16: return "float16";
    case mxnet::ext::kUint8: return "uint8";
    case mxnet::ext::kInt32: return "int32";
    case mxnet::ext::kInt8: return "int8";
    case mxnet::ext::kInt64: return "int64";
    default: return "unknown";
  }
}

MXReturnValue kernel_status(const char* op, int status) {
  if (status == MXOPS_OK) return MX_SUCCESS;
#ifdef MXOPS_WITH_CUDA
  return fail(op) << "kernel failed: " << mxops_cuda_status_string(status);
#else
  return fail(op) << "kernel failed: " << mxops_status_string(status);
#endif
}

static size_t dtype_bytes(int dtype) {
  switch (dtype) {
    case mxnet::ext::kFloat64: case mxnet::ext::kInt64: return 8;
    case mxnet::ext::kFloat16: return 2;
    case mxnet::ext::kUint8: case mxnet::ext::kInt8: return 1;
    default: return 4;
  }
}

MXReturnValue zero_grad_cpu(const Attrs&, std::vector<MXTensor>*, std::vector<MXTensor>* out,
                            const OpResource&) {
  for (auto& t : *out) memset(t.data_ptr, 0, (size_t)t.size() * dtype_bytes(t.dtype));
  return MX_SUCCESS;
}

#ifdef MXOPS_WITH_CUDA
MXReturnValue zero_grad_gpu(const Attrs&, std::vector<MXTensor>*, std::vector<MXTensor>* out,
                            const OpResource& res) {
  for (auto& t : *out) {
    int st = mxops_fill_zero_cuda(t.data_ptr, (size_t)t.size() * dtype_bytes(t.dtype),
                                  res.get_cuda_stream());
    if (st != MXOPS_OK) return kernel_status("backward", st);
  }
  return MX_SUCCESS;
}
#endif

void* gpu_workspace(const OpResource& res, size_t bytes, bool* ok) {
  *ok = bytes <= (size_t)std::numeric_limits<int>::max();
  if (!*ok || bytes == 0) return nullptr;
  void* p = res.alloc_gpu((int)bytes);
  *ok = p != nullptr;
  return p;
}

}  // namespace mxops_mx
