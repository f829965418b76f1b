"""The attention methods' registry: names, what each map is, its sign, scale and pass.

Kept free of TensorFlow so the CLI's ``--help`` and option checks can list and validate the
names without importing it; the map arithmetic lives in ``methods``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drive_viz.errors import OptionError


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
    Method("lrp_epsilon", "layer-wise relevance propagation, epsilon rule (default eps "
           "1e-3) at conv/dense layers, z^B rule at the first layer (pixel bounds 0..255), "
           "BatchNorm folded, relevance passed through activations (Bach et al. 2015; rules "
           "per layer type in drive_viz/attention/lrp.py), summed over channels", "signed",
           "score units; sums to S minus what biases and eps absorb", "one forward + one "
           "relevance pass (every layer re-evaluated and differentiated, the first three "
           "times for z^B)"),
    Method("lrp_zplus", "layer-wise relevance propagation, z+ rule (positive weights, "
           "biases ignored; ELU outputs clamped at 0) at conv/dense layers, z^B at the first "
           "layer, summed over channels, every pixel of S's sign (Montavon et al. 2017)",
           "signed",
           "score units; sums to S exactly on bias-free ReLU networks",
           "one forward + one relevance pass (as lrp_epsilon)"),
)}


def parse_methods(methods: str | Sequence[str], known: Sequence[str] = tuple(METHODS),
                  ) -> tuple[str, ...]:
    """The method names of ``methods`` (comma-separated text or a sequence), stripped and
    without repeats; OptionError on an empty list or a name not in ``known``."""
    parts = methods.split(",") if isinstance(methods, str) else methods
    names = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        problem = f"unknown method(s) {unknown}" if unknown else "no method named"
        raise OptionError(f"methods: {problem}; choose from {', '.join(known)}", "methods")
    return names
