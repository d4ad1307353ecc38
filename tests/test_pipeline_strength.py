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


def _yuv_clip(path, grey: bool) -> list[np.ndarray]:
    """Four 4:2:0 frames (lossless FFV1 in MKV) of the synthetic scene, or of its grey levels;
    returns their YUV planes as written."""
    import av

    planes = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            rgb = frame_rgb(i, 64, 48)
            if grey:
                rgb = np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            planes.append(frame.to_ndarray())
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return planes


@pytest.mark.parametrize("grey", [True, False])
def test_strength_0_gives_a_yuv_video_back(tmp_path, identity_model_file, grey):
    """YUV -> RGB -> YUV shifts no level (swscale's conversion once made every video ~0.5 level
    darker): grey comes back exactly, colour within chroma subsampling's rounding."""
    import av

    source = tmp_path / "in.mkv"
    planes = _yuv_clip(source, grey)
    out = tmp_path / "out.mkv"
    assert cli.main(["process", "-q", str(source), "-o", str(out), "--model", identity_model_file,
                     "--strength", "0", "--codec", "ffv1"]) == 0
    with av.open(str(out)) as container:
        back = [frame.to_ndarray() for frame in container.decode(video=0)]
    assert len(back) == len(planes)
    diff = np.stack(back).astype(int) - np.stack(planes)
    luma, chroma = diff[:, :48], diff[:, 48:]
    assert abs(luma.mean()) < 0.05 and abs(chroma.mean()) < 0.05
    assert (luma != 0).mean() < (0.001 if grey else 0.05)
