"""The digit classifier: scores prompt adherence and supplies the features of FID/KID.

A small CNN on (N, 1, 16, 16) images in [0, 1]. It is trained only on the ``classifier``
split of :mod:`bench.models.digits.data` (``python -m bench.models.digits.training.train_classifier``) and ships as
safetensors in ``bench/models/weights/digit-classifier/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bench.models.digits import WEIGHTS_ROOT, training_command

WEIGHTS_DIR = WEIGHTS_ROOT / "digit-classifier"
TRAIN_COMMAND = training_command("train_classifier")


class DigitClassifier(nn.Module):
    """A small CNN: two conv stages (16x16 -> 8x8 -> 4x4), a feature layer, a linear head.

    ``forward(x)`` returns logits (N, 10); :meth:`features` returns the penultimate
    (N, ``feature_dim``) vector, used as the feature extractor of FID/KID.
    """

    def __init__(self, width: int = 32, feature_dim: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim, "num_classes": num_classes}
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 4x4
        )
        self.neck = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.3),
            nn.Linear(2 * w * 16, feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(feature_dim, num_classes))

    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, feature_dim) of images (N, 1, 16, 16) in [0, 1]."""
        x = x.to(next(self.parameters()).dtype)
        return self.neck(self.body(x * 2.0 - 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 10) of images (N, 1, 16, 16) in [0, 1]."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted digits (N,) int64, evaluated in eval mode without gradients."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = [
            self(x[i : i + batch_size].to(device)).argmax(dim=1).cpu()
            for i in range(0, len(x), batch_size)
        ]
        self.train(was_training)
        return torch.cat(out) if out else torch.empty(0, dtype=torch.int64)

    def save(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        (directory / "model.safetensors").chmod(0o644)  # safetensors writes 0600
        (directory / "config.json").write_text(
            json.dumps({"architecture": "DigitClassifier", **self.config}, indent=2) + "\n"
        )


def load_classifier(
    device: str | torch.device = "cpu", directory: str | Path | None = None
) -> DigitClassifier:
    """Load the shipped classifier in eval mode (offline, from safetensors)."""
    directory = Path(directory) if directory is not None else WEIGHTS_DIR
    weights = directory / "model.safetensors"
    config_file = directory / "config.json"
    if not weights.is_file() or not config_file.is_file():
        raise FileNotFoundError(
            f"digit classifier weights not found in {directory}; train them with `{TRAIN_COMMAND}`"
        )
    config = json.loads(config_file.read_text())
    model = DigitClassifier(
        width=config["width"], feature_dim=config["feature_dim"], num_classes=config["num_classes"]
    )
    model.load_state_dict(load_file(str(weights)))
    return model.to(device).eval().requires_grad_(False)
