"""Train ``digits-unet``: the UNet and its CLIP text encoder, jointly, on the ``generator`` split.

Command::

    python -m bench.models.digits.training.train_digits_unet        # see --help; needs the classifier weights

The recipe (:mod:`bench.models.digits.training.diffusion`): v-prediction on a cosine schedule
with min-SNR loss weighting, 10% prompt dropout (the empty prompt) for classifier-free
guidance, AdamW with warm-up and cosine decay, and an EMA of the weights; the better of the raw
and the EMA weights is saved (float16 safetensors, loaded back as float32) into
``bench/models/weights/digits-unet/``. Finally 100 images (prompts balanced over 0..9, seeds
0..99) are generated at the default settings of :mod:`bench.models.digits.unet` (and at
guidance 1, 2 and 5) and the digit classifier's accuracy on them (prompt adherence) is printed;
the exit status is 1 when it is below ``--min-adherence``.

``--eval-only`` skips training and re-scores the weights already in ``--out``.

Measured on the 2-core CPU machine (shared with other jobs, load average 8-12): the shipped
weights come from ``python -m bench.models.digits.training.train_digits_unet --threads 1 --max-minutes 29``
(the other settings are today's defaults): 2717 steps at batch 64 in 29 min of training
(0.64 s/step; under that contention 1 thread ran about 5x faster than 2), 30.4 min wall with
the evaluation. Adherence at the defaults (25 DDIM steps, guidance 3.0): 1.00 on 100 images
(also 1.00 at guidance 1, 2 and 5). A 50-step smoke run takes about 40 s plus evaluation.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from bench.models.digits import unet
from bench.models.digits.training import diffusion
from bench.models.digits.unet_pipeline import build_pipeline

RECIPE = diffusion.DiffusionRecipe(
    name="digits-unet", script="train_digits_unet", denoiser="unet", load=unet.load,
    call_args=unet.DEFAULT_CALL_ARGS, sweep=(1.0, 2.0, 5.0),
)
save_pipeline = diffusion.save_pipeline


def main(argv: list[str] | None = None) -> int:
    p = diffusion.diffusion_parser(
        __doc__, steps=3000, out=unet.WEIGHTS_DIR, warmup=100, save_every=250, max_minutes=0.0,
        max_minutes_help="training time budget: the LR decays by the larger of step and time "
        "progress and training stops when either runs out (the result then depends on machine "
        "speed); 0: no budget, bit-reproducible",
        threads=2,
    )
    p.add_argument("--eval-only", action="store_true",
                   help="skip training: score the weights in --out and refresh their "
                   "training_info.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.eval_only:
        info_file = args.out / "training_info.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {}
        return diffusion.report(RECIPE, args, info, start)
    pipe = build_pipeline(seed=args.seed)
    return diffusion.train(RECIPE, pipe, args, argv, start,
                           {"start": time.perf_counter(), "floor": 0.1, "after_warmup": True})


if __name__ == "__main__":
    sys.exit(main())
