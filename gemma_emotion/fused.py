"""Fused forwards for a loaded model's RMSNorm layers: one library kernel where Gemma's code runs seven.

Gemma's RMSNorm casts to fp32 and then runs pow, mean, add, rsqrt and two broadcast products as separate
kernels over the whole activation; in score mode on an H200 these were most of the GPU time
(benchmarks/README.md, "score mode"). `torch.nn.functional.rms_norm` computes the same in fp32 in one
kernel on CUDA. Each layer's formula (Gemma 3 scales by 1 + w, Gemma 4 by w or not at all) is recognised by
comparing its own forward with the candidates on random inputs; a layer that matches none keeps its own.
Where the result is the same (Gemma 4's formulas on a bf16 model), the kernel runs on the bf16 activation
itself instead of on an fp32 copy of it. Gemma 3's `1 + w` is not a bf16 number: training keeps the fp32
copies (exact), inference runs on bf16 with `1 + w` rounded to bf16 (`ONE_PLUS_IN_BF16`), where the two
casts per norm were a quarter of score mode's GPU time.
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
import torch.nn.functional as F

FORMULAS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "one_plus_weight": lambda w: 1.0 + w.float(),  # Gemma 3
    "weight": lambda w: w.float(),  # Gemma 4 with a scale
    "none": None,  # Gemma 4 without one
}
NATIVE_DTYPE = True  # Gemma 4's norms run on bf16 directly (`_native`); benchmarks switch it off to compare
# Gemma 3's norms in inference on a bf16 model: one kernel on the bf16 activation with `1 + w` rounded to
# bf16, instead of a cast to fp32, the kernel and a cast back. The weight's rounding moves a norm's output
# by at most about one bf16 step more. Embedded model + shipped adapter, test split, H200: 22,195 -> 32,051
# texts/s in score mode, 93.40 % either way, 2,000 / 2,000 labels identical (benchmarks/README.md, "Gemma
# 3's norms on bf16 in inference"). Benchmarks switch it off to compare.
ONE_PLUS_IN_BF16 = True


def fuse_rms_norms(model: torch.nn.Module) -> int:
    """Give every RMSNorm layer of `model` whose formula is recognised the fused forward; returns how many."""
    fused = 0
    for module in model.modules():
        if not type(module).__name__.endswith("RMSNorm") or getattr(module, "_fused_formula", None):
            continue
        formula = _recognise(module)
        if formula is not None:
            module._fused_formula = formula
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
    return fused


def _fused_forward(self: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return _apply(self, self._fused_formula, hidden)


def _apply(module: torch.nn.Module, formula: str, hidden: torch.Tensor) -> torch.Tensor:
    if _native(module, formula, hidden):
        return _apply_native(module, hidden)
    if _one_plus_native(formula, hidden):
        return _apply_native(module, hidden, _one_plus_weight(module, hidden.dtype))
    make = FORMULAS[formula]
    weight = None if make is None else make(module.weight)
    out = F.rms_norm(hidden.float(), (hidden.shape[-1],), weight=weight, eps=module.eps)
    return out.type_as(hidden)


def _native(module: torch.nn.Module, formula: str, hidden: torch.Tensor) -> bool:
    """Whether the norm can run on the input's own dtype with the same result.

    The fused kernel computes in fp32 whatever its input and rounds once at the end, as Gemma 4's own
    `(x.float() * rstd * w.float()).type_as(x)` does, so a bf16 input and a bf16 weight give the same
    numbers without the two fp32 copies of the activation (and their two casts back in the backward).
    Gemma 3's `1 + w` is not a bf16 number: exact only on the fp32 path (`_one_plus_native` for inference).
    """
    if not NATIVE_DTYPE or hidden.dtype not in (torch.bfloat16, torch.float16):
        return False
    return formula == "none" or (formula == "weight" and module.weight.dtype == hidden.dtype)


def _one_plus_native(formula: str, hidden: torch.Tensor) -> bool:
    """Gemma 3's norm on the bf16 activation: inference only (no gradient), as `ONE_PLUS_IN_BF16` says."""
    return (
        ONE_PLUS_IN_BF16
        and formula == "one_plus_weight"
        and hidden.dtype in (torch.bfloat16, torch.float16)
        and not torch.is_grad_enabled()
    )


def _one_plus_weight(module: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """`1 + w` in `dtype`, made once per weight (a new weight, or one changed in place, makes it again)."""
    weight = module.weight
    key = (dtype, weight.data_ptr(), weight._version)
    cached = getattr(module, "_one_plus_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, (1.0 + weight.detach().float()).to(dtype))
        module._one_plus_cache = cached
    return cached[1]


def _apply_native(
    module: torch.nn.Module, hidden: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    weight = getattr(module, "weight", None) if weight is None else weight
    shape = (hidden.shape[-1],)
    kind = hidden.device.type
    if torch.is_autocast_enabled(kind):  # autocast may hand rms_norm fp32 copies: keep the kernel on bf16
        with torch.autocast(kind, enabled=False):
            return F.rms_norm(hidden, shape, weight=weight, eps=module.eps)
    return F.rms_norm(hidden, shape, weight=weight, eps=module.eps)


def _recognise(module: torch.nn.Module) -> str | None:
    eps = getattr(module, "eps", None)
    weight = getattr(module, "weight", None)
    own = [p for p in module.parameters(recurse=False)] + [b for b in module.buffers(recurse=False)]
    if not isinstance(eps, float) or own not in ([], [weight]) or list(module.children()):
        return None
    dim = weight.shape[-1] if isinstance(weight, torch.Tensor) else 64
    param = next(iter(own), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    probe = (torch.randn(3, 5, dim, generator=generator) * 3).to(device, dtype)
    with torch.no_grad():
        try:
            expected = module.forward(probe).float()
        except Exception:  # noqa: BLE001 - a norm with another signature keeps its own forward
            return None
        for name, make in FORMULAS.items():
            if (make is None) != (weight is None):
                continue
            got = _apply(module, name, probe).float()
            scale = float(expected.abs().max()) + 1e-6
            if got.shape == expected.shape and float((got - expected).abs().max()) <= 1e-2 * scale:
                return name
    return None
