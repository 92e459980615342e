"""Autograd wrappers over the compiled operators (`kernels/csrc`), CPU or CUDA alike.

Called by `kernels.ops` only, with validated tensors of one floating dtype (float32 or float64)
and `module`, the compiled extension for their device (`kernels.extension.compiled_for`);
shapes are as documented there. Outputs are contiguous.
"""
import torch


class _AvgVoxelize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, feat, vox_int, r):
        ctx.module = module  # for backward
        out, voxel_index, point_weight = module.avg_voxelize_forward(
            feat.contiguous(), vox_int.int().contiguous(), r)
        ctx.save_for_backward(voxel_index, point_weight)
        return out.view(feat.shape[0], feat.shape[1], r, r, r)

    @staticmethod
    def backward(ctx, grad_out):
        voxel_index, point_weight = ctx.saved_tensors
        grad = grad_out.reshape(grad_out.shape[0], grad_out.shape[1], -1).contiguous()
        return None, ctx.module.avg_voxelize_backward(grad, voxel_index, point_weight), None, None


class _TrilinearDevoxelize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, grid, vox):
        ctx.module = module  # for backward
        batch, channels, r = grid.shape[:3]
        out, corner_index, corner_weight = module.trilinear_devoxelize_forward(
            grid.reshape(batch, channels, r * r * r).contiguous(), vox.contiguous(), r)
        ctx.save_for_backward(corner_index, corner_weight)
        ctx.grid_shape = grid.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        corner_index, corner_weight = ctx.saved_tensors
        r = ctx.grid_shape[2]
        grad = ctx.module.trilinear_devoxelize_backward(
            grad_out.contiguous(), corner_index, corner_weight, r * r * r)
        return None, grad.view(ctx.grid_shape), None


class _Grouping(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, feat, idx):
        ctx.module = module  # for backward
        idx = idx.long().contiguous()
        ctx.save_for_backward(idx)
        ctx.num_points = feat.shape[2]
        return module.grouping_forward(feat.contiguous(), idx)

    @staticmethod
    def backward(ctx, grad_out):
        idx, = ctx.saved_tensors
        return None, ctx.module.grouping_backward(grad_out.contiguous(), idx, ctx.num_points), None


class _ThreeNNInterpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, points, centers, cfeat):
        ctx.module = module  # for backward
        neighbour_index, neighbour_weight = module.three_nn(points.contiguous(), centers.contiguous())
        ctx.save_for_backward(neighbour_index, neighbour_weight)
        ctx.num_centers = cfeat.shape[2]
        return module.three_nn_interpolate_forward(cfeat.contiguous(), neighbour_index, neighbour_weight)

    @staticmethod
    def backward(ctx, grad_out):
        neighbour_index, neighbour_weight = ctx.saved_tensors
        grad = ctx.module.three_nn_interpolate_backward(
            grad_out.contiguous(), neighbour_index, neighbour_weight, ctx.num_centers)
        return None, None, None, grad


def avg_voxelize(module, feat, vox_int, r):
    """feat[B,C,N], vox_int int[B,3,N] -> [B,C,r,r,r]; see `kernels.ops.avg_voxelize`."""
    return _AvgVoxelize.apply(module, feat, vox_int, r)


def trilinear_devoxelize(module, grid, vox):
    """grid[B,C,r,r,r], vox[B,3,N] -> [B,C,N]; see `kernels.ops.trilinear_devoxelize`."""
    return _TrilinearDevoxelize.apply(module, grid, vox.detach())


def ball_query(module, centers, points, radius, K):
    """centers[B,3,M], points[B,3,N] -> int64[B,M,K]; see `kernels.ops.ball_query`."""
    return module.ball_query(centers.detach().contiguous(), points.detach().contiguous(), radius, K)


def grouping(module, feat, idx):
    """feat[B,C,N], idx int[B,M,K] -> [B,C,M,K]; see `kernels.ops.grouping`."""
    return _Grouping.apply(module, feat, idx)


def furthest_point_sample(module, coords, M):
    """coords[B,3,N] -> int64[B,M]; see `kernels.ops.furthest_point_sample`."""
    return module.furthest_point_sample(coords.detach().contiguous(), M)


def three_nn_interpolate(module, points, centers, cfeat):
    """points[B,3,N], centers[B,3,M], cfeat[B,C,M] -> [B,C,N]; see `kernels.ops.three_nn_interpolate`."""
    return _ThreeNNInterpolate.apply(module, points.detach(), centers.detach(), cfeat)
