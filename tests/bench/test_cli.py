"""The command line as a user meets it: help, listing, clear errors, a tiny real run."""

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.core import results


@pytest.fixture
def cli():
    return CliRunner()


def test_help_teaches_with_examples(cli):
    out = cli.invoke(main, ["run", "--help"])
    assert out.exit_code == 0
    assert "Examples:" in out.output and "--strategy" in out.output and "steps:n=10" in out.output


def test_list_shows_models_and_strategies(cli):
    out = cli.invoke(main, ["list"])
    assert out.exit_code == 0
    for name in ("digits-unet", "hf:", "baseline", "bf16", "fp16", "steps", "scheduler"):
        assert name in out.output


def test_describe_shows_parameters(cli):
    out = cli.invoke(main, ["describe", "scheduler"])
    assert out.exit_code == 0 and "dpm-solver" in out.output and "unipc" in out.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "digits-unte"], "unknown model 'digits-unte'; did you mean 'digits-unet'"),
        (["-s", "bf61"], "unknown strategy 'bf61'; did you mean 'bf16'"),
        (["-s", "steps:n=-1"], "out of range; allowed: 1 to 1000"),
        (["-s", "bf16+fp16"], "both set the precision"),
        (["--device", "cuda:7", "-s", "steps"], "CUDA is not available"),
        (["--model", "hf:/no/such/pipeline"], "no pipeline folder at /no/such/pipeline"),
        (["--model", "hf:nobody/not-downloaded"], "not in the local Hugging Face cache"),
    ],
)
def test_bad_input_gives_one_clear_line(cli, tmp_path, args, message):
    import torch

    if "cuda" in str(args) and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = cli.invoke(main, ["run", "-o", str(tmp_path / "r"), "--quiet", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert "Traceback" not in out.output


def test_fp16_refused_on_a_cpu_without_it(cli, tmp_path, monkeypatch):
    from strategies import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    out = cli.invoke(main, ["run", "-o", str(tmp_path / "r"), "-s", "fp16"])
    assert out.exit_code == 2
    assert "fp16 cannot run on cpu: this CPU has no native float16 arithmetic" in out.output


def test_tiny_run_writes_results_and_summary(cli, tmp_path):
    out_dir = tmp_path / "run"
    out = cli.invoke(
        main,
        ["run", "-s", "steps:n=3", "--steps", "4", "-b", "2", "-n", "2", "--warmup", "1",
         "--min-seconds", "0", "-q", "4", "-o", str(out_dir), "--quiet"],
    )
    assert out.exit_code == 0, out.output
    assert "speedup" in out.output and "steps:n=3" in out.output
    df = results.load(out_dir)
    assert list(df.strategy) == ["baseline", "steps:n=3"]
    assert (out_dir / "images").is_dir()


def test_bad_input_is_one_line_and_a_bug_is_a_traceback(cli, tmp_path, monkeypatch):
    """An AccelbenchError (bad input) exits 2 with one line; any other exception is a bug:
    its traceback is printed and the exit status is 3, so it never reads like a typo."""
    from bench.cli import gate as gate_command
    from bench.core.errors import EXIT_BUG, EXIT_INPUT

    bad = cli.invoke(main, ["gate", str(tmp_path), "-Q", "psnr=3"])
    assert bad.exit_code == EXIT_INPUT == 2
    assert bad.output.strip().startswith("error: bad quality rule") and "Traceback" not in bad.output

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(gate_command.gatelib, "gate_paths", broken)
    bug = cli.invoke(main, ["gate", str(tmp_path), "--baseline", str(tmp_path)])
    assert bug.exit_code == EXIT_BUG == 3
    assert "Traceback" in bug.output and "an internal invariant broke" in bug.output
    assert "internal error" in bug.output and not bug.output.startswith("error:")
