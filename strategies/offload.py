"""``offload``: keep the denoiser's weights off the compute device between uses.

Two memory strategies diffusers ships, for a model that does not fit the card:

* ``offload:group`` (``diffusers.hooks.apply_group_offloading``): the denoiser's weights rest
  elsewhere and each group of layers is brought onto the compute device just before it runs
  and sent back after. ``level=blocks`` groups ``blocks`` consecutive transformer blocks (or
  UNet stages), ``level=leaf`` every leaf layer. On CUDA the weights rest in host memory, and
  ``stream=true`` prefetches the next group on a side CUDA stream while the current one
  computes. On the CPU, where host memory *is* the compute device's memory, they rest on
  disk: each group is written once to a safetensors file (in a temporary folder removed with
  the model) and read back for every use, so what the CPU holds between uses is only the
  layers diffusers does not group; the files are read from the OS's page cache on a warm run,
  so its latency is that of a machine with the RAM to cache them.
* ``offload:model`` (``pipe.enable_model_cpu_offload``): whole components (text encoders,
  denoiser, VAE) move to the accelerator when the pipeline needs them and back to the host
  after; it has no meaning on the CPU, where there is nowhere to offload to.

Both trade latency for memory: the record's ``memory.weights_mb`` (what the stack holds at
rest) and ``memory.peak_mb`` say what they buy, the speedup (below 1) what it costs.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from strategies.core.base import Strategy, StrategyConfig, param

if TYPE_CHECKING:
    from bench.models.base import ReferenceModel

MODES = ("group", "model")
LEVELS = ("blocks", "leaf")


@dataclass(frozen=True)
class OffloadConfig(StrategyConfig):
    """What is offloaded, in which groups."""

    mode: str = param("group", "group offloading of the denoiser, or whole-model CPU offload",
                      choices=MODES)
    level: str = param("blocks", "group: consecutive blocks, or every leaf layer", choices=LEVELS)
    blocks: int = param(1, "group, level=blocks: blocks per group", low=1, high=1000)
    stream: bool = param(False, "group on CUDA: prefetch the next group on a side stream")

    always_show = ("mode",)


def _release(group: Any) -> None:
    """Drop the host copy of a group diffusers has written to disk: its tensors become
    zero-stride views of one element (same shape, dtype and device), which diffusers replaces
    with the file's tensors when it next onloads the group. diffusers itself leaves an
    ``empty_like`` allocation of the full size there."""
    for tensor in group.tensor_to_key:
        tensor.data = torch.empty((), dtype=tensor.dtype, device=tensor.device).expand(tensor.shape)


def _release_after_disk_offload(denoiser: torch.nn.Module) -> int:
    """Make every disk-offloaded group of ``denoiser`` let go of its host memory, now and after
    each later offload; returns the number of groups. Reads diffusers' private group objects
    (``ModuleGroup``: its public API has no option for this), here and nowhere else."""
    from diffusers.hooks.group_offloading import _GROUP_OFFLOADING  # private: see above

    groups = {}
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(_GROUP_OFFLOADING) if registry is not None else None
        if hook is not None:
            groups[id(hook.group)] = hook.group
    for group in groups.values():
        offload = group._offload_to_disk

        def offload_and_release(offload: Any = offload, group: Any = group) -> None:
            offload()
            _release(group)

        group._offload_to_disk = offload_and_release
        if group._is_offloaded_to_disk:
            _release(group)
    return len(groups)


class Offload(Strategy):
    """diffusers' group offloading of the denoiser, or model CPU offload of the pipeline."""

    name = "offload"
    summary = ("keep weights off the compute device between uses: group (blocks/leaf; disk on "
               "the CPU) or model (whole components, CUDA)")
    Config = OffloadConfig
    stage = Strategy.STAGE_COMPILE - 5  # after every change to the weights, before compiling
    exclusive_group = "offloading"
    saves_memory = True
    positional = "mode"

    def supports(self, model: ReferenceModel) -> str | None:
        reason = super().supports(model)
        if reason:
            return reason
        cfg = self.config
        cuda = model.device.type == "cuda"
        if cfg.mode == "model":
            if not cuda:
                return ("model CPU offload moves components between an accelerator and the "
                        f"host; {model.name} runs on the {model.device.type}, where there is "
                        "nowhere to offload to (offload:group offloads to disk there)")
            if model.pipe is None:
                return f"model CPU offload works on a diffusers pipeline; {model.name} has none"
            return None
        if cfg.stream and not cuda:
            return "stream=true prefetches on a CUDA stream; this model is not on CUDA"
        from diffusers.hooks.group_offloading import _is_group_offload_enabled

        if _is_group_offload_enabled(model.denoiser):
            return f"{type(model.denoiser).__name__} is already group-offloaded"
        return None

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.exclusive_group in ("quantization", "weight storage") and self.config.mode == "group":
            if other.name != "layerwise-cast":
                return (f"{other.name}'s quantized tensors cannot be written to a safetensors "
                        "file or moved group by group by diffusers' offloading")
        return None

    def added_weight_bytes(self, model: ReferenceModel) -> int:
        return 0  # it moves the stack's weights; it adds none on the compute device

    def apply(self, model: ReferenceModel) -> ReferenceModel:
        if self.config.mode == "model":
            model.pipe.enable_model_cpu_offload(device=model.device)
            return model
        from diffusers.hooks import apply_group_offloading

        cfg = self.config
        denoiser = model.denoiser
        disk = None
        if model.device.type != "cuda":
            disk = tempfile.mkdtemp(prefix="accelbench-offload-")
            weakref.finalize(denoiser, shutil.rmtree, disk, True)
            denoiser._accelbench_offload_dir = disk  # where its groups rest (not saved)
        apply_group_offloading(
            denoiser,
            onload_device=model.device,
            offload_device=torch.device("cpu"),
            offload_type="block_level" if cfg.level == "blocks" else "leaf_level",
            num_blocks_per_group=cfg.blocks if cfg.level == "blocks" else None,
            use_stream=cfg.stream,
            offload_to_disk_path=disk,
        )
        if disk is not None:
            _release_after_disk_offload(denoiser)
        return model
