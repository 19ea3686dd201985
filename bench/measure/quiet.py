"""Keep known, harmless library noise off the terminal, precisely.

On a CPU machine, importing diffusers pulls in torchao, which logs one "Failed to load
.../_C_*.so" line per CUDA extension it ships, torch logs a deprecation line per Enum that
torchao registers with pytree, and diffusers logs that torchao's tensor classes could not be
imported. transformers says it falls back to PIL image processors where torchvision is not
installed (the benchmark never preprocesses images with them), and compiling a
torchao-quantized module warns that its tensor subclass has no stable hash for AOT autograd's
cache (the compile is then not cached across processes; it still runs). None of it concerns
a benchmark run. Each is filtered by its logger (or warning category) and message; every
other message still comes through.
"""

from __future__ import annotations

import logging
import warnings

#: (logger name, text the message contains) of each silenced message.
KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    ("torchao", "Failed to load"),
    ("torchao", "Skipping import of cpp extensions"),
    ("torch.utils._pytree", "is an Enum subclass and is now natively supported"),
    ("diffusers.quantizers.torchao.torchao_quantizer", "Unable to import `torchao` Tensor objects"),
    # transformers falls back to its PIL image processors (for Janus, Emu3) without torchvision.
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back"),
)

#: (warning category, regular expression the message starts with) of each silenced warning.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"\w+ does not implement _stable_hash_for_caching"),
)


class _Drop(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return self.text not in record.getMessage()
        except Exception:  # noqa: BLE001 - a message that cannot format is not ours to drop
            return True


def silence_known_noise() -> None:
    """Install the filters (idempotent)."""
    for name, text in KNOWN_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) and f.text == text for f in logger.filters):
            logger.addFilter(_Drop(text))
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


__all__ = ["KNOWN_NOISE", "KNOWN_WARNINGS", "silence_known_noise"]
