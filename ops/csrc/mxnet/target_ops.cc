/*
 * target_ops.cc -- MXNet operators that build training targets: mxops_match,
 * mxops_sample, mxops_polygon_masks.
 */
#include <atomic>

#include "../box_math.h"

#include "common.h"

namespace mxops_mx {

// ------------------------------------------------------------------ mxops_match
// inputs: boxes (N, 4) or (B, N, 4), gt (B, M, 4) [, im_hw (B, 2) if use_im_hw]
// outputs: matches (B, N) int32, max_iou (B, N) float32
static const char kMatch[] = "mxops_match";

static MXReturnValue match_parse(const Attrs& attrs, int* num_in, int* num_out) {
  int64_t lq = attr_int(attrs, "low_quality", 1);
  if (lq < 0 || lq > 2)
    return fail(kMatch) << "low_quality must be 0 (off), 1 (all) or 2 (between), got " << lq;
  if (attr_float(attrs, "bg_thresh", 0.3) > attr_float(attrs, "fg_thresh", 0.7))
    return fail(kMatch) << "bg_thresh must not exceed fg_thresh";
  *num_in = attr_bool(attrs, "use_im_hw", false) ? 3 : 2;
  *num_out = 2;
  return MX_SUCCESS;
}

static MXReturnValue match_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < in->size(); ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kMatch) << "inputs must be float32, input " << i << " is "
                          << dtype_name(in->at(i));
  out->at(0) = mxnet::ext::kInt32;
  out->at(1) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue match_shape(const Attrs&, Shapes* in, Shapes* out) {
  const auto &bx = in->at(0), &gt = in->at(1);
  bool ok = has_shape(gt, 3, 4) &&
            (has_shape(bx, 2, 4) || (has_shape(bx, 3, 4) && bx[0] == gt[0]));
  if (ok && in->size() == 3) ok = has_shape(in->at(2), 2, 2) && in->at(2)[0] == gt[0];
  if (!ok)
    return fail(kMatch) << "expects boxes (N, 4) or (B, N, 4), gt (B, M, 4)"
                        << (in->size() == 3 ? ", im_hw (B, 2)" : "") << "; got boxes "
                        << shape_str(bx) << ", gt " << shape_str(gt)
                        << (in->size() == 3 ? ", im_hw " + shape_str(in->at(2)) : "");
  const unsigned n = bx.size() == 2 ? bx[0] : bx[1];
  out->at(0) = out->at(1) = dims({gt[0], n});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue match_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                   std::vector<MXTensor>* out, const OpResource& res) {
  const auto& mt = out->at(0).shape;
  const int64_t batch = mt[0], n = mt[1], m = in->at(1).shape[1];
  const int shared = in->at(0).shape.size() == 2;
  const float* im_hw = in->size() == 3 ? in->at(2).data<float>() : nullptr;
  const float fg = (float)attr_float(attrs, "fg_thresh", 0.7);
  const float bg = (float)attr_float(attrs, "bg_thresh", 0.3);
  const int lq = (int)attr_int(attrs, "low_quality", 1);
  const float border = (float)attr_float(attrs, "allowed_border", 0.0);
  const float offset = (float)attr_float(attrs, "offset", 0.0);
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), shared, in->at(1).data<float>(), im_hw,
              out->at(0).data<int32_t>(), out->at(1).data<float>(), batch, n, m, fg, bg, lq,
              border, offset, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) {
    bool ok;
    size_t bytes = mxops_match_cuda_workspace(batch, n, m);
    void* ws = gpu_workspace(res, bytes, &ok);
    if (!ok) return fail(kMatch) << "could not allocate " << bytes << " bytes of workspace";
    return kernel_status(kMatch, args(mxops_match_cuda, ws, bytes, res.get_cuda_stream()));
  }
#endif
  (void)res;
  return kernel_status(kMatch, args(mxops_match_cpu));
}

REGISTER_OP(mxops_match)
    .setParseAttrs(match_parse)
    .setInferType(match_type)
    .setInferShape(match_shape)
    MXOPS_CPU_FORWARD(match_forward<false>) MXOPS_GPU_FORWARD(match_forward<true>);

// ------------------------------------------------------------------ mxops_sample
// inputs: matches (B, N) int32; outputs: labels (B, N) float32, pos_matches (B, N) int32
// attrs: num_sample, pos_fraction, seed (-1: next seed of the library's sequence)
static const char kSample[] = "mxops_sample";

// The seed sequence used when no seed is given; mxops_seed_sampler() restarts it.
static std::atomic<uint64_t> g_seed_base{0x5eed5eed5eed5eedULL};
static std::atomic<uint64_t> g_seed_count{0};

static uint64_t next_seed() {
  return mxops::mix64(g_seed_base.load() + 0x9e3779b97f4a7c15ULL * ++g_seed_count);
}

static MXReturnValue sample_parse(const Attrs& attrs, int* num_in, int* num_out) {
  double f = attr_float(attrs, "pos_fraction", 0.5);
  if (!(f >= 0.0 && f <= 1.0)) return fail(kSample) << "pos_fraction must be in [0, 1]";
  if (attr_int(attrs, "num_sample", 256) < 0) return fail(kSample) << "num_sample must be >= 0";
  *num_in = 1;
  *num_out = 2;
  return MX_SUCCESS;
}

