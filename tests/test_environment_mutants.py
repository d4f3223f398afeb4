"""What enters a run's key, and what a run records of its stack (tests written against surviving mutants)."""
import importlib.metadata
from pathlib import Path

import pytest
import torch

import stabench
from stabench import environment
from stabench.environment import ALL_KEY_FIELDS, capture, key_fields
from stabench.result import run_key

# Every field that can change a number, by name: a CPU run's key holds its thread count too.
KEYED = {"torch", "transformers", "datasets", "tokenizers", "device_kind", "device_name", "precision"}
CPU_ENV = {
    "torch": "2.13.0", "transformers": "5.24.0", "datasets": "5.2.0", "tokenizers": "0.22.1",
    "device_kind": "cpu", "device_name": "x86_64", "precision": "fp32", "cpu_threads": 2,
    "python": "3.11.7", "hostname": "node-7", "numpy": "2.0.0", "cpu_model": "Xeon", "cuda": None,
    "project_git_commit": "abc", "project_git_dirty": False, "cuda_visible_devices": None,
}
GPU_ENV = {**CPU_ENV, "device_kind": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "cpu_threads": 16}


def _key(env: dict) -> str:
    return run_key({"name": "rte"}, {"name": "bert"}, "h", 0, key_fields(env))


def test_the_key_holds_every_field_that_can_change_a_number_and_no_other():
    assert set(key_fields(CPU_ENV)) == KEYED | {"cpu_threads"}
    assert set(key_fields(GPU_ENV)) == KEYED  # a GPU run's key is the same whatever its host's threads
    assert set(ALL_KEY_FIELDS) == KEYED | {"cpu_threads"}  # what env: selections may name


@pytest.mark.parametrize("env", [CPU_ENV, GPU_ENV], ids=["cpu", "gpu"])
@pytest.mark.parametrize("field", sorted(KEYED | {"cpu_threads"}))
def test_a_change_of_one_keyed_field_alone_is_another_run(env, field):
    """Two stacks must never share a key: the run of one would be read back as the other's."""
    other = {**env, field: f"other-{env[field]}"}
    if field == "cpu_threads" and env is GPU_ENV:
        assert _key(other) == _key(env)  # not keyed on a GPU
    else:
        assert _key(other) != _key(env)


def test_provenance_fields_do_not_split_a_run():
    assert _key({**CPU_ENV, "hostname": "b", "numpy": "1", "cpu_model": "EPYC", "project_git_commit": "d"}) == \
        _key(CPU_ENV)


def test_a_run_records_the_installed_version_of_each_library():
    env = capture()
    for dist in ("transformers", "datasets", "tokenizers", "huggingface_hub", "safetensors", "numpy"):
        assert env[dist] == importlib.metadata.version(dist), dist
    assert env["torch"] == torch.__version__
    assert environment.installed_version("no-such-distribution-xyz") is None


def test_cpu_0_is_the_same_stack_as_cpu(monkeypatch):
    """resolve_device takes "cpu:0" as it is: its run must key (and record) as a CPU run, threads included."""
    assert environment.resolve_device("cpu:0") == "cpu:0"
    named = capture(device="cpu:0")
    assert named["device_kind"] == "cpu" and "cpu_threads" in key_fields(named)
    assert key_fields(named) == key_fields(capture(device="cpu"))


def test_the_device_name_of_a_cpu_run_is_recorded():
    assert capture()["device_name"]  # keyed: a CPU run on another architecture is another run


def test_the_precision_thread_count_and_pinned_gpu_are_read_at_capture(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    torch.set_num_threads(1)  # restored by conftest's autouse fixture
    first = capture(precision="bf16")
    torch.set_num_threads(2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    second = capture(precision="tf32")
    assert (first["precision"], first["cpu_threads"], first["cuda_visible_devices"]) == ("bf16", 1, "3")
    assert (second["precision"], second["cpu_threads"], second["cuda_visible_devices"]) == ("tf32", 2, None)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo")
def test_the_cpu_model_is_the_model_name_line_of_cpuinfo():
    names = [line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    if not names:
        pytest.skip("no model name in /proc/cpuinfo")
    assert capture()["cpu_model"] == names[0]  # not the "model : 85" line before it


def test_stabench_s_own_commit_is_read_from_the_folder_above_the_package(monkeypatch, tmp_path):
    """An editable install's clone is the folder holding the ``stabench`` package."""
    looked_at = []
    monkeypatch.setattr(environment, "stabench_clone", lambda source: looked_at.append(source) or ("c" * 40, False))
    env = dict(environment._static_environment.__wrapped__("cpu", str(tmp_path)))
    assert Path(looked_at[0]) == Path(stabench.__file__).resolve().parent.parent
    assert (env["stabench_git_commit"], env["stabench_git_dirty"]) == ("c" * 40, False)


def test_git_outside_a_repository_says_nothing(tmp_path):
    assert environment._git(["rev-parse", "HEAD"], str(tmp_path)) is None
    assert environment.stabench_clone(str(tmp_path)) == (None, None)
    (tmp_path / ".git").mkdir()  # a .git that is no repository: no commit, so no dirty flag either
    assert environment.stabench_clone(str(tmp_path)) == (None, None)


@pytest.mark.parametrize("count", [1, 2, 1024])
def test_a_thread_count_holds_inside_the_block_and_is_restored_even_after_an_error(count):
    torch.set_num_threads(3)
    with pytest.raises(RuntimeError):
        with environment.torch_threads(count):
            assert torch.get_num_threads() == count
            raise RuntimeError
    assert torch.get_num_threads() == 3
    with environment.torch_threads(None):
        assert torch.get_num_threads() == 3


def test_gpu_ids_are_read_with_spaces_and_a_trailing_comma_in_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3,")
    assert environment.visible_gpu_ids() == ["2", "3"]
    assert environment.check_gpu_ids(" 3, 2") == ["3", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a job given no GPU
    assert environment.visible_gpu_ids() == []
    with pytest.raises(ValueError, match=r"^GPU 0 is outside CUDA_VISIBLE_DEVICES=; expected ids from it: none$"):
        environment.check_gpu_ids("0")


def test_a_gpu_run_records_and_keys_the_name_of_the_gpu_it_ran_on(monkeypatch):
    """Two GPU models are two stacks: the key holds the name of the GPU the device string picks."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: ["NVIDIA H100", "NVIDIA A100"][index])
    environment._static_environment.cache_clear()
    try:
        first, second, default = capture("cuda:0"), capture("cuda:1"), capture("cuda")
    finally:
        environment._static_environment.cache_clear()  # no fake GPU name stays cached for other tests
    assert (first["device_kind"], first["device_name"]) == ("cuda", "NVIDIA H100")
    assert (second["device_name"], default["device_name"]) == ("NVIDIA A100", "NVIDIA H100")
    assert key_fields(first) != key_fields(second) and key_fields(first) == key_fields(default)
    assert "cpu_threads" not in key_fields(first)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_a_gpu_asked_for_where_there_is_none_is_named(monkeypatch, device):
    """Not a run that fails later in CUDA's own words, nor one quietly on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match=rf"^device '{device}' is not available \(no CUDA GPU\); use cpu or auto$"):
        environment.resolve_device(device)
    assert environment.resolve_device("auto") == "cpu"
