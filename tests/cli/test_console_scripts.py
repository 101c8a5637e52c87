"""The console commands of setup.py: each names a callable ``main`` whose ``--help`` is its script's."""
import ast
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"skinformer-train": "tools/train_net.py", "skinformer-predict": "tools/predict.py",
            "skinformer-evaluate": "tools/evaluate.py", "skinformer-validate": "tools/validate_dataset.py",
            "skinformer-demo": "demo/app.py"}


def console_scripts():
    """``CONSOLE_SCRIPTS`` of setup.py (a literal dict; setup.py itself cannot be imported)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONSOLE_SCRIPTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no CONSOLE_SCRIPTS")


def test_every_command_is_declared_and_resolves_to_a_callable():
    scripts = console_scripts()
    assert sorted(scripts) == sorted(COMMANDS)
    for name, target in scripts.items():
        main = EntryPoint(name, target, "console_scripts").load()
        assert callable(main), name
        assert main.__name__ == "main", target


def _help(main, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_names_its_options(name, capsys):
    """Each command answers ``--help`` like its script: the options of its documented usage."""
    expected = {"skinformer-train": ["--config-file", "--resume", "--eval-only", "--num-gpus", "opts"],
                "skinformer-predict": ["--config-file", "--input", "--output", "--threshold", "opts"],
                "skinformer-evaluate": ["--gt-dir", "--pred-dir", "--metric", "--output", "--pred-suffix"],
                "skinformer-validate": ["--dataset", "--definitions", "--max"],
                "skinformer-demo": ["--config-file", "--port", "--compare-config", "opts"]}[name]
    main = EntryPoint(name, console_scripts()[name], "console_scripts").load()
    out = _help(main, capsys)
    for flag in expected:
        assert flag in out, (name, flag)


def test_script_and_module_give_the_same_help():
    """``python tools/evaluate.py`` and ``python -m skinformer.cli.evaluate`` are one program."""
    runs = [subprocess.run([sys.executable, *cmd, "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT)
            for cmd in ([str(ROOT / "tools" / "validate_dataset.py")], ["-m", "skinformer.cli.validate"])]
    for r in runs:
        assert r.returncode == 0, r.stderr
    # the usage paragraph names (and wraps around) the program; everything after it is the same
    assert runs[0].stdout.split("\n\n", 1)[1] == runs[1].stdout.split("\n\n", 1)[1]
    assert "--definitions" in runs[0].stdout
