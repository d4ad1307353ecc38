"""Generator checkpoints: our safetensors, BasicSR / ESRGAN files, and clear refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import (
    CheckpointError,
    GeneratorConfig,
    RRDBNet,
    convert_old_esrgan,
    infer_config,
    load_generator,
    load_trunk,
    read_metadata,
    read_state_dict,
    save_generator,
)
from models.checkpoint import CONFIG_KEY

TINY = dict(num_feat=8, num_block=2, num_grow_ch=4)


def _to_old_esrgan(state_dict: dict) -> dict:
    """Our / BasicSR names → the ESRGAN repository's (xinntao/ESRGAN, RRDBNet_arch.py)."""
    out = {}
    for name, tensor in state_dict.items():
        name = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", name)
        name = name.replace("conv_body.", "trunk_conv.").replace("conv_hr.", "HRconv.")
        name = re.sub(r"^conv_up(\d)\.", r"upconv\1.", name)
        out[name] = tensor
    return out


def _sr_state_dict(scale: int) -> dict:
    """A BasicSR RRDBNet super-resolution state dict: unshuffle 4/scale, two x2 upsamplers."""
    sd = RRDBNet(**TINY, downscale=4, residual=False).state_dict()
    unshuffle = 4 // scale
    sd["conv_first.weight"] = torch.randn(TINY["num_feat"], 3 * unshuffle * unshuffle, 3, 3)
    return sd


def _assert_one_clear_line(err: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_safetensors_round_trip_keeps_config_metadata_and_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RRDBNet(**TINY, downscale=2, in_frames=3, residual=True)
    path = tmp_path / "out" / "gen.safetensors"
    save_generator(model, path, metadata={"recipe": "stage1 l1", "steps": "10"})
    assert [p.name for p in path.parent.iterdir()] == ["gen.safetensors"]  # no temp file left

    loaded = load_generator(path)
    assert loaded.config == model.config
    assert read_metadata(path)["recipe"] == "stage1 l1"
    assert json.loads(read_metadata(path)[CONFIG_KEY])["in_frames"] == 3
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 9, 13, 17)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_save_refuses_other_formats_and_reserved_metadata(tmp_path: Path) -> None:
    model = RRDBNet(**TINY)
    with pytest.raises(ValueError, match="safetensors"):
        save_generator(model, tmp_path / "gen.pth")
    with pytest.raises(ValueError, match="may not set"):
        save_generator(model, tmp_path / "gen.safetensors", metadata={CONFIG_KEY: "{}"})
    assert list(tmp_path.iterdir()) == []


def test_save_unwraps_compiled_and_channels_last_models(tmp_path: Path) -> None:
    model = RRDBNet(**TINY).to(memory_format=torch.channels_last)
    path = tmp_path / "gen.safetensors"
    save_generator(torch.compile(model, backend="eager"), path)
    assert read_state_dict(path).keys() == model.state_dict().keys()


