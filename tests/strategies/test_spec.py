"""Parsing strategy specs and stacks, and the errors users see."""

import pytest

from strategies import StrategyError, get_strategy, list_strategies, parse_stack, parse_strategy


def test_plain_name_uses_defaults():
    s = parse_strategy("steps")
    assert s.config.n == 10
    assert s.spec == "steps:n=10"  # the defining knob is always shown
    assert parse_strategy("bf16").spec == "bf16"


def test_parameters_are_typed_and_canonical():
    s = parse_strategy(" steps:n=4 ")
    assert s.config.n == 4 and isinstance(s.config.n, int)
    assert s.spec == "steps:n=4"
    assert parse_strategy("scheduler:name=unipc").config.name == "unipc"


def test_unknown_strategy_suggests_close_names():
    with pytest.raises(StrategyError, match=r"unknown strategy 'bf61'.*did you mean 'bf16'"):
        parse_strategy("bf61")
    with pytest.raises(StrategyError, match="accelbench list"):
        get_strategy("zzzzzz")


def test_bad_values_name_the_allowed_range():
    with pytest.raises(StrategyError, match=r"steps: parameter n=0 is out of range; allowed: 1 to 1000"):
        parse_strategy("steps:n=0")
    with pytest.raises(StrategyError, match="not a valid int"):
        parse_strategy("steps:n=ten")
    with pytest.raises(StrategyError, match="one of ddim, dpm-solver"):
        parse_strategy("scheduler:name=magic")
    with pytest.raises(StrategyError, match=r"unknown parameter 'm'; parameters: n"):
        parse_strategy("steps:m=3")
    with pytest.raises(StrategyError, match="write name:key=value"):
        parse_strategy("steps:n")
    with pytest.raises(StrategyError, match="given twice"):
        parse_strategy("steps:n=3,n=4")


def test_stack_order_is_normalised():
    a = parse_stack("steps:n=8+bf16+scheduler:name=unipc")
    b = parse_stack("bf16+scheduler:name=unipc+steps:n=8")
    assert a.spec == b.spec == "bf16+scheduler:name=unipc+steps:n=8"


def test_incompatible_stacks_are_refused_with_reason():
    with pytest.raises(StrategyError, match="both set the precision"):
        parse_stack("bf16+fp16")
    with pytest.raises(StrategyError, match="appears twice"):
        parse_stack("steps:n=4+steps:n=5")
    with pytest.raises(StrategyError, match="stands alone"):
        parse_stack("baseline+bf16")
    with pytest.raises(StrategyError, match="empty strategy"):
        parse_stack("bf16++steps")


def test_every_registered_strategy_loads_and_parses_with_defaults():
    for name, summary in list_strategies():
        assert summary and not summary.startswith("(cannot be loaded"), name
        assert parse_strategy(name).name == name


def test_fp16_refused_on_cpu_without_native_support(monkeypatch):
    from strategies import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    stack = parse_stack("fp16")
    with pytest.raises(StrategyError, match="no native float16 arithmetic"):
        stack.check_device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_fp16"}))
    stack.check_device("cpu")  # accepted where the CPU computes fp16


def test_bf16_on_cuda_without_cuda_is_refused():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(StrategyError, match="CUDA is not available"):
        parse_stack("bf16").check_device("cuda")


def test_outside_packages_register_through_the_entry_point_group(monkeypatch):
    """A package's ``accelbench.strategies`` entry point is found by name, like a built-in."""
    from importlib.metadata import EntryPoint

    from strategies.core import registry

    ep = EntryPoint(
        name="plugin-baseline", value="strategies.baseline:Baseline", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else []
    )
    registry._entries.cache_clear()
    try:
        assert "plugin-baseline" in registry.names()
        assert get_strategy("plugin-baseline").__name__ == "Baseline"
    finally:
        monkeypatch.undo()
        registry._entries.cache_clear()
    assert "plugin-baseline" not in registry.names()


def test_the_package_exports_the_plugin_api_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys, strategies; "
        "from strategies import Strategy, StrategyConfig, StrategyError, StrategyStack, param; "
        "from bench.core.errors import StrategyError as E; assert StrategyError is E; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
