"""The attention methods: the registry (names, sign, scale, cost) and the map arithmetic.

Every method returns a RAW map (N, H, W) float32 over the network input (the model's own
input size; DAVE-2: the 66x200 YUV view in [0, 255]); display normalization is the renderer's
job. Gradients are of the target score S (see ``targets``) with respect to the network input
in its own units (DAVE-2: YUV levels), so gradient maps are in "score per input unit" (the
scale names below say YUV level, DAVE-2's unit). ``METHODS`` is the table the CLI and README list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from drive_viz.attention.network import ConvGeometry


@dataclass(frozen=True)
class Method:
    """One attention method: its name, what the map is, its sign and scale, and its pass."""

    name: str
    summary: str
    sign: str  # "signed" | "non-negative"
    scale: str
    passes: str  # which engine pass computes it


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("saliency", "max over YUV channels of abs(dS/dx) (Simonyan et al. 2014)",
           "non-negative", "score per YUV level", "shared forward + backward"),
    Method("gradient", "dS/dx summed over the 3 YUV channels", "signed",
           "score per YUV level", "shared forward + backward"),
    Method("gradient_x_input", "sum over channels of x * dS/dx (x in YUV [0, 255])", "signed",
           "score units; first-order share of S(x) - S(0)", "shared forward + backward"),
    Method("smoothgrad", "saliency averaged over n noisy copies (default 16), noise "
           "N(0, (sigma*255)^2) (default sigma 0.15), seeded (Smilkov et al. 2017)",
           "non-negative", "score per YUV level", "n forward + backward"),
    Method("integrated_gradients", "(x - x') * mean of dS/dx on the straight path from the "
           "baseline x' (default black, YUV (0, 128, 128)), midpoint Riemann rule with "
           "alpha_k = (k + 1/2) / steps (default 32), summed over channels (Sundararajan et "
           "al. 2017); sums to S(x) - S(x')", "signed", "score units", "steps forward + backward"),
    Method("guided_backprop", "dS/dx with every rectifier's backward pass gated by "
           "(dy > 0)(z > 0); ELU treated as its positive part; summed over channels "
           "(Springenberg et al. 2015)", "signed", "score per YUV level",
           "one guided forward + backward"),
    Method("gradcam", "relu(sum_k w_k A_k), w_k = mean_ij dS/dA_k, on a conv layer "
           "(default: the deepest conv layer with at least 5x5 cells; DAVE-2: conv3), "
           "receptive-field-aligned bilinear upsampling (Selvaraju et al. "
           "2017)", "non-negative", "score units", "shared forward + backward"),
    Method("gradcam_plus_plus", "Grad-CAM++ weights alpha = g^2 / (2 g^2 + sum_ab(A) g^3), "
           "w_k = sum_ij alpha relu(g), times exp(S) (Chattopadhyay et al. 2018)",
           "non-negative", "score units times exp(S)", "shared forward + backward"),
    Method("guided_gradcam", "guided_backprop times the upsampled gradcam map, pixel by "
           "pixel (Selvaraju et al. 2017): fine detail from guided backprop where Grad-CAM "
           "says the layer matters; zero wherever either factor is zero", "signed",
           "score^2 per YUV level (guided_backprop's units times Grad-CAM's)",
           "shared forward + backward, and the guided forward + backward"),
    Method("guided_gradcam_plus_plus", "guided_backprop times the upsampled "
           "gradcam_plus_plus map, pixel by pixel", "signed",
           "score^2 per YUV level times exp(S)",
           "shared forward + backward, and the guided forward + backward"),
    Method("cam", "class activation map of a GAP head, no gradients: sum_k w_k A_k of the "
           "conv layer under GlobalAveragePooling2D (DAVE-2 gap: conv5, 1x18 cells), w the "
           "output Dense's weights, negated for target left; receptive-field-aligned bilinear "
           "upsampling (Zhou et al. 2016). Only for a GAP head and targets steer/left",
           "signed", "score units: the mean over the layer's cells plus the output bias is "
           "the output y", "shared forward only"),
    Method("visualbackprop", "channel-mean feature maps multiplied down the conv stack with "
           "transposed convolutions of ones (Bojarski et al. 2016), per-frame max = 1",
           "non-negative", "[0, 1]", "shared forward only"),
    Method("occlusion", "S(x) - S(x with a patch filled), averaged over the patches that "
           "cover each pixel; default 10x10 patches every 5 pixels filled with gray, YUV "
           "(128, 128, 128) (Zeiler & Fergus 2014)", "signed", "score units",
           "one forward per patch position"),
)}

INPUT_GRADIENT_METHODS = ("saliency", "gradient", "gradient_x_input")
CAM_METHODS = ("gradcam", "gradcam_plus_plus")
#: Guided Grad-CAM(++) -> the Grad-CAM map it multiplies with guided backprop.
GUIDED_CAM_METHODS = {"guided_gradcam": "gradcam", "guided_gradcam_plus_plus": "gradcam_plus_plus"}


def saliency(grad: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) input gradient -> (N, H, W) max over channels of |gradient|."""
    return tf.reduce_max(tf.abs(grad), axis=-1)


