"""``arch:janus``: Janus-Pro 1B (deepseek-community/Janus-Pro-1B), transformers'
``JanusForConditionalGeneration`` with random weights, generating images token by token.

Full size: the published configuration (deepseek-community/Janus-Pro-1B ``config.json``,
which transformers' ``JanusConfig`` defaults reproduce): a Llama language model of 24 layers
x 2048 (16 heads of 128, MLP 5632, vocabulary 102400, RMSNorm eps 1e-6, 16384 positions);
the SigLIP vision tower used for understanding (24 layers x 1024, 384 px, patch 16); and the
generation path: a VQ-16 tokenizer (16384 codes of dimension 8, channels 128 x (1, 1, 2, 2, 4),
two resnets per level) whose codes are embedded by ``generation_embeddings`` +
``generation_aligner`` (2-layer MLP to 2048) and predicted by ``generation_head``. An image is
a 24 x 24 grid of codes (576 tokens) decoded by the VQ decoder to 384 x 384. Generation as
published (generation_config.json): bos 100000, pad 100015, begin-of-image 100016,
classifier-free guidance 5 with an unconditional prompt of padding between bos and
begin-of-image, sampling at temperature 1.

Tiny: the same classes and layouts (Llama language model, SigLIP tower, five-level VQ
decoder, generation embeddings/aligner/head) with 2 language layers x 64, a 1-layer x 32
vision tower at 64 px, 512 codes and a 32-channel VQ decoder (its GroupNorms need multiples of 32): a 4 x 4 token grid decoded to
64 x 64.

Prompts: the chat format Janus-Pro generates with (``<|User|>: {prompt}\\n\\n<|Assistant|>:``,
then begin-of-image), tokenized by an offline byte-level BPE learned in the repo
(:func:`bench.models.arch.token_models.text_tokenizer`) into the real vocabulary's range.

Draft (speculative decoding): the same class with 2 of the language model's 24 layers (its
first and last; tiny: 1 of 2), copied with the embeddings, generation embeddings/aligner/head and final
norm; the vision tower and VQ model are copied too). With random weights its proposals mean
little: acceptance is not meaningful here, the cost of a draft step is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bench.models import ar_decoding
from bench.models.arch import token_models as T

REPO = "deepseek-community/Janus-Pro-1B"

#: deepseek-community/Janus-Pro-1B config.json, text_config (a Llama).
TEXT = {
    "model_type": "llama",
    "vocab_size": 102400,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "attention_bias": False,
    "mlp_bias": False,
    "bos_token_id": 100000,
    "eos_token_id": 100001,
    "pad_token_id": 100002,
}
#: vision_config (SigLIP-L at 384 px; used for understanding, part of the model).
VISION = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 384,
    "patch_size": 16,
    "mlp_ratio": 4.0,
    "projection_dim": 2048,
    "depth": 2,
    "num_image_tokens": 576,
}
#: vq_config (the VQ-16 image tokenizer and the generation path's sizes).
VQ = {
    "embed_dim": 8,
    "num_embeddings": 16384,
    "latent_channels": 256,
    "base_channels": 128,
    "channel_multiplier": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "projection_dim": 2048,
    "image_token_embed_dim": 2048,
    "num_hidden_layers": 2,
}
#: generation_config.json: special tokens and guidance.
BOS_ID, PAD_ID, BOI_ID = 100000, 100015, 100016
IMAGE_TOKEN_ID = 100581
GUIDANCE = 5.0

TINY_TEXT = {**TEXT, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
             "max_position_embeddings": 512}
TINY_VISION = {**VISION, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "image_size": 64, "projection_dim": 64, "num_image_tokens": 16}
TINY_VQ = {**VQ, "num_embeddings": 512, "latent_channels": 32, "base_channels": 32,
           "num_res_blocks": 1, "projection_dim": 64, "image_token_embed_dim": 64}

#: Generation as published: sampled at temperature 1, guidance 5, KV cache.
CALL_ARGS = {"do_sample": True, "temperature": 1.0, "top_k": 0, "guidance_scale": GUIDANCE,
             "use_cache": True, "batched": True}
#: The chat template Janus-Pro generates images with (before begin-of-image).
TEMPLATE = "<|User|>: {prompt}\n\n<|Assistant|>:"
#: Where the offline tokenizer's ids go in the real vocabulary (plain text ids start at 0).
TEXT_OFFSET = 0


def config(size: str):
    """The ``JanusConfig`` of ``size`` (``full``: the published one)."""
    from transformers import JanusConfig

    tiny = size == "tiny"
    return JanusConfig(
        text_config=dict(TINY_TEXT if tiny else TEXT),
        vision_config=dict(TINY_VISION if tiny else VISION),
        vq_config=dict(TINY_VQ if tiny else VQ),
        image_token_id=IMAGE_TOKEN_ID,
    )


class JanusNetwork(ar_decoding.TokenNetwork):
    """Janus's image-generation path: prompt tokens through the text embeddings, image codes
    through ``generation_embeddings`` + ``generation_aligner``, the language model, and
    ``generation_head`` for the logits over the codebook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.vocab = int(module.config.vq_config.num_embeddings)
        self._cache_kw = ar_decoding.cache_keyword(module.model.language_model)

    def forward(self, tokens, positions, mask, cache, prompt=False):
        m = self.module
        if prompt:
            embeds = m.get_input_embeddings()(tokens)
        else:
            embeds = m.prepare_embeddings_for_image_generation(tokens)
        kwargs = {self._cache_kw: cache} if cache is not None else {}
        out = m.model.language_model(inputs_embeds=embeds, position_ids=positions,
                                     attention_mask=mask, use_cache=cache is not None, **kwargs)
        return m.model.generation_head(out.last_hidden_state).float()


