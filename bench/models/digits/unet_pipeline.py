"""A real, tiny diffusers text-to-image pipeline in pixel space: 1 x 16 x 16 handwritten digits.

Components (registered with ``register_modules``, so ``save_pretrained``/``from_pretrained``,
``components``, offloading and hooks all work as for any diffusers pipeline):

* ``unet``: a :class:`diffusers.UNet2DConditionModel` (channels 32/64/64, cross-attention
  transformer blocks at the 8x8 and 4x4 levels and in the mid block), predicting ``v``;
* ``text_encoder``: a 2-layer, 64-wide :class:`transformers.CLIPTextModel`;
* ``tokenizer``: a :class:`transformers.PreTrainedTokenizerFast` wrapping a ``tokenizers``
  WordLevel model over the prompt vocabulary (``a handwritten 0`` .. ``a handwritten 9``);
* ``scheduler``: DDIM by default; any compatible diffusers scheduler can replace it, e.g.
  ``pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``.

Images are generated in [-1, 1] and returned in [0, 1]. The initial noise of every image is
drawn from that image's own generator, so an image depends only on its prompt and seed.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.schedulers import KarrasDiffusionSchedulers
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

#: Special tokens first (ids 0..3), then the words of the prompts.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
PROMPT_WORDS = ("a", "handwritten", *(str(d) for d in range(10)))
MAX_PROMPT_LENGTH = 8


def build_tokenizer(words: Sequence[str] = PROMPT_WORDS) -> PreTrainedTokenizerFast:
    """The word-level tokenizer over the prompt vocabulary ``words`` (no download, no
    files)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {tok: i for i, tok in enumerate((*SPECIAL_TOKENS, *words))}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        model_max_length=MAX_PROMPT_LENGTH,
        padding_side="right",
    )


def build_text_encoder(hidden_size: int = 64, num_layers: int = 2,
                       words: Sequence[str] = PROMPT_WORDS) -> CLIPTextModel:
    """A small, randomly initialised CLIP text encoder matching :func:`build_tokenizer` of
    the same ``words``."""
    config = CLIPTextConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(words),
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        projection_dim=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_PROMPT_LENGTH,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    return CLIPTextModel(config)


def build_unet(cross_attention_dim: int = 64) -> UNet2DConditionModel:
    """The 1.7M-parameter conditional UNet on 1 x 16 x 16 images."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,  # diffusers' legacy name: the number of heads
        norm_num_groups=8,
    )


def build_scheduler() -> DDIMScheduler:
    """DDIM over a 1000-step cosine schedule, v-prediction, trailing timesteps.

    ``clip_sample`` is off: diffusers' DDIM clips the predicted x0 but keeps the unclipped
    noise estimate, and with guidance that mismatch wrecks the samples (measured adherence
    0.48 at guidance 3 with clipping, 1.00 without). The output is clamped to [0, 1] anyway.
    """
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


def _module_dtype_device(module: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    """dtype and device of a module's first floating-point parameter (float32/CPU if none)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.float32, torch.device("cpu")


