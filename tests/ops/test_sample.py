"""ops.sample_balanced: counts, subsets, seeding and uniformity."""
import mxnet as mx
import numpy as np
import pytest

import ops
from tests.ops import reference as ref


def random_matches(rng, b, n, p_fg=0.02, p_bg=0.7):
    u = rng.uniform(size=(b, n))
    m = np.where(u < p_fg, rng.integers(0, 7, (b, n)), np.where(u < p_fg + p_bg, -1, -2))
    return m.astype(np.int32)


def sample(matches, **kw):
    labels, pos = ops.sample_balanced(mx.nd.array(matches, dtype="int32"), **kw)
    return labels.asnumpy(), pos.asnumpy()


@pytest.mark.parametrize("num_sample,fraction", [(256, 0.5), (512, 0.25), (10, 1.0),
                                                 (100, 0.0), (7, 0.5)])
def test_counts_and_subsets(rng, num_sample, fraction):
    matches = random_matches(rng, 3, 20000)
    matches[2, :] = -1  # an image with no foreground
    labels, pos = sample(matches, num_sample=num_sample, pos_fraction=fraction, seed=5)
    for b in range(3):
        fg, bg = (matches[b] >= 0).sum(), (matches[b] == -1).sum()
        want_fg = min(fg, int(round(num_sample * fraction)))
        assert (labels[b] == 1).sum() == want_fg
        assert (labels[b] == 0).sum() == min(bg, num_sample - want_fg)
        assert (matches[b][labels[b] == 1] >= 0).all()
        assert (matches[b][labels[b] == 0] == -1).all()
        np.testing.assert_array_equal(pos[b], np.where(labels[b] == 1, matches[b], -1))


def test_few_candidates_take_all(rng):
    matches = np.full((1, 1000), -2, np.int32)
    matches[0, [3, 50]] = [0, 1]
    matches[0, [7, 8, 9]] = -1
    labels, _ = sample(matches, num_sample=256, pos_fraction=0.5, seed=1)
    assert sorted(np.nonzero(labels[0] == 1)[0]) == [3, 50]
    assert sorted(np.nonzero(labels[0] == 0)[0]) == [7, 8, 9]
    assert (labels[0] == -1).sum() == 995


def test_seed_repeats_and_varies(rng):
    matches = random_matches(rng, 2, 5000)
    a, _ = sample(matches, seed=11)
    b, _ = sample(matches, seed=11)
    c, _ = sample(matches, seed=12)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    ops.seed(3)
    d, _ = sample(matches)
    e, _ = sample(matches)
    ops.seed(3)
    f, _ = sample(matches)
    assert (d != e).any()
    np.testing.assert_array_equal(d, f)


def test_uniform_over_candidates(rng):
    # 40 foreground candidates, 10 taken per draw: each should be taken 1/4 of the time
    matches = np.full((1, 400), -1, np.int32)
    fg = rng.choice(400, 40, replace=False)
    matches[0, fg] = 0
    hits = np.zeros(400)
    draws = 2000
    for s in range(draws):
        labels, _ = sample(matches, num_sample=20, pos_fraction=0.5, seed=s)
        hits += labels[0] == 1
    freq = hits[fg] / draws
    assert abs(freq.mean() - 0.25) < 1e-9
    # binomial std at p = 1/4, 2000 draws: ~0.0097; allow 5 sigma
    assert np.abs(freq - 0.25).max() < 0.05
    # neighbouring indices are not correlated (a weak hash would show here)
    both = np.zeros(39)
    for s in range(300):
        labels, _ = sample(matches, num_sample=20, pos_fraction=0.5, seed=10 ** 6 + s)
        taken = labels[0, np.sort(fg)] == 1
        both += taken[:-1] & taken[1:]
    assert abs(both.mean() / 300 - 0.25 * 9 / 39) < 0.03


def test_bad_arguments_are_named():
    m = mx.nd.zeros((1, 10), dtype="int32")
    with pytest.raises(ValueError, match="pos_fraction"):
        ops.sample_balanced(m, pos_fraction=1.5)
    with pytest.raises(TypeError, match="matches must be int32"):
        ops.sample_balanced(mx.nd.zeros((1, 10)))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        ops.sample_balanced(m, seed=-3)


def test_exact_rule(rng):
    # the documented rule, bit for bit: the GPU harness checks the CUDA kernel against the
    # CPU kernel, this checks the CPU kernel against the rule
    matches = random_matches(rng, 3, 30000, p_fg=0.05)
    matches[1, :20] = -1
    for num_sample, fraction, seed in [(256, 0.5, 0), (512, 0.25, 12345), (10, 0.7, 2 ** 62)]:
        labels, pos = sample(matches, num_sample=num_sample, pos_fraction=fraction, seed=seed)
        for b in range(3):
            np.testing.assert_array_equal(
                labels[b], ref.sample(matches[b], b, num_sample, fraction, seed))
