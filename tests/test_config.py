"""Config schema: YAML + _base_ + dotted overrides, typed by the schema; unknown keys are errors; recipes load."""

from __future__ import annotations

from pathlib import Path

import pytest

from edvr.config import Config, load_config
from edvr.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_overrides_are_typed_by_the_schema(tmp_path):
    p = write(tmp_path / "r.yaml", "name: r\ndata: {train: {name: videos, root: /x}}\ntrain: {lr: 4e-4}\n")
    cfg = load_config(p, ["train.lr=2e-4", "train.iterations=5e3", "train.periods=[2000, 3000]",
                          "train.restart_weights=1,0.5", "model.with_tsa=false", "model.center_frame_idx=null",
                          "train.betas=[0.9, 0.999]", "data.train.root=/data/REDS", "data.train.options.gt_size=128"])
    assert cfg.train.lr == 2e-4 and isinstance(cfg.train.lr, float)  # YAML 1.1 alone reads "2e-4" as text
    assert cfg.train.iterations == 5000 and isinstance(cfg.train.iterations, int)
    assert cfg.train.periods == [2000, 3000] and cfg.train.restart_weights == [1.0, 0.5]
    assert cfg.model.with_tsa is False and cfg.model.center_frame_idx is None
    assert cfg.train.betas == (0.9, 0.999)
    assert cfg.data.train.root == "/data/REDS" and cfg.data.train.options == {"gt_size": 128}


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=1", "unknown config key train.lrr (known in train: iterations, lr,"),
    ("modle.num_feat=8", "unknown config key modle (known in the top level: name, model, data, train, logging)"),
    ("train.iterations=many", "train.iterations: expected an integer, got 'many'"),
    ("train.amp=fp8", "train.amp: 'fp8' is not one of off, bf16, fp16"),
    ("model.num_feat=20", "model: num_feat 20 is not a multiple of deformable_groups 8"),
    ("model.center_frame_idx=5", "model: center_frame_idx 5 is outside 0..4"),
    ("train.lr", "is not of the form section.key=value"),
    # Values of the right type but out of range once crashed deep in training, or trained wrongly (gradient ascent).
    ("model.num_feat=-32", "model: num_feat must be >= 1, got -32"),
    ("model.deformable_groups=0", "model: deformable_groups must be >= 1, got 0"),
    ("model.dcn_backend=bogus", "unknown deformable-conv backend 'bogus'"),
    ("train.lr=-1", "train.lr must be > 0, got -1"),
    ("train.eta_min=-1", "train.eta_min must be >= 0, got -1"),
    ("train.betas=[2,3]", "train.betas[0] must be >= 0 and < 1, got 2"),
    ("train.ema_decay=2", "train.ema_decay must be >= 0 and < 1, got 2"),
    ("train.grad_clip=-1", "train.grad_clip must be >= 0, got -1"),
    ("train.periods=[0]", "train.periods must be >= 1, got 0"),
    ("data.num_workers=-1", "data.num_workers must be >= 0, got -1"),
    ("logging.print_interval=0", "logging.print_interval must be >= 1, got 0"),
])
def test_bad_keys_and_values_name_the_key(override, fragment):
    with pytest.raises(InputError) as e:
        load_config(None, ["data.train.name=videos", "train.periods=[600000]", "train.restart_weights=[1]",
                           override])
    assert fragment in str(e.value)


def test_yaml_off_is_the_word_off(tmp_path):
    # YAML 1.1 reads a bare off as false; a choice that has "off" takes it as the word.
    p = write(tmp_path / "r.yaml", "data: {train: {name: videos}}\ntrain: {amp: off, periods: [10], "
                                   "restart_weights: [1], iterations: 10}\n")
    assert load_config(p).train.amp == "off"
    assert load_config(p, ["train.amp=bf16"]).train.amp == "bf16"
    assert load_config(p, ["train.amp=bf16", "train.amp=off"]).train.amp == "off"


def test_without_pyyaml_a_config_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    p = write(tmp_path / "r.yaml", "name: r\n")
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # what a plain `pip install edvr` has
    with pytest.raises(InputError, match=r"pip install 'edvr\[train\]'"):
        load_config(p)


