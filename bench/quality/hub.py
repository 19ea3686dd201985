"""Quality metrics that need pretrained weights from a hub: Inception FID/KID, CLIP score, LPIPS.

They are computed only when their weights are already on this machine. Nothing here ever
downloads: every metric first checks the local caches (the Hugging Face cache for CLIP, the
torch hub cache for the Inception and LPIPS backbones) and raises
:class:`HubMetricUnavailable` naming the missing files and the command that fetches them.
Loading then goes through local paths only (``local_files_only=True``, explicit weight
files), so a missing file can never turn into a network call that hangs.

* **Inception FID/KID**: torchmetrics' Inception v3 (torch-fidelity's port of the TF FID
  network, 2048-d pool features), on the model's real images. Needs ``torch-fidelity`` and
  ``torchvision`` installed and ``weights-inception-2015-12-05-6726825d.pth`` in
  ``$TORCH_HOME/hub/checkpoints``.
* **CLIP score**: torchmetrics' ``CLIPScore`` (100 x cosine of image and prompt embeddings,
  floored at 0) with a named backbone, :data:`DEFAULT_CLIP_BACKBONE` unless set. Scores from
  different backbones are not comparable, so the backbone is saved with every result.
* **LPIPS**: torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` (AlexNet backbone by
  default) against the baseline's images. Its linear layers ship inside torchmetrics; the
  ImageNet backbone comes from torchvision's weights in ``$TORCH_HOME/hub/checkpoints``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.core.quality_config import DEFAULT_CLIP_BACKBONE, DEFAULT_LPIPS_NET
from bench.quality.distribution import DistributionScorer, MemoFeatures

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS
)
#: torchvision's ImageNet weights that LPIPS backbones load (file names in the torch hub cache).
LPIPS_BACKBONE_WEIGHTS = {
    "alex": ("AlexNet_Weights", "alexnet-owt-7be5be79.pth"),
    "vgg": ("VGG16_Weights", "vgg16-397923af.pth"),
    "squeeze": ("SqueezeNet1_1_Weights", "squeezenet1_1-b8a52dc0.pth"),
}


class HubMetricUnavailable(RuntimeError):
    """A hub metric cannot run here; the message says what is missing and how to get it."""


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _require_modules(metric: str, *modules: str) -> None:
    missing = [m for m in modules if not _has_module(m)]
    if missing:
        pkgs = " ".join(m.replace("_", "-") for m in missing)
        hint = " (torchvision must match your torch build)" if "torchvision" in missing else ""
        raise HubMetricUnavailable(
            f"{metric} needs the Python package(s) {', '.join(missing)}, which are not "
            f"installed; install them with `pip install {pkgs}`{hint}"
        )


def torch_checkpoints_dir() -> Path:
    """Where torch hub keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _checkpoint(needs: str, filename: str, url: str) -> Path:
    """The local torch hub checkpoint ``filename``, or :class:`HubMetricUnavailable` saying
    what needs it and how to fetch it (nothing is downloaded at run time)."""
    path = torch_checkpoints_dir() / filename
    if not path.is_file():
        raise HubMetricUnavailable(
            f"{needs} {filename} in {path.parent}, which is missing; fetch it on a machine with "
            f"network access (`mkdir -p {path.parent} && curl -L -o {path} {url}`) or set "
            f"TORCH_HOME to a folder that holds hub/checkpoints/{filename}"
        )
    return path


# -- Inception FID / KID ----------------------------------------------------------------
def inception_weights() -> Path:
    """The local Inception v3 FID weights, or :class:`HubMetricUnavailable` saying how to get
    them."""
    _require_modules("Inception FID", "torch_fidelity", "torchvision")
    path = _checkpoint("Inception FID needs", INCEPTION_WEIGHTS, INCEPTION_URL)
    return path


