# Two commands for a fresh machine (see README.md):
#   make demo   set everything up, make the demo data set, train ResNet v1.5 on it, evaluate
#   make test   set everything up, run the test suite
# A second `make setup` finds everything in place and returns in seconds.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -c constraints.txt
DEPS_STAMP := $(VENV)/.deps-installed
HOROVOD_STAMP := $(VENV)/.horovod-installed

DEMO_DATA := demo_data/classification
DEMO_REC := $(DEMO_DATA)/rec
DEMO_WORKSPACE := workspace/demo
# Demo training: ResNet-18 v1.5 at 64x64 on 2 CPU workers (Horovod over Gloo).
DEMO_TRAIN := -n 2 -b 32 --arch resnet18_v1.5 --num-classes 10 --image-shape 3,64,64 \
	--num-epochs 12 --lr 1.0 --warmup-epochs 2 --min-random-area 0.25

.PHONY: setup ops demo demo-data test clean-demo

setup: $(HOROVOD_STAMP) ops

$(DEPS_STAMP): requirements.txt constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 10), "Python 3.10+ needed, found " + sys.version' 
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
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

demo-data: $(DEPS_STAMP)
	$(PY) -m data.demo classification --out $(DEMO_DATA)
	mkdir -p $(DEMO_REC)
	for split in train val; do \
		$(PY) -m data.im2rec --list --recursive $(DEMO_REC)/$$split $(DEMO_DATA)/$$split && \
		$(PY) -m data.im2rec --num-thread $$(nproc) $(DEMO_REC)/$$split $(DEMO_DATA)/$$split \
		|| exit 1; \
	done

demo: setup demo-data
	./runner $(DEMO_TRAIN) --data-root $(DEMO_REC) --workspace $(DEMO_WORKSPACE)

test: setup
	$(PY) -m pytest

clean-demo:
	rm -rf demo_data $(DEMO_WORKSPACE)