def test_unknown_key_in_yaml_and_cross_field_checks(tmp_path):
    p = write(tmp_path / "r.yaml", "model: {num_feats: 8}\n")
    with pytest.raises(InputError, match=r"unknown config key model\.num_feats \(known in model: num_feat,"):
        load_config(p)
    p = write(tmp_path / "s.yaml", "data: {train: {name: videos}}\ntrain: {iterations: 10, periods: [5]}\n")
    with pytest.raises(InputError, match="train.periods has 1 entries but train.restart_weights has 4"):
        load_config(p)
    with pytest.raises(InputError, match="sum to 5, fewer than train.iterations 10"):
        load_config(p, ["train.restart_weights=[1]"])


def test_base_inheritance_merges_sections(tmp_path):
    write(tmp_path / "base.yaml", "name: base\nmodel: {num_feat: 128, with_tsa: false}\n"
                                  "data: {train: {name: reds, root: /r}}\ntrain: {lr: 4e-4, seed: 1}\n")
    p = write(tmp_path / "child.yaml", "_base_: base.yaml\nname: child\nmodel: {with_tsa: true}\ntrain: {seed: 2}\n")
    cfg = load_config(p)
    assert (cfg.name, cfg.model.num_feat, cfg.model.with_tsa) == ("child", 128, True)
    assert (cfg.train.lr, cfg.train.seed, cfg.data.train.root) == (4e-4, 2, "/r")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(None, ["data.train.name=videos", "data.train.root=/v", "train.lr=1e-3",
                             "train.periods=[600000]", "train.restart_weights=[1]"])
    again = load_config(write(tmp_path / "resolved.yaml", cfg.to_yaml()))
    assert again == cfg


@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_recipe_loads_and_builds_its_model_config(recipe):
    from edvr.models.edvr import EDVRConfig

    cfg = load_config(CONFIGS / recipe)
    assert isinstance(cfg, Config)
    kwargs = cfg.model.model_kwargs()
    kwargs.pop("dcn_backend")
    EDVRConfig(**kwargs)  # the architecture arguments are valid
    first_line = (CONFIGS / recipe).read_text().splitlines()[0]
    assert first_line.startswith("#"), "each recipe opens with a comment saying what it reproduces"


@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_recipe_dataset_options_fit_the_dataset(recipe):
    import inspect

    from edvr.data import DATASETS

    cfg = load_config(CONFIGS / recipe)
    for d in (cfg.data.train, cfg.data.val):
        if d is not None and d.name:
            params = inspect.signature(DATASETS[d.name]).parameters
            assert [k for k in ("root", "num_frames", *d.options) if k not in params] == [], (d.name, d.options)


def test_model_config_has_exactly_the_architecture_fields():
    """ModelConfig repeats EDVRConfig's fields for YAML typing; this keeps the two in step."""
    import dataclasses

    from edvr.config import ModelConfig
    from edvr.models.edvr import EDVRConfig

    ours = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    arch = {f.name: f.default for f in dataclasses.fields(EDVRConfig) if f.name not in ("num_in_ch", "num_out_ch")}
    assert {k: v for k, v in ours.items() if k != "dcn_backend"} == arch


def test_a_recipe_not_in_utf8_is_one_line(tmp_path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: vid\xe9os\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin1.yaml: not UTF-8 text \(byte 9\); save the recipe as UTF-8"):
        load_config(recipe)


def test_cli_overrides_may_follow_the_options(capsys):
    """`edvr train CONFIG --print-config KEY=VALUE` once failed: unrecognized arguments."""
    from edvr.cli import main

    recipe = str(Path(__file__).parent.parent / "configs" / "tiny_cpu.yaml")
    assert main(["train", recipe, "--print-config", "data.batch_size=3"]) == 0
    assert "batch_size: 3" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", recipe, "--print-config", "--no-such-option"])
    with pytest.raises(SystemExit):
        main(["--threads", "abc", "models"])
    assert "--threads: 'abc': not an integer" in capsys.readouterr().err
    from edvr.training.command import main as module_main  # python -m edvr.training.command: the same parsing

    assert module_main([recipe, "--print-config", "data.batch_size=4"]) == 0
    assert "batch_size: 4" in capsys.readouterr().out
