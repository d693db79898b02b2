"""Build the ops libraries: ``python -m ops.build`` (from the repository root).

Two shared libraries land in ``ops/lib/``:

* ``libmxops_kernels.so`` -- the kernels behind the C ABI of ``csrc/mxops.h`` (CPU, plus
  CUDA when nvcc works). It needs no MXNet, so the GPU harness can build and load it
  anywhere (``python ops/build.py --kernels-only``).
* ``libmxops.so`` -- the same kernels plus the MXNet operator wrappers and MXNet's
  ``lib_api.cc``, loaded by ``import ops`` through ``mx.library.load``.

The build is incremental: an object is recompiled only when its source, a header or its
command line changed, so a second call with nothing changed returns at once. CUDA code is
compiled for the architectures the found nvcc supports among sm_70..sm_90 (plus PTX of the
newest for later GPUs). If nvcc is missing or fails, a warning says so and CPU-only
libraries are built; the exit status is non-zero only if the CPU library fails.
"""
import argparse
import concurrent.futures
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(HERE, "csrc")
DEFAULT_OUT = os.path.join(HERE, "lib")
WANTED_ARCHS = (70, 75, 80, 86, 90)  # SASS; sm_86 code also runs on sm_89

CXX_FLAGS = ["-O3", "-std=c++17", "-fPIC", "-fopenmp", "-fno-trapping-math",
             "-ffp-contract=off", "-Wall", "-Wextra"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--fmad=false", "-Xcompiler", "-fPIC,-ffp-contract=off"]


_LOG_LOCK = threading.Lock()


def log(msg):
    with _LOG_LOCK:  # compiles run in threads
        sys.stdout.write("[ops.build] " + msg + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------------------- tools
def find_nvcc(explicit=None):
    """Path of nvcc: explicit (then only that one), $MXOPS_NVCC, PATH, $CUDA_HOME/bin,
    /usr/local/cuda/bin; None if none is executable."""
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    for cand in (os.environ.get("MXOPS_NVCC"), shutil.which("nvcc"),
                 os.path.join(os.environ.get("CUDA_HOME", "/nonexistent"), "bin", "nvcc"),
                 "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def cuda_archs(nvcc):
    """The WANTED_ARCHS that this nvcc can compile (``nvcc --list-gpu-arch``)."""
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    supported = {int(tok.split("_")[1]) for tok in out.split() if tok.startswith("compute_")}
    return [a for a in WANTED_ARCHS if a in supported]


def gencode_flags(archs):
    flags = []
    for a in archs:
        flags += ["-gencode", "arch=compute_{0},code=sm_{0}".format(a)]
    if archs:  # PTX of the newest, JIT-compiled by the driver on later GPUs
        flags += ["-gencode", "arch=compute_{0},code=compute_{0}".format(archs[-1])]
    return flags


def cuda_lib_dir(nvcc):
    """Folder of libcudart_static.a, from the TOP= line of ``nvcc --dryrun`` (nvcc may be
    a wrapper script outside the toolkit)."""
    roots = []
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o",
                              os.devnull], capture_output=True, text=True, timeout=60).stderr
        roots += [line.split("=", 1)[1].strip() for line in out.splitlines()
                  if line.startswith("#$ TOP=")]
    except (OSError, subprocess.SubprocessError):
        pass
    roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    for root in roots:
        for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            if os.path.exists(os.path.join(root, sub, "libcudart_static.a")):
                return os.path.normpath(os.path.join(root, sub))
    return None


def mxnet_dir():
    """The installed mxnet package folder, found without importing mxnet (slow)."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


# ---------------------------------------------------------------------------- steps
def headers():
    return [p for ext in ("h", "cuh") for p in glob.glob(os.path.join(CSRC, "**", "*." + ext),
                                                       recursive=True)]


def depfile_deps(depfile):
    """Files listed in a compiler depfile (-MMD / -MD), or None without one."""
    if not os.path.exists(depfile):
        return None
    with open(depfile) as f:
        text = f.read().replace("\\\n", " ")
    _, _, deps = text.partition(":")
    return [d for d in deps.split() if d != "\\"]


def stamp_text(target, cmd):
    """The command as recorded next to its target, with the target's folder left out, so
    that a copied object folder stays up to date."""
    return " ".join(cmd).replace(os.path.dirname(target), "<dir>")


def needs_run(target, deps, cmd):
    """True when target is missing, older than a dependency, or made by another command."""
    stamp = target + ".cmd"
    if not os.path.exists(target) or not os.path.exists(stamp):
        return True
    with open(stamp) as f:
        if f.read() != stamp_text(target, cmd):
            return True
    t = os.path.getmtime(target)
    return any(not os.path.exists(d) or os.path.getmtime(d) > t for d in deps)


def run_step(target, deps, cmd, label, verbose):
    """Runs cmd unless target is up to date. Returns (ran, error message or None)."""
    if not needs_run(target, deps, cmd):
        return False, None
    log(label)
    if verbose:
        log("  " + " ".join(cmd))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        for p in (target, target + ".cmd"):
            if os.path.exists(p):
                os.remove(p)
        return True, (proc.stdout + proc.stderr).strip()
    with open(target + ".cmd", "w") as f:
        f.write(stamp_text(target, cmd))
    return True, None


def compile_all(jobs, verbose, tasks):
    """tasks: (target, deps, cmd, label). Returns (objects, any ran, first error)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda t: run_step(t[0], t[1], t[2], t[3], verbose), tasks))
    errors = [(t[3], err) for t, (_, err) in zip(tasks, results) if err]
    return [t[0] for t in tasks], any(ran for ran, _ in results), errors


