"""Shared fixtures for the ops tests.

The library is built (as `make setup` does) before any test module imports ``ops``: on a
fresh checkout ``import ops`` would otherwise stop with "not built". ops/build.py is loaded
by path so that importing it does not import the package.
"""
import importlib.util
import os
import zlib

import numpy as np
import pytest

_BUILD_PY = os.path.join(os.path.dirname(__file__), "..", "..", "ops", "build.py")
_spec = importlib.util.spec_from_file_location("ops_build_for_tests", _BUILD_PY)
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
if not os.path.exists(os.path.join(_build.DEFAULT_OUT, "libmxops.so")):
    _build.build()


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
