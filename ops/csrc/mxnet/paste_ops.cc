/*
 * paste_ops.cc -- MXNet operator of inference post-processing: mxops_paste_masks.
 */
#include <math.h>

#include "common.h"

namespace mxops_mx {

// ------------------------------------------------------------------ mxops_paste_masks
// inputs: masks (N, S, S) float32 probabilities, boxes (N, 4) float32 in image pixels
// output: (N, H, W) uint8 0/1, or (N, W, H) with column_major (each plane transposed)
// attrs: image_hw (H, W), threshold (0.5, must be > 0), column_major (False)
static const char kPaste[] = "mxops_paste_masks";

// (height, width) of the image_hw attribute; false unless two positive integers.
static bool image_hw(const Attrs& attrs, int64_t* height, int64_t* width) {
  std::vector<double> hw = attr_list(attrs, "image_hw", {});
  if (hw.size() != 2) return false;
  for (double v : hw)
    if (!(v >= 1.0 && v <= 1e6 && v == floor(v))) return false;
  *height = (int64_t)hw[0];
  *width = (int64_t)hw[1];
  return true;
}

static MXReturnValue paste_parse(const Attrs& attrs, int* num_in, int* num_out) {
  int64_t h, w;
  if (!image_hw(attrs, &h, &w))
    return fail(kPaste) << "image_hw must be (height, width), two positive integers; got '"
                        << (attrs.count("image_hw") ? attrs.at("image_hw") : "") << "'";
  if (!(attr_float(attrs, "threshold", 0.5) > 0.0))
    return fail(kPaste) << "threshold must be > 0 (the mask is 0 outside its box)";
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue paste_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  const char* names[2] = {"masks", "boxes"};
  for (int i = 0; i < 2; ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kPaste) << names[i] << " must be float32, got " << dtype_name(in->at(i));
  out->at(0) = mxnet::ext::kUint8;
  return MX_SUCCESS;
}

static MXReturnValue paste_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto &m = in->at(0), &b = in->at(1);
  const bool ok = has_shape(m, 3, 0) && m[1] == m[2] && m[1] >= 1 && m[1] <= 1024 &&
                  has_shape(b, 2, 4) && b[0] == m[0];
  if (!ok)
    return fail(kPaste) << "expects masks (N, S, S) with S <= 1024 and boxes (N, 4); got "
                        << "masks " << shape_str(m) << ", boxes " << shape_str(b);
  int64_t h, w;
  image_hw(attrs, &h, &w);
  const bool column_major = attr_bool(attrs, "column_major", false);
  out->at(0) = column_major ? dims({m[0], w, h}) : dims({m[0], h, w});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue paste_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                   std::vector<MXTensor>* out, const OpResource& res) {
  int64_t h, w;
  image_hw(attrs, &h, &w);
  const auto& m = in->at(0).shape;
  const float threshold = (float)attr_float(attrs, "threshold", 0.5);
  const int column_major = attr_bool(attrs, "column_major", false) ? 1 : 0;
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), in->at(1).data<float>(), out->at(0).data<uint8_t>(),
              m[0], m[1], h, w, threshold, column_major, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) return kernel_status(kPaste, args(mxops_paste_masks_cuda, res.get_cuda_stream()));
#endif
  (void)res;
  return kernel_status(kPaste, args(mxops_paste_masks_cpu));
}

REGISTER_OP(mxops_paste_masks)
    .setParseAttrs(paste_parse)
    .setInferType(paste_type)
    .setInferShape(paste_shape)
    MXOPS_CPU_FORWARD(paste_forward<false>) MXOPS_GPU_FORWARD(paste_forward<true>);

}  // namespace mxops_mx