def test_old_esrgan_layout_converts_and_computes_the_same(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = RRDBNet(**TINY, downscale=1, residual=False).eval()
    old = _to_old_esrgan(model.state_dict())
    assert "RRDB_trunk.1.RDB3.conv5.weight" in old and "HRconv.bias" in old
    assert convert_old_esrgan(old).keys() == model.state_dict().keys()

    path = tmp_path / "1x_old.pth"
    torch.save({f"module.{k}": v for k, v in old.items()}, path)  # DataParallel prefix too
    loaded = load_generator(path)
    assert loaded.config == model.config
    x = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_infer_config_reads_frames_and_downscale_from_shapes() -> None:
    sd = RRDBNet(num_feat=8, num_block=3, num_grow_ch=4, downscale=2, in_frames=5).state_dict()
    assert infer_config(sd) == GeneratorConfig(
        num_feat=8, num_block=3, num_grow_ch=4, downscale=2, in_frames=5, residual=False
    )


@pytest.mark.parametrize("scale", (2, 4))
def test_super_resolution_models_are_refused(tmp_path: Path, scale: int) -> None:
    path = tmp_path / f"RealESRGAN_x{scale}plus.pth"
    torch.save({"params_ema": _sr_state_dict(scale)}, path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    _assert_one_clear_line(err, path, f"x{scale} super-resolution model", "--init")


def test_old_esrgan_x4_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(_to_old_esrgan(_sr_state_dict(4)), path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    _assert_one_clear_line(err, path, "x4 super-resolution model")


def test_missing_and_junk_files_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError) as err:
        load_generator(missing)
    _assert_one_clear_line(err, missing, "no such file")

    rng = torch.Generator().manual_seed(0)
    junk_bytes = bytes(torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).tolist())
    for name in ("junk.pth", "junk.safetensors"):
        junk = tmp_path / name
        junk.write_bytes(b"\x00" + junk_bytes)
        with pytest.raises(CheckpointError) as err:
            load_generator(junk)
        _assert_one_clear_line(err, junk, "not a checkpoint")

    truncated = tmp_path / "truncated.pth"
    torch.save(RRDBNet(**TINY).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    with pytest.raises(CheckpointError) as err:
        load_generator(truncated)
    _assert_one_clear_line(err, truncated, "not a readable PyTorch checkpoint")


class _Payload:
    """Stands for any pickled object; unpickling must never run its code."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_objects_are_refused_by_weights_only(tmp_path: Path, capsys) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": {"conv_first.weight": torch.zeros(1)}, "hook": _Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    _assert_one_clear_line(err, path, "refused", "weights_only=True", "print")
    assert "pwned" not in capsys.readouterr().out


def test_non_state_dicts_are_refused(tmp_path: Path) -> None:
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(CheckpointError) as err:
        load_generator(listing)
    _assert_one_clear_line(err, listing, "holds a list, not a state dict")

    other = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointError) as err:
        load_generator(other)
    _assert_one_clear_line(err, other, "no 4-D conv_first.weight", "expected an RRDBNet state dict")


def _our_file(tmp_path: Path, edit) -> Path:
    model = RRDBNet(**TINY)
    path = tmp_path / "gen.safetensors"
    save_generator(model, path)
    tensors, metadata = read_state_dict(path), read_metadata(path)
    edit(tensors)
    save_file(tensors, path, metadata=metadata)
    return path


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda sd: sd.update({"conv_hr.weight": torch.zeros(8, 8, 1, 1)}), "wrong shapes conv_hr.weight (8, 8, 1, 1)"),
        (lambda sd: sd.update({"conv_foo.weight": torch.zeros(1)}), "unexpected tensors conv_foo.weight"),
        (lambda sd: sd.pop("conv_body.bias"), "missing tensors conv_body.bias"),
    ],
    ids=("wrong-shape", "unexpected", "missing"),
)
def test_tensors_that_do_not_fit_the_saved_config_are_named(tmp_path: Path, edit, fragment: str) -> None:
    path = _our_file(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    _assert_one_clear_line(err, path, fragment, "expected an RRDBNet state dict")


def test_read_state_dict_prefers_ema_and_strips_dataparallel(tmp_path: Path) -> None:
    path = tmp_path / "net_g.pth"
    torch.save({"params": {"module.a": torch.zeros(1)}, "params_ema": {"module.a": torch.ones(1)}}, path)
    assert torch.equal(read_state_dict(path)["a"], torch.ones(1))
    assert read_metadata(path) == {}


def test_load_trunk_from_x4_model_loads_body_and_reports_skipped() -> None:
    torch.manual_seed(0)
    source = _to_old_esrgan(_sr_state_dict(4))  # the ESRGAN x4 paper model's layout
    model = RRDBNet(**TINY, downscale=1)
    loaded, skipped = load_trunk(model, source)
    # Names are reported after conversion to BasicSR's.
    assert sorted(skipped) == ["conv_up1.bias", "conv_up1.weight", "conv_up2.bias", "conv_up2.weight"]
    assert "body.1.rdb3.conv5.weight" in loaded and "conv_first.weight" in loaded
    assert torch.equal(model.body[1].rdb3.conv5.weight, source["RRDB_trunk.1.RDB3.conv5.weight"])
    assert torch.equal(model.conv_hr.weight, source["HRconv.weight"])

    # Into a quarter-resolution trunk the 3-channel conv_first does not fit.
    quarter = RRDBNet(**TINY, downscale=4)
    loaded, skipped = load_trunk(quarter, source)
    assert skipped == ["conv_first.weight"] and "conv_up2.weight" in loaded

    with pytest.raises(CheckpointError, match="none of the 2 tensors fit"):
        load_trunk(model, {"fc.weight": torch.zeros(2), "fc.bias": torch.zeros(2)})


def test_saved_model_is_readable_by_others(tmp_path):
    import os
    import stat

    from models import RRDBNet, save_generator

    path = tmp_path / "m.safetensors"
    save_generator(RRDBNet(num_feat=4, num_block=1, num_grow_ch=4), path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
