"""`vidtok export`: every stream of a .vtok file as arrays named after it, with the header as metadata."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from vidtok_cli.errors import UsageError, VidtokError
from vidtok_cli.export import export_file
from vidtok_cli.vtok import ContainerError, VtokReader, VtokWriter, make_header, stream_entry

SHA = "cd" * 32


def _write(path: Path, stream: dict, make) -> None:
    hdr = make_header(
        model_card="m", weights_sha256=SHA, streams=[stream], temporal_factor=4, spatial_factor=8, width=48,
        height=32, fps=Fraction(25), segment_frames=None,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    with VtokWriter(path, hdr) as w:
        for f0, f1, l0, t in [(0, 1, 0, 1), (1, 9, 1, 2), (9, 17, 3, 2)]:
            w.write_chunk({stream["name"]: make(rng, t)}, f0, f1, l0)
        w.close({"source": {"frame_count": 17}})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("export")
    kl, fsq = d / "kl.vtok", d / "fsq.vtok"
    _write(
        kl,
        stream_entry("latent", "continuous", (4, 4, 6), time_axis=1, dtype="float16"),
        lambda rng, t: rng.standard_normal((4, t, 4, 6)).astype(np.float32),
    )
    _write(
        fsq,
        stream_entry("tokens", "fsq", (4, 6), time_axis=0, levels=[8, 8, 8]),
        lambda rng, t: rng.integers(0, 512, size=(t, 4, 6)),
    )
    return {"kl": kl, "fsq": fsq}


def _expected(path: Path) -> dict[str, np.ndarray]:
    r = VtokReader(path)
    (s,) = r.streams
    chunks = list(r.iter_chunks())
    return {
        s.name: np.concatenate([c.latents[s.name] for c in chunks], axis=s.time_axis),
        f"{s.name}.first_frame": np.array([c.first_frame for c in chunks]),
        f"{s.name}.end_frame": np.array([c.end_frame for c in chunks]),
        f"{s.name}.first_step": np.array([0, 1, 3]),
    }


@pytest.mark.parametrize("which", ["kl", "fsq"])
def test_safetensors_round_trip(tmp_path, files, which):
    out = tmp_path / f"{which}.safetensors"
    summary = export_file(files[which], out)
    arrays = load_file(str(out))
    want = _expected(files[which])
    assert set(arrays) == set(want)
    for k, v in want.items():
        assert np.array_equal(arrays[k], v), k
    name = "latent" if which == "kl" else "tokens"
    assert arrays[name].dtype == (np.float32 if which == "kl" else np.int64)
    if which == "kl":  # float16 on disk: exact as float32
        assert np.array_equal(arrays[name].astype(np.float16).astype(np.float32), arrays[name])
    from safetensors import safe_open

    with safe_open(str(out), "np") as f:
        meta = f.metadata()
    assert json.loads(meta["header"]) == VtokReader(files[which]).header and meta["format"] == "vtok 1.1"
    assert summary["streams"] == {name: list(want[name].shape)} and summary["chunks"] == 3


def test_npz_round_trip(tmp_path, files):
    out = tmp_path / "fsq.npz"
    export_file(files["fsq"], out)
    with np.load(out) as z:
        want = _expected(files["fsq"])
        assert set(z.files) == {*want, "header"}
        for k, v in want.items():
            assert np.array_equal(z[k], v)
        assert json.loads(str(z["header"][()]))["streams"][0]["name"] == "tokens"


def test_refusals(tmp_path, files):
    out = tmp_path / "x.safetensors"
    export_file(files["kl"], out)
    with pytest.raises(VidtokError, match="--force"):
        export_file(files["kl"], out)
    export_file(files["kl"], out, force=True)
    with pytest.raises(UsageError, match=".safetensors or .npz"):
        export_file(files["kl"], tmp_path / "x.pt")
    bad = tmp_path / "bad.vtok"
    data = bytearray(files["kl"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ContainerError, match="damaged"):
        export_file(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_cli_exit_codes(tmp_path, files):
    from vidtok_cli.cli.app import load_commands

    app = load_commands()
    runner = CliRunner()
    out = tmp_path / "a.npz"
    res = runner.invoke(app, ["export", str(files["fsq"]), "-o", str(out), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["format"] == "npz" and out.is_file()
    res = runner.invoke(app, ["export", str(files["fsq"]), "-o", str(out)])
    assert res.exit_code != 0 and isinstance(res.exception, VidtokError) and res.exception.exit_code == 1