def source_tasks(kind, pattern, obj_dir, compiler_cmd):
    """One compile task per source; dependencies from the depfile of the last compile
    (every header of csrc/ before the first one)."""
    tasks = []
    for src in sorted(glob.glob(os.path.join(CSRC, pattern))):
        name = os.path.relpath(src, CSRC)
        obj = os.path.join(obj_dir, name.replace(os.sep, "_") + ".o")
        deps = depfile_deps(obj + ".d") or headers()
        tasks.append((obj, [src] + deps, compiler_cmd(src, obj),
                      "compiling {} ({})".format(name, kind)))
    return tasks


# ---------------------------------------------------------------------------- build
def build(out_dir=DEFAULT_OUT, kernels_only=False, use_cuda=True, nvcc=None, archs=None,
          jobs=None, verbose=False, cxx=None):
    """Builds the libraries into out_dir; returns the build info dict (also written as
    build_info.json). Raises RuntimeError if the CPU library cannot be built."""
    start = time.time()
    cxx = cxx or os.environ.get("CXX", "g++")
    jobs = jobs or os.cpu_count() or 2
    obj_dir = os.path.join(out_dir, "obj")
    info = {"cuda": False, "archs": [], "nvcc": None, "cuda_error": None,
            "mxnet_library": None, "kernels_library": None}

    def cxx_cmd(extra):
        return lambda src, obj: ([cxx] + CXX_FLAGS + extra +
                                 ["-MMD", "-MF", obj + ".d", "-c", src, "-o", obj])

    # 1. CPU kernels: the part that must build.
    cpu_objs, ran_cpu, errors = compile_all(
        jobs, verbose, source_tasks("cpu", "cpu/*.cc", os.path.join(obj_dir, "cpu"),
                                    cxx_cmd([])))
    if errors:
        raise RuntimeError("CPU kernels failed to compile ({}):\n{}".format(*errors[0]))

    # 2. CUDA kernels: optional, with a warning when they cannot be built.
    cuda_objs, cuda_link = [], []
    nvcc = find_nvcc(nvcc) if use_cuda else None
    if use_cuda and nvcc is None:
        info["cuda_error"] = "nvcc not found (set MXOPS_NVCC or CUDA_HOME, or put it on PATH)"
    elif nvcc:
        archs = archs or cuda_archs(nvcc)
        info.update(nvcc=nvcc, archs=["sm_%d" % a for a in archs])
        if not archs:
            info["cuda_error"] = "{} supports none of sm_{}".format(nvcc, WANTED_ARCHS)
        else:
            cmd = lambda src, obj: ([nvcc] + NVCC_FLAGS + gencode_flags(archs) +
                                    ["-MD", "-MF", obj + ".d", "-c", src, "-o", obj])
            objs, _, errors = compile_all(
                jobs, verbose, source_tasks("cuda " + ",".join(info["archs"]), "cuda/*.cu",
                                            os.path.join(obj_dir, "cuda"), cmd))
            if errors:
                info["cuda_error"] = "{} failed:\n{}".format(*errors[0])
            elif cuda_lib_dir(nvcc) is None:
                info["cuda_error"] = "libcudart_static.a not found next to " + nvcc
            else:
                cuda_objs = objs
                cuda_link = ["-L" + cuda_lib_dir(nvcc), "-lcudart_static", "-ldl", "-lrt",
                             "-lpthread"]
                info["cuda"] = True
    if info["cuda_error"]:
        log("WARNING: building CPU-only libraries: " + info["cuda_error"].splitlines()[0])
        if "\n" in info["cuda_error"]:
            print(info["cuda_error"], file=sys.stderr)
    kernel_objs = cpu_objs + cuda_objs

    # 3. The kernels library (no MXNet).
    libs = [("libmxops_kernels.so", kernel_objs, "kernels_library")]

    # 4. The MXNet operator library.
    if not kernels_only:
        mx = mxnet_dir()
        if mx is None:
            raise RuntimeError("mxnet is not importable here; use --kernels-only to build "
                               "only the kernels")
        flags = ["-isystem", os.path.join(mx, "include")]
        flags += ["-DMXOPS_WITH_CUDA"] if info["cuda"] else []
        sub = "mxnet_cuda" if info["cuda"] else "mxnet_cpu"
        tasks = source_tasks("mxnet", "mxnet/*.cc", os.path.join(obj_dir, sub), cxx_cmd(flags))
        lib_api = os.path.join(mx, "src", "lib_api.cc")
        api_obj = os.path.join(obj_dir, sub, "lib_api.o")
        tasks.append((api_obj, [lib_api], cxx_cmd(flags)(lib_api, api_obj),
                      "compiling mxnet/src/lib_api.cc (from the mxnet wheel)"))
        mx_objs, _, errors = compile_all(jobs, verbose, tasks)
        if errors:
            raise RuntimeError("MXNet wrappers failed to compile ({}):\n{}".format(*errors[0]))
        libs.append(("libmxops.so", kernel_objs + mx_objs, "mxnet_library"))

    for name, objs, key in libs:
        target = os.path.join(out_dir, name)
        # -Bsymbolic: the library's calls into its own copy of MXNet's lib_api (CustomOp and
        # friends) stay inside it. Horovod's MXNet library, loaded first in every worker,
        # exports the same symbols of another build; without it, loading this library after
        # `import horovod.mxnet` bound to those and died of SIGFPE in a static initializer.
        cmd = ([cxx, "-shared", "-fopenmp", "-Wl,--no-undefined", "-Wl,-Bsymbolic", "-o",
                target] + objs + cuda_link)
        what = "CPU + CUDA " + ",".join(info["archs"]) if info["cuda"] else "CPU only"
        _, err = run_step(target, objs, cmd, "linking {} ({})".format(name, what), verbose)
        if err:
            raise RuntimeError("linking {} failed:\n{}".format(name, err))
        info[key] = target

    with open(os.path.join(out_dir, "build_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    log("done in {:.1f} s: {}".format(time.time() - start, ", ".join(
        os.path.relpath(info[k], os.getcwd()) for k in ("mxnet_library", "kernels_library")
        if info[k])))
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (default ops/lib)")
    p.add_argument("--kernels-only", action="store_true",
                   help="build only libmxops_kernels.so (no MXNet needed)")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA kernels")
    p.add_argument("--nvcc", help="nvcc to use (default: MXOPS_NVCC, PATH, CUDA_HOME)")
    p.add_argument("--arch", type=int, action="append",
                   help="CUDA SM architecture, e.g. 90 (repeatable; default: all supported "
                        "of {})".format(", ".join(map(str, WANTED_ARCHS))))
    p.add_argument("-j", "--jobs", type=int, help="parallel compiles (default: CPU count)")
    p.add_argument("-v", "--verbose", action="store_true", help="print the commands")
    args = p.parse_args(argv)
    try:
        build(args.out, args.kernels_only, not args.no_cuda, args.nvcc, args.arch, args.jobs,
              args.verbose)
    except RuntimeError as e:
        log("ERROR: " + str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
