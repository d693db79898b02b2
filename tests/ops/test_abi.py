"""The C ABI through ctypes (ops.abi), as the GPU harness uses it: every CPU kernel gives
what the MXNet operator gives, and every exported kernel has a declared signature."""
import ctypes
import shutil
import subprocess

import mxnet as mx
import numpy as np
import pytest

import ops
from ops import abi
from tests.ops import reference as ref


@pytest.fixture(scope="module")
def k():
    return abi.load_kernels()


def ptr(a):
    return None if a is None else a.ctypes.data


def test_every_exported_kernel_is_declared(k):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", k.path], capture_output=True, text=True,
                         check=True).stdout
    exported = {line.split()[-1] for line in out.splitlines() if " mxops_" in line}
    declared = set(abi.CPU_SIGNATURES) | set(abi.OTHER_SIGNATURES)
    if k.has_cuda:
        declared |= set(abi.WORKSPACE_SIGNATURES) | set(abi.cuda_signatures())
        declared.add("mxops_fill_zero_cuda")
    assert exported == declared


def test_status_strings(k):
    a = np.zeros((1, 4), np.float32)
    status = k.mxops_box_iou_cpu(ptr(a), ptr(a), ptr(a), -1, 1, 1, 0.0)
    assert status == -1
    with pytest.raises(abi.KernelError, match="invalid argument"):
        k.check(status, "box_iou")


def test_box_iou_and_match(k, rng):
    a, g = ref.random_boxes(rng, 500, 300, 5, 100), ref.random_boxes(rng, 7, 300, 5, 100)
    out = np.empty((500, 7), np.float32)
    k.check(k.mxops_box_iou_cpu(ptr(a), ptr(g), ptr(out), 1, 500, 7, 0.0))
    np.testing.assert_array_equal(out, ref.iou(a, g))
    matches, best = np.empty(500, np.int32), np.empty(500, np.float32)
    im_hw = np.array([300, 380], np.float32)
    k.check(k.mxops_match_cpu(ptr(a), 1, ptr(g), ptr(im_hw), ptr(matches), ptr(best), 1, 500,
                              7, 0.6, 0.4, 1, 0.0, 0.0))
    exp_m, exp_b = ref.match(a, g, 0.6, 0.4, 1, im_hw)
    np.testing.assert_array_equal(matches, exp_m)
    np.testing.assert_array_equal(best, exp_b)


def test_sample_equals_operator(k, rng):
    m = rng.integers(-2, 3, (2, 3000)).astype(np.int32)
    labels, pos = np.empty((2, 3000), np.float32), np.empty((2, 3000), np.int32)
    k.check(k.mxops_sample_cpu(ptr(m), ptr(labels), ptr(pos), 2, 3000, 64, 0.25, 99))
    op_labels, op_pos = ops.sample_balanced(mx.nd.array(m, dtype="int32"), 64, 0.25, seed=99)
    np.testing.assert_array_equal(labels, op_labels.asnumpy())
    np.testing.assert_array_equal(pos, op_pos.asnumpy())


