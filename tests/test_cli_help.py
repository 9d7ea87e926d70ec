"""`softprompt <command> --help` is a reference: every flag says what it means and its default, and the
flags that are config keys take their text from the documented config field (one source)."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from softprompt.cli import build_parser, main
from softprompt.commands.reference import add_config_flags
from softprompt.config import describe, option, undocumented
from softprompt.errors import ConfigError
from softprompt.methods.config import LoraSettings, MethodConfig
from softprompt.serve.config import ServeSettings
from softprompt.train.config import TrainConfig

DOCUMENTED_CONFIGS = [TrainConfig, MethodConfig, LoraSettings, ServeSettings]

# "<command> <flag>" -> why its help is still missing (none today)
ALLOWED_WITHOUT_HELP: dict[str, str] = {}


def parsers(parser: argparse.ArgumentParser, name: str = ""):
    """(command path, parser) for every (sub)command, nested ones too (`data stats`)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}".strip())


def flag_helps():
    """(command, flag, action, help as printed) for every optional flag of every command but --help."""
    for command, parser in parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            printed = formatter._expand_help(action) if action.help else ""  # as --help prints it
            yield command, action.option_strings[-1], action, " ".join(printed.split())


def test_every_flag_of_every_command_explains_itself_and_its_default():
    bad = []
    for command, flag, action, text in flag_helps():
        key = f"{command} {flag}"
        if key in ALLOWED_WITHOUT_HELP:
            continue
        if not action.help or not action.help.strip():
            bad.append(f"{key}: no help")
        elif re.fullmatch(r"\(config key: \w+\)", action.help.strip()):
            bad.append(f"{key}: only names its config key")
        elif "default" not in text.lower():
            bad.append(f"{key}: no default shown ({text!r})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("cls", DOCUMENTED_CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_is_documented(cls):
    assert undocumented(cls) == [], f"declare these {cls.__name__} fields with option(help=...): {undocumented(cls)}"


def test_a_field_without_documentation_fails_the_check():
    @dataclasses.dataclass
    class Sample:
        rate: float = option(0.1, help="how fast", unit="per step")
        plain: int = 3

    assert undocumented(Sample) == ["plain"]
    with pytest.raises(ConfigError, match="Sample.plain has no documentation"):
        describe(Sample, "plain")
    with pytest.raises(ConfigError, match="no documentation"):
        add_config_flags(argparse.ArgumentParser(), Sample)


def test_train_flags_come_from_the_config_fields(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # argparse wraps at hyphens otherwise ("fpb- binary")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert " ".join(describe(TrainConfig, f.name).split()) in out, f.name
    assert "(config key:" not in out
    # meaning, unit, allowed values and default, as written in the field's documentation
    assert ("--cache-max-gb FLOAT memory budget of that cache; unit: GiB; default: 4.0") in out
    assert "--mixed-precision {no,bf16,fp16}" in out and "one of: no, bf16, fp16; default: no" in out
    assert "--lr FLOAT learning rate of the prompt producer; default: unset (the producer class's default)" in out
    assert "--adam-betas [FLOAT, FLOAT] AdamW betas [beta1, beta2]; default: [0.9, 0.98]" in out
    assert "--method VALUE" in out and "prompt-tuning" in out and "default: id-spam" in out
    assert "10% of the training rows" in out  # a literal % survives argparse's formatting


def test_describe_states_meaning_unit_values_and_default():
    assert describe(TrainConfig, "eval_every") == ("evaluate every this many steps; 0: once per epoch; "
                                                   "unit: optimizer steps; default: 0")
    assert describe(TrainConfig, "cache").endswith("one of: auto, none, memory; default: auto")
    assert describe(TrainConfig, "bucket").endswith("one of: true, false; default: true")
    assert describe(TrainConfig, "epochs", "5").endswith("default: 5")


def test_commands_reusing_a_config_key_show_their_own_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert describe(TrainConfig, "train_limit", "4000").split(";")[0] in out
    assert "unit: examples; default: 4000" in out
    assert "default: runs/demo" in out


def test_flags_still_parse_into_the_config():
    from softprompt.commands._common import config_from_args

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--lr", "1e-3", "--cache", "none", "--adam-betas", "[0.8, 0.9]", "--bucket", "false",
                              "--method", "prompt-tuning", "--backbone", "tiny-bert"])
    cfg = config_from_args(args)
    assert (cfg.lr, cfg.cache, cfg.adam_betas, cfg.bucket, cfg.method.name) == (1e-3, "none", (0.8, 0.9), False,
                                                                                 "prompt-tuning")