class Janus(T.TokenFamily):
    """The Janus family at one size."""

    #: Generation runs the language model directly (see :class:`JanusNetwork`), never
    #: ``JanusForConditionalGeneration.forward``: compiling the wrapper would compile nothing.
    compile_entry = "model.language_model"

    def __init__(self, size: str) -> None:
        self.size = size
        vision = TINY_VISION if size == "tiny" else VISION
        side = vision["image_size"] // vision["patch_size"]
        self.grid = (side, side)

    def prompt_tokens(self, prompts: Sequence[str]):
        rows = [[BOS_ID, *(TEXT_OFFSET + i for i in T.encode_text(TEMPLATE.format(prompt=p))),
                 BOI_ID] for p in prompts]
        cond = T.pad_left(rows, PAD_ID)
        # The unconditional prompt: everything but bos and begin-of-image becomes padding.
        uncond = cond.clone()
        uncond[(cond != BOS_ID) & (cond != BOI_ID)] = PAD_ID
        return cond, uncond

    def network(self, module):
        return JanusNetwork(module)

    def images(self, module, tokens):
        pixels = module.model.vqmodel.decode(tokens)
        return ((pixels + 1) / 2).clamp(0, 1)

    def draft(self, module, seed):
        return T.end_layers_draft(module, seed, "janus-draft", "model.language_model.layers")


def build(size: str = "full", device: str = "cpu", seed: int = 0) -> T.ArchTokenModel:
    """Janus-Pro 1B at ``size`` (``full`` or ``tiny``), random weights from ``seed``."""
    from transformers import JanusForConditionalGeneration

    family = Janus(size)
    rows, cols = family.grid
    return T.build_token_model(
        "janus", JanusForConditionalGeneration, config(size), family, size=size, device=device,
        seed=seed, call_args=CALL_ARGS, reproduces=REPO,
        note=f"{rows} x {cols} image tokens per image, classifier-free guidance "
        f"{GUIDANCE:g} (two sequences per image); images decoded by the model's VQ decoder",
    )
