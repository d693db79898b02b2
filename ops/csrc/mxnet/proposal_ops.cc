/*
 * proposal_ops.cc -- MXNet operators mxops_nms and mxops_proposals.
 */
#include "common.h"

namespace mxops_mx {

// ------------------------------------------------------------------ mxops_nms
// inputs: boxes (B, N, 4), scores (B, N); outputs: keep (B, K) int32, num_keep (B,) int32
// attrs: iou_thresh (0.7), max_out (K, -1: N), offset
static const char kNms[] = "mxops_nms";

static MXReturnValue nms_parse(const Attrs&, int* num_in, int* num_out) {
  *num_in = 2;
  *num_out = 2;
  return MX_SUCCESS;
}

static MXReturnValue nms_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < 2; ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kNms) << "boxes and scores must be float32, input " << i << " is "
                        << dtype_name(in->at(i));
  out->at(0) = out->at(1) = mxnet::ext::kInt32;
  return MX_SUCCESS;
}

static int64_t nms_max_out(const Attrs& attrs, int64_t n) {
  int64_t k = attr_int(attrs, "max_out", -1);
  return k < 0 ? n : k;
}

static MXReturnValue nms_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto &b = in->at(0), &s = in->at(1);
  if (!(has_shape(b, 3, 4) && has_shape(s, 2, 0) && b[0] == s[0] && b[1] == s[1]))
    return fail(kNms) << "expects boxes (B, N, 4) and scores (B, N); got boxes "
                      << shape_str(b) << ", scores " << shape_str(s);
  const int64_t k = nms_max_out(attrs, b[1]);
  if (k == 0) return fail(kNms) << "max_out must be -1 or positive";
  out->at(0) = dims({b[0], k});
  out->at(1) = dims({b[0]});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue nms_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                 std::vector<MXTensor>* out, const OpResource& res) {
  const auto& b = in->at(0).shape;
  const int64_t k = nms_max_out(attrs, b[1]);
  const float thresh = (float)attr_float(attrs, "iou_thresh", 0.7);
  const float offset = (float)attr_float(attrs, "offset", 0.0);
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), in->at(1).data<float>(), out->at(0).data<int32_t>(),
              out->at(1).data<int32_t>(), b[0], b[1], thresh, k, offset, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) {
    bool ok;
    size_t bytes = mxops_nms_cuda_workspace(b[0], b[1], k);
    void* ws = gpu_workspace(res, bytes, &ok);
    if (!ok) return fail(kNms) << "could not allocate " << bytes << " bytes of workspace";
    return kernel_status(kNms, args(mxops_nms_cuda, ws, bytes, res.get_cuda_stream()));
  }
#endif
  (void)res;
  return kernel_status(kNms, args(mxops_nms_cpu));
}

REGISTER_OP(mxops_nms)
    .setParseAttrs(nms_parse)
    .setInferType(nms_type)
    .setInferShape(nms_shape)
    MXOPS_CPU_FORWARD(nms_forward<false>) MXOPS_GPU_FORWARD(nms_forward<true>);

// ------------------------------------------------------------------ mxops_proposals
// inputs: boxes (B, N, 4) decoded, scores (B, N)
// outputs: rois (B, P, 4), roi_scores (B, P), num_rois (B,) int32
// attrs: level_sizes (boxes per level, summing to N), pre_nms_top_n, post_nms_top_n (P),
//        iou_thresh, min_size, offset
static const char kProposals[] = "mxops_proposals";

struct ProposalArgs {
  std::vector<int64_t> levels;
  int64_t pre, post;
  float thresh, min_size, offset;
  explicit ProposalArgs(const Attrs& attrs) {
    for (double v : attr_list(attrs, "level_sizes", {})) levels.push_back((int64_t)v);
    pre = attr_int(attrs, "pre_nms_top_n", 2000);
    post = attr_int(attrs, "post_nms_top_n", 1000);
    thresh = (float)attr_float(attrs, "iou_thresh", 0.7);
    min_size = (float)attr_float(attrs, "min_size", 0.0);
    offset = (float)attr_float(attrs, "offset", 0.0);
  }
};

