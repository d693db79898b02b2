"""What the numbers were measured on: CPU, cores, memory, GPUs and library versions.

Nothing here imports MXNet or DALI; versions come from the installed packages' metadata.
"""
import importlib.metadata
import os
import platform
import shutil
import subprocess

# Report key -> prefixes of the distribution names that provide it (CUDA builds of MXNet
# are called mxnet-cu112 and so on, DALI wheels nvidia-dali-cuda120 ...).
_PACKAGES = {"mxnet": ("mxnet",), "nvidia-dali": ("nvidia-dali",), "horovod": ("horovod",),
             "numpy": ("numpy",), "opencv": ("opencv-python",), "gluoncv": ("gluoncv",),
             # The GPU build first: where both are installed it is the one imported here.
             "onnxruntime": ("onnxruntime-gpu", "onnxruntime")}


def cpu_cores():
    """CPU cores this process may run on (the affinity mask, as containers set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_model(cpuinfo_path="/proc/cpuinfo"):
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib(meminfo_path="/proc/meminfo"):
    """Total memory in GiB, or None where /proc/meminfo is missing."""
    try:
        with open(meminfo_path) as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_names():
    """Names of the GPUs `nvidia-smi` lists; empty without nvidia-smi or GPUs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def package_versions():
    """``{"mxnet": "1.9.1", "nvidia-dali": "2.4.0", ...}``; None for what is not installed.
    A value names the distribution when it differs from the key (``mxnet-cu112 1.9.1``)."""
    installed = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        installed.setdefault(name, dist.version)
    versions = {}
    for key, prefixes in _PACKAGES.items():
        matches = []
        for prefix in prefixes:  # in order of preference
            matches = sorted(n for n in installed if n.startswith(prefix))
            if matches:
                break
        if not matches:
            versions[key] = None
        elif matches[0] == key:
            versions[key] = installed[key]
        else:
            versions[key] = f"{matches[0]} {installed[matches[0]]}"
    return versions


# Environment variables that change CPU figures: MXNet's OpenMP threads and how they wait
# (libgomp's default spinning costs several times the compute on a shared machine), and
# its scheduling threads.
_ENVIRONMENT = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                "MXNET_CPU_WORKER_NTHREADS", "MXNET_ENGINE_TYPE")


def thread_environment():
    """The variables of `_ENVIRONMENT` that are set, with their values."""
    return {name: os.environ[name] for name in _ENVIRONMENT if name in os.environ}


def load_average():
    """The 1-minute load average: runnable processes, to compare with the cores."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def busy_warning():
    """A warning when other processes keep the CPU busy (numbers would come out low), or
    None."""
    load, cores = load_average(), cpu_cores()
    if load is not None and load > 0.5 * cores:
        return (f"warning: the load average is {load} on {cores} cores: other processes are "
                f"running, and CPU measurements will come out low and noisy")
    return None


def machine_info():
    """Everything above as one dict for the report."""
    return {"hostname": platform.node(), "cpu_model": cpu_model(), "cpu_cores": cpu_cores(),
            "memory_gib": memory_gib(), "gpus": gpu_names(), "python": platform.python_version(),
            "versions": package_versions(), "load_average": load_average(),
            "environment": thread_environment()}


def describe(info):
    """One line for the top of the printed report."""
    gpus = info["gpus"]
    gpu_text = f"{len(gpus)} x {gpus[0]}" if gpus else "no GPU"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items()
                         if v and k in ("mxnet", "nvidia-dali", "horovod", "onnxruntime"))
    environment = " ".join(f"{k}={v}" for k, v in (info.get("environment") or {}).items())
    return (f"{info['cpu_model']} ({info['cpu_cores']} cores), {gpu_text}; {versions}"
            + (f"; {environment}" if environment else ""))


def device_description(info, gpus):
    """"GPU (8 x NVIDIA H200)" when the run used `gpus` GPUs, else "CPU (model, N cores)"."""
    if gpus:
        names = info["gpus"]
        return f"GPU ({len(names)} x {names[0]})" if names else f"GPU ({gpus} GPU(s))"
    return f"CPU ({info['cpu_model']}, {info['cpu_cores']} cores)"
