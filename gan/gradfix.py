"""Bilinear `grid_sample` with its own double backward, for R1 taken through the augmentation.

R1 differentiates D's input gradient with respect to D's weights, which passes back through the
backward pass of `grid_sample`. torch has not always had a derivative for that backward
(`grid_sampler_2d_backward`: missing on torch 1.9-2.5 builds, NVlabs/stylegan2-ada-pytorch#311,
pytorch/pytorch#34704), which is why StyleGAN2-ADA ships `torch_utils/ops/grid_sample_gradfix.py`.

The same construction here: the input gradient of bilinear sampling is linear in the output
gradient and does not depend on the input values, so its derivative with respect to the output
gradient is bilinear sampling again, and its derivative with respect to the input is zero. The
sampling grid of the augmentation is drawn from random numbers and never needs a gradient, so its
second-order terms are not provided (a grid that requires grad is refused).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_PADDING = {"zeros": 0, "border": 1, "reflection": 2}
_BILINEAR = 0


def grid_sample(images: torch.Tensor, grid: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """F.grid_sample(mode='bilinear', align_corners=False) with a double backward that never needs
    torch's own derivative of `grid_sampler_2d_backward`."""
    if grid.requires_grad:
        raise ValueError("grid_sample gradfix: the sampling grid must not require a gradient")
    return _GridSample.apply(images, grid, padding_mode)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, grid, padding_mode):
        ctx.padding_mode = padding_mode
        ctx.save_for_backward(images, grid)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)

    @staticmethod
    def backward(ctx, grad_output):
        images, grid = ctx.saved_tensors
        grad_images = _GridSampleBackward.apply(grad_output, images, grid, ctx.padding_mode)
        return grad_images, None, None


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_output, images, grid, padding_mode):
        ctx.padding_mode = padding_mode
        ctx.save_for_backward(grid)
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, images, grid, _BILINEAR, _PADDING[padding_mode], False, [True, False])
        return grad_images

    @staticmethod
    def backward(ctx, grad2_grad_images):
        (grid,) = ctx.saved_tensors
        # d(grad_images)/d(grad_output) is the adjoint of the adjoint: bilinear sampling itself.
        grad2_grad_output = _GridSample.apply(grad2_grad_images, grid, ctx.padding_mode)
        return grad2_grad_output, None, None, None
