/*
 * box_ops.cc -- MXNet operators over boxes: mxops_box_iou, mxops_box_encode,
 * mxops_box_decode, mxops_anchors. Each is a shape/dtype check plus a kernel call.
 */
#include "common.h"

namespace mxops_mx {

// ------------------------------------------------------------------ mxops_box_iou
static const char kIou[] = "mxops_box_iou";

static MXReturnValue iou_parse(const Attrs&, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue iou_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < 2; ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kIou) << "boxes must be float32, input " << i << " is "
                        << dtype_name(in->at(i));
  out->at(0) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue iou_shape(const Attrs&, Shapes* in, Shapes* out) {
  const auto &a = in->at(0), &b = in->at(1);
  if (has_shape(a, 2, 4) && has_shape(b, 2, 4)) {
    out->at(0) = dims({a[0], b[0]});
  } else if (has_shape(a, 3, 4) && has_shape(b, 3, 4) && a[0] == b[0]) {
    out->at(0) = dims({a[0], a[1], b[1]});
  } else {
    return fail(kIou) << "expects a (N, 4) and b (M, 4), or a (B, N, 4) and b (B, M, 4); got a "
                      << shape_str(a) << " and b " << shape_str(b);
  }
  return MX_SUCCESS;
}

struct IouDims { int64_t batch, n, m; };
static IouDims iou_dims(const std::vector<MXTensor>& in) {
  const auto &a = in[0].shape, &b = in[1].shape;
  if (a.size() == 2) return {1, a[0], b[0]};
  return {a[0], a[1], b[1]};
}

static MXReturnValue iou_cpu(const Attrs& attrs, std::vector<MXTensor>* in,
                             std::vector<MXTensor>* out, const OpResource&) {
  IouDims d = iou_dims(*in);
  return kernel_status(kIou, mxops_box_iou_cpu(in->at(0).data<float>(), in->at(1).data<float>(),
                                               out->at(0).data<float>(), d.batch, d.n, d.m,
                                               (float)attr_float(attrs, "offset", 0.0)));
}

#ifdef MXOPS_WITH_CUDA
static MXReturnValue iou_gpu(const Attrs& attrs, std::vector<MXTensor>* in,
                             std::vector<MXTensor>* out, const OpResource& res) {
  IouDims d = iou_dims(*in);
  return kernel_status(kIou, mxops_box_iou_cuda(in->at(0).data<float>(),
                                                in->at(1).data<float>(),
                                                out->at(0).data<float>(), d.batch, d.n, d.m,
                                                (float)attr_float(attrs, "offset", 0.0),
                                                res.get_cuda_stream()));
}
#endif

REGISTER_OP(mxops_box_iou)
    .setParseAttrs(iou_parse)
    .setInferType(iou_type)
    .setInferShape(iou_shape)
    MXOPS_CPU_FORWARD(iou_cpu) MXOPS_GPU_FORWARD(iou_gpu);

// ------------------------------------------------------------------ mxops_box_encode
// inputs: boxes (N, 4) or (B, N, 4), gt (B, M, 4), matches (B, N) int32
// outputs: targets (B, N, 4), masks (B, N, 4)
static const char kEncode[] = "mxops_box_encode";

static MXReturnValue encode_parse(const Attrs& attrs, int* num_in, int* num_out) {
  std::string err;
  if (!attr_list_ok(attrs, "means", &err) || !attr_list_ok(attrs, "stds", &err))
    return fail(kEncode) << err;
  if (attr_list(attrs, "means", {0, 0, 0, 0}).size() != 4 ||
      attr_list(attrs, "stds", {1, 1, 1, 1}).size() != 4)
    return fail(kEncode) << "means and stds need 4 values each";
  *num_in = 3;
  *num_out = 2;
  return MX_SUCCESS;
}

static MXReturnValue encode_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  if (!dtype_ok(*in, 0, mxnet::ext::kFloat32) || !dtype_ok(*in, 1, mxnet::ext::kFloat32))
    return fail(kEncode) << "boxes and gt must be float32";
  if (!dtype_ok(*in, 2, mxnet::ext::kInt32))
    return fail(kEncode) << "matches must be int32, got " << dtype_name(in->at(2));
  out->at(0) = out->at(1) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue encode_shape(const Attrs&, Shapes* in, Shapes* out) {
  const auto &bx = in->at(0), &gt = in->at(1), &mt = in->at(2);
  bool ok = has_shape(gt, 3, 4) && has_shape(mt, 2, 0) && mt[0] == gt[0] &&
            ((has_shape(bx, 2, 4) && bx[0] == mt[1]) ||
             (has_shape(bx, 3, 4) && bx[0] == mt[0] && bx[1] == mt[1]));
  if (!ok)
    return fail(kEncode) << "expects boxes (N, 4) or (B, N, 4), gt (B, M, 4), matches (B, N); "
                         << "got boxes " << shape_str(bx) << ", gt " << shape_str(gt)
                         << ", matches " << shape_str(mt);
  out->at(0) = out->at(1) = dims({mt[0], mt[1], 4});
  return MX_SUCCESS;
}

struct CoderArgs {
  std::vector<float> means, stds;
  float offset, clip;
  explicit CoderArgs(const Attrs& attrs) {
    for (double v : attr_list(attrs, "means", {0, 0, 0, 0})) means.push_back((float)v);
    for (double v : attr_list(attrs, "stds", {1, 1, 1, 1})) stds.push_back((float)v);
    offset = (float)attr_float(attrs, "offset", 0.0);
    clip = (float)attr_float(attrs, "clip", -1.0);
  }
};

template <bool kGpu>
static MXReturnValue encode_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                    std::vector<MXTensor>* out, const OpResource& res) {
  CoderArgs c(attrs);
  const auto& mt = in->at(2).shape;
  const int64_t batch = mt[0], n = mt[1], m = in->at(1).shape[1];
  const int shared = in->at(0).shape.size() == 2;
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), shared, in->at(1).data<float>(),
              in->at(2).data<int32_t>(), out->at(0).data<float>(), out->at(1).data<float>(),
              batch, n, m, c.means.data(), c.stds.data(), c.offset, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) return kernel_status(kEncode, args(mxops_box_encode_cuda, res.get_cuda_stream()));
