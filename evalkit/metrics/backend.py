"""Array back ends for the metrics: numpy on the CPU (torch is never imported, which keeps a
numpy-only process ~600 MB smaller) and torch on any device, behind one small interface, so each
metric's algorithm is written once (`prdc`, `bootstrap`).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .arrays import is_tensor, tensor_device

__all__ = ["NumpyOps", "TorchOps", "ops_for"]


class NumpyOps:
    is_torch = False
    on_cuda = False

    def prepare(self, x, name):
        if is_tensor(x):
            x = x.detach().cpu().numpy()
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise ValueError(f"{name} features must be a real-valued numeric array, got dtype {x.dtype}")
        return x

    @staticmethod
    def narrow_float(x):
        return x.dtype in (np.float32, np.float16)

    def centred32(self, chunk, mu64, mu32):
        if mu64 is None:  # untranslated: float32 input is used as is (a view)
            return chunk if chunk.dtype == np.float32 else chunk.astype(np.float32)
        if self.narrow_float(chunk):  # x − mu32 in float32: one rounding of the centred value
            return np.subtract(chunk, mu32, dtype=np.float32)
        return np.subtract(chunk, mu64, dtype=np.float64).astype(np.float32)

    f32 = staticmethod(lambda a: np.asarray(a, dtype=np.float32))
    f64 = staticmethod(lambda a: np.asarray(a, dtype=np.float64))
    zeros64 = staticmethod(lambda shape: np.zeros(shape, np.float64))
    zeros_bool = staticmethod(lambda n: np.zeros(n, bool))
    zeros_int = staticmethod(lambda n: np.zeros(n, np.int64))
    full32 = staticmethod(lambda shape, v: np.full(shape, v, np.float32))
    full64 = staticmethod(lambda shape, v: np.full(shape, v, np.float64))
    full_idx = staticmethod(lambda shape, v: np.full(shape, v, np.int64))
    arange = staticmethod(lambda a, b=None: np.arange(a, b) if b is not None else np.arange(a))
    index = staticmethod(lambda a: np.asarray(a, dtype=np.int64))
    cat = staticmethod(lambda parts, axis=0: np.concatenate(parts, axis))
    repeat = staticmethod(np.repeat)
    cumsum = staticmethod(np.cumsum)
    where = staticmethod(np.where)
    @staticmethod
    def nonzero(mask):
        if mask.ndim != 2:
            return np.nonzero(mask)
        flat = np.flatnonzero(mask)  # ~10x faster than 2-D np.nonzero on a sparse tile
        return np.divmod(flat, mask.shape[1])
    flatnonzero = staticmethod(np.flatnonzero)
    numpy = staticmethod(np.asarray)

    def all_finite(self, a):
        return bool(np.isfinite(a).all())

    def first_bad_row(self, a):
        return int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])

    def colsum64(self, a):
        return a.sum(axis=0, dtype=np.float64)

    def sqsum64(self, a):
        return float(np.square(a, dtype=np.float64).sum())

    def sqnorm64(self, c32):
        c = c32.astype(np.float64)
        return np.einsum("ij,ij->i", c, c)

    def topk_small(self, m, k):
        """k smallest of each row (any order) and their column indices."""
        if k >= m.shape[1]:
            return m.copy(), np.broadcast_to(np.arange(m.shape[1]), m.shape).copy()
        idx = np.argpartition(m, k - 1, axis=1)[:, :k]
        return np.take_along_axis(m, idx, 1), idx

    take_along = staticmethod(lambda a, idx: np.take_along_axis(a, idx, 1))
    argsort1 = staticmethod(lambda a: np.argsort(a, axis=1, kind="stable"))
    sort1 = staticmethod(lambda a: np.sort(a, axis=1))
    sort = staticmethod(np.sort)
    argsort_stable = staticmethod(lambda a: np.argsort(a, kind="stable"))

    @staticmethod
    def argsort_small_ints(a, bound):
        """Stable argsort of integers in [0, bound): numpy radix-sorts 16-bit keys."""
        return np.argsort(a.astype(np.int16) if bound < 2 ** 15 else a, kind="stable")
    count = staticmethod(lambda m, axis: np.count_nonzero(m, axis=axis))
    bincount = staticmethod(lambda a, n: np.bincount(a, minlength=n))
    max1 = staticmethod(lambda a: a.max(axis=1))

    @staticmethod
    def unique_inverse(a):
        return np.unique(a, return_inverse=True)

    @staticmethod
    def add_counts(acc, idx):
        if len(idx):
            acc += np.bincount(idx, minlength=acc.shape[0])

    @staticmethod
    def max(a):
        return float(a.max())

    @staticmethod
    def pair_sq64(x, ii, y, jj):
        d = x[ii].astype(np.float64)
        d -= y[jj].astype(np.float64)
        return np.einsum("ij,ij->i", d, d)

    @staticmethod
    def matmul_guard():
        return contextlib.nullcontext()

    # linear algebra in float64 (the FID bootstrap)
    @staticmethod
    def cholesky(a):
        """Lower Cholesky factor, or None when `a` is not numerically positive definite."""
        try:
            return np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return None

    eigvalsh = staticmethod(np.linalg.eigvalsh)
    outer = staticmethod(np.outer)

    @staticmethod
    def svdvals(a):
        return np.linalg.svd(a, compute_uv=False)


class TorchOps:
    is_torch = True

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.on_cuda = self.device.type == "cuda"

    def prepare(self, x, name):
        torch = self.torch
        if not isinstance(x, torch.Tensor):
            arr = np.asarray(x)
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"{name} features must be a real-valued numeric array, got dtype {arr.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(arr))
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} features must be a real-valued numeric array, got dtype {x.dtype}")
        return x.detach().to(self.device)

    def narrow_float(self, x):
        return x.dtype in (self.torch.float32, self.torch.float16, self.torch.bfloat16)

    def centred32(self, chunk, mu64, mu32):
        if mu64 is None:
            return chunk.to(self.torch.float32)
        if self.narrow_float(chunk):
            return chunk.to(self.torch.float32) - mu32
        return (chunk.to(self.torch.float64) - mu64).to(self.torch.float32)

    def f32(self, a):
        return self._t(a).to(self.torch.float32)

    def f64(self, a):
        return self._t(a).to(self.torch.float64)

    def _t(self, a):
        return a if isinstance(a, self.torch.Tensor) else self.torch.as_tensor(np.asarray(a), device=self.device)

    def zeros64(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def zeros_bool(self, n):
        return self.torch.zeros(n, dtype=self.torch.bool, device=self.device)

    def zeros_int(self, n):
        return self.torch.zeros(n, dtype=self.torch.int64, device=self.device)

    def full32(self, shape, v):
        return self.torch.full(shape, v, dtype=self.torch.float32, device=self.device)

    def full64(self, shape, v):
        return self.torch.full(shape, v, dtype=self.torch.float64, device=self.device)

    def full_idx(self, shape, v):
        return self.torch.full(shape, v, dtype=self.torch.int64, device=self.device)

    def arange(self, a, b=None):
        return self.torch.arange(a, b, device=self.device) if b is not None else self.torch.arange(a, device=self.device)

    def index(self, a):
        return self.torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def cat(self, parts, axis=0):
        return self.torch.cat(list(parts), dim=axis)

    def repeat(self, a, k):
        return self.torch.repeat_interleave(a, k)

    def cumsum(self, a):
        return self.torch.cumsum(a, 0)

    def where(self, cond, a, b):
        return self.torch.where(cond, a, b)

    def nonzero(self, mask):
        return self.torch.nonzero(mask, as_tuple=True)

    def flatnonzero(self, mask):
        return self.torch.nonzero(mask.reshape(-1), as_tuple=True)[0]

    def numpy(self, a):
        return a.detach().cpu().numpy() if isinstance(a, self.torch.Tensor) else np.asarray(a)

    def all_finite(self, a):
        return bool(self.torch.isfinite(a).all())

    def first_bad_row(self, a):
        return int(self.torch.nonzero(~self.torch.isfinite(a).all(dim=1))[0, 0])

    def colsum64(self, a):
        return a.to(self.torch.float64).sum(0)

    def sqsum64(self, a):
        return float(a.to(self.torch.float64).square().sum())

    def sqnorm64(self, c32):
        c = c32.to(self.torch.float64)
        return (c * c).sum(1)

    def topk_small(self, m, k):
        out = self.torch.topk(m, min(k, m.shape[1]), dim=1, largest=False, sorted=False)
        return out.values, out.indices

    def take_along(self, a, idx):
        return self.torch.gather(a, 1, idx)

    def argsort1(self, a):
        return self.torch.argsort(a, dim=1, stable=True)

    def sort1(self, a):
        return self.torch.sort(a, dim=1).values

    def sort(self, a):
        return self.torch.sort(a).values

    def argsort_stable(self, a):
        return self.torch.argsort(a, stable=True)

    def argsort_small_ints(self, a, bound):
        return self.torch.argsort(a, stable=True)

    def count(self, m, axis):
        return m.sum() if axis is None else m.sum(dim=axis)

    def bincount(self, a, n):
        return self.torch.bincount(a, minlength=n)

    def max1(self, a):
        return a.amax(dim=1)

    def unique_inverse(self, a):
        return self.torch.unique(a, sorted=True, return_inverse=True)

    def add_counts(self, acc, idx):
        if len(idx):
            acc.index_add_(0, idx, self.torch.ones_like(idx))

    @staticmethod
    def max(a):
        return float(a.max())

    def pair_sq64(self, x, ii, y, jj):
        d = x[ii].to(self.torch.float64) - y[jj].to(self.torch.float64)
        return (d * d).sum(1)

    def cholesky(self, a):
        factor, info = self.torch.linalg.cholesky_ex(a)
        return factor if int(info) == 0 else None

    def eigvalsh(self, a):
        return self.torch.linalg.eigvalsh(a)

    def svdvals(self, a):
        return self.torch.linalg.svdvals(a)

    def outer(self, a, b):
        return self.torch.outer(a, b)

    @contextlib.contextmanager
    def matmul_guard(self):
        """Full-precision float32 matmuls (no TF32 / bf16 shortcuts): the error bound assumes them."""
        torch = self.torch
        saved = []
        try:
            new_api = [m for m in (getattr(torch.backends.cuda, "matmul", None),
                                   getattr(getattr(torch.backends, "mkldnn", None), "matmul", None))
                       if m is not None and hasattr(m, "fp32_precision")]
            if new_api:
                for m in new_api:
                    saved.append((m, m.fp32_precision))
                    m.fp32_precision = "ieee"
            else:  # older torch
                saved.append((None, torch.get_float32_matmul_precision()))
                torch.set_float32_matmul_precision("highest")
            yield
        finally:
            for m, value in reversed(saved):
                if m is None:
                    torch.set_float32_matmul_precision(value)
                else:
                    m.fp32_precision = value


def ops_for(device, *arrays):
    if device is None:
        device = tensor_device(*arrays)
        if device is None:
            return NumpyOps()
    return TorchOps(device)
