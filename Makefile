# Two commands for a fresh machine (see README.md):
#   make demo      set everything up, make the demo data set, train ResNet v1.5 on it, evaluate
#   make test      set everything up, run the test suite
#   make demo-ssd  after `make demo`: train a small SSD on the demo detection set from that
#                  classifier, print its COCO summary
#   make demo-mrcnn  after `make demo`: the same with a small Mask R-CNN (boxes and masks)
# A second `make setup` finds everything in place and returns in seconds.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
DEPS_STAMP := $(VENV)/.deps-installed
HOROVOD_STAMP := $(VENV)/.horovod-installed

.PHONY: setup ops demo demo-ssd demo-mrcnn test clean-demo

setup: $(HOROVOD_STAMP) ops

$(DEPS_STAMP): requirements.txt requirements-nodeps.txt constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python 3.10+ needed, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -r requirements-nodeps.txt
	$(PY) -c 'import mxnet, onnxruntime, numpy; assert numpy.__version__ == "1.23.5", numpy.__version__'
	touch $@

# Horovod compiles against the MXNet installed above (about 5 minutes on 2 cores).
# cmake < 4: cmake 4 rejects Gloo's CMakeLists.
$(HOROVOD_STAMP): $(DEPS_STAMP)
	$(PIP) "cmake<4" wheel "setuptools<70"
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HOROVOD_WITH_MXNET=1 HOROVOD_WITH_GLOO=1 \
	HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
	HOROVOD_CPU_OPERATIONS=GLOO MAKEFLAGS=-j$$(nproc) \
		$(PIP) --no-build-isolation --no-cache-dir horovod==0.28.1
	$(PY) -c 'import horovod.mxnet as hvd; assert hvd.gloo_built(), "Horovod built without Gloo"'
	touch $@

# The custom operator library (incremental: returns at once when nothing changed).
ops: $(DEPS_STAMP)
	$(PY) -m ops.build

# examples/demo.sh: demo data -> im2rec -> ./runner (2 CPU workers) -> top-1 and output paths.
demo: setup
	examples/demo.sh demo_data/classification workspace/demo

# examples/CPU_SSD_DEMO.sh: demo detection set -> ./runner (2 CPU workers, SSD from the demo
# classifier; trains it first when `make demo` has not) -> COCO box AP.
demo-ssd: setup
	examples/CPU_SSD_DEMO.sh demo_data/detection workspace/ssd-demo

demo-mrcnn: setup
	examples/CPU_MRCNN_DEMO.sh demo_data/detection workspace/mrcnn-demo

test: setup
	$(PY) -m pytest

clean-demo:
	rm -rf demo_data workspace/demo workspace/ssd-demo workspace/mrcnn-demo