#endif
  (void)res;
  return kernel_status(kEncode, args(mxops_box_encode_cpu));
}

REGISTER_OP(mxops_box_encode)
    .setParseAttrs(encode_parse)
    .setInferType(encode_type)
    .setInferShape(encode_shape)
    MXOPS_CPU_FORWARD(encode_forward<false>) MXOPS_GPU_FORWARD(encode_forward<true>);

// ------------------------------------------------------------------ mxops_box_decode
// inputs: deltas (B, N, 4), anchors (N, 4) or (B, N, 4) [, im_hw (B, 2) if clip_to_image]
static const char kDecode[] = "mxops_box_decode";

static MXReturnValue decode_parse(const Attrs& attrs, int* num_in, int* num_out) {
  std::string err;
  if (!attr_list_ok(attrs, "means", &err) || !attr_list_ok(attrs, "stds", &err))
    return fail(kDecode) << err;
  if (attr_list(attrs, "means", {0, 0, 0, 0}).size() != 4 ||
      attr_list(attrs, "stds", {1, 1, 1, 1}).size() != 4)
    return fail(kDecode) << "means and stds need 4 values each";
  *num_in = attr_bool(attrs, "clip_to_image", false) ? 3 : 2;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue decode_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < in->size(); ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kDecode) << "inputs must be float32, input " << i << " is "
                           << dtype_name(in->at(i));
  out->at(0) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue decode_shape(const Attrs&, Shapes* in, Shapes* out) {
  const auto &d = in->at(0), &a = in->at(1);
  bool ok = has_shape(d, 3, 4) && ((has_shape(a, 2, 4) && a[0] == d[1]) ||
                                   (has_shape(a, 3, 4) && a[0] == d[0] && a[1] == d[1]));
  if (ok && in->size() == 3) ok = has_shape(in->at(2), 2, 2) && in->at(2)[0] == d[0];
  if (!ok)
    return fail(kDecode) << "expects deltas (B, N, 4), anchors (N, 4) or (B, N, 4)"
                         << (in->size() == 3 ? ", im_hw (B, 2)" : "") << "; got deltas "
                         << shape_str(d) << ", anchors " << shape_str(a)
                         << (in->size() == 3 ? ", im_hw " + shape_str(in->at(2)) : "");
  out->at(0) = d;
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue decode_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                    std::vector<MXTensor>* out, const OpResource& res) {
  CoderArgs c(attrs);
  const auto& d = in->at(0).shape;
  const int shared = in->at(1).shape.size() == 2;
  const float* im_hw = in->size() == 3 ? in->at(2).data<float>() : nullptr;
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), in->at(1).data<float>(), shared, im_hw,
              out->at(0).data<float>(), d[0], d[1], c.means.data(), c.stds.data(), c.clip,
              c.offset, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) return kernel_status(kDecode, args(mxops_box_decode_cuda, res.get_cuda_stream()));
