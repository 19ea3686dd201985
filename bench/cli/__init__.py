"""The ``accelbench`` command line. It only parses and builds config objects; the work
happens in :mod:`bench.engine` (measuring) and friends (judging, reporting, sweeping)."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from bench import __version__

EPILOG_RUN = """\b
Examples:
  accelbench run
      default strategies on the embedded digits-unet model, on the CPU
  accelbench run --strategy bf16 --strategy steps:n=10 --iterations 20
  accelbench run -s "scheduler:name=unipc+steps:n=8" -s fp16 --device cuda
  accelbench run --model hf:stabilityai/sd-turbo --device cuda -s bf16 --steps 4

A strategy is name[:key=value,...]; join several with '+' to stack them
(they are applied in a fixed, sensible order). `accelbench list` shows them all.
"""


class _ErrorGroup(click.Group):
    """Turns the project's own errors into one clear line and exit code 2."""

    def invoke(self, ctx):
        try:
            from bench.models.registry import ModelError
            from strategies.base import StrategyError
        except ImportError:  # no torch here: `accelbench report` must still work
            ModelError = StrategyError = ValueError  # both subclass ValueError  # noqa: N806

        try:
            return super().invoke(ctx)
        except (StrategyError, ModelError, ValueError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accelbench")
def main() -> None:
    """accelbench: what acceleration techniques really buy for image generation.

    Apply techniques (precision, quantization, pruning, distillation, caching, compilation,
    fewer steps...) to a model, time the generation loop while sampling memory and power,
    score the images against the unaccelerated ones, and compare.
    """


@main.command("list")
def list_cmd() -> None:
    """List the models and strategies, each with one line of help."""
    from bench.models.registry import list_models
    from strategies.registry import list_strategies

    click.secho("Models", bold=True)
    for info in list_models():
        click.echo(f"  {info.name:<18} {info.summary}")
    click.echo(f"  {'hf:<id or path>':<18} any diffusers text-to-image pipeline you have locally")
    click.secho("\nStrategies", bold=True)
    for name, summary in list_strategies():
        click.echo(f"  {name:<18} {summary}")
    click.echo("\nA strategy's parameters: accelbench describe NAME")


@main.command("describe")
@click.argument("name")
def describe_cmd(name: str) -> None:
    """Show a strategy's parameters, defaults and allowed values."""
    from strategies.registry import get_strategy

    cls = get_strategy(name)
    click.secho(f"{cls.name}: {cls.summary}", bold=True)
    if cls.__doc__:
        click.echo(cls.__doc__.strip())
    lines = cls.Config.describe_params()
    click.echo("\nParameters:" if lines else "\nNo parameters.")
    for line in lines:
        click.echo(f"  {line}")


@main.command("run", epilog=EPILOG_RUN)
@click.option("-m", "--model", default="digits-unet", show_default=True,
              help="Registry name, arch:<family>[@tiny] or hf:<repo id or local path>.")
@click.option("-s", "--strategy", "strategies", multiple=True,
              help="Strategy stack to measure (repeatable). Default: baseline, bf16, "
                   "steps:n=10, scheduler:name=dpm-solver+steps:n=10.")
@click.option("-d", "--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, mps.")
@click.option("--dtype", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
              help="Load the model's weights in this dtype (the baseline runs in it). Default: "
                   "on CUDA an arch: model's published dtype (fp16 for SD 1.5 and SDXL, bf16 "
                   "for the others), fp32 elsewhere and on the CPU.")
@click.option("-b", "--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per generation call in the timed loop.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Denoising steps of the baseline (default: the model's own).")
@click.option("--resolution", default=None, metavar="SIZE",
              help="Generate at SIZE (512, or 768x512 as width x height); default: the model's own.")
@click.option("--schedule", type=click.Choice(["auto", "interleaved", "sequential"]), default="auto",
              show_default=True,
              help="How stacks are timed: interleaved (rounds, order reversed each round; "
                   "robust to a machine whose speed changes), sequential (one after the "
                   "other), or auto (interleaved when all stacks fit in memory at once).")
@click.option("-n", "--iterations", default=10, show_default=True, type=click.IntRange(min=1),
              help="Timed calls per stack at least (interleaved: rounds).")
@click.option("--min-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0),
              help="Timed seconds at least (interleaved: the whole run; sequential: each stack).")
@click.option("--max-seconds", default=300.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop adding calls after this many timed seconds (caps --target-ci).")
@click.option("--target-ci", default=None, metavar="PCT",
              help="Keep measuring until every speedup's 95% interval is within +-PCT of it "
                   "(e.g. 5%), or --max-seconds pass.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0),
              help="Untimed warm-up calls per stack before timing (the protocol asks for 2 at "
                   "least; fewer is allowed, and each record says so in its caveats).")
@click.option("--margin", default="5%", show_default=True, metavar="PCT",
              help="Practical margin of 'equivalent': a speedup whose whole interval lies within "
                   "+-PCT of no change reads as equivalent.")
@click.option("--block", default=1, show_default=True, type=click.IntRange(min=1),
              help="Interleaved: calls of one stack in a row within a round.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (default: one per core). Use 1 when other work shares the CPU.")
@click.option("-q", "--quality-images", default=None, type=click.IntRange(min=0),
              help="Images generated apart from the timing for quality (default: 200; 16 on "
                   "random-weight arch: models, where only fidelity to their baseline means "
                   "something).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Run directory (default: runs/<model>-<time>).")
@click.option("--baseline-src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Another accelbench checkout: measure every stack with both "
              "trees, in worker processes, interleaved (its records go to OUT/baseline).")
@click.option("--current-src", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="With --baseline-src: the tree of the current side (default: "
              "the checkout you are in, else the installed one).")
@click.option("--sample-interval", default=0.05, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds between memory/power samples.")
@click.option("--no-flops", is_flag=True, help="Do not count FLOPs per step (saves one call per stack).")
@click.option("--no-cache", is_flag=True, help="Recompute the baseline images.")
@click.option("--allow-download", is_flag=True, help="Let hf: models download their weights.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run code that ships with a hub pipeline (off unless you ask).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--no-report", is_flag=True, help="Do not write report.html into the run directory.")
@click.option("--real-images", "real_images_dir", default=None,
              type=click.Path(exists=True, file_okay=False),
              help="Folder of real images for Inception FID/KID on hf: models.")
@click.option("--clip-backbone", default=None,
              help="CLIP model of the CLIP score on hf: models (hub id or local folder; default "
                   "openai/clip-vit-large-patch14). Scores of different backbones don't compare.")
def run_cmd(model, strategies, device, dtype, batch_size, steps, resolution, schedule, iterations,
            min_seconds, max_seconds, target_ci, warmup, margin, block, threads, quality_images, out_dir,
            baseline_src, current_src, sample_interval, no_flops, no_cache, allow_download,
            trust_remote_code, quiet, no_report=False, real_images_dir=None,
            clip_backbone=None) -> None:
    """Measure strategy stacks on a model and write a run directory.

    The baseline is always measured too; every stack is timed (interleaved with the others
    by default), then scored against the baseline's images (same prompts and seeds).
    Exit status: 0 done, 1 some stack failed, 2 bad input or nothing could run.
    """
    from bench import smoke
    from bench.config import DEFAULT_STRATEGIES, RunConfig, TimingConfig
    from bench.engine import Engine, plan_stacks
    from bench.gate import parse_fraction
    from bench.quality.config import DEFAULT_CLIP_BACKBONE, QualityConfig
    from bench.summary import schedule_line, slower_lines, summary_table, verdict_note
    from bench.sweep import parse_resolution

    iterations, warmup = smoke.cap("iterations", iterations), smoke.cap("warmup", warmup)
    min_seconds, quality_images = smoke.cap("min_seconds", min_seconds), smoke.cap("quality_images", quality_images)
    latest = out_dir is None
    if out_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{model.replace(':', '-').replace('/', '-').replace('@', '-')}-{stamp}"
    config = RunConfig(
        model=model,
        strategies=tuple(strategies) or DEFAULT_STRATEGIES,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        steps=steps,
        resolution=parse_resolution(resolution) if resolution else None,
        timing=TimingConfig(
            warmup=warmup,
            min_iterations=iterations,
            min_seconds=min_seconds,
            max_iterations=max(200, iterations),
            max_seconds=max(max_seconds, min_seconds),
            target_ci=parse_fraction(target_ci, "--target-ci") if target_ci else None,
        ),
        quality_images=quality_images,
        sample_interval_s=sample_interval,
        out_dir=out_dir,
        trust_remote_code=trust_remote_code,
        allow_download=allow_download,
        use_cache=not no_cache,
        quality=QualityConfig(
            real_images_dir=real_images_dir,
            clip_backbone=clip_backbone or DEFAULT_CLIP_BACKBONE,
        ),
        schedule="interleaved" if baseline_src and schedule == "auto" else schedule,
        block=block,
        threads=threads,
        count_flops=not no_flops,
        baseline_src=str(baseline_src) if baseline_src else None,
        current_src=str(current_src) if current_src else None,
    )
    margin = parse_fraction(margin, "--margin")
    plan_stacks(config.strategies, device)  # fail on bad specs before loading anything
    started = time.perf_counter()
    result = Engine(config, show_progress=not quiet,
                    log=None if quiet else (lambda m: click.echo(m, err=True))).run()
    click.echo(schedule_line(result.schedule))
    click.echo(summary_table(result.records, margin))
    if verdict_note(result.records, margin):
        click.echo(verdict_note(result.records, margin))
    for line in slower_lines(result.records):
        click.echo(line)
    if result.baseline_records:
        click.echo(f"\nbaseline tree ({config.baseline_src}):")
        click.echo(summary_table(result.baseline_records))
    for warning in result.warnings:
        click.secho(f"\nwarning: {warning}", fg="yellow", err=True)
    if smoke.note():
        click.secho(f"\nnote: {smoke.note()}", fg="yellow", err=True)
    click.echo(f"\nresults: {out_dir / 'results.jsonl'}   ({time.perf_counter() - started:.0f} s)")
    if latest:
        _point_latest(out_dir)
    if not no_report:
        _write_run_report(out_dir)
    if any(r.get("status") == "failed" for r in result.records + result.baseline_records):
        sys.exit(1)


def _point_latest(out_dir: Path) -> None:
    """Make ``runs/latest`` point at the run just written (a relative symbolic link)."""
    link = out_dir.parent / "latest"
    try:
        if link.is_symlink() or link.exists():
            if not link.is_symlink():
                return  # a real folder of the user's: leave it alone
            link.unlink()
        link.symlink_to(out_dir.name, target_is_directory=True)
    except OSError:  # no symbolic links here: the path printed above is the way
        pass


def _write_run_report(out_dir: Path) -> None:
    """Write ``report.html`` into a finished run directory and print its path; a report
    that fails is a warning (the results are already safe on disk)."""
    from reports import build_report

    try:
        rep = build_report([out_dir], out_dir / "report.html")
    except Exception as exc:  # noqa: BLE001 - never lose a finished run to the report
        click.echo(f"warning: report not written ({type(exc).__name__}: {exc}); "
                   f"retry with `accelbench report {out_dir}`", err=True)
        return
    click.echo(f"report:  {rep.path}")


@main.command("report")
@click.argument("run_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: RUN_DIR/report.html for one run, "
                   "./report.html for several).")
@click.option("--title", default=None, help="Title of the page.")
def report_cmd(run_dirs, out, title) -> None:
    """Build one self-contained HTML report from run directories (or results files).

    Pareto plots of latency and energy against every quality metric, a sortable table of
    every strategy, image grids, timings and the environment. With several runs, the first
    is the reference and each other run is compared with it, strategy by strategy
    (Mann-Whitney U on the raw latencies). Needs no torch.
    """
    from reports import build_report

    if out is None:
        single = len(run_dirs) == 1 and run_dirs[0].is_dir()
        out = run_dirs[0] / "report.html" if single else Path("report.html")
    rep = build_report(run_dirs, out, title=title)
    click.echo(f"report: {rep.path}   ({rep.entries} records, {rep.figures} figures, "
               f"{rep.grids} image grids, {rep.seconds:.1f} s)")


EPILOG_GATE = """\b
Examples:
  accelbench gate runs/pr --baseline runs/main -Q psnr:-1 -Q fid:+10%
  accelbench gate pr.json --baseline main.json           (pytest-benchmark JSON)
  accelbench run -s steps:n=10 -o runs/ci && \\
  accelbench gate runs/ci --baseline tests/benchmarks/baseline/digits-unet.json --latency speedup
      speedups measured interleaved now, against a committed baseline file
  accelbench run --baseline-src ../main-checkout -s bf16 -o runs/pr && \\
  accelbench gate runs/pr --baseline runs/pr/baseline
      this tree against another checkout, both measured in one interleaved run
  accelbench gate runs/pr --reference-strategy baseline --latency absolute
      every stack of one run against its baseline stack, round by round
  accelbench gate runs/pr --save-baseline baseline.json   (refresh a committed baseline)

`accelbench run` measures; the gate only judges. Exit status: 0 pass, 1 regression,
2 usage error (or inputs that cannot be compared).
"""


@main.command("gate", epilog=EPILOG_GATE)
@click.argument("current", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--baseline", "baselines", multiple=True, type=click.Path(exists=True, path_type=Path),
              help="Run directory, results.jsonl, pytest-benchmark JSON or gate baseline file "
                   "(repeatable).")
@click.option("--reference-strategy", default=None, metavar="SPEC",
              help="Instead of --baseline: compare every other stack of CURRENT with this stack "
                   "of the same run (e.g. baseline).")
@click.option("--max-slowdown", default="10%", show_default=True,
              help="Relative slowdown tolerated (10% or 0.10); larger ones count only if significant.")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Significance level of the latency test, and the false discovery rate held "
                   "over all latency checks.")
@click.option("--margin", default="5%", show_default=True, metavar="PCT",
              help="Practical margin of 'equivalent' (a change whose interval lies within +-PCT).")
@click.option("--latency", "latency_mode", type=click.Choice(["absolute", "speedup", "off"]),
              default="absolute", show_default=True,
              help="Compare latencies (absolute), each stack's speedup over its own run's "
                   "baseline (speedup: holds across machines), or not at all.")
@click.option("--test", "latency_test", type=click.Choice(["auto", "mann-whitney"]), default="auto",
              show_default=True, help="auto: stacks of one interleaved run are compared round by "
                                      "round (paired); mann-whitney: always unpaired.")
@click.option("-Q", "--quality", "quality_rules", multiple=True,
              help="Quality rule (repeatable): psnr:-1, fid:+10%, ssim:0.02, adherence>=0.7, fid<=40.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the machine-readable verdict here.")
@click.option("--save-baseline", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write CURRENT as a gate baseline file to commit.")
@click.option("--allow-settings-change", is_flag=True,
              help="Compare entries whose steps, resolution, dtype, threads, quality images, "
                   "batch size or device differ (by default that is exit 2, naming them).")
def gate_cmd(current, baselines, reference_strategy, max_slowdown, alpha, margin, latency_mode,
             latency_test, quality_rules, json_out, save_baseline, allow_settings_change) -> None:
    """Compare CURRENT with --baseline and exit 0 (pass), 1 (regression) or 2 (usage error).

    CURRENT and the baseline are run directories, results.jsonl files, pytest-benchmark JSON
    files or gate baseline files; entries are matched by model, strategy and batch size, and
    two entries whose settings differ (steps, resolution, dtype, threads, quality images, batch
    size, device) are not compared: exit 2 naming them, unless --allow-settings-change. A
    slowdown beyond --max-slowdown counts only when it is also called slower: two stacks of one
    interleaved run are compared round by round (sign test on per-round ratios), two separate
    runs through each run's machine-speed probe (the machine's change divided out), others
    with Mann-Whitney U, or by non-overlapping 95% intervals where raw samples were not kept;
    the false discovery rate is held at --alpha over the latency checks. Quality rules use
    each metric's declared direction; quality is deterministic for fixed seeds, so it needs no
    test.
    """
    from bench import gate as gatelib

    rules = gatelib.Rules(
        latency=latency_mode,
        max_slowdown=gatelib.parse_fraction(max_slowdown, "--max-slowdown"),
        margin=gatelib.parse_fraction(margin, "--margin"),
        alpha=alpha,
        quality=tuple(gatelib.QualityRule.parse(r) for r in quality_rules),
        test=latency_test,
        allow_settings_change=allow_settings_change,
    )
    if reference_strategy and baselines:
        raise click.UsageError("give either --baseline or --reference-strategy, not both")
    if save_baseline:
        entries = gatelib.read_many(current)
        click.echo(f"baseline written: {gatelib.save_baseline(entries, save_baseline)}")
        if not baselines and not reference_strategy and not rules.quality:
            return
    if reference_strategy:
        verdict = gatelib.gate_against_reference(current, reference_strategy, rules)
    else:
        verdict = gatelib.gate_paths(current, baselines or None, rules)
    click.echo(gatelib.format_table(verdict))
    if json_out:
        click.echo(f"verdict: {gatelib.write_verdict(verdict, json_out)}", err=True)
    sys.exit(verdict.exit_code)


EPILOG_MATRIX = """\b
Examples:
  accelbench matrix --out runs/matrix
      every strategy on every tiny architecture model (arch:<family>@tiny), on the CPU
  accelbench matrix -m arch:sdxl@tiny -m arch:flux@tiny -s deepcache -s fbcache --out runs/m
  accelbench matrix -m arch:sdxl -m arch:flux --device cuda --out runs/matrix-gpu
  accelbench matrix --out docs/matrix --readme README.md   (refresh the README's table)

Exit status: 0 no cell failed, 1 some cell failed, 2 bad input.
"""


@main.command("matrix", epilog=EPILOG_MATRIX)
@click.option("-m", "--model", "models", multiple=True,
              help="Model (repeatable; default: every arch:<family>@tiny).")
@click.option("-s", "--strategy", "strategies", multiple=True,
              help="Stack (repeatable; default: every strategy with its defaults, plus "
                   "bf16+compile).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for matrix.json, matrix.md and one run directory per model.")
@click.option("-d", "--device", default="cpu", show_default=True, help="cpu, cuda...")
@click.option("-n", "--iterations", default=8, show_default=True, type=click.IntRange(min=6),
              help="Timed calls per stack (paired interleaved rounds; 6 at least, the fewest "
                   "whose interval of the median reaches 95%).")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0),
              help="Untimed calls per stack first (compile happens here; the protocol asks "
                   "for 2 at least, and fewer is recorded as a caveat).")
@click.option("-q", "--quality-images", default=2, show_default=True, type=click.IntRange(min=0),
              help="Images per stack for PSNR against the baseline.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads.")
@click.option("--readme", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also write the table into this README between its matrix markers.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def matrix_cmd(models, strategies, out_dir, device, iterations, warmup, quality_images, threads,
               readme, quiet) -> None:
    """Run every strategy on every architecture model: ok (speedup, PSNR), n/a (why), FAILED.

    Architecture models are the real pipeline classes with random weights, so speedups are
    real and PSNR is a numerical deviation; strategies that decide from the activations
    (adaptive caching) are marked as not representative there.
    """
    from bench import matrix, smoke
    from bench.engine import plan_stacks

    iterations, warmup = smoke.cap("iterations", iterations), smoke.cap("warmup", warmup)
    quality_images = smoke.cap("quality_images", quality_images)
    models = list(models) or matrix.default_models()
    stacks = list(strategies) or matrix.default_strategies()
    plan_stacks(stacks, device)  # bad specs fail before anything loads
    for m in models:
        from bench.models.registry import get_model_info

        get_model_info(m)
    log = None if quiet else (lambda msg: click.echo(msg, err=True))
    cells = matrix.run_matrix(models, stacks, out_dir, device=device, iterations=iterations,
                              warmup=warmup, quality_images=quality_images, threads=threads,
                              log=log, show_progress=not quiet)
    click.echo(matrix.markdown(cells))
    click.echo(f"matrix: {out_dir / 'matrix.json'}, {out_dir / 'matrix.md'}")
    if readme:
        command = "accelbench " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["matrix"] else "accelbench matrix"
        matrix.update_readme(readme, cells, command)
        click.echo(f"table written into {readme}")
    sys.exit(1 if any(c.status == "failed" for c in cells) else 0)


EPILOG_TUNE = """\b
Examples:
  accelbench tune --constraint "adherence>=0.97" --constraint "fid<=floor" --budget 30m
      the fastest stack of digits-unet whose adherence and FID stay within the baseline's
  accelbench tune --model digits-dit --objective energy --constraint "psnr>=30" --budget 1h
  accelbench tune --budget 20m                     (no constraint: the Pareto front)
  accelbench tune --executor ray --address auto --storage postgresql://db/optuna ...

\b
Constraints: METRIC>=VALUE or METRIC<=VALUE on a quality metric (psnr, ssim, adherence,
fid, kid, lpips, clip_score). VALUE "floor" means within the baseline's noise band: the
baseline's value measured the same way, minus (adherence) or plus (fid, kid) two standard
deviations of what real images score at that number of images.

Run the same command again to continue the search (the study lives in OUT/study.db).
"""


@main.command("tune", epilog=EPILOG_TUNE)
@click.option("-m", "--model", default="digits-unet", show_default=True, help="Model to tune.")
@click.option("-c", "--constraint", "constraints", multiple=True,
              help="Quality floor (repeatable): adherence>=0.97, fid<=floor, psnr>=30.")
@click.option("--objective", type=click.Choice(["latency", "energy", "memory"]), default="latency",
              show_default=True, help="What to minimise, per image.")
@click.option("--budget", default="30m", show_default=True,
              help="Wall time of this invocation: 30m, 1h, 900s.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Tune folder (default: runs/tune-<model>).")
@click.option("--storage", default=None,
              help="Optuna storage URL for the study (default: sqlite in the tune folder).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where trials run: processes here, or Ray tasks.")
@click.option("--address", default=None, help="[ray] Cluster address (auto, host:6379, ray://host:10001).")
@click.option("-j", "--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Trials at once.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads per trial.")
@click.option("-d", "--device", default="cpu", show_default=True)
@click.option("-b", "--batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("-s", "--strategy", "strategies", multiple=True,
              help="Search only these strategies (repeatable; default: every registered one).")
@click.option("--allow-training", is_flag=True,
              help="Let strategies that train join (each configuration trains once; cached).")
@click.option("--trials", "max_trials", type=click.IntRange(min=1), default=None,
              help="Stop after this many trials in the study.")
@click.option("--promote", default=3, show_default=True, type=click.IntRange(min=1),
              help="Candidates measured in full at the end.")
@click.option("--cheap-images", default=200, show_default=True, type=click.IntRange(min=2),
              help="Quality images of each trial: the constraints are judged at this count, so "
                   "the same as --full-images keeps a trial's verdict in the final measurement "
                   "(fewer make trials cheaper and looser: FID's noise band widens).")
@click.option("--full-images", default=200, show_default=True, type=click.IntRange(min=2),
              help="Quality images of the final measurement.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def tune_cmd(model, constraints, objective, budget, out_dir, storage, executor, address, workers,
             threads, device, batch_size, strategies, allow_training, max_trials, promote,
             cheap_images, full_images, quiet) -> None:
    """Search strategy stacks for the fastest (or leanest) one above quality floors.

    Every trial is measured cheaply (a few calls interleaved with the baseline, a few quality
    images); the best candidates are then measured in full, interleaved together, and that
    measurement is the answer. Exit status: 0 found one, 1 nothing met the constraints,
    2 bad input.
    """
    from bench import smoke, tune
    from bench.summary import tune_summary

    budget_s = smoke.cap("budget_s", tune.parse_budget(budget))
    max_trials = smoke.cap("trials", max_trials) if max_trials else (smoke.CAPS["trials"] if smoke.active() else None)
    cheap_images, full_images = smoke.cap("cheap_images", cheap_images), smoke.cap("full_images", full_images)

    if out_dir is None:
        out_dir = Path("runs") / f"tune-{model.replace(':', '-').replace('/', '-').replace('@', '-')}"
    config = tune.TuneConfig(
        model=model, constraints=tuple(tune.Constraint.parse(c) for c in constraints),
        objective=objective, budget_s=budget_s, out_dir=out_dir, storage=storage,
        executor="ray" if address else executor, address=address, workers=workers,
        threads=threads, device=device, batch_size=batch_size, allow_training=allow_training,
        strategies=tuple(strategies) or None, max_trials=max_trials, promote=promote,
        cheap_quality_images=cheap_images, full_quality_images=full_images,
        **({"cheap_iterations": smoke.cap("iterations", 6), "full_iterations": smoke.cap("iterations", 10)}
           if smoke.active() else {}),
    )
    for s in config.strategies or ():
        from strategies.registry import get_strategy

        get_strategy(s)
    result = tune.run(config, log=None if quiet else (lambda m: click.echo(m, err=True)))
    click.echo(tune_summary(result.as_dict()))
    click.echo(f"\ntune folder: {out_dir}   (study {config.study_name}; run the same command to continue)")
    sys.exit(0 if result.best or not config.constraints else 1)


EPILOG_SWEEP = """\b
Examples:
  accelbench sweep --example > sweep.toml      a commented sweep file to start from
  accelbench sweep sweep.toml                  run it; run it again to resume
  accelbench sweep sweep.toml --dry-run        validate and list the jobs, run nothing
  accelbench sweep sweep.toml -j 2 --timeout 600
  accelbench sweep sweep.toml --retry-failed   run the jobs that failed once more
  accelbench sweep sweep.toml --address auto   as Ray tasks on a running Ray cluster

\b
Each job (model, settings, stack) runs in its own process and times the baseline itself
just before its stack, so its speedup is against the same machine and process. A crash,
an out-of-memory kill or a hang past the time limit becomes a failed row and the sweep
goes on. Exit status: 0 every job recorded, 1 some failed, 2 a bad sweep file.
"""


@main.command("sweep", epilog=EPILOG_SWEEP)
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--example", is_flag=True, help="Print a commented example sweep file and exit.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder (default: the file's `out`, else runs/sweep-<name>).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Where jobs run: processes here (local; default) or Ray tasks (ray).")
@click.option("--address", default=None,
              help="[ray] Cluster address: auto, host:6379 or ray://host:10001 (default: "
                   "$RAY_ADDRESS, else a Ray instance started here). Implies --executor ray.")
@click.option("-j", "--workers", type=click.IntRange(min=1), default=None,
              help="[local] Jobs at once (default: the file's [jobs] workers, else 1).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads per job; on Ray also its CPUs (default: cores / workers; Ray: 1).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds a job may run before it is killed (default: the file's [jobs] timeout_s).")
@click.option("--retry-failed", is_flag=True, help="Run the jobs whose record is a failure again.")
@click.option("--dry-run", is_flag=True, help="Validate and list the jobs; run nothing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--verbose", is_flag=True, help="[ray] Let Ray's own log lines through.")
def sweep_cmd(sweep_file, example, out_dir, executor, address, workers, threads, timeout,
              retry_failed, dry_run, quiet, verbose) -> None:
    """Run a sweep file: models x settings x strategy stacks, each job isolated.

    The whole sweep is expanded and validated before any model loads. Records go to
    SWEEP_FOLDER/results.jsonl (read them with bench.results.load or `accelbench report`).
    """
    import dataclasses

    from bench import sweep as sweeplib
    from bench.executors import driver, make_executor

    if example:
        click.echo(sweeplib.EXAMPLE, nl=False)
        return
    if sweep_file is None:
        raise click.UsageError("give a SWEEP_FILE (or --example to print one)")
    if address and executor == "local":
        raise click.UsageError("--address is for --executor ray")
    executor = executor or ("ray" if address else "local")
    from bench import smoke

    spec = sweeplib.load(sweep_file, out_dir=out_dir)
    changes = {k: v for k, v in (("workers", workers), ("threads", threads),
                                 ("timeout_s", timeout)) if v is not None}
    if smoke.active():
        timing = dict(spec.timing)
        timing.update(warmup=smoke.cap("warmup", timing.get("warmup", 2)),
                      min_iterations=smoke.cap("iterations", timing.get("min_iterations", 10)),
                      min_seconds=0.0)
        changes.update(timing=timing, quality_images=smoke.cap("quality_images", spec.quality_images))
    spec = dataclasses.replace(spec, **changes)
    ex = make_executor(executor, workers=spec.workers, threads=spec.threads, address=address,
                       verbose=verbose)
    try:
        plan = sweeplib.validate(spec, check_devices=ex.checks_devices_locally)
        for warning in plan.warnings:
            click.echo(f"warning: {warning}", err=True)
        if dry_run:
            click.echo(driver.plan_table(plan, retry_failed))
            return
    except BaseException:
        ex.close()
        raise
    bar = None

    def on_start(todo, skipped):
        nonlocal bar
        from tqdm.auto import tqdm

        click.echo(f"sweep {spec.name}: {len(plan.jobs)} jobs ({len(skipped)} already recorded, "
                   f"{len(todo)} to run) on {executor}; folder {spec.out_dir}", err=True)
        bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=quiet or not todo)

    def on_done(outcome):
        if outcome.status == "failed":
            bar.write(f"FAILED {outcome.job.label}: {str(outcome.record.get('error'))[:160]}",
                      file=sys.stderr)
        bar.set_postfix_str(f"{outcome.job.strategy[:24]}: {outcome.status}")
        bar.update(1)

    try:
        result = driver.run_plan(plan, ex, retry_failed=retry_failed, on_start=on_start,
                                 on_done=on_done)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: finished jobs are recorded; run the same command to resume",
                   err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
    click.echo(driver.summary(result))
    sys.exit(1 if result.failed else 0)


if __name__ == "__main__":
    main()
