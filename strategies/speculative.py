"""Speculative decoding: a small draft model proposes tokens, the target verifies them at once.

Each round the draft (distilled from the target; for ``digits-ar`` 2 of its 8 layers) proposes
``num_assistant_tokens`` tokens one by one; the target then scores all of them in a single
forward pass and keeps the longest prefix it agrees with, plus one token of its own. With
greedy decoding the output is exactly the target's; with sampling, transformers applies the
speculative-sampling acceptance rule (Leviathan et al., 2023), so the output follows the
target's distribution. The gain depends on two numbers the record keeps: how often the target
accepts a draft token (``acceptance_rate``) and how much cheaper a draft step is than a target
step.

This uses transformers' assisted generation (``generate(..., assistant_model=draft)``), which
supports one sequence per ``generate`` call: the model generates its images one at a time,
which is also what the autoregressive baseline does by default, so the comparison is fair.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.base import Strategy, StrategyConfig, StrategyError, param


@dataclass(frozen=True)
class Config(StrategyConfig):
    """How the draft proposes tokens.

    Attributes:
        num_assistant_tokens: draft tokens proposed per round (per target forward pass).
        schedule: ``constant`` keeps ``num_assistant_tokens``; ``heuristic`` is transformers'
            adaptive rule (+2 after a fully accepted round, -1 otherwise).
        confidence: stop a round early when the draft's probability of its own token falls
            below this (transformers' dynamic speculation); 0 turns it off.
        draft: which draft model: ``shipped`` is the draft distilled from the shipped target
            (``python -m bench.training.distill_digits_ar_draft``); ``distill`` is the student
            the ``distill`` strategy trains from the current target (cached like it), with the
            decoder layers named by ``student_drop`` removed.
        student_drop: for ``draft=distill``: the layers the student loses (the adapter's
            ``distill:drop`` choices, joined with '/'); the default keeps 2 of 8 layers.
        student_steps: for ``draft=distill``: the student's training steps (``distill:steps``).
    """

    num_assistant_tokens: int = param(5, "draft tokens proposed per round", low=1, high=64)
    schedule: str = param(
        "constant", "how the number of draft tokens adapts", choices=("constant", "heuristic")
    )
    confidence: float = param(
        0.0, "end a draft run below this draft probability (0: off)", low=0.0, high=1.0
    )
    draft: str = param("shipped", "the draft model", choices=("shipped", "distill"))
    student_drop: str = param(
        "alternate/upper", "draft=distill: decoder layers removed from the student"
    )
    student_steps: int = param(400, "draft=distill: the student's training steps", low=0,
                               high=1_000_000)


class Speculative(Strategy):
    """Attach the distilled draft model and decode with transformers' assisted generation."""

    name = "speculative"
    summary = "speculative decoding with the distilled draft model (num_assistant_tokens=5)"
    Config = Config
    stage = Strategy.STAGE_SAMPLING
    exclusive_group = "decoding"

    def supports(self, model) -> str | None:
        if model.kind != "autoregressive":
            return (
                f"{model.name} ({model.kind}) does not decode token by token: speculative "
                "decoding needs an autoregressive model whose next tokens a draft can propose"
            )
        if not hasattr(model, "default_draft"):
            return f"{model.name} ships no draft model to propose tokens"
        if model.call_args.get("use_cache") is False:
            return "speculative decoding needs the KV cache (it crops it after rejections)"
        if self.config.draft == "distill":
            from strategies import distill
            from strategies.adapters.base import get_adapter

            reason = distill.training_reason(model)
            if reason:
                return f"cannot distil a draft: {reason}"
            try:
                get_adapter(model).parse_drop(self.config.student_drop)
            except StrategyError as exc:
                return str(exc)
        return super().supports(model)

    def incompatible_with(self, other: Strategy) -> str | None:
        if other.name == "no-kv-cache":
            return "speculative decoding verifies draft tokens against the KV cache"
        return None

    def apply(self, model):
        target = model.denoiser
        draft_notes: dict = {}
        if self.config.draft == "distill":
            draft, draft_notes = self._distilled_draft(model)
        else:
            try:
                draft = model.default_draft()
            except FileNotFoundError as exc:
                raise StrategyError(str(exc)) from None
        t_vocab = getattr(getattr(target, "config", None), "vocab_size", None)
        d_vocab = getattr(getattr(draft, "config", None), "vocab_size", None)
        if t_vocab != d_vocab:
            raise StrategyError(
                f"the draft's vocabulary ({d_vocab} tokens) differs from the target's ({t_vocab})"
            )
        if model.dtype.is_floating_point:
            draft = draft.to(model.dtype)
        model.set_component("draft", draft)
        cfg = self.config
        model.call_args.update(
            num_assistant_tokens=cfg.num_assistant_tokens,
            assistant_schedule=cfg.schedule,
            assistant_confidence=cfg.confidence,
        )
        note = ""
        if model.call_args.get("batched"):
            model.call_args["batched"] = False
            note = "batched generation was turned off: assisted generation takes one sequence"
        model.notes[self.name] = {
            "draft": cfg.draft,
            **draft_notes,
            "draft_params": sum(p.numel() for p in draft.parameters()),
            "target_params": sum(p.numel() for p in target.parameters()),
            "sequences_per_generate_call": 1,
            "note": note
            or "one image per generate call (transformers' assisted generation supports "
            "batch size 1), as in the autoregressive baseline",
        }
        return model


    def _distilled_draft(self, model):
        """The ``distill`` strategy's student of the current target, used as the draft."""
        from strategies import distill
        from strategies.training import record_cold

        reason = distill.training_reason(model)
        if reason:
            raise StrategyError(f"cannot distil a draft: {reason}")
        config = distill.Config(drop=self.config.student_drop, steps=self.config.student_steps)
        trained, info = distill.train_student(model, config)
        record_cold(model, float(trained.meta.get("training_s", 0.0)), trained.cache_hit)
        notes = {
            "student_removed": info.removed,
            "student_training_s": trained.meta.get("training_s"),
            "student_cache_hit": trained.cache_hit,
            "distill_config": config.as_dict(),
        }
        return trained.module.eval(), notes
