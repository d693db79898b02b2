"""Machine description for the report."""
from benchmarking import machine


def test_cpu_model_comes_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\n"
                       "model name\t: AMD EPYC 7R13 Processor\n")
    assert machine.cpu_model(str(cpuinfo)) == "AMD EPYC 7R13 Processor"


def test_machine_info_names_the_libraries_and_the_cores():
    info = machine.machine_info()
    assert info["cpu_cores"] >= 1 and info["cpu_model"]
    assert info["versions"]["mxnet"] and info["versions"]["nvidia-dali"]
    assert info["versions"]["horovod"]
    assert isinstance(info["gpus"], list)
    assert machine.describe(info).startswith(info["cpu_model"])


def test_device_description():
    info = {"cpu_model": "X", "cpu_cores": 2, "gpus": ["NVIDIA H200", "NVIDIA H200"]}
    assert machine.device_description(info, 0) == "CPU (X, 2 cores)"
    assert machine.device_description(info, 2) == "GPU (2 x NVIDIA H200)"


def test_the_thread_environment_is_recorded(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    info = machine.machine_info()
    assert info["environment"]["OMP_NUM_THREADS"] == "2"
    assert info["environment"]["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "GOMP_SPINCOUNT" not in info["environment"]
    line = machine.describe(info)
    assert "OMP_NUM_THREADS=2" in line and "OMP_WAIT_POLICY=PASSIVE" in line
