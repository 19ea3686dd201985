"""Distil the draft model of ``digits-ar`` (for speculative decoding) from the shipped target.

Command::

    OMP_NUM_THREADS=1 python -m bench.models.digits.training.distill_digits_ar_draft    # defaults below

The draft is a 2-layer Llama of the target's width (a quarter of its parameters),
initialised from the target's first and last decoder layers, its embeddings, final norm and
output head (``--init-layers``; ``none`` trains a narrower draft from scratch). It learns to
predict what the target predicts: the KL divergence from the target's next-token distribution
to the draft's, at every position of (a) the ``generator`` split's real digits and (b)
sequences the target itself sampled (``--samples`` at each of ``--temperatures``; the low
temperature covers the near-greedy paths the benchmark decodes; prompts balanced over 0..9),
so the draft learns the target's behaviour on its own outputs. The target's greedy outputs
themselves are not in the training set. The target's distributions are computed once; the
draft then trains with AdamW, warm-up and cosine decay (bfloat16 autocast).

At the end the draft is scored the way speculative decoding uses it: top-1 agreement with the
target on held-out digits (teacher forcing), and the acceptance rate of greedy and of sampled
speculative decoding (:class:`strategies.speculative.SpeculativeDecoder`, batches of 8) on 24
prompts (``--no-check`` skips it). Weights go to ``bench/models/weights/digits-ar/draft/``
(float16 safetensors via ``save_pretrained``, loaded back as float32).

Measured on the 2-core CPU machine (one thread, sharing the CPU with other jobs): 4 min to
sample 3000 sequences from the target and compute its distributions, 878 steps in 541 s
(9 min budget), 13 min in all. The shipped draft (1.72M parameters, 0.25 of the target's)
agrees with the target's top token at 73.7% of held-out positions; in greedy speculative
decoding with 5 draft tokens per round (transformers' assisted generation, as measured then)
the target kept 52% of the proposed tokens and 3.4 tokens per target forward pass (sampled:
61%, 3.9). A 2-layer x 128 draft trained from scratch for 8 minutes (``--init-layers none``)
reached 72.2%, 44% and 3.1.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.core.errors import ModelError
from bench.models.digits import ar
from bench.models.digits.training.common import (
    Loop,
    Schedule,
    add_arch_options,
    arch_of,
    parser,
    run_record,
    save_info,
)


@torch.no_grad()
def sample_sequences(
    target: torch.nn.Module, n: int, seed: int, temperature: float = 1.0, chunk: int = 250
) -> torch.Tensor:
    """``n`` sequences (n, 65) the target samples at ``temperature``, digits cycling 0..9."""
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(0, n, chunk):
            digits = torch.arange(i, min(n, i + chunk)) % 10
            ids = (digits + ar.PROMPT_TOKEN_OFFSET).unsqueeze(1)
            out.append(target.generate(ids, do_sample=True, temperature=temperature, top_k=0))
    return torch.cat(out)


def draft_from_target(target: torch.nn.Module, layers: list[int]) -> torch.nn.Module:
    """A draft of the target's width with the target's decoder ``layers`` (in order), its
    embeddings, final norm and output head."""
    n = target.config.num_hidden_layers
    if not layers or any(not 0 <= i < n for i in layers):
        raise ModelError(f"init layers must be in 0..{n - 1}, got {layers}")
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = len(layers)
    draft = type(target)(config)
    draft.generation_config = copy.deepcopy(target.generation_config)
    state = draft.state_dict()
    source = target.state_dict()
    for key in state:
        name = key
        if key.startswith("model.layers."):
            parts = key.split(".")
            parts[2] = str(layers[int(parts[2])])
            name = ".".join(parts)
        state[key] = source[name].detach().clone()
    draft.load_state_dict(state)
    return draft


@torch.no_grad()
def teacher_log_probs(target: torch.nn.Module, seqs: torch.Tensor, chunk: int = 128) -> torch.Tensor:
    """The target's next-token log-probabilities (N, 64, vocab) at the 64 image positions."""
    return torch.cat(
        [F.log_softmax(target(input_ids=s[:, :-1]).logits.float(), dim=-1) for s in seqs.split(chunk)]
    )


