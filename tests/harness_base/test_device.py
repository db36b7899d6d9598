"""`--device` resolution for every combination of request and machine, with the CUDA facts given
(so the GPU cases run on a CPU-only machine)."""
import pytest

from harness_base.device import CudaFacts, DeviceUnavailable, resolve_device
from harness_base.errors import UsageError

NO_GPU = CudaFacts(available=False, device_count=0, local_rank=None)
ONE_GPU = CudaFacts(available=True, device_count=1, local_rank=None)
FOUR_GPUS = CudaFacts(available=True, device_count=4, local_rank=None)


def torchrun(local_rank: int, world: int = 4) -> CudaFacts:
    return CudaFacts(available=True, device_count=4, local_rank=local_rank, world_size=world)


@pytest.mark.parametrize("spec, facts, expected", [
    ("auto", NO_GPU, "cpu"), (None, NO_GPU, "cpu"), ("", NO_GPU, "cpu"), ("cpu", NO_GPU, "cpu"),
    ("auto", ONE_GPU, "cuda:0"), ("cuda", ONE_GPU, "cuda:0"), ("cuda:0", ONE_GPU, "cuda:0"), ("CUDA", ONE_GPU, "cuda:0"),
    ("cpu", ONE_GPU, "cpu"),
    ("cuda:3", FOUR_GPUS, "cuda:3"), ("cuda", FOUR_GPUS, "cuda:0"), ("auto", FOUR_GPUS, "cuda:0"),
    ("cuda", torchrun(2), "cuda:2"), ("auto", torchrun(3), "cuda:3"), ("cpu", torchrun(1), "cpu"),
    # torchrun with one process: LOCAL_RANK 0, an explicit index is allowed
    ("cuda:1", CudaFacts(True, 4, 0, 1), "cuda:1"), ("cuda", CudaFacts(True, 4, 0, 1), "cuda:0"),
])
def test_resolves_to_an_indexed_device(spec, facts, expected):
    assert resolve_device(spec, facts) == expected


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_names_the_fix(spec):
    with pytest.raises(DeviceUnavailable, match="--device cpu"):
        resolve_device(spec, NO_GPU)


def test_index_beyond_the_gpus_says_how_many_there_are():
    with pytest.raises(DeviceUnavailable, match="has 1 .cuda:0 to cuda:0"):
        resolve_device("cuda:1", ONE_GPU)


def test_torchrun_refuses_one_fixed_gpu_for_all_processes():
    with pytest.raises(UsageError, match="LOCAL_RANK"):
        resolve_device("cuda:1", torchrun(0))


def test_torchrun_rank_beyond_the_gpus():
    with pytest.raises(DeviceUnavailable, match="needs GPU 5"):
        resolve_device("cuda", CudaFacts(True, 4, 5, 8))


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps0", "cuda:-1"])
def test_not_a_device(spec):
    with pytest.raises(UsageError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(spec, ONE_GPU)