def gradient(grad: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) input gradient -> (N, H, W) signed sum over channels."""
    return tf.reduce_sum(grad, axis=-1)


def gradient_x_input(grad: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """(N, H, W, C) gradient and input -> (N, H, W) sum over channels of x * gradient."""
    return tf.reduce_sum(grad * x, axis=-1)


def gradcam(activations: tf.Tensor, grad: tf.Tensor) -> tf.Tensor:
    """Grad-CAM on the layer grid: A, dS/dA (N, h, w, K) -> relu(sum_k w_k A_k) (N, h, w)."""
    weights = tf.reduce_mean(grad, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def gradcam_plus_plus(activations: tf.Tensor, grad: tf.Tensor, score: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ on the layer grid: A, g = dS/dA (N, h, w, K), S (N,) -> (N, h, w).

    Uses the closed form for the exponential score exp(S) with first-order gradients (exact
    for piecewise-linear networks): its derivatives are exp(S) g, exp(S) g^2, exp(S) g^3, so
    alpha = g^2 / (2 g^2 + sum_ab(A) g^3) (0 where the denominator is 0),
    w_k = sum_ij alpha relu(exp(S) g), map = relu(sum_k w_k A_k). S is clipped at 80 inside
    exp so the per-frame factor stays finite in float32.
    """
    g2, g3 = tf.square(grad), grad * tf.square(grad)
    denominator = 2.0 * g2 + tf.reduce_sum(activations, axis=(1, 2), keepdims=True) * g3
    safe = tf.where(denominator != 0, denominator, tf.ones_like(denominator))
    alpha = tf.where(denominator != 0, g2 / safe, tf.zeros_like(g2))
    exp_score = tf.exp(tf.minimum(score, 80.0))[:, None, None, None]
    weights = tf.reduce_sum(alpha * tf.nn.relu(exp_score * grad), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def guided_gradcam(guided: tf.Tensor, cam_map: tf.Tensor) -> tf.Tensor:
    """Guided Grad-CAM(++): guided backprop (N, H, W) times the upsampled Grad-CAM(++) map
    (N, H, W), elementwise."""
    return guided * cam_map


def class_activation_map(activations: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """CAM on the layer grid: A (N, h, w, K) and the output weights w (K,) -> sum_k w_k A_k
    (N, h, w), signed (its mean over the grid plus the output bias is the output)."""
    return tf.tensordot(activations, weights, axes=1)


def _interpolation_matrix(size: int, cells: int, offset: float, stride: float) -> np.ndarray:
    """(size, cells) linear interpolation weights: pixel p reads cell position
    (p - offset) / stride, clamped to the grid (edge cells extend to the border)."""
    position = np.clip((np.arange(size) - offset) / stride, 0, cells - 1)
    lower = np.floor(position).astype(int)
    upper = np.minimum(lower + 1, cells - 1)
    frac = position - lower
    matrix = np.zeros((size, cells), np.float32)
    matrix[np.arange(size), lower] += 1 - frac
    matrix[np.arange(size), upper] += frac
    return matrix


def upsample_to_input(grid: tf.Tensor, geometry: ConvGeometry,
                      input_hw: tuple[int, int]) -> tf.Tensor:
    """A conv layer's (N, h, w) map -> (N, H, W) on the network input, bilinear.

    Alignment: each cell's value sits at its receptive-field centre (``geometry.offset`` +
    index * ``geometry.stride`` input pixels), pixels between centres interpolate linearly,
    pixels outside the outermost centres take the edge cell's value.
    """
    rows = _interpolation_matrix(input_hw[0], geometry.out_hw[0], geometry.offset[0],
                                 geometry.stride[0])
    cols = _interpolation_matrix(input_hw[1], geometry.out_hw[1], geometry.offset[1],
                                 geometry.stride[1])
    return tf.einsum("Hh,nhw,Ww->nHW", tf.constant(rows), grid, tf.constant(cols))


def visualbackprop(activations: list[tf.Tensor],
                   backmaps: list[tuple[np.ndarray, np.ndarray]]) -> tf.Tensor:
    """VisualBackProp from the conv layers' post-activation outputs (shallowest first).

    Each layer's output is clamped at zero (ELU) and averaged over channels; from the deepest
    layer down, the running mask is upscaled to the grid of the conv layer below (the network
    input after the first) and multiplied with that layer's mean map. ``backmaps[level]`` are
    the (rows, columns) matrices of that upscale from conv ``level``'s output grid
    (``Network.backmaps``): transposed convolutions of ones with each conv's and pooling
    layer's own kernel (or window), stride and padding, to exactly the input size (output
    padding as needed), crops padded back with zeros and resizes by their adjoint. A kernel of
    ones is separable, so each upscale is exactly ``rows @ mask @ columns.T`` (two small matrix
    products instead of a one-channel transposed convolution, which oneDNN runs slowly).
    Returns (N, H, W), each frame divided by its maximum (all-zero stays 0).
    """
    means = [tf.reduce_mean(tf.nn.relu(a), axis=-1) for a in activations]
    mask = means[-1]
    for level in range(len(means) - 1, -1, -1):
        rows, columns = (tf.constant(matrix) for matrix in backmaps[level])
        mask = tf.matmul(tf.matmul(rows, mask), columns, transpose_b=True)
        if level > 0:
            mask = mask * means[level - 1]
    peak = tf.reduce_max(mask, axis=(1, 2), keepdims=True)
    return tf.math.divide_no_nan(mask, peak)


def occlusion_patches(input_hw: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """(P, H, W) float32 masks, 1 inside each ``patch`` x ``patch`` square; top-left corners
    every ``stride`` pixels, plus a last row/column of squares flush with the far edges."""
    if patch < 1 or stride < 1:
        raise ValueError(f"occlusion patch and stride must be >= 1, not {patch}, {stride}")
    starts = []
    for size in input_hw:
        size_patch = min(patch, size)
        axis_starts = list(range(0, size - size_patch + 1, stride))
        if axis_starts[-1] != size - size_patch:
            axis_starts.append(size - size_patch)
        starts.append((axis_starts, size_patch))
    (row_starts, patch_h), (col_starts, patch_w) = starts
    masks = np.zeros((len(row_starts) * len(col_starts), *input_hw), np.float32)
    for index, (top, left) in enumerate((r, c) for r in row_starts for c in col_starts):
        masks[index, top:top + patch_h, left:left + patch_w] = 1.0
    return masks