class DigitsPipeline(DiffusionPipeline):
    """Text-to-image diffusion of 16x16 handwritten digits with classifier-free guidance.

    Args:
        unet: the conditional denoiser (1 channel in and out, 16 x 16).
        text_encoder: encodes tokenised prompts into ``encoder_hidden_states``.
        tokenizer: the word-level tokenizer of the prompt vocabulary.
        scheduler: any diffusers scheduler compatible with the UNet's ``v`` prediction.
    """

    model_cpu_offload_seq = "text_encoder->unet"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(
        self,
        unet: UNet2DConditionModel,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerFast,
        scheduler: KarrasDiffusionSchedulers,
    ) -> None:
        super().__init__()
        self.register_modules(
            unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler
        )

    #: The attribute holding the denoiser; a subclass with another denoiser (a transformer)
    #: overrides it together with :meth:`predict`.
    denoiser_attr = "unet"

    # -- properties diffusers' callbacks and hooks read ---------------------------------
    @property
    def denoiser(self) -> torch.nn.Module:
        """The denoising network (``self.unet`` here)."""
        return getattr(self, self.denoiser_attr)

    @property
    def current_timestep(self) -> torch.Tensor | None:
        """The timestep being denoised (None outside the loop); diffusers' cache hooks read it."""
        return getattr(self, "_current_timestep", None)

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    # -- prompt encoding ---------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token ids (N, MAX_PROMPT_LENGTH) with bos/eos, padded and truncated."""
        return self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=MAX_PROMPT_LENGTH,
            truncation=True,
            return_tensors="pt",
        ).input_ids

    def encode_prompt(
        self,
        prompt: Sequence[str],
        device: torch.device | None = None,
        do_classifier_free_guidance: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text embeddings of ``prompt`` and, for guidance, of the empty prompt.

        Returns ``(prompt_embeds, negative_prompt_embeds)``; the second is None without
        guidance. Both are (N, MAX_PROMPT_LENGTH, hidden) in the text encoder's dtype.
        """
        te_dtype, te_device = _module_dtype_device(self.text_encoder)
        ids = self.tokenize(prompt).to(te_device)
        prompt_embeds = self.text_encoder(ids)[0]
        negative = None
        if do_classifier_free_guidance:
            uncond = self.tokenize([""]).to(te_device)
            negative = self.text_encoder(uncond)[0].expand(len(prompt), -1, -1)
        if device is not None:
            prompt_embeds = prompt_embeds.to(device)
            negative = negative.to(device) if negative is not None else None
        return prompt_embeds, negative

    def prepare_extra_step_kwargs(
        self, generator: torch.Generator | list[torch.Generator] | None, eta: float
    ) -> dict[str, Any]:
        """``eta`` and ``generator`` for schedulers whose ``step`` accepts them."""
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    def latent_shape(self, batch_size: int) -> tuple[int, ...]:
        """Shape of the initial noise of ``batch_size`` images (the denoiser's channels and
        sample size); a video pipeline overrides it."""
        config = getattr(self.denoiser, "config", None)
        channels = int(getattr(config, "in_channels", 1))
        size = int(getattr(config, "sample_size", 16))
        return (batch_size, channels, size, size)

    def prepare_latents(
        self,
        batch_size: int,
        generator: torch.Generator | list[torch.Generator] | None,
        device: torch.device,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial noise (float32) drawn per image when ``generator`` is a list."""
        shape = self.latent_shape(batch_size)
        if latents is None:
            if isinstance(generator, list):
                if len(generator) != batch_size:
                    raise ValueError(
                        f"got {len(generator)} generators for {batch_size} images; pass one each"
                    )
                noise = [
                    torch.randn((1, *shape[1:]), generator=g, device=g.device, dtype=torch.float32)
                    for g in generator
                ]
                latents = torch.cat(noise).to(device)
            else:
                gen_device = generator.device if generator is not None else torch.device("cpu")
                latents = torch.randn(
                    shape, generator=generator, device=gen_device, dtype=torch.float32
                ).to(device)
        else:
            latents = latents.to(device=device, dtype=torch.float32)
        return latents * self.scheduler.init_noise_sigma

    def predict(
        self, model_input: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """One call of the denoiser on the (guidance-batched) input: its output in float32."""
        return self.unet(
            model_input.to(dtype), t, encoder_hidden_states=embeds.to(dtype), return_dict=False
        )[0].float()

    def _cache_context(self, i: int, t: torch.Tensor, num_inference_steps: int) -> Any:
        """diffusers' ``cache_context`` of a denoiser with cache hooks (a no-op without)."""
        denoiser = self.denoiser
        if not hasattr(denoiser, "cache_context"):
            return contextlib.nullcontext()
        name = "cond_uncond" if self.do_classifier_free_guidance else "cond"
        return denoiser.cache_context(
            name, step_index=i, num_inference_steps=num_inference_steps, timestep=t
        )

    # -- generation --------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Generate one image per prompt.

        Args:
            prompt: a prompt or a list of prompts, e.g. ``"a handwritten 7"``.
            generator: one ``torch.Generator`` per image (recommended: an image then depends
                only on its prompt and seed) or a single one for the whole batch.
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; <= 1 disables guidance.
            eta: DDIM's eta (ignored by schedulers without it).
            latents: optional initial noise (N, 1, 16, 16) instead of drawing it.
            output_type: ``"pt"`` (float NCHW in [0, 1] on the CPU), ``"np"`` (NHWC),
                ``"pil"`` or ``"latent"`` (the final sample in [-1, 1], unclamped).
            return_dict: return an :class:`ImagePipelineOutput` rather than a tuple.
            callback_on_step_end: called as ``callback(self, i, t, callback_kwargs)`` after
                every step; the dict it returns may replace ``latents``, ``prompt_embeds`` or
                ``negative_prompt_embeds``.
            callback_on_step_end_tensor_inputs: the tensors put into ``callback_kwargs``.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch_size = len(prompts)
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback tensor inputs {sorted(unknown)} not in {self._callback_tensor_inputs}"
            )

        self._guidance_scale = float(guidance_scale)
        self._interrupt = False
        unet_dtype, device = _module_dtype_device(self.denoiser)
        unet_dtype = getattr(self.denoiser, "dtype", unet_dtype)

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompts, device=device, do_classifier_free_guidance=self.do_classifier_free_guidance
        )
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        latents = self.prepare_latents(batch_size, generator, device, latents)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)

        num_warmup_steps = len(timesteps) - num_inference_steps * self.scheduler.order
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                if self.do_classifier_free_guidance:
                    model_input = torch.cat([latents, latents])
                    embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
                else:
                    model_input, embeds = latents, prompt_embeds
                model_input = self.scheduler.scale_model_input(model_input, t)
                self._current_timestep = t
                with self._cache_context(i, t, len(timesteps)):
                    model_output = self.predict(model_input, t, embeds, unet_dtype)
                if self.do_classifier_free_guidance:
                    uncond, cond = model_output.chunk(2)
                    model_output = uncond + self._guidance_scale * (cond - uncond)
                latents = self.scheduler.step(
                    model_output, t, latents, **extra_step_kwargs, return_dict=False
                )[0]

                if callback_on_step_end is not None:
                    local = {
                        "latents": latents,
                        "prompt_embeds": prompt_embeds,
                        "negative_prompt_embeds": negative_prompt_embeds,
                    }
                    callback_kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop(
                        "negative_prompt_embeds", negative_prompt_embeds
                    )

                if i == len(timesteps) - 1 or (
                    (i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0
                ):
                    progress_bar.update()

        self._current_timestep = None
        self.maybe_free_model_hooks()
        latents = latents.float()
        if output_type == "latent":
            images: Any = latents
        else:
            images = (latents / 2 + 0.5).clamp(0, 1).cpu()
            if output_type in ("np", "pil"):
                images = images.permute(0, 2, 3, 1).numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
            elif output_type != "pt":
                raise ValueError(f"output_type must be pt, np, pil or latent, got {output_type!r}")
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)


def build_pipeline(seed: int = 0) -> DigitsPipeline:
    """A freshly initialised (untrained) pipeline, as the training script starts from."""
    torch.manual_seed(seed)
    return DigitsPipeline(
        unet=build_unet(),
        text_encoder=build_text_encoder(),
        tokenizer=build_tokenizer(),
        scheduler=build_scheduler(),
    )
