"""numpy references for the ops tests.

They spell out the intended semantics in the most direct way (loops where that is
clearer) and use the same float32 operations in the same order as csrc/box_math.h, so
IoU-based decisions can be compared exactly.
"""
import numpy as np

f32 = np.float32


def random_boxes(rng, n, size=1000.0, min_wh=1.0, max_wh=300.0):
    """(n, 4) float32 corner boxes inside [0, size + max_wh]^2."""
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(min_wh, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(f32)


def area(b, offset=0.0):
    w = np.maximum(b[..., 2] - b[..., 0] + f32(offset), f32(0))
    h = np.maximum(b[..., 3] - b[..., 1] + f32(offset), f32(0))
    return w * h


def iou(a, b, offset=0.0):
    """(N, 4) x (M, 4) -> (N, M) float32, the formula of box_math.h: box_iou."""
    a, b, off = a.astype(f32), b.astype(f32), f32(offset)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + off
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + off
    inter = np.maximum(iw, f32(0)) * np.maximum(ih, f32(0))
    uni = area(a, offset)[:, None] + area(b, offset)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(uni > 0, inter / np.where(uni > 0, uni, f32(1)), f32(0)).astype(f32)


def match(boxes, gt, fg, bg, low_quality, im_hw=None, border=0.0, offset=0.0):
    """One image. matches (N,) int32: gt index / -1 bg / -2 ignore; best IoU (N,)."""
    n = boxes.shape[0]
    keep = ~np.all(gt < 0, axis=1)
    gt_index = np.nonzero(keep)[0]
    inside = np.ones(n, bool)
    if im_hw is not None:
        h, w = f32(im_hw[0]), f32(im_hw[1])
        inside = ((boxes[:, 0] >= -border) & (boxes[:, 1] >= -border) &
                  (boxes[:, 2] < w + border) & (boxes[:, 3] < h + border))
    if gt_index.size == 0:
        best = np.where(inside, f32(0), f32(-1))
        return np.where(inside, -1, -2).astype(np.int32), best
    ious = iou(boxes, gt[keep], offset)
    ious[~inside] = -1
    best = ious.max(1)
    arg = gt_index[ious.argmax(1)]
    matches = np.where(best >= fg, arg, np.where(best < bg, -1, -2))
    if low_quality:
        gt_best = ious.max(0)
        hit = ((ious == gt_best[None]) & (gt_best[None] > 0)).any(1) & inside
        promote = hit & (best < fg) & ((low_quality == 1) | (best >= bg))
        matches = np.where(promote, arg, matches)
    matches = np.where(inside, matches, -2)
    return matches.astype(np.int32), best.astype(f32)


def order(scores, valid=None):
    """Indices by descending score, ties by index, NaN (and ~valid) dropped."""
    s = np.where(scores == 0, f32(0), scores)
    ok = ~np.isnan(s) if valid is None else (~np.isnan(s) & valid)
    idx = np.nonzero(ok)[0]
    return idx[np.lexsort((idx, -s[idx]))]


def nms(boxes, scores, thresh, max_out, offset=0.0, candidates=None):
    """Greedy NMS of one image; returns kept indices (best first)."""
    cand = order(scores) if candidates is None else candidates
    kept = []
    for i in cand:
        if len(kept) >= max_out:
            break
        if kept and (iou(boxes[kept], boxes[i:i + 1], offset)[:, 0] > f32(thresh)).any():
            continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


def proposals(boxes, scores, level_sizes, pre, post, thresh, min_size=0.0, offset=0.0):
    """One image, maskrcnn-benchmark's FPN selection; returns kept indices (best first)."""
    w = boxes[:, 2] - boxes[:, 0] + f32(offset)
    h = boxes[:, 3] - boxes[:, 1] + f32(offset)
    big = (w >= f32(min_size)) & (h >= f32(min_size))
    kept, start = [], 0
    for size in level_sizes:
        sl = np.arange(start, start + size)
        cand = sl[order(scores[sl], big[sl])][:pre]
        kept.append(nms(boxes, scores, thresh, post, offset, candidates=cand))
        start += size
    merged = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    s = np.where(scores[merged] == 0, f32(0), scores[merged])
    return merged[np.argsort(-s, kind="stable")][:post]


def encode(anchors, gt, means=(0, 0, 0, 0), stds=(1, 1, 1, 1), offset=0.0):
    """Row-wise regression targets of anchors towards gt, float64 for reference."""
    a, g = anchors.astype(np.float64), gt.astype(np.float64)
    aw, ah = a[:, 2] - a[:, 0] + offset, a[:, 3] - a[:, 1] + offset
    gw, gh = g[:, 2] - g[:, 0] + offset, g[:, 3] - g[:, 1] + offset
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    gx, gy = g[:, 0] + 0.5 * gw, g[:, 1] + 0.5 * gh
    t = np.stack([(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)], 1)
    return (t - np.asarray(means)) / np.asarray(stds)


def decode(deltas, anchors, means=(0, 0, 0, 0), stds=(1, 1, 1, 1), clip=None, im_hw=None,
           offset=0.0):
    d = deltas.astype(np.float64) * np.asarray(stds) + np.asarray(means)
    a = anchors.astype(np.float64)
    aw, ah = a[:, 2] - a[:, 0] + offset, a[:, 3] - a[:, 1] + offset
    ax, ay = a[:, 0] + 0.5 * aw, a[:, 1] + 0.5 * ah
    dw, dh = d[:, 2], d[:, 3]
    if clip is not None and clip >= 0:
        dw, dh = np.minimum(dw, clip), np.minimum(dh, clip)
    cx, cy = d[:, 0] * aw + ax, d[:, 1] * ah + ay
    w, h = np.exp(dw) * aw, np.exp(dh) * ah
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2 - offset, cy + h / 2 - offset], 1)
    if im_hw is not None:
        out[:, 0::2] = np.clip(out[:, 0::2], 0, im_hw[1] - offset)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, im_hw[0] - offset)
    return out