static MXReturnValue sample_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  if (!dtype_ok(*in, 0, mxnet::ext::kInt32))
    return fail(kSample) << "matches must be int32, got " << dtype_name(in->at(0));
  out->at(0) = mxnet::ext::kFloat32;
  out->at(1) = mxnet::ext::kInt32;
  return MX_SUCCESS;
}

static MXReturnValue sample_shape(const Attrs&, Shapes* in, Shapes* out) {
  if (!has_shape(in->at(0), 2, 0))
    return fail(kSample) << "expects matches (B, N), got " << shape_str(in->at(0));
  out->at(0) = out->at(1) = in->at(0);
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue sample_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                    std::vector<MXTensor>* out, const OpResource& res) {
  const auto& s = in->at(0).shape;
  const int64_t given = attr_int(attrs, "seed", -1);
  const uint64_t seed = given >= 0 ? (uint64_t)given : next_seed();
  const int64_t num_sample = attr_int(attrs, "num_sample", 256);
  const float fraction = (float)attr_float(attrs, "pos_fraction", 0.5);
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<int32_t>(), out->at(0).data<float>(), out->at(1).data<int32_t>(),
              s[0], s[1], num_sample, fraction, seed, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) {
    bool ok;
    size_t bytes = mxops_sample_cuda_workspace(s[0], s[1]);
    void* ws = gpu_workspace(res, bytes, &ok);
    if (!ok) return fail(kSample) << "could not allocate " << bytes << " bytes of workspace";
    return kernel_status(kSample, args(mxops_sample_cuda, ws, bytes, res.get_cuda_stream()));
  }
#endif
  (void)res;
  return kernel_status(kSample, args(mxops_sample_cpu));
}

REGISTER_OP(mxops_sample)
    .setParseAttrs(sample_parse)
    .setInferType(sample_type)
    .setInferShape(sample_shape)
    MXOPS_CPU_FORWARD(sample_forward<false>) MXOPS_GPU_FORWARD(sample_forward<true>);

// ------------------------------------------------------------------ mxops_polygon_masks
// inputs: rois (B, R, 4), matches (B, R) int32, verts (B, V, 2), polys (B, Q, 3) int32
// output: masks (B, R, M, M) float32; attr mask_size (M, default 28)
static const char kMasks[] = "mxops_polygon_masks";

static MXReturnValue masks_parse(const Attrs& attrs, int* num_in, int* num_out) {
  int64_t size = attr_int(attrs, "mask_size", 28);
  if (size <= 0 || size > 1024) return fail(kMasks) << "mask_size must be in 1..1024";
  *num_in = 4;
  *num_out = 1;
  return MX_SUCCESS;
}

static MXReturnValue masks_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  const int want[4] = {mxnet::ext::kFloat32, mxnet::ext::kInt32, mxnet::ext::kFloat32,
                       mxnet::ext::kInt32};
  const char* names[4] = {"rois", "matches", "verts", "polys"};
  for (int i = 0; i < 4; ++i)
    if (!dtype_ok(*in, i, want[i]))
      return fail(kMasks) << names[i] << " must be " << dtype_name(want[i]) << ", got "
                          << dtype_name(in->at(i));
  out->at(0) = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

static MXReturnValue masks_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto &r = in->at(0), &m = in->at(1), &v = in->at(2), &p = in->at(3);
  bool ok = has_shape(r, 3, 4) && has_shape(m, 2, 0) && has_shape(v, 3, 2) &&
            has_shape(p, 3, 3) && m[0] == r[0] && m[1] == r[1] && v[0] == r[0] &&
            p[0] == r[0];
  if (!ok)
    return fail(kMasks) << "expects rois (B, R, 4), matches (B, R), verts (B, V, 2), "
                        << "polys (B, Q, 3); got rois " << shape_str(r) << ", matches "
                        << shape_str(m) << ", verts " << shape_str(v) << ", polys "
                        << shape_str(p);
  const int64_t size = attr_int(attrs, "mask_size", 28);
  out->at(0) = dims({r[0], r[1], size, size});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue masks_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                   std::vector<MXTensor>* out, const OpResource& res) {
  const auto& r = in->at(0).shape;
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), in->at(1).data<int32_t>(), in->at(2).data<float>(),
              in->at(3).data<int32_t>(), out->at(0).data<float>(), r[0], r[1],
              in->at(2).shape[1], in->at(3).shape[1], attr_int(attrs, "mask_size", 28),
              extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu)
    return kernel_status(kMasks, args(mxops_polygon_masks_cuda, res.get_cuda_stream()));
#endif
  (void)res;
  return kernel_status(kMasks, args(mxops_polygon_masks_cpu));
}

REGISTER_OP(mxops_polygon_masks)
    .setParseAttrs(masks_parse)
    .setInferType(masks_type)
    .setInferShape(masks_shape)
    MXOPS_CPU_FORWARD(masks_forward<false>) MXOPS_GPU_FORWARD(masks_forward<true>);

}  // namespace mxops_mx

// Restarts the seed sequence of mxops_sample calls made without a seed.
extern "C" void mxops_seed_sampler(uint64_t seed) {
  mxops_mx::g_seed_base.store(seed);
  mxops_mx::g_seed_count.store(0);
}
