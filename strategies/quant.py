"""Weight quantization with torchao: int8 weight-only, int8 dynamic, fp8.

The article's "parameter quantization" (参数量化: Quantize(W) = Round(W / factor)): each
``nn.Linear`` weight of the denoiser becomes int8 (or float8) with a per-output-channel scale,
through torchao's ``quantize_``:

* ``int8-weight-only`` (``Int8WeightOnlyConfig``): int8 weights, dequantized in the matmul;
  saves weight memory and bandwidth, computes in the activation's precision.
* ``int8-dynamic`` (``Int8DynamicActivationInt8WeightConfig``): activations are quantized to
  int8 per token at run time too, and the matmul runs in int8.
* ``fp8`` (``Float8DynamicActivationFloat8WeightConfig``): float8 e4m3 weights and dynamic
  activations with per-tensor scales; needs float8 tensor cores (CUDA compute capability 8.9+:
  Ada, Hopper, Blackwell), refused elsewhere with the reason.

torchao quantizes ``nn.Linear`` only: convolutions stay in full precision (the notes count
what was quantized and what was not). Without compilation the quantized tensor subclasses run
extra quantize/dequantize work per call, which on small layers costs more than the int8 matmul
saves: expect ``quant`` alone to be *slower*, and stack it with ``compile`` (which fuses that
work) to see the intended gain. torchao's global inductor settings are not changed here
(``set_inductor_config=False``) so that one strategy cannot alter another's measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strategies.core.base import Strategy, StrategyConfig, StrategyError, param

if TYPE_CHECKING:
    from torch import nn

    from bench.models.base import ReferenceModel

MODES = ("int8-weight-only", "int8-dynamic", "fp8")


@dataclass(frozen=True)
class Config(StrategyConfig):
    """Which quantization."""

    mode: str = param("int8-weight-only", "quantization scheme", choices=MODES)

    always_show = ("mode",)


def torchao_config(mode: str) -> Any:
    """The torchao config object of ``mode``."""
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if mode == "int8-weight-only":
        return Int8WeightOnlyConfig(set_inductor_config=False)
    if mode == "int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if mode == "fp8":
        return Float8DynamicActivationFloat8WeightConfig(set_inductor_config=False)
    raise StrategyError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)}")


def _is_float_linear(module: nn.Module, fqn: str = "") -> bool:
    """A plain ``nn.Linear`` whose weight is an ordinary floating-point tensor."""
    import torch
    from torch import nn

    weight = getattr(module, "weight", None)
    return (
        isinstance(module, nn.Linear)
        and type(weight) in (torch.Tensor, nn.Parameter)
        and weight.is_floating_point()
    )


def layer_census(module: nn.Module) -> dict[str, dict[str, int]]:
    """Count of layers and parameters by kind: linear, conv, other parameters."""
    from torch import nn

    census = {"linear": [0, 0], "conv": [0, 0]}
    counted: set[int] = set()
    for sub in module.modules():
        kind = "linear" if isinstance(sub, nn.Linear) else (
            "conv" if isinstance(sub, nn.modules.conv._ConvNd) else None
        )
        if kind is None:
            continue
        census[kind][0] += 1
        for p in sub.parameters(recurse=False):
            census[kind][1] += p.numel()
            counted.add(id(p))
    other = sum(p.numel() for p in module.parameters() if id(p) not in counted)
    return {
        "linear": {"layers": census["linear"][0], "params": census["linear"][1]},
        "conv": {"layers": census["conv"][0], "params": census["conv"][1]},
        "other": {"params": other},
    }


def quantized_weight_dtype(weight: Any) -> Any:
    """The storage dtype of a torchao-quantized weight (``int8``, ``float8_e4m3fn``), or the
    tensor's own dtype when it is not quantized."""
    inner = getattr(weight, "qdata", None)
    return inner.dtype if inner is not None else weight.dtype


class Quant(Strategy):
    """Quantize the denoiser's Linear weights with torchao (int8 weight-only, int8 dynamic, fp8)."""

    name = "quant"
    summary = "torchao quantization of Linear layers: mode=int8-weight-only, int8-dynamic, fp8"
    Config = Config
    stage = Strategy.STAGE_QUANTIZATION
    exclusive_group = "quantization"
    rewrites = ("denoiser",)

    def supports_device(self, device: str) -> str | None:
        import torch

        kind = device.split(":")[0]
        if self.config.mode == "fp8":
            if kind != "cuda":
                return (
                    "fp8 needs float8 tensor cores (an NVIDIA GPU of compute capability 8.9+: "
                    f"Ada, Hopper, Blackwell); torchao has no fp8 matmul on {kind}"
                )
            if not torch.cuda.is_available():
                return "CUDA is not available"
            index = torch.device(device).index or 0
            major, minor = torch.cuda.get_device_capability(index)
            if (major, minor) < (8, 9):
                name = torch.cuda.get_device_name(index)
                return (
                    f"{name} has compute capability {major}.{minor}; fp8 matmuls need 8.9+ "
                    "(Ada, Hopper, Blackwell)"
                )
        elif kind not in ("cpu", "cuda"):
            return f"torchao's int8 kernels run on CPU and CUDA, not {kind}"
        return None

    def supports(self, model: ReferenceModel) -> str | None:
        try:
            import torchao  # noqa: F401
        except ImportError:
            return "torchao is not installed (pip install torchao)"
        denoiser = model.components().get("denoiser")
        if denoiser is None or not any(_is_float_linear(m) for m in denoiser.modules()):
            return "the denoiser has no floating-point nn.Linear layer (torchao quantizes Linear only)"
        return super().supports(model)

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        from torchao.quantization import quantize_

        denoiser = model.components()["denoiser"]
        census = layer_census(denoiser)
        quantized = {"layers": 0, "params": 0}
        for sub in denoiser.modules():
            if _is_float_linear(sub):
                quantized["layers"] += 1
                quantized["params"] += sub.weight.numel()
        quantize_(denoiser, torchao_config(self.config.mode), filter_fn=_is_float_linear)
        dtypes = sorted({str(quantized_weight_dtype(m.weight)).replace("torch.", "")
                         for m in denoiser.modules() if hasattr(m, "weight")
                         and getattr(m.weight, "qdata", None) is not None})
        total = sum(v["params"] for v in census.values())
        model.notes[self.name] = {
            "mode": self.config.mode,
            "torchao_config": type(torchao_config(self.config.mode)).__name__,
            "quantized_linear_layers": quantized["layers"],
            "quantized_weight_params": quantized["params"],
            "quantized_share_of_params": quantized["params"] / total if total else 0.0,
            "quantized_dtypes": dtypes,
            "conv_layers_left_fp": census["conv"]["layers"],
            "conv_params_left_fp": census["conv"]["params"],
            "other_params_left_fp": census["other"]["params"]
            + census["linear"]["params"] - quantized["params"],
            "components": ["denoiser"],
            "note": "torchao quantizes nn.Linear only; convolutions and norms stay in "
                    f"{str(model.dtype).replace('torch.', '')}. Uncompiled, the tensor "
                    "subclasses add per-call overhead; stack with compile for speed.",
        }
        return model
