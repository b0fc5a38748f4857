"""The vidtok command as a user runs it: exit codes, one-line errors, no tracebacks. `run` is a real
subprocess (startup, console script, lazy imports); `cli` runs the same entry point in this process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vidtok_cli import __version__

from .helpers import VIDTOK_REF, assert_one_line_error, cli, fixture_config, run


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"vidtok {__version__}"


def test_help_does_not_import_torch():
    code = (
        "import sys; from vidtok_cli.cli import app; import vidtok_cli.zoo; assert 'torch' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    proc = run("--help")
    assert proc.returncode == 0 and "models" in proc.stdout and "convert" in proc.stdout


def test_cli_package_import_is_light():
    code = (
        "import vidtok_cli.cli, sys; print('torch' in sys.modules, 'av' in sys.modules, 'numpy' in sys.modules, "
        "sorted(c.name for c in vidtok_cli.cli.app.registered_commands))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(" [")[0] == "False False False"
    assert "['bench', 'convert', 'decode', 'encode', 'export', 'info', 'models', 'train']" in proc.stdout


def test_console_script_installed():
    from shutil import which

    exe = which("vidtok")
    assert exe, "the vidtok console script is not on PATH"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0


def test_models_table_and_json():
    proc = cli("models")
    assert proc.returncode == 0
    assert "vidtok-kl-causal-488-4chn" in proc.stdout and "29.64" in proc.stdout
    assert f"({len(list(Path(__file__).parents[1].glob('models/*.toml')))} models)" in proc.stdout
    assert "vidtwin-structure-7-7-8-dynamics-7-8" in proc.stdout and "28.14" in proc.stdout
    assert proc.stdout.index("vidtok-default-kl") < proc.stdout.index("vidtok-kl-causal-488-4chn")
    proc = cli("models", "--json")
    cards = json.loads(proc.stdout)
    official = [c for c in cards if c["family"] == "vidtok" and c.get("official_name")]
    assert len(official) == 23
    kl = next(c for c in cards if c["name"] == "vidtok-kl-causal-488-4chn")
    assert kl["hub"] == {"repo": "microsoft/VidTok", "file": "checkpoints/vidtok_kl_causal_488_4chn.ckpt",
                         "revision": "main"}  # fmt: skip
    assert kl["metrics"]["fvd"] == 194.2 and kl["config"]["z_channels"] == 4
    assert all(c["cached"] is False for c in official)


def test_usage_error_exit_code_2():
    proc = cli("convert")
    assert proc.returncode == 2


@pytest.mark.usefixtures("reference")
def test_convert_round_trip_and_overwrite(tmp_path):
    name = "vidtok_kl_causal_488_4chn"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(fixture_config(name)))
    out = tmp_path / "kl.safetensors"
    proc = cli("convert", str(VIDTOK_REF / name / "model.ckpt"), "-o", str(out), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "wrote" in proc.stdout
    err = assert_one_line_error(cli("convert", str(VIDTOK_REF / name / "model.ckpt"), "-o", str(out),
                                    "--config", str(cfg)))  # fmt: skip
    assert "exists" in err and "--force" in err
    proc = cli(
        "convert",
        str(VIDTOK_REF / name / "model.ckpt"),
        "-o",
        str(out),
        "--config",
        str(cfg),
        "--force",
        "-q",
    )
    assert proc.returncode == 0 and proc.stdout == ""


@pytest.mark.usefixtures("reference")
def test_malicious_checkpoint_refused(tmp_path):
    marker = Path("/tmp/VIDTOK_PWNED")
    marker.unlink(missing_ok=True)
    out = tmp_path / "m.safetensors"
    err = assert_one_line_error(cli("convert", str(VIDTOK_REF / "malicious.ckpt"), "-o", str(out)))
    assert "builtins.exec" in err
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (("convert", "missing.ckpt", "-o", "x.safetensors"), "does not exist"),
        (
            ("convert", "README.md", "-o", "x.safetensors", "--config", "vidtok-kl-causal-488-4chn"),
            "README.md",
        ),
        (("convert", "README.md", "-o", "x.bin"), ".safetensors"),
    ],
)
def test_bad_input_one_line(args, needle, tmp_path):
    (tmp_path / "README.md").write_text("not a checkpoint")
    proc = cli(*args, cwd=tmp_path)
    err = assert_one_line_error(proc, code=proc.returncode if proc.returncode in (1, 2) else 1)
    assert needle in err
    assert not (tmp_path / "x.safetensors").exists()
