"""CPU int8 matrix products for score mode: a copy of the model whose decoder projections run in int8.

Owns `Int8Linear` (weights in int8 with one scale per output channel; each row of the input quantised on
the fly to int8 with its own scale; the product in int32 through `torch._int_mm`, exact) and `int8_copy`
(the model with every linear layer but the LM head so replaced, sharing every other tensor with the
original, its LoRA layers taken out by `remove_adapter_layers`: build it while the adapter is merged,
`LoadedModel.inference_model`),
and for LoRA training on a CPU `freeze_base_layers_in_int8`: each LoRA layer's frozen base in int8, its
input's gradient an int8 product too (`FrozenInt8Linear`; the adapter's own weights train in fp32).

Why: on a CPU score mode is bound by the decoder's fp32 products (issue 19's 30 texts/s, issue 21's burst).
Measured 2026-12-02 on this project's 2-core machine (benchmarks/README.md, "CPU int8"): a 1,024 x 640 x
2,048 product ran at 1,730 GOP/s through `torch._int_mm` against 170 GFLOP/s in fp32; score mode of the
embedded model + shipped adapter went from 23.7 to 97.9 texts/s with the same label on 191 of 192 test
rows. torch.ao's dynamic quantisation was slower (1,100 GOP/s), is deprecated, and scales the input by one
number for the whole batch, so a text's answer would depend on the texts batched beside it; here every row
has its own scale and its answer is the same alone or in any batch.
"""

from __future__ import annotations

import copy
import itertools

import torch

# Smaller models stay in fp32: their products are too small for int8 to pay, and the tiny test models'
# answers stay those of the plain model. The embedded 270M's projections hold ~100 M weights.
MIN_LINEAR_WEIGHTS = 2**24
SKIP = ("lm_head",)  # the LM head stays in floating point: score mode reads only its label rows


class Int8Linear(torch.nn.Module):
    """`linear` in int8: y = (q(x) @ Wq^T) * row scale * channel scale + bias."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        # (in, out), row-major: the layout `_int_mm` ran fastest with (1,730 against 1,640 GOP/s).
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.product(x)

    def product(self, x: torch.Tensor) -> torch.Tensor:
        out = _int8_product(x.detach().reshape(-1, self.in_features), self.weight_t) * self.scale
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


class _FrozenInt8Product(torch.autograd.Function):
    """x @ W^T for a frozen W in int8, forward and the input's gradient both as int8 products."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: Int8Linear) -> torch.Tensor:  # type: ignore[override]
        ctx.layer = layer
        return layer.product(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        layer = ctx.layer
        # dx = g @ W = sum over outputs n of g[m, n] * scale[n] * Wq[n, k]: the weight's per-output scale
        # sits on the summed index, so it goes into g before g is quantised per row.
        dx = _int8_product(grad.reshape(-1, layer.out_features).float() * layer.scale, layer.weight_t.t())
        return dx.reshape(*grad.shape[:-1], layer.in_features).to(grad.dtype), None


class FrozenInt8Linear(Int8Linear):
    """A frozen base layer under LoRA in CPU training: its products in int8, its input's gradient too (the
    LoRA weights beside it train in fp32 as before)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return super().forward(x)
        return _FrozenInt8Product.apply(x, self)


def freeze_base_layers_in_int8(model: torch.nn.Module) -> int:
    """Put every LoRA layer's frozen base layer of `model` in int8 for training on a CPU; the count."""
    from peft.tuners.lora import LoraLayer

    done = 0
    for layer in [m for m in model.modules() if isinstance(m, LoraLayer)]:
        base = layer.base_layer
        if type(base) is torch.nn.Linear and not base.weight.requires_grad:
            layer.base_layer = FrozenInt8Linear(base)
            done += 1
    return done


def linear_weights(model: torch.nn.Module) -> int:
    return sum(m.weight.numel() for n, m in model.named_modules() if _replaceable(n, m))


def worth_it(model: torch.nn.Module) -> bool:
    return linear_weights(model) >= MIN_LINEAR_WEIGHTS


def int8_copy(model: torch.nn.Module) -> torch.nn.Module:
    """`model` as it predicts now (base, or with its adapter merged into the base weights), its linear
    layers in int8. Shares every parameter and buffer with `model`; only the int8 weights are new."""

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT's wrapper off
    shared = {id(t): t for t in itertools.chain(base.parameters(), base.buffers())}
    out = copy.deepcopy(base, shared)
    remove_adapter_layers(out)
    for name, module in list(out.named_modules()):
        if _replaceable(name, module):
            _replace(out, name, Int8Linear(module))
    return out.eval()


def _int8_product(flat: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`flat` (rows, in) times the int8 `weight` (in, out), each row quantised with its own scale; the
    result in fp32 with the rows' scales applied (the weight's are the caller's)."""
    flat = flat.float()
    row = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
    return torch._int_mm(torch.round(flat / row).to(torch.int8), weight).float() * row


def remove_adapter_layers(model: torch.nn.Module) -> None:
    """Put every PEFT layer's original layer back in its place (what PeftModel.unload does); here because
    the int8 copy needs it and `models` (detaching an adapter) already imports this module."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            _replace(model, name, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config


def _replace(root: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _replaceable(name: str, module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear and name.rpartition(".")[2] not in SKIP
