"""One settings model per stage: the command line is generated from it, recipes and the API use the same
flat option names, and --target and --quant reach the stages as typed settings."""

import pytest

from edgekit.errors import InputError
from edgekit.settings import (BenchConfig, BoardsCheckConfig, CompressConfig, DemoConfig, DistillConfig, InspectConfig,
                              ProfileConfig, QuantMode, ScanConfig, make_config, validated)

OWN = {"compress": {"--recipe", "--force", "--resume", "--json"}, "distill": {"--force", "--resume", "--json"},
       "prune scan": {"--force", "--json"}, "profile": {"--json"}, "bench": {"--json"}, "inspect": {"--json"},
       "demo": {"--force", "--json"}, "boards check": {"--json"}}
NEGATIVES = {"compress": {"--uniform-prune", "--observed-scales"}}


def _params(command: str) -> list:
    import typer

    from edgekit.cli import app

    found = typer.main.get_command(app)
    for word in command.split():
        found = found.commands[word]
    return found.params


def _options(command: str) -> set[str]:
    return {name for param in _params(command) for name in (*param.opts, *param.secondary_opts) if name.startswith("--")}


@pytest.mark.parametrize("command, config", [("compress", CompressConfig), ("distill", DistillConfig),
                                             ("prune scan", ScanConfig), ("profile", ProfileConfig),
                                             ("bench", BenchConfig), ("inspect", InspectConfig), ("demo", DemoConfig),
                                             ("boards check", BoardsCheckConfig)])
def test_every_option_is_a_settings_field(command, config):
    """The command's options are the settings fields' flags (plus its own --force/--resume/--json), so an
    option cannot be declared in the command without a field, nor a field go missing from the command."""
    fields = {f"--{name.replace('_', '-')}" for name, _ in config.cli_fields()}
    assert _options(command) == fields | NEGATIVES.get(command, set()) | OWN[command]


def test_help_shows_the_settings_default_and_choices():
    params = {p.name: p for p in _params("compress")}
    qad_epochs = CompressConfig.SECTIONS["qad"].model_fields["epochs"].default
    assert params["epochs"].help == f"QAD epochs. (default: {qad_epochs})"
    assert params["model"].help.endswith("(required)")
    assert params["epochs"].default is None  # not given: the recipe's value or the model's default applies


def test_flat_options_land_in_their_stage_sections():
    cfg = make_config(model="m", data="d", out="o", prune=0.5, prune_steps=2, calib="mse", epochs=2,
                      learn_scales=True, max_accuracy_drop=1.5, seed=3)
    assert (cfg.pruning.ratio, cfg.pruning.steps, cfg.pruning.budget) == (0.5, 2, 1.5)
    assert cfg.calibration.method == "mse" and cfg.qad.epochs == 2 and cfg.qad.learn_scales
    assert cfg.qad.seed == 3 and cfg.quant is QuantMode.QAD
    rebuilt = make_config(**{**cfg.flat(), "out": "o"})  # a recipe written from flat() rebuilds it
    assert rebuilt.model_dump() == cfg.model_dump() and cfg.quant_by_default and not rebuilt.quant_by_default


def test_distill_and_qad_share_the_training_knobs_with_their_own_defaults():
    d = validated(DistillConfig, dict(teacher="t", student="s", data="d", out="o"))
    c = make_config(model="m", data="d", out="o")
    assert type(c.qad).__mro__[1] is type(d.train)
    assert (d.train.epochs, c.qad.epochs) == (10, 6)


@pytest.mark.parametrize("options, message", [
    (dict(prune=1.5), "--prune 1.5 is outside [0, 1)"),
    (dict(calib="best"), "--calib:"),
    (dict(quant="int3"), "--quant:"),
    (dict(min_channels=0), "--min-channels 0 must be at least 1"),
    (dict(epochs=0), "--epochs 0 must be at least 1"),
    (dict(learning_rate=3), "--learning-rate is not a setting of edgekit compress"),
    (dict(feature_kd=["a"], quant="static"), "--feature-kd and --attention-kd train during QAD"),
    (dict(split="0,0.5,0.5"), "leaves no training samples"),
])
def test_bad_settings_name_their_option(options, message):
    with pytest.raises(InputError, match=None) as caught:
        make_config(model="m", data="d", out="o", **options)
    assert message in str(caught.value)


def test_missing_settings_are_named_together():
    with pytest.raises(InputError) as caught:
        make_config(data="d")
    assert "missing --model, --out" in str(caught.value)


@pytest.mark.parametrize("quant, stages", [
    ("qad", ["source", "calibrate", "qad", "export", "compile", "bench"]),
    ("static", ["source", "calibrate", "export", "compile", "bench"]),
    ("dynamic", ["source", "export", "compile", "bench"]),
    ("none", ["source", "export", "compile", "bench"]),
])
def test_the_quant_mode_decides_the_stages(quant, stages):
    from edgekit.runs.compress import build_stages
    from edgekit.target import load_target

    cfg = make_config(model="m", data="d", out="o", quant=quant)
    built = build_stages(cfg, load_target("x86-64"), is_onnx=False)
    assert [s.name for s in built] == stages
    assert next(s for s in built if s.name == "export").mode is QuantMode(quant)


@pytest.mark.parametrize("target, explicit, platform", [("jetson-orin-nano", True, None), ("arm64", False, "arm"),
                                                        ("x86-64", False, "amd64")])
def test_the_target_reaches_the_stages_typed(target, explicit, platform):
    from edgekit.runs.compress import build_stages
    from edgekit.target import load_target

    board = load_target(target)
    built = {s.name: s for s in build_stages(make_config(model="m", data="d", out="o", prune=0.25), board, False)}
    for name in ("calibrate", "qad", "export"):
        assert built[name].scheme is board.scheme
        assert built[name].scheme.explicit_quantization is explicit
    assert built["prune"].prune.round_to == board.round_to
    if platform:
        assert built["compile"].platform == platform


def test_export_refuses_dynamic_int8_for_tensorrt_before_anything_runs():
    from types import SimpleNamespace

    from edgekit.runs.compress import build_stages
    from edgekit.target import load_target

    board = load_target("jetson-orin-nano")
    export = next(s for s in build_stages(make_config(model="m", data="d", out="o", quant="dynamic"), board, False)
                  if s.name == "export")
    with pytest.raises(InputError, match="no dynamic INT8"):
        export.check(SimpleNamespace(target=board), None)