class InceptionFeatures(MemoFeatures):
    """torchmetrics' Inception v3 (2048-d pool features) loaded from a local weight file, as a
    feature extractor taking float images in [0, 1] (or uint8), 1 or 3 channels."""

    num_features = 2048

    def __init__(self, weights: str | Path | None = None, batch_size: int = 32) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.batch_size = batch_size
        path = Path(weights) if weights is not None else inception_weights()
        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=[str(self.num_features)],
            feature_extractor_weights_path=str(path),
        )

    def _extract(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected N x 1|3 x H x W images, got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        device = next(self.net.parameters()).device
        out = [self.net(chunk.to(device)).double().cpu() for chunk in images.split(self.batch_size)]
        return torch.cat(out)


def inception_scorer(real: torch.Tensor, config: Any = None, device: str | torch.device = "cpu"):
    """A :class:`~bench.quality.distribution.DistributionScorer` on Inception v3 features
    (the network on ``device``)."""

    return DistributionScorer(
        real,
        InceptionFeatures().to(device),
        config,
        feature_name="inception-v3-compat pool3 (2048)",
    )


# -- CLIP score ---------------------------------------------------------------------------
_CLIP_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_CLIP_TOKENIZER = (("tokenizer.json",), ("vocab.json", "merges.txt"))
_CLIP_PREPROCESSOR = ("preprocessor_config.json", "processor_config.json")


def locate_clip(backbone: str = DEFAULT_CLIP_BACKBONE) -> Path:
    """The local folder holding CLIP ``backbone`` (a hub repo id or a folder), checked for
    every file CLIPScore loads; :class:`HubMetricUnavailable` lists what is missing."""
    _require_modules("CLIP score", "transformers")
    folder = Path(backbone).expanduser()
    if folder.is_dir():
        have = {p.name for p in folder.iterdir()}
        where = str(folder)
    else:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(backbone, "config.json")
        if not isinstance(config, str):
            raise HubMetricUnavailable(
                f"CLIP score needs the backbone {backbone}, which is not in the local Hugging "
                f"Face cache; fetch it with `hf download {backbone}` (or `huggingface-cli "
                f"download {backbone}`), or configure a local folder as the CLIP backbone"
            )
        folder = Path(config).parent
        have = {
            name
            for name in (
                *_CLIP_WEIGHTS,
                *(f for group in _CLIP_TOKENIZER for f in group),
                *_CLIP_PREPROCESSOR,
                "config.json",
            )
            if isinstance(try_to_load_from_cache(backbone, name), str)
        }
        where = f"the Hugging Face cache ({folder})"
    missing = []
    if "config.json" not in have:
        missing.append("config.json")
    if not any(w in have for w in _CLIP_WEIGHTS):
        missing.append(" or ".join(_CLIP_WEIGHTS))
    if not any(all(f in have for f in group) for group in _CLIP_TOKENIZER):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if not any(p in have for p in _CLIP_PREPROCESSOR):
        missing.append("preprocessor_config.json")
    if missing:
        raise HubMetricUnavailable(
            f"CLIP backbone {backbone} is incomplete in {where}: missing {', '.join(missing)}; "
            f"fetch it again with `hf download {backbone}`"
        )
    return folder


class _TensorFeaturesCLIP(nn.Module):
    """A CLIPModel whose ``get_*_features`` return the projected embedding tensors.

    transformers 5 returns a ``BaseModelOutputWithPooling`` (projection in ``pooler_output``)
    where torchmetrics 1.9's CLIPScore expects a tensor (torchmetrics issue #3407, fixed
    after 1.9.0); this adapter makes both versions work.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    @staticmethod
    def _tensor(out: Any) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return out
        pooled = getattr(out, "pooler_output", None)
        if isinstance(pooled, torch.Tensor):
            return pooled
        raise TypeError(f"unexpected CLIP feature output {type(out).__name__}")

    def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._tensor(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self._tensor(self.model.get_text_features(*args, **kwargs))


def clip_metric(backbone: str = DEFAULT_CLIP_BACKBONE):
    """torchmetrics ``CLIPScore`` with ``backbone`` loaded from local files only."""
    folder = locate_clip(backbone)
    from torchmetrics.multimodal.clip_score import CLIPScore

    def load():
        from transformers import CLIPModel, CLIPProcessor

        model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
        processor = CLIPProcessor.from_pretrained(str(folder), local_files_only=True)
        return _TensorFeaturesCLIP(model), processor

    return CLIPScore(model_name_or_path=load)


@torch.no_grad()
def clip_score(
    images: torch.Tensor,
    prompts: Sequence[str],
    backbone: str = DEFAULT_CLIP_BACKBONE,
    batch_size: int = 32,
    metric: Any = None,
) -> float:
    """Mean CLIP score of ``images`` (float NCHW in [0, 1]) against their ``prompts``."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1|3 x H x W images, got {tuple(images.shape)}")
    metric = metric if metric is not None else clip_metric(backbone)
    metric.reset()
    device = next(metric.parameters()).device
    u8 = (images.clamp(0, 1) * 255).round().to(device, torch.uint8)
    if u8.shape[1] == 1:
        u8 = u8.expand(-1, 3, -1, -1)
    for i in range(0, len(u8), batch_size):
        metric.update(u8[i : i + batch_size], list(prompts[i : i + batch_size]))
    return float(metric.compute())