def polygon_mask(roi, polygons, size):
    """The rule of csrc/*/polygon_masks: pixel centres, even-odd, polygons OR-ed, float32."""
    mask = np.zeros((size, size), bool)
    sx = f32(size) / np.maximum(roi[2] - roi[0], f32(1))
    sy = f32(size) / np.maximum(roi[3] - roi[1], f32(1))
    centres = np.arange(size, dtype=f32) + f32(0.5)
    for poly in polygons:
        xy = np.asarray(poly, f32).reshape(-1, 2)
        if len(xy) < 3:
            continue
        x = (xy[:, 0] - roi[0]) * sx
        y = (xy[:, 1] - roi[1]) * sy
        x0, y0, x1, y1 = x, y, np.roll(x, -1), np.roll(y, -1)
        odd = np.zeros((size, size), bool)
        for row, py in enumerate(centres):
            st = (y0 > py) != (y1 > py)
            with np.errstate(divide="ignore", invalid="ignore"):
                xc = x0[st] + (x1[st] - x0[st]) * ((py - y0[st]) / (y1[st] - y0[st]))
            odd[row] = ((centres[:, None] < xc[None, :]).sum(1) % 2) == 1
        mask |= odd
    return mask.astype(f32)


def _mix64(x):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic), as box_math.h."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xbf58476d1ce4e5b9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94d049bb133111eb)
        return x ^ (x >> np.uint64(31))


def sample(matches, image, num_sample, pos_fraction, seed):
    """The sampler's rule for one image: per class, the candidates with the smallest
    (38-bit hash of (seed, image, index), index). Returns labels (1 / 0 / -1)."""
    idx = np.arange(matches.size, dtype=np.uint64)
    h = _mix64(np.uint64(seed) ^ _mix64((np.uint64(image) << np.uint64(40)) ^ idx))
    key = h >> np.uint64(26)
    fg, bg = np.nonzero(matches >= 0)[0], np.nonzero(matches == -1)[0]
    take_fg = min(fg.size, int(np.rint(num_sample * np.float64(np.float32(pos_fraction)))))
    take_bg = min(bg.size, num_sample - take_fg)
    labels = np.full(matches.size, -1, np.float32)
    for cand, take, value in ((fg, take_fg, 1), (bg, take_bg, 0)):
        chosen = cand[np.lexsort((cand, key[cand]))][:take]
        labels[chosen] = value
    return labels


def paste_values(mask, box, image_hw):
    """The value ops.paste_masks thresholds, in float64 (exact bilinear): mask pixel u has its
    centre at x1 + (u + 0.5) sx, sx = max(x2 - x1, 1e-3) / S, rows likewise; every image pixel
    takes the bilinear value at its centre, the mask being zero outside. (H, W) float64."""
    height, width = image_hw
    mask = np.asarray(mask, np.float64)
    size = mask.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = max(x2 - x1, 1e-3) / size, max(y2 - y1, 1e-3) / size
    col, fx = _taps((np.arange(width) + 0.5 - x1) / sx - 0.5)
    row, fy = _taps((np.arange(height) + 0.5 - y1) / sy - 0.5)
    upper = (1 - fx) * _mask_at(mask, row, col) + fx * _mask_at(mask, row, col + 1)
    lower = (1 - fx) * _mask_at(mask, row + 1, col) + fx * _mask_at(mask, row + 1, col + 1)
    return (1 - fy)[:, None] * upper + fy[:, None] * lower


def _taps(coord):
    first = np.floor(coord)
    return first.astype(np.int64), coord - first


def _mask_at(mask, rows, cols):
    """mask[rows][:, cols] with zero outside the mask."""
    size = mask.shape[0]
    inside = ((rows >= 0) & (rows < size))[:, None] & ((cols >= 0) & (cols < size))[None, :]
    picked = mask[np.clip(rows, 0, size - 1)][:, np.clip(cols, 0, size - 1)]
    return np.where(inside, picked, 0.0)


def paste_mask(mask, box, image_hw, threshold=0.5):
    """The float64 reference of ops.paste_masks for one detection: (H, W) uint8."""
    return (paste_values(mask, box, image_hw) >= threshold).astype(np.uint8)


def paste_mask_cv2(mask, box, image_hw, threshold=0.5):
    """The project's paste before ops.paste_masks (models.mask_rcnn.paste_mask): the same
    affine map through cv2.warpAffine, whose INTER_LINEAR takes the source position in fixed
    point and rounds its fraction to 1/32 of a mask pixel (INTER_BITS = 5), computed over a
    window of one pixel around the box."""
    import cv2
    height, width = image_hw
    size = mask.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    sx, sy = max(x2 - x1, 1e-3) / size, max(y2 - y1, 1e-3) / size
    left, top = max(int(np.floor(x1)) - 1, 0), max(int(np.floor(y1)) - 1, 0)
    right, bottom = min(int(np.ceil(x2)) + 1, width), min(int(np.ceil(y2)) + 1, height)
    out = np.zeros((height, width), np.uint8)
    if right <= left or bottom <= top:
        return out
    warp = np.array([[sx, 0, x1 + 0.5 * sx - 0.5 - left],
                     [0, sy, y1 + 0.5 * sy - 0.5 - top]], np.float64)
    window = cv2.warpAffine(np.asarray(mask, np.float32), warp, (right - left, bottom - top),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    out[top:bottom, left:right] = window >= threshold
    return out
