"""Prompt adherence on the embedded models: does the classifier read what was asked for?"""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def classify(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted class of each image (on the classifier's device, returned on the CPU)."""
    device = next(classifier.parameters()).device
    preds = []
    for chunk in images.split(batch_size):
        preds.append(classifier(chunk.to(device, torch.float32)).argmax(dim=1).cpu())
    return torch.cat(preds)


def adherence(classifier: torch.nn.Module, images: torch.Tensor, labels: Sequence[int]) -> float:
    """Fraction of ``images`` classified as the label their prompt asked for."""
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    preds = classify(classifier, images)
    return float((preds == torch.as_tensor(list(labels))).float().mean())
