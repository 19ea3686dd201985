"""What every quality metric declares, so that no plot or gate hard-codes a direction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MetricInfo:
    """A metric's identity: name, direction and unit, saved with every result."""

    name: str
    higher_is_better: bool
    unit: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Every metric accelbench can report, by name.
METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("psnr", True, "dB", "peak signal-to-noise ratio against the baseline's images"),
        MetricInfo("ssim", True, "", "structural similarity against the baseline's images"),
        MetricInfo(
            "adherence",
            True,
            "",
            "fraction of images the domain classifier reads as the class the prompt asked for",
        ),
        MetricInfo(
            "fid",
            False,
            "",
            "Frechet distance to held-out real images' features (scale set by the feature "
            "extractor, recorded with the result; biased upwards at small sample sizes)",
        ),
        MetricInfo(
            "kid",
            False,
            "",
            "kernel inception distance (unbiased squared MMD, cubic polynomial kernel) to "
            "held-out real images' features, class-stratified where the prompts name classes; "
            "0 in expectation for images of the real distribution, so it can be slightly negative",
        ),
        MetricInfo("kid_std", False, "", "KID's standard error (jackknife) where both samples are "
                   "class-labelled, else its standard deviation over random subsets"),
        MetricInfo("temporal_psnr", True, "dB",
                   "PSNR of each video's frame-to-frame changes against the baseline's "
                   "(range [-1, 1]): low where a strategy adds flicker or freezes motion"),
        MetricInfo("frame_adherence", True, "",
                   "fraction of video frames the domain classifier reads as the class the "
                   "prompt asked for"),
        MetricInfo("motion_correct", True, "",
                   "fraction of videos whose content moves the way the prompt asked"),
        MetricInfo("lpips", False, "", "learned perceptual distance to the baseline's images"),
        MetricInfo(
            "clip_score",
            True,
            "",
            "CLIP image-prompt cosine similarity x 100, floored at 0; only comparable between "
            "results of the same CLIP backbone (recorded with the result)",
        ),
    )
}
