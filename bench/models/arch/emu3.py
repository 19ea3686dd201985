"""``arch:emu3``: Emu3-Gen (BAAI/Emu3-Gen, in transformers as ``Emu3ForConditionalGeneration``)
with random weights, generating an image as rows of visual tokens, each row ended by an
end-of-line token, exactly as the model writes images.

Full size: the published language model (BAAI/Emu3-Gen / Emu3-Chat ``config.json``, which
transformers' ``Emu3TextConfig`` defaults reproduce): 32 layers x 4096, 32 query heads over 8
key/value heads, MLP 14336, vocabulary 184622 (text, special tokens and 32768 visual tokens),
RMSNorm eps 1e-5, rope theta 1e6, 9216 positions; and the published vision tokenizer
(BAAI/Emu3-VisionTokenizer ``config.json``): 32768 codes of dimension 4, channels 256 x
(1, 2, 2, 4), two resnets per level, attention at the last level, temporal downsampling 4,
8x spatial downsampling. Special tokens as published: pad 151643, eol 151846, eof 151847,
bos 151849, image 151851, begin-of-image 151852; visual tokens take the last 32768 ids
(151854..184621). Emu3-Gen's image area is 518400 pixels: 720 x 720, a 90 x 90 code grid, so
an image is 90 rows of 91 tokens (8190 decoding steps). Classifier-free guidance 3.0 (the
model card's example), sampling at temperature 1 over the top 2048 tokens (``top_k=2048``,
the model card's example).

Tiny: the same classes and layouts with 2 language layers x 64 (4 query heads over 2
key/value heads) and the real 184622-token vocabulary and ids, a 32-channel vision tokenizer
of four levels (8x spatial downsampling, its GroupNorms need multiples of 32) over 256 codes:
32 x 32 images, 4 rows of 5 tokens.

Layout: position constraints keep the grid exact: the last token of a row can only be
end-of-line and the others only visual tokens (the logits the decoding loop sees are the
visual tokens' plus end-of-line's); the end-of-frame and end-of-image tokens that close the
real sequence are not generated (they follow deterministically and no image token depends on
them). Images are decoded by the model's own vision tokenizer (``decode_image_tokens``'s path:
visual tokens back to codes, then the VQ decoder).

Draft (speculative decoding): the same class with 2 of the 32 (tiny: 1 of 2) language layers,
the first and last, copied with the embeddings, final norm, output head and vision tokenizer.
With random weights its proposals mean little: acceptance is not meaningful here, the cost of
a draft step is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.models import ar_decoding
from bench.models.arch import token_models as T

REPO = "BAAI/Emu3-Gen"

#: BAAI/Emu3-Gen config.json (the language model; Emu3-Chat shares it).
TEXT = {
    "vocab_size": 184622,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "hidden_act": "silu",
    "max_position_embeddings": 9216,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
    "pad_token_id": 151643,
    "bos_token_id": 151849,
    "eos_token_id": 151850,
    "attention_dropout": 0.1,
}
#: BAAI/Emu3-VisionTokenizer config.json.
VQ = {
    "codebook_size": 32768,
    "embed_dim": 4,
    "latent_channels": 4,
    "double_latent": False,
    "in_channels": 3,
    "out_channels": 3,
    "temporal_downsample_factor": 4,
    "base_channels": 256,
    "channel_multiplier": [1, 2, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [3],
    # The attention at the last level works on its 256 x 4 channels (transformers' default).
    "hidden_size": 1024,
    "num_attention_heads": 1,
}
#: Special tokens (Emu3-Gen config.json).
PAD_ID, EOL_ID, EOF_ID, BOS_ID, IMG_ID, BOI_ID = 151643, 151846, 151847, 151849, 151851, 151852
#: Emu3-Gen's image area (pixels) and the vision tokenizer's spatial factor.
IMAGE_AREA = 518400
SPATIAL = 8
GUIDANCE = 3.0
#: The model card's sampling (top-k over 2048 tokens); the tiny codebook has 256.
CALL_ARGS = {"do_sample": True, "temperature": 1.0, "top_k": 2048, "guidance_scale": GUIDANCE,
             "use_cache": True, "batched": True}

TINY_TEXT = {**TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512}
TINY_VQ = {**VQ, "codebook_size": 256, "base_channels": 32, "channel_multiplier": [1, 1, 2, 2],
           "hidden_size": 64,
           "num_res_blocks": 1}
TINY_SIDE = 32
TINY_CALL_ARGS = {**CALL_ARGS, "top_k": 0}
#: The text the generation prompt wraps the user's prompt in (Emu3-Gen's positive prompt
#: style), tokenized by the offline byte-level BPE.
TEMPLATE = "{prompt}, masterpiece, film grained, best quality."
NEGATIVE = "lowres, bad anatomy, worst quality, low quality"


def side(size: str) -> int:
    """The image side in pixels of ``size``: 720 (Emu3-Gen's 518400-pixel area) or 32."""
    return TINY_SIDE if size == "tiny" else int(IMAGE_AREA ** 0.5)


def vocabulary_map(codebook: int, vocab_size: int) -> dict[str, int]:
    """The tokenizer's vocabulary map the model class reads: visual tokens
    ``<|visual token NNNNNN|>`` at the last ``codebook`` ids, end-of-line ``<|extra_200|>``,
    and the image placeholder ``<image>``."""
    first = vocab_size - codebook
    out = {f"<|visual token {i:06d}|>": first + i for i in range(codebook)}
    out["<|extra_200|>"] = EOL_ID
    out["<image>"] = IMG_ID
    return out


def config(size: str):
    """The ``Emu3Config`` of ``size`` (``full``: the published one)."""
    from transformers import Emu3Config

    tiny = size == "tiny"
    text, vq = (TINY_TEXT, TINY_VQ) if tiny else (TEXT, VQ)
    return Emu3Config(text_config=dict(text), vq_config=dict(vq),
                      vocabulary_map=vocabulary_map(vq["codebook_size"], text["vocab_size"]))


class Emu3Network(ar_decoding.TokenNetwork):
    """Emu3's language model over the image-token indices ``0..codebook-1`` (visual tokens)
    and ``codebook`` (end-of-line)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.codebook = int(module.config.vq_config.codebook_size)
        self.first_visual = int(module.config.text_config.vocab_size) - self.codebook
        self.vocab = self.codebook + 1
        self._cache_kw = ar_decoding.cache_keyword(module)

    def to_ids(self, index: torch.Tensor) -> torch.Tensor:
        """Image-token indices -> vocabulary ids."""
        return torch.where(index >= self.codebook, torch.full_like(index, EOL_ID),
                           index + self.first_visual)

    def forward(self, tokens, positions, mask, cache, prompt=False):
        ids = tokens if prompt else self.to_ids(tokens)
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        logits = self.module(input_ids=ids, position_ids=positions, attention_mask=mask,
                             use_cache=cache is not None, **kwargs).logits
        visual = logits[..., self.first_visual : self.first_visual + self.codebook]
        return torch.cat([visual, logits[..., EOL_ID : EOL_ID + 1]], dim=-1).float()


class Emu3(T.TokenFamily):
    """The Emu3 family at one size."""

    def __init__(self, size: str) -> None:
        self.size = size
        codes = side(size) // SPATIAL
        self.grid = (codes, codes + 1)  # each row: its visual tokens, then end-of-line
        self.codebook = (TINY_VQ if size == "tiny" else VQ)["codebook_size"]

    def _prompt(self, text: str, rows: int, cols: int) -> list[int]:
        size = f"{rows}*{cols}"
        return [BOS_ID, *T.encode_text(text), BOI_ID, *T.encode_text(size), IMG_ID]

    def prompt_tokens(self, prompts: Sequence[str]):
        rows, cols = self.grid[0], self.grid[1] - 1
        cond = [self._prompt(TEMPLATE.format(prompt=p), rows, cols) for p in prompts]
        uncond = [self._prompt(NEGATIVE, rows, cols) for _ in prompts]
        width = max(max(map(len, cond)), max(map(len, uncond)))
        pad = [[PAD_ID] * (width - len(r)) + r for r in cond]
        pad_u = [[PAD_ID] * (width - len(r)) + r for r in uncond]
        return torch.tensor(pad), torch.tensor(pad_u)

    def constrain(self, logits, index):
        cols = self.grid[1]
        eol = (index % cols) == cols - 1  # (...,) positions that must end a row
        out = logits.clone()
        out[..., : self.codebook] = out[..., : self.codebook].masked_fill(
            eol[..., None], float("-inf"))
        out[..., self.codebook] = out[..., self.codebook].masked_fill(~eol, float("-inf"))
        return out

    def network(self, module):
        return Emu3Network(module)

    def images(self, module, tokens):
        rows, cols = self.grid
        codes = tokens.reshape(-1, rows, cols)[..., : cols - 1]
        if bool((codes >= self.codebook).any()):
            raise RuntimeError("an end-of-line token was generated inside a row")
        pixels = module.model.vqmodel.decode(codes)
        return ((pixels + 1) / 2).clamp(0, 1)

    def draft(self, module, seed):
        return T.end_layers_draft(module, seed, "emu3-draft", "model.text_model.layers")


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> T.ArchTokenModel:
    """Emu3-Gen at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from transformers import Emu3ForConditionalGeneration

    family = Emu3(size)
    rows, cols = family.grid
    return T.build_token_model(
        "emu3", Emu3ForConditionalGeneration, config(size), family, size=size, device=device,
        seed=seed, call_args=TINY_CALL_ARGS if size == "tiny" else CALL_ARGS, reproduces=REPO,
        note=f"{rows} rows of {cols - 1} visual tokens and an end-of-line token per image, "
        f"classifier-free guidance {GUIDANCE:g} (two sequences per image); images decoded by "
        "the model's vision tokenizer",
    )
