"""Horovod (Gloo, CPU processes): two workers with batch b end where one worker with batch 2b
ends, which proves that gradients are averaged and losses normalised per sample."""
import os
import subprocess
import sys

import mxnet as mx
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "hvd_equivalence_worker.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def _run(command, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_two_workers_equal_one_worker_with_double_batch(tmp_path):
    batch, steps = 4, 6
    _run([sys.executable, WORKER, str(2 * batch), str(steps), "single.params"], tmp_path)
    _run([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", "--gloo-timeout-seconds",
          "300", sys.executable, WORKER,
          str(batch), str(steps), "two.params"], tmp_path)
    single = mx.nd.load(str(tmp_path / "single.params"))
    two = mx.nd.load(str(tmp_path / "two.params"))
    assert single.keys() == two.keys() and len(single) == 4
    initial = _initial_weights()
    for name in single:
        a, b = single[name].asnumpy(), two[name].asnumpy()
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=name)
        # ...and training really moved the weights, so the comparison means something.
        assert np.abs(a - initial[name]).max() > 1e-3, name


def _initial_weights():
    sys.path.insert(0, HERE)
    from hvd_equivalence_worker import small_network
    net = small_network()
    return {name: p.data().asnumpy() for name, p in net._collect_params_with_prefix().items()}
