"""--strength blends the restored frame with the input: 0 gives the input back bit for bit,
1 the model's output, values between lie between, on every path that restores frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from jobs.settings import deblur_fingerprint
from models import RRDBNet
from pipeline import cli
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.images import process_images, read_picture
from pipeline.restorer import Restorer
from tests.media import frame_rgb, psnr

CPU = torch.device("cpu")


def _model(in_frames: int = 1) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=2, in_frames=in_frames)


@pytest.mark.parametrize("depth, in_frames", [(8, 1), (16, 3)])
def test_strength_blends_input_and_restored(depth, in_frames):
    frames = np.stack([frame_rgb(i, 48, 32, depth=depth) for i in range(5)])
    context = in_frames // 2
    inputs = frames[context:len(frames) - context]
    full = Restorer(_model(in_frames), device=CPU).restore(frames)
    none = Restorer(_model(in_frames), device=CPU, strength=0.0).restore(frames)
    half = Restorer(_model(in_frames), device=CPU, strength=0.5, tile=24,
                    tile_overlap=8).restore(frames)
    assert psnr(full, inputs) < 40, "the test model must change the frames"
    np.testing.assert_array_equal(none, inputs)  # strength 0: the input, bit for bit
    midpoint = (full.astype(np.float64) + inputs) / 2
    # Within rounding (and the tiles' blend) of halfway between input and full restoration.
    assert np.abs(half - midpoint).mean() < 0.02 * np.iinfo(frames.dtype).max
    assert psnr(half, inputs) > psnr(full, inputs) + 4  # a gentler effect: ~6 dB closer


def test_strength_reaches_images_and_video_settings(tmp_path):
    rgb = frame_rgb(2, 40, 30, depth=16)
    assert cv2.imwrite(str(tmp_path / "in.png"), rgb[:, :, ::-1])
    config = ProcessConfig(device="cpu", progress=False, strength=0.0)
    process_images(tmp_path / "in.png", tmp_path / "out.png", config=config, model=_model())
    np.testing.assert_array_equal(read_picture(tmp_path / "out.png").rgb, rgb)
    # A job redoes its outputs when the strength changes; the default keeps old ledgers valid.
    model = _model()
    assert deblur_fingerprint(ProcessConfig(strength=0.5), model) != \
        deblur_fingerprint(ProcessConfig(), model)


def test_strength_outside_0_to_1_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["process", "clip.mp4", "--strength", "1.5"])
    assert exit_info.value.code == 2
    assert "must be between 0 and 1" in capsys.readouterr().err
    with pytest.raises(PipelineError, match="between 0 and 1"):
        Restorer(_model(), device=CPU, strength=-0.1)
