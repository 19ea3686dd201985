"""The training of the digits diffusion models (``digits-unet``, ``digits-dit``): the denoiser
and its CLIP text encoder, jointly, on the ``generator`` split.

v-prediction on the pipeline's cosine schedule with min-SNR loss weighting, prompt dropout
(the empty prompt) for classifier-free guidance, AdamW with warm-up and cosine decay, and an
EMA of the weights. The denoiser is called through the pipeline's ``predict``, exactly as at
sampling time. EMA checkpoints are written every ``--save-every`` steps; at the end the raw and
the EMA weights are both scored and the better one is saved (float16 safetensors, loaded back
as float32), then prompt adherence is measured at the model's defaults and over a guidance
sweep, and everything is written to ``training_info.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers.utils.logging as dlog
import torch
import torch.nn.functional as F

from bench.models.digits.data import load_split, prompt_for
from bench.models.digits.training.common import (
    EMA,
    Loop,
    Schedule,
    adherence,
    keep_better,
    parser,
    run_record,
    verdict,
)


@dataclass(frozen=True)
class DiffusionRecipe:
    """What differs between the digits diffusion models' training.

    Attributes:
        name: the model (``digits-unet``).
        script: the training script's module name (for the recorded command).
        denoiser: the pipeline attribute of the denoiser (``unet``, ``transformer``).
        load: ``load(directory=...)`` of the model (for scoring saved weights).
        call_args: the model's default generation settings.
        sweep: guidance scales whose adherence is reported besides the default's.
        chunk: images generated per call when scoring (None: all at once).
        batch: ``batch(generator, n, step)`` draws about ``n`` training samples in [-1, 1]
            and their labels for training step ``step`` (its own batch size and shape when a
            curriculum asks; None: ``n`` images of the ``generator`` split).
        prompts: the prompt of each label (None: the ten digit prompts).
        measure: ``measure(model, n, chunk, **call_args)`` scores a model, larger is better
            (None: the digit classifier's adherence).
    """

    name: str
    script: str
    denoiser: str
    load: Callable[..., Any]
    call_args: dict[str, Any]
    sweep: Sequence[float]
    chunk: int | None = None
    batch: Callable[[torch.Generator, int, int], tuple[torch.Tensor, torch.Tensor]] | None = None
    prompts: Sequence[str] | None = None
    measure: Callable[..., float] | None = None


def diffusion_parser(doc: str | None, **defaults: Any) -> argparse.ArgumentParser:
    """The options of a diffusion training script (``defaults`` as :func:`common.parser`)."""
    p = parser(doc, lr=1e-3, batch_size=64, ema_decay=0.999, eval_images=100,
               min_adherence=0.80, **defaults)
    p.add_argument("--prompt-dropout", type=float, default=0.1)
    p.add_argument("--min-snr-gamma", type=float, default=5.0)
    p.add_argument("--no-sweep", action="store_true", help="skip the guidance sweep")
    return p


def save_pipeline(pipe: Any, out: Path, dtype: torch.dtype = torch.float16) -> None:
    """Save a copy of a digits pipeline with its weights cast to ``dtype`` (safetensors)."""
    networks = {name: copy.deepcopy(getattr(pipe, name)).to(dtype)
                for name in (pipe.denoiser_attr, "text_encoder")}
    copy_pipe = type(pipe)(**networks, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler)
    out.mkdir(parents=True, exist_ok=True)
    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        copy_pipe.save_pretrained(str(out), safe_serialization=True)
    finally:
        dlog.set_verbosity(level)
    for weights in out.glob("*/*.safetensors"):
        weights.chmod(0o644)  # safetensors writes 0600; the files ship in the package
    for config in out.glob("*/config.json"):  # a resumed pipeline names where it was loaded
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    # Name the tokenizer class as transformers 4.x and 5.x both know it.
    for path, key in (
        (out / "model_index.json", None),
        (out / "tokenizer" / "tokenizer_config.json", "tokenizer_class"),
    ):
        data = json.loads(path.read_text())
        if key is None:
            data["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
        else:
            data[key] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def train(recipe: DiffusionRecipe, pipe: Any, args: argparse.Namespace,
          argv: list[str] | None, start: float, schedule_kw: dict[str, Any]) -> int:
    """Train ``pipe`` as ``args`` say, save the better weights into ``args.out`` and report;
    the exit status (1 below ``--min-adherence``). ``schedule_kw``: the script's
    :class:`Schedule` settings."""
    denoiser, text_encoder = getattr(pipe, recipe.denoiser).train(), pipe.text_encoder.train()
    gen = torch.Generator().manual_seed(args.seed)
    draw, prompts, n_train = _training_data(recipe, gen)
    # Token ids of the prompts and, last, of the empty prompt.
    ids_table = pipe.tokenize([*prompts, ""])
    alphas_cumprod = pipe.scheduler.alphas_cumprod.float()
    params = list(denoiser.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema = EMA({recipe.denoiser: denoiser, "text_encoder": text_encoder}, args.ema_decay)

    def ema_pipe() -> Any:
        return type(pipe)(**ema.copies, tokenizer=pipe.tokenizer, scheduler=pipe.scheduler)

    def loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        x0, labels = draw(args.batch_size, step)
        n = len(x0)
        drop = torch.rand(n, generator=gen) < args.prompt_dropout
        labels[drop] = len(prompts)
        t = torch.randint(0, len(alphas_cumprod), (n,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        v_target = a.sqrt() * noise - (1 - a).sqrt() * x0
        embeds = text_encoder(ids_table[labels])[0]
        v_pred = pipe.predict(x_t, t, embeds, torch.float32)
        snr = a.view(-1) / (1 - a.view(-1))
        weight = torch.clamp(snr, max=args.min_snr_gamma) / (snr + 1)
        per_image = F.mse_loss(v_pred, v_target, reduction="none").mean(
            dim=tuple(range(1, x0.ndim)))
        # min-SNR-gamma for v-prediction, normalised so the mean weight is about 1.
        value = (per_image * weight).mean() / weight.mean().detach()
        return value, {"loss": value.item()}

    def checkpoint(steps: int) -> None:
        save_pipeline(ema_pipe(), args.out)
        print(f"\nstep {steps}: loss {loop.averages['loss']:.4f}, "
              f"{time.perf_counter() - start:.0f} s; EMA checkpoint saved", flush=True)

    print(f"{recipe.denoiser} params {sum(p.numel() for p in denoiser.parameters())}, text "
          f"encoder params {sum(p.numel() for p in text_encoder.parameters())}; {n_train} "
          f"training samples; threads {torch.get_num_threads()}", flush=True)
    schedule = Schedule(opt, args.lr, args.warmup, args.steps, args.max_minutes, **schedule_kw)
    loop = Loop(opt, params, recipe.name, schedule=schedule, ema=ema, smoothing=0.98,
                checkpoint=checkpoint, save_every=args.save_every)
    loop.run(args.steps, loss)

    # Score raw and EMA weights at the default settings, keep the better.
    denoiser.eval()
    text_encoder.eval()
    chosen, scores = keep_better(
        args.out, lambda d: save_pipeline(pipe, d), lambda d: save_pipeline(ema_pipe(), d),
        lambda _, d: score(recipe, d, args.eval_images),
    )
    print(f"adherence at {recipe.call_args}: raw {scores['raw']:.3f}, EMA {scores['ema']:.3f}",
          flush=True)
    print(f"saved {chosen} weights to {args.out}")
    info = {
        **run_record(recipe.script, argv, args),
        "steps_done": loop.steps_done,
        "train_seconds": round(loop.seconds, 1),
        "weights": chosen,
        "adherence_raw": scores["raw"],
        "adherence_ema": scores["ema"],
    }
    return report(recipe, args, info, start, scores[chosen])


def _training_data(recipe: DiffusionRecipe, gen: torch.Generator) -> tuple[
        Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], Sequence[str], str]:
    """``draw(n, step)`` (samples in [-1, 1] and labels), the prompts of the labels and how many
    training samples there are (in words)."""
    if recipe.batch is not None:
        if recipe.prompts is None:
            raise ValueError(f"{recipe.name}: a recipe with its own batches names its prompts")
        return (lambda n, step: recipe.batch(gen, n, step)), recipe.prompts, "generated"
    data = load_split("generator")
    x_all = torch.from_numpy(data.images.copy()) * 2.0 - 1.0
    y_all = torch.from_numpy(data.labels.copy())

    def draw(n: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(x_all), (n,), generator=gen)
        return x_all[idx], y_all[idx].clone()

    return draw, [prompt_for(d) for d in range(10)], str(len(x_all))


def score(recipe: DiffusionRecipe, directory: Path, n: int, **call_args: Any) -> float:
    """The recipe's score (default: adherence) of the weights in ``directory`` at the
    defaults updated by ``call_args``."""
    model = recipe.load(directory=directory)
    measure = recipe.measure or adherence
    return measure(model, n, recipe.chunk, **{**recipe.call_args, **call_args})


def report(recipe: DiffusionRecipe, args: argparse.Namespace, info: dict[str, Any],
           start: float, adh: float | None = None) -> int:
    """Adherence at the default settings (``adh`` when already measured) and over the
    guidance sweep; write ``training_info.json``; the exit status."""
    n = args.eval_images
    if adh is None:
        adh = score(recipe, args.out, n)
    default_g = recipe.call_args["guidance_scale"]
    sweep: dict[float, float] = {}
    if not args.no_sweep:
        sweep = {default_g: adh}
        for g in recipe.sweep:
            if g not in sweep:
                sweep[g] = score(recipe, args.out, n, guidance_scale=g)
        sweep = dict(sorted(sweep.items()))
        print("guidance sweep (adherence):", {k: round(v, 3) for k, v in sweep.items()})
    info = {
        **info,
        "total_seconds": info.get("total_seconds", round(time.perf_counter() - start, 1)),
        "default_call_args": recipe.call_args,
        "adherence_default": adh,
        "guidance_sweep": sweep,
    }
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return verdict(adh, args.min_adherence, f"{adh:.3f} on {n} images at {recipe.call_args}",
                   start)


__all__ = ["DiffusionRecipe", "diffusion_parser", "report", "save_pipeline", "score", "train"]