def test_anchors_and_coder(k, rng):
    h, w = np.array([5, 3], np.int64), np.array([7, 4], np.int64)
    strides, sizes, ratios = (np.array(v, np.float64) for v in ([8, 16], [32, 64], [0.5, 1, 2]))
    n = k.mxops_anchors_count(2, ptr(h), ptr(w), 1, 3)
    assert n == (35 + 12) * 3
    out = np.empty((n, 4), np.float32)
    k.check(k.mxops_anchors_cpu(ptr(out), 2, ptr(h), ptr(w), ptr(strides), ptr(sizes), 1,
                                ptr(ratios), 3))
    np.testing.assert_array_equal(out, ops.generate_anchors([(5, 7), (3, 4)], [8, 16],
                                                            [32, 64]).asnumpy())
    gt = ref.random_boxes(rng, 4, 100)
    matches = rng.integers(-1, 4, n).astype(np.int32)
    means, stds = np.zeros(4, np.float32), np.array([.1, .1, .2, .2], np.float32)
    t, msk = np.empty((n, 4), np.float32), np.empty((n, 4), np.float32)
    k.check(k.mxops_box_encode_cpu(ptr(out), 1, ptr(gt), ptr(matches), ptr(t), ptr(msk), 1, n,
                                   4, ptr(means), ptr(stds), 0.0))
    op_t, _ = ops.box_encode(mx.nd.array(out), mx.nd.array(gt[None]),
                             mx.nd.array(matches[None], dtype="int32"), stds=stds)
    np.testing.assert_array_equal(t, op_t.asnumpy()[0])
    dec = np.empty((n, 4), np.float32)
    k.check(k.mxops_box_decode_cpu(ptr(t), ptr(out), 1, None, ptr(dec), 1, n, ptr(means),
                                   ptr(stds), 4.0, 0.0))
    op_dec = ops.box_decode(op_t, mx.nd.array(out), stds=stds, clip=4.0).asnumpy()[0]
    np.testing.assert_array_equal(dec, op_dec)


def test_nms_and_proposals(k, rng):
    boxes = ref.random_boxes(rng, 900, 200, 10, 80)
    scores = rng.uniform(size=900).astype(np.float32)
    keep, num = np.empty(100, np.int32), np.empty(1, np.int32)
    k.check(k.mxops_nms_cpu(ptr(boxes), ptr(scores), ptr(keep), ptr(num), 1, 900, 0.5, 100, 0.0))
    exp = ref.nms(boxes, scores, 0.5, 100)
    np.testing.assert_array_equal(keep[:num[0]], exp)
    sizes = np.array([600, 250, 50], np.int64)
    rois, rs, cnt = np.empty((80, 4), np.float32), np.empty(80, np.float32), np.empty(1, np.int32)
    k.check(k.mxops_proposals_cpu(ptr(boxes), ptr(scores), ptr(sizes), 3, ptr(rois), ptr(rs),
                                  ptr(cnt), 1, 900, 200, 80, 0.7, 0.0, 0.0))
    exp = ref.proposals(boxes, scores, (600, 250, 50), 200, 80, 0.7)
    np.testing.assert_array_equal(rois[:cnt[0]], boxes[exp])


def test_polygon_masks(k):
    verts, polys = ops.pack_polygons([[[[2, 2, 20, 3, 12, 25]]]])
    rois = np.array([[0, 0, 28, 28]], np.float32)
    matches = np.zeros(1, np.int32)
    out = np.empty((1, 28, 28), np.float32)
    k.check(k.mxops_polygon_masks_cpu(ptr(rois), ptr(matches), ptr(verts), ptr(polys),
                                      ptr(out), 1, 1, verts.shape[1], polys.shape[1], 28))
    np.testing.assert_array_equal(out[0], ref.polygon_mask(rois[0], [[2, 2, 20, 3, 12, 25]], 28))


def test_paste_masks(k, rng):
    masks = rng.uniform(size=(7, 28, 28)).astype(np.float32)
    boxes = ref.random_boxes(rng, 7, 60, 1, 40) - np.float32(10)
    out = np.empty((7, 50, 60), np.uint8)
    k.check(k.mxops_paste_masks_cpu(ptr(masks), ptr(boxes), ptr(out), 7, 28, 50, 60, 0.5, 0))
    op = ops.paste_masks(mx.nd.array(masks), mx.nd.array(boxes), (50, 60)).asnumpy()
    np.testing.assert_array_equal(out, op)
    columns = np.empty((7, 60, 50), np.uint8)
    k.check(k.mxops_paste_masks_cpu(ptr(masks), ptr(boxes), ptr(columns), 7, 28, 50, 60, 0.5,
                                    1))
    np.testing.assert_array_equal(columns.transpose(0, 2, 1), op)
    assert k.mxops_paste_masks_cpu(ptr(masks), ptr(boxes), ptr(out), 7, 28, 50, 60, 0.0, 0) == -1
