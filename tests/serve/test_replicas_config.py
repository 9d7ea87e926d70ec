"""`softprompt serve --replicas`: checked before anything starts (one line naming the flag, exit 2), and a
clear error where Ray Serve is not installed. The replicas themselves: tests/serve/test_replicas.py."""

from __future__ import annotations

import sys

from softprompt.commands.serve import main


def test_replicas_below_one_is_refused_naming_the_flag(tmp_path, capsys):
    assert main(["--base", "tiny-gpt2", "--prompts", str(tmp_path), "--replicas", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--replicas must be >= 1, got 0" in err


def test_replicas_without_ray_serve_say_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    monkeypatch.setitem(sys.modules, "softprompt.serve.replicas", None)
    assert main(["--base", "tiny-gpt2", "--prompts", str(tmp_path), "--replicas", "2"]) == 2
    err = capsys.readouterr().err
    assert "--replicas 2 needs Ray Serve: pip install 'softprompt[ray]'" in err
