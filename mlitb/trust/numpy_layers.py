"""NumPy conv2d and maxpool2d, forward and backward, in the browser's layout (TF.js NHWC), for the spot-check verifier.

Layouts are TF.js's, so parameters are used as they arrive in our flat order (numpy_net.py): a feature map
is [n, h, w, c], a conv kernel [kh, kw, in, out], its bias [out]. 'same' padding is split as TF splits it
(the extra row/column at the bottom/right; web/src and mlitb/workers/native/network.py do the same); pools
are 'valid' (the spec allows no other). A pool's gradient goes to the FIRST maximum of its window in
row-major order, as TF, PyTorch and the browser's MaxPoolGrad (web/src/compute/kernels/max_pool_grad.ts) do:
ties are common (ReLU zeros over a blank background), so another rule would move gradient between
coordinates and fail honest trainers. Both layers are vectorised: windows are strided views of the
(padded) map (`sliding_window_view`), a convolution is one matrix product of the im2col matrix.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_forward(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, padding: str):
    """(output [n, oh, ow, f], context for conv_backward)."""
    n, h, w, c = x.shape
    k, f = kernel.shape[0], kernel.shape[3]
    if padding == "same":
        (top, bottom), (left, right) = same_pads(h, k, stride), same_pads(w, k, stride)
        xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    else:
        top = left = 0
        xp = x
    # [n, oh, ow, c, kh, kw] as a view; the im2col matrix is [n*oh*ow, kh*kw*c], the kernel's row order
    windows = sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    oh, ow = windows.shape[1], windows.shape[2]
    cols = np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3)).reshape(n * oh * ow, k * k * c)
    out = (cols @ kernel.reshape(k * k * c, f) + bias).reshape(n, oh, ow, f)
    return out, (cols, xp.shape, (top, left), (h, w), stride, k)


def conv_backward(dz: np.ndarray, kernel: np.ndarray, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d input [n, h, w, c], d kernel, d bias) from the gradient dz [n, oh, ow, f] of the pre-activation output."""
    cols, padded_shape, (top, left), (h, w), stride, k = ctx
    n, oh, ow, f = dz.shape
    c = kernel.shape[2]
    flat = dz.reshape(-1, f)
    d_kernel = (cols.T @ flat).reshape(kernel.shape)
    d_bias = flat.sum(axis=0)
    d_cols = (flat @ kernel.reshape(k * k * c, f).T).reshape(n, oh, ow, k, k, c)
    dxp = np.zeros(padded_shape, np.float32)
    for i in range(k):  # col2im: each kernel offset adds its slice back where its windows read it
        for j in range(k):
            dxp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :] += d_cols[:, :, :, i, j, :]
    return dxp[:, top:top + h, left:left + w, :], d_kernel, d_bias


def pool_forward(x: np.ndarray, size: int, stride: int):
    """(output [n, oh, ow, c], context for pool_backward): max over each 'valid' window."""
    n, h, w, c = x.shape
    oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
    windows = sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride][:, :oh, :ow]
    flat = windows.reshape(n, oh, ow, c, size * size)  # row-major within the window, the browser's scan order
    first = np.argmax(flat, axis=-1)  # the first maximum (NaN counts as largest, as in TF)
    out = np.take_along_axis(flat, first[..., None], axis=-1)[..., 0]
    # the flat input index of each window's first maximum
    rows = np.arange(oh)[None, :, None, None] * stride + first // size
    cols = np.arange(ow)[None, None, :, None] * stride + first % size
    index = ((np.arange(n)[:, None, None, None] * h + rows) * w + cols) * c + np.arange(c)
    return out, (index, x.shape)


def pool_backward(dy: np.ndarray, ctx) -> np.ndarray:
    index, shape = ctx
    dx = np.bincount(index.ravel(), weights=dy.ravel(), minlength=int(np.prod(shape)))
    return dx.astype(np.float32).reshape(shape)
