"""The self-ensemble (models/symmetry.py, `process --ensemble`): the generator averaged over
mirrored and rotated copies of its input, flow and still gate turned with the frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jobs.settings import deblur_fingerprint
from models import RRDBNet
from models.symmetry import ENSEMBLE_SIZES, SelfEnsemble, symmetric_variant, undo_spatial
from pipeline import cli
from pipeline.config import ENSEMBLE_SIZES as PIPELINE_ENSEMBLE_SIZES
from pipeline.config import ProcessConfig
from pipeline.errors import PipelineError
from pipeline.restorer import Restorer
from tests.media import frame_rgb, psnr

CPU = torch.device("cpu")


def _video_model() -> RRDBNet:
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=2, in_frames=3, motion="flow",
                    still_gate=True).eval()
    torch.nn.init.normal_(model.conv_last.weight, std=0.1)
    return model


def _turn(x: torch.Tensor, variant: int, in_frames: int) -> torch.Tensor:
    """A stacked input (N, frames*3 + motion, H, W) in symmetric variant ``variant``."""
    split = in_frames * 3
    turned = symmetric_variant({"blurry": x[:, :split], "motion": x[:, split:]}, variant, in_frames)
    return torch.cat([turned["blurry"], turned["motion"]], 1)


@pytest.mark.parametrize("variant", range(8))
def test_the_full_ensemble_turns_with_its_input(variant):
    """Averaged over all 8 rotations and reflections, the output of a turned input is the
    turned output: only true if the flow's signs and axes turn correctly with the frames."""
    model = _video_model()
    ensemble = SelfEnsemble(model, 8)
    torch.manual_seed(1)
    x = torch.cat([torch.rand(1, 9, 16, 20), 3 * torch.randn(1, 4, 16, 20), torch.ones(1, 1, 16, 20)], 1)
    with torch.no_grad():
        out = ensemble(x)
        turned_out = ensemble(_turn(x, variant, 3))
    expected = symmetric_variant({"blurry": out}, variant, 1)["blurry"]
    assert torch.allclose(turned_out, expected, atol=1e-5)
    assert torch.equal(undo_spatial(expected, variant), out)
    # The network alone is not symmetric: the check above has something to check.
    with torch.no_grad():
        alone = symmetric_variant({"blurry": model(x)}, variant, 1)["blurry"]
        assert variant == 0 or not torch.allclose(model(_turn(x, variant, 3)), alone, atol=1e-4)


def test_an_ensemble_of_one_is_the_model_and_sizes_agree_across_packages():
    model = _video_model()
    x = torch.rand(2, 14, 12, 16)
    with torch.no_grad():
        assert torch.allclose(SelfEnsemble(model, 1)(x), model(x), atol=1e-6)
    assert SelfEnsemble(model, 4).config is model.config
    assert ENSEMBLE_SIZES == PIPELINE_ENSEMBLE_SIZES
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8"):
        SelfEnsemble(model, 3)


def test_restorer_ensemble_changes_the_output_a_little_and_keeps_every_frame():
    torch.manual_seed(0)
    model = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, downscale=2, in_frames=3)
    torch.nn.init.normal_(model.conv_last.weight, std=0.1)
    frames = np.stack([frame_rgb(i, 48, 32) for i in range(6)])
    one = Restorer(model, device=CPU).restore(frames)
    four = Restorer(model, device=CPU, ensemble=4, tile=24, tile_overlap=8).restore(frames)
    assert one.shape == four.shape == (4, 32, 48, 3)
    assert not np.array_equal(one, four)
    assert psnr(one, four) > 25


def test_ensemble_reaches_settings_and_bad_sizes_are_refused(capsys):
    model = _video_model()
    assert deblur_fingerprint(ProcessConfig(ensemble=8), model) != deblur_fingerprint(ProcessConfig(), model)
    with pytest.raises(PipelineError, match="--ensemble must be one of"):
        ProcessConfig(ensemble=3)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["process", "clip.mp4", "--ensemble", "3"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