# -- LPIPS --------------------------------------------------------------------------------
def lpips_backbone_weights(net: str = DEFAULT_LPIPS_NET) -> Path:
    """The local torchvision weights of LPIPS backbone ``net``, or
    :class:`HubMetricUnavailable` saying how to get them."""
    if net not in LPIPS_BACKBONE_WEIGHTS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose {', '.join(LPIPS_BACKBONE_WEIGHTS)}")
    _require_modules("LPIPS", "torchvision")
    enum_name, filename = LPIPS_BACKBONE_WEIGHTS[net]
    url = f"https://download.pytorch.org/models/{filename}"
    try:  # the file name torchvision itself would download, where it can tell us
        import torchvision.models as tvm

        url = getattr(tvm, enum_name).DEFAULT.url
        filename = url.rsplit("/", 1)[-1]
    except Exception:  # an old or broken torchvision: keep the known name
        pass
    path = _checkpoint(f"LPIPS ({net}) needs torchvision's ImageNet backbone", filename, url)
    return path


def lpips_metric(net: str = DEFAULT_LPIPS_NET):
    """torchmetrics LPIPS with backbone ``net``; its weights must be local (checked first)."""
    lpips_backbone_weights(net)
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="mean")


@torch.no_grad()
def lpips(
    images: torch.Tensor,
    reference: torch.Tensor,
    net: str = DEFAULT_LPIPS_NET,
    batch_size: int = 16,
    metric: Any = None,
) -> float:
    """Mean LPIPS between ``images`` and ``reference`` (float NCHW in [0, 1], same shape)."""
    if images.shape != reference.shape:
        raise ValueError(
            f"images {tuple(images.shape)} and reference {tuple(reference.shape)} differ in shape"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected N x 1|3 x H x W images, got {tuple(images.shape)}")
    metric = metric if metric is not None else lpips_metric(net)
    metric.reset()
    device = next(metric.parameters()).device
    for i in range(0, len(images), batch_size):
        a = images[i : i + batch_size].to(device, torch.float32).clamp(0, 1)
        b = reference[i : i + batch_size].to(device, torch.float32).clamp(0, 1)
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        metric.update(a, b)
    return float(metric.compute())


# -- reference images from a folder -----------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def load_image_folder(folder: str | Path, size: int = 299, limit: int | None = None) -> torch.Tensor:
    """Real images for Inception FID/KID: every image file in ``folder`` (sorted by name),
    RGB, resized to ``size`` x ``size``, float NCHW in [0, 1]."""
    from PIL import Image

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder of real images at {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} images; FID/KID need at least 2")
    out = []
    for path in files:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            out.append(t.view(size, size, 3).permute(2, 0, 1))
    return torch.stack(out).float() / 255.0


# -- what the runner calls ----------------------------------------------------------------
@dataclass
class HubQuality:
    """Hub metrics computed once per run where their weights are present, with the reasons
    for those that are not.

    Args:
        clip_backbone: CLIP backbone (hub repo id or local folder).
        lpips_net: LPIPS backbone: alex, vgg or squeeze.
        device: where the CLIP and LPIPS networks run (the model's device).
    """

    clip_backbone: str = DEFAULT_CLIP_BACKBONE
    lpips_net: str = DEFAULT_LPIPS_NET
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        self._metrics: dict[str, Any] = {}
        self.unavailable: dict[str, str] = {}

    def _get(self, name: str, build) -> Any:
        if name in self.unavailable:
            return None
        if name not in self._metrics:
            try:
                self._metrics[name] = build().to(self.device)
            except HubMetricUnavailable as exc:
                self.unavailable[name] = str(exc)
                return None
        return self._metrics[name]

    def score(
        self, images: torch.Tensor, reference: torch.Tensor | None, prompts: Sequence[str]
    ) -> dict[str, float]:
        """CLIP score and LPIPS (against ``reference``) where available."""
        out: dict[str, float] = {}
        clip = self._get("clip_score", lambda: clip_metric(self.clip_backbone))
        if clip is not None:
            out["clip_score"] = clip_score(images, prompts, metric=clip)
        if reference is not None:
            lp = self._get("lpips", lambda: lpips_metric(self.lpips_net))
            if lp is not None:
                out["lpips"] = lpips(images, reference, metric=lp)
        return out

    def describe(self) -> dict[str, Any]:
        """Backbones used, saved with every result (scores of different backbones differ)."""
        return {
            "clip_backbone": self.clip_backbone,
            "lpips_net": self.lpips_net,
            "unavailable": dict(self.unavailable),
        }