def kd_loss(student: torch.nn.Module, seqs: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """KL(target || draft) per position, averaged over positions and sequences."""
    logp = F.log_softmax(student(input_ids=seqs[:, :-1]).logits.float(), dim=-1)
    return F.kl_div(logp, teacher_logp, log_target=True, reduction="none").sum(-1).mean()


@torch.no_grad()
def agreement(target: torch.nn.Module, draft: torch.nn.Module, seqs: torch.Tensor) -> float:
    """Fraction of image positions where the draft's top token is the target's (teacher forcing)."""
    t = target(input_ids=seqs[:, :-1]).logits.argmax(-1)
    d = draft(input_ids=seqs[:, :-1]).logits.argmax(-1)
    return float((t == d).float().mean())


def speculative_check(draft_dir: Path, target_dir: Path | None = None, n: int = 24,
                      k: int = 4) -> dict:
    """Acceptance rate, forward passes per image and ms/image of plain and speculative
    decoding (batches of 8, ``k`` draft tokens per round) on ``n`` prompts, greedy and sampled
    (the model's default sampling); greedy speculative output must equal the target's."""
    from strategies.speculative import SpeculativeDecoder  # lazy: strategies sit above bench.models

    model = ar.load(directory=target_dir) if target_dir is not None else ar.load()
    prompts, _ = model.prompts(n)
    seeds = list(range(n))
    out: dict = {}

    def run(m, args):
        t0 = time.perf_counter()
        images = torch.cat([m.generate(prompts[i:i + 8], seeds[i:i + 8], **args)
                            for i in range(0, n, 8)])
        return images, (time.perf_counter() - t0) * 1000 / n

    for mode, args in (("greedy", {"do_sample": False}), ("sampled", {})):
        plain, plain_ms = run(model, args)
        twin = model.clone()
        twin.set_component("draft", ar.load_lm(draft_dir))
        twin.set_decoder(SpeculativeDecoder(k))
        spec, spec_ms = run(twin, args)
        decoding = twin.notes["decoding"]
        out[mode] = {
            "acceptance_rate": decoding["acceptance_rate"],
            "token_acceptance": decoding["token_acceptance"],
            "forward_passes_per_image": decoding["forward_passes_per_image"],
            "plain_ms_per_image": round(plain_ms, 1),
            "speculative_ms_per_image": round(spec_ms, 1),
        }
        if mode == "greedy":
            out[mode]["identical_to_target"] = bool(torch.equal(plain, spec))
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, steps=2500, batch_size=64, lr=2e-3, warmup=50, max_minutes=0.0,
               max_minutes_help="time budget of the draft's training (after the target's "
               "outputs are computed); the schedule follows it; 0: none",
               threads=1, bf16=True, out=ar.DRAFT_DIR)
    add_arch_options(p, ar.DRAFT_ARCH)
    p.add_argument("--target", type=Path, default=ar.WEIGHTS_DIR)
    p.add_argument("--init-layers", default="0,7",
                   help="target layers the draft starts from (its width is the target's); "
                   "'none': a fresh draft of --layers/--hidden/--heads/--intermediate")
    p.add_argument("--samples", type=int, default=1500,
                   help="sequences sampled from the target at each temperature")
    p.add_argument("--temperatures", default="1.0,0.5",
                   help="sampling temperatures of the target's sequences")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip the closing speculative-decoding check")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    target = ar.load_lm(args.target)
    real, _ = ar.sequences("generator")
    temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    sampled = torch.cat([sample_sequences(target, args.samples, args.seed + i, t)
                         for i, t in enumerate(temperatures)])
    seqs = torch.cat([real, sampled])
    teacher_logp = teacher_log_probs(target, seqs)
    prep_s = time.perf_counter() - start
    print(f"distillation set: {len(real)} real + {len(sampled)} target-sampled sequences; target "
          f"outputs computed in {prep_s:.0f} s", flush=True)

    if args.init_layers.strip().lower() == "none":
        arch = arch_of(args)
        draft = ar.build_lm(arch, seed=args.seed).train()
        init = "random"
    else:
        layers = [int(i) for i in args.init_layers.split(",")]
        draft = draft_from_target(target, layers).train()
        arch = {"layers": len(layers), "hidden": target.config.hidden_size,
                "heads": target.config.num_attention_heads,
                "intermediate": target.config.intermediate_size}
        init = f"target layers {layers}, embeddings, final norm and head"
    n_target = sum(p.numel() for p in target.parameters())
    n_draft = sum(p.numel() for p in draft.parameters())
    print(f"draft {arch}: {n_draft} parameters ({n_draft / n_target:.3f} of the target's); "
          f"initialised from {init}", flush=True)
    opt = torch.optim.AdamW(draft.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = Schedule(opt, args.lr, args.warmup, args.steps, args.max_minutes)
    gen = torch.Generator().manual_seed(args.seed)

    def loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        idx = torch.randint(0, len(seqs), (args.batch_size,), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            value = kd_loss(draft, seqs[idx], teacher_logp[idx])
        return value, {"kl": value.item()}

    loop = Loop(opt, list(draft.parameters()), "digits-ar draft", schedule=schedule)
    loop.run(args.steps, loss)

    draft.eval()
    ar.save_lm(draft, args.out)
    draft = ar.load_lm(args.out)  # score what ships (float16 weights)
    heldout, _ = ar.sequences("heldout")
    agree = agreement(target, draft, heldout)
    print(f"top-1 agreement with the target on held-out digits: {agree:.3f}", flush=True)
    check = speculative_check(args.out, args.target) if args.check else {}
    if check:
        print("speculative decoding (4 draft tokens per round, 24 prompts in batches of 8):",
              json.dumps(check))
    elapsed = time.perf_counter() - start
    info = {
        **run_record("distill_digits_ar_draft", argv, args, exclude=("out", "target")),
        "arch": arch,
        "init": init,
        "params": n_draft,
        "target_params": n_target,
        "distillation_set": {"real": len(real), "target_sampled": len(sampled),
                             "temperatures": temperatures},
        "steps_done": loop.steps_done,
        "prep_seconds": round(prep_s, 1),
        "train_seconds": round(loop.seconds, 1),
        "total_seconds": round(elapsed, 1),
        "final_kl": loop.averages.get("kl"),
        "heldout_top1_agreement": agree,
        "speculative_check": check,
    }
    save_info(args.out / "training_info.json", info, f"saved the draft to {args.out}; elapsed {elapsed:.0f} s ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