#endif
  (void)res;
  return kernel_status(kDecode, args(mxops_box_decode_cpu));
}

REGISTER_OP(mxops_box_decode)
    .setParseAttrs(decode_parse)
    .setInferType(decode_type)
    .setInferShape(decode_shape)
    MXOPS_CPU_FORWARD(decode_forward<false>) MXOPS_GPU_FORWARD(decode_forward<true>);

// ------------------------------------------------------------------ mxops_anchors
// inputs: one feature map per level, (..., H, W), any dtype (only the shape is read)
// attrs: strides (L), sizes (L * S, S sizes per level), ratios (R)
static const char kAnchors[] = "mxops_anchors";

struct AnchorArgs {
  std::vector<double> strides, sizes, ratios;
  int levels, num_sizes;
  explicit AnchorArgs(const Attrs& attrs)
      : strides(attr_list(attrs, "strides", {})), sizes(attr_list(attrs, "sizes", {})),
        ratios(attr_list(attrs, "ratios", {0.5, 1, 2})) {
    levels = (int)strides.size();
    num_sizes = levels > 0 ? (int)(sizes.size() / levels) : 0;
  }
  bool valid() const {
    return levels > 0 && num_sizes > 0 && sizes.size() == (size_t)levels * num_sizes &&
           !ratios.empty();
  }
};

static MXReturnValue anchors_parse(const Attrs& attrs, int* num_in, int* num_out) {
  std::string err;
  for (const char* k : {"strides", "sizes", "ratios"})
    if (!attr_list_ok(attrs, k, &err)) return fail(kAnchors) << err;
  AnchorArgs a(attrs);
  if (!a.valid())
    return fail(kAnchors) << "needs strides (one per level), sizes (the same number per "
                          << "level, levels * sizes values) and ratios; got "
                          << a.strides.size() << " strides, " << a.sizes.size() << " sizes, "
                          << a.ratios.size() << " ratios";
  *num_in = a.levels;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue anchors_type(const Attrs&, std::vector<int>*, std::vector<int>* out) {
  out->at(0) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static void level_hw(const std::vector<int64_t>& s, int64_t* h, int64_t* w) {
  *h = s[s.size() - 2];
  *w = s[s.size() - 1];
}

static MXReturnValue anchors_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  AnchorArgs a(attrs);
  int64_t total = 0;
  for (size_t l = 0; l < in->size(); ++l) {
    const auto& s = in->at(l);
    if (s.size() < 2)
      return fail(kAnchors) << "feature map " << l << " needs (..., H, W), got " << shape_str(s);
    total += (int64_t)s[s.size() - 2] * s[s.size() - 1] * a.num_sizes * a.ratios.size();
  }
  out->at(0) = dims({total, 4});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue anchors_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                     std::vector<MXTensor>* out, const OpResource& res) {
  AnchorArgs a(attrs);
  std::vector<int64_t> h(a.levels), w(a.levels);
  for (int l = 0; l < a.levels; ++l) level_hw(in->at(l).shape, &h[l], &w[l]);
  auto args = [&](auto fn, auto... extra) {
    return fn(out->at(0).data<float>(), a.levels, h.data(), w.data(), a.strides.data(),
              a.sizes.data(), a.num_sizes, a.ratios.data(), (int)a.ratios.size(), extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) return kernel_status(kAnchors, args(mxops_anchors_cuda, res.get_cuda_stream()));
#endif
  (void)res;
  return kernel_status(kAnchors, args(mxops_anchors_cpu));
}

REGISTER_OP(mxops_anchors)
    .setParseAttrs(anchors_parse)
    .setInferType(anchors_type)
    .setInferShape(anchors_shape)
    MXOPS_CPU_FORWARD(anchors_forward<false>) MXOPS_GPU_FORWARD(anchors_forward<true>);

}  // namespace mxops_mx