static MXReturnValue proposals_parse(const Attrs& attrs, int* num_in, int* num_out) {
  std::string err;
  if (!attr_list_ok(attrs, "level_sizes", &err)) return fail(kProposals) << err;
  ProposalArgs p(attrs);
  if (p.levels.empty() || p.levels.size() > 16)
    return fail(kProposals) << "level_sizes needs 1 to 16 values (boxes per level)";
  if (p.pre <= 0 || p.post <= 0)
    return fail(kProposals) << "pre_nms_top_n and post_nms_top_n must be positive";
  *num_in = 2;
  *num_out = 3;
  return MX_SUCCESS;
}

static MXReturnValue proposals_type(const Attrs&, std::vector<int>* in, std::vector<int>* out) {
  for (size_t i = 0; i < 2; ++i)
    if (!dtype_ok(*in, i, mxnet::ext::kFloat32))
      return fail(kProposals) << "boxes and scores must be float32, input " << i << " is "
                              << dtype_name(in->at(i));
  out->at(0) = out->at(1) = mxnet::ext::kFloat32;
  out->at(2) = mxnet::ext::kInt32;
  return MX_SUCCESS;
}

static MXReturnValue proposals_shape(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto &b = in->at(0), &s = in->at(1);
  if (!(has_shape(b, 3, 4) && has_shape(s, 2, 0) && b[0] == s[0] && b[1] == s[1]))
    return fail(kProposals) << "expects boxes (B, N, 4) and scores (B, N); got boxes "
                            << shape_str(b) << ", scores " << shape_str(s);
  ProposalArgs p(attrs);
  int64_t total = 0;
  for (int64_t v : p.levels) total += v;
  if (total != (int64_t)b[1])
    return fail(kProposals) << "level_sizes sum to " << total << " but there are " << b[1]
                            << " boxes per image";
  out->at(0) = dims({b[0], p.post, 4});
  out->at(1) = dims({b[0], p.post});
  out->at(2) = dims({b[0]});
  return MX_SUCCESS;
}

template <bool kGpu>
static MXReturnValue proposals_forward(const Attrs& attrs, std::vector<MXTensor>* in,
                                       std::vector<MXTensor>* out, const OpResource& res) {
  ProposalArgs p(attrs);
  const auto& b = in->at(0).shape;
  const int levels = (int)p.levels.size();
  auto args = [&](auto fn, auto... extra) {
    return fn(in->at(0).data<float>(), in->at(1).data<float>(), p.levels.data(), levels,
              out->at(0).data<float>(), out->at(1).data<float>(), out->at(2).data<int32_t>(),
              b[0], b[1], p.pre, p.post, p.thresh, p.min_size, p.offset, extra...);
  };
#ifdef MXOPS_WITH_CUDA
  if (kGpu) {
    bool ok;
    size_t bytes =
        mxops_proposals_cuda_workspace(b[0], b[1], levels, p.levels.data(), p.pre, p.post);
    void* ws = gpu_workspace(res, bytes, &ok);
    if (!ok) return fail(kProposals) << "could not allocate " << bytes << " bytes of workspace";
    return kernel_status(kProposals,
                         args(mxops_proposals_cuda, ws, bytes, res.get_cuda_stream()));
  }
#endif
  (void)res;
  return kernel_status(kProposals, args(mxops_proposals_cpu));
}

REGISTER_OP(mxops_proposals)
    .setParseAttrs(proposals_parse)
    .setInferType(proposals_type)
    .setInferShape(proposals_shape)
    MXOPS_CPU_FORWARD(proposals_forward<false>) MXOPS_GPU_FORWARD(proposals_forward<true>);

}  // namespace mxops_mx
