# GPU image: NVIDIA's MXNet container is the one MXNet 1.9 build with Hopper (sm_90) code;
# the PyPI wheels mxnet-cu112/cu110 stop at Ampere (sm_86). It ships CUDA 12.4, cuDNN 9,
# NCCL, Horovod 0.28 built with MXNet, and Python 3.10.
#
#   docker build -t mxnet-rn50 .
#   docker run --gpus all --ipc=host -v /data/imagenet:/data/imagenet mxnet-rn50 \
#       ./examples/RN50_FP16_8GPU.sh --data-root /data/imagenet
FROM nvcr.io/nvidia/mxnet:24.06-py3

WORKDIR /workspace/mxnet-rn50

# Keep the container's numpy and MXNet: pin them while installing the rest. DALI 2.4 replaces
# the container's 1.37 so that GPU and CPU runs use the same pipelines (dynamic executor).
COPY requirements.txt constraints.txt ./
RUN pip freeze | grep -iE '^(numpy|mxnet|horovod)' > /tmp/container-pins.txt && \
    grep -vE '^(mxnet|numpy)' requirements.txt > /tmp/requirements-gpu.txt && \
    pip install --no-cache-dir -c /tmp/container-pins.txt -r /tmp/requirements-gpu.txt

COPY . .
# The custom operators, with CUDA kernels for the container's GPU architectures.
RUN python -m ops.build

ENV PYTHONUNBUFFERED=1
CMD ["./runner", "--help"]
