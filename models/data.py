"""Training and evaluation pairs read from a ``dataset_builder`` output folder.

A pairs folder holds ``manifest.jsonl`` — one JSON object per pair::

    {"split": "train" | "val", "source": str, "index": int, "sharp": "<rel path>",
     "blurry": "<rel path of the centre blurred frame>",
     "blurry_frames": ["<rel path>", ...],  # K frames oldest→newest, centre == "blurry"
     "static": bool, "bit_depth": 8 | 16, ...}

and RGB PNGs (8- or 16-bit). A model with ``in_frames`` = F reads the F blurred frames
centred on ``blurry``. Training samples get random crops, flips and 90° rotations, the
same for every frame of a sample and its sharp target (DBN's augmentation; scaling is
left out because it would change the blur length the data was built with).

Randomness is a pure function of (seed, sample number): the sample drawn at training
step s does not depend on worker count, on caching, or on whether the run was resumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dataset_builder import manifest as builder_manifest
from dataset_builder.manifest import ManifestError, PairRecord
from models.errors import DataError

logger = logging.getLogger(__name__)

# Tags mixed into the RNG seed so epoch shuffles and per-sample augmentation never share a stream.
_SHUFFLE_TAG = 1
_AUGMENT_TAG = 2
_SHARP_TAG = 3
_BYTES_PER_MB = 1024 * 1024


def read_manifest(pairs_dir: str | Path, *, split: str | None = None) -> list[PairRecord]:
    """The pairs of a pairs folder (the builder's format, :mod:`dataset_builder.manifest`),
    paths resolved against it.

    Raises:
        DataError: no manifest, a malformed line, or no pair in the requested split.
    """
    try:
        return builder_manifest.read_manifest(pairs_dir, split=split)
    except ManifestError as exc:
        raise DataError(str(exc)) from exc


def frames_for(record: PairRecord, in_frames: int) -> list[Path]:
    """The ``in_frames`` blurred frames of ``record`` a model reads, oldest→newest.

    Raises:
        DataError: the pair has fewer blurred frames than the model takes.
    """
    try:
        return [Path(name) for name in record.frames_for(in_frames)]
    except ManifestError as exc:
        raise DataError(str(exc)) from exc


def read_png(path: Path) -> np.ndarray:
    """An RGB image as stored: (H, W, 3) uint8 or uint16.

    Raises:
        DataError: the file is missing, unreadable or not a 3-channel image.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"cannot read image {path} (missing or not an image)")
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise DataError(f"{path} is not an RGB image (shape {image.shape})")
    if image.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path} has unsupported sample type {image.dtype}")
    # OpenCV decodes to BGR(A); the models work in RGB and ignore alpha.
    return np.ascontiguousarray(image[:, :, 2::-1])


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 (H, W, C) → float32 in [0, 1] (divided by 255 or 65535)."""
    return image.astype(np.float32) / float(np.iinfo(image.dtype).max)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8/uint16 or float → (C, H, W) float32 tensor in [0, 1]."""
    if image.dtype != np.float32:
        image = to_float(image)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


@dataclass(frozen=True)
class LoadedPair:
    """One pair decoded, as stored on disk: (H, W, 3) uint8 or uint16 arrays."""

    blurry_frames: tuple[np.ndarray, ...]  # in_frames frames, oldest→newest
    sharp: np.ndarray  # the target


def load_pair(record: PairRecord, in_frames: int) -> LoadedPair:
    """Decode the ``in_frames`` blurred frames and the sharp frame of one pair."""
    frames = tuple(read_png(path) for path in frames_for(record, in_frames))
    sharp = read_png(Path(record.sharp))
    for frame, path in zip(frames, frames_for(record, in_frames)):
        if frame.shape != sharp.shape:
            raise DataError(
                f"{path} is {frame.shape[1]}x{frame.shape[0]} but {record.sharp} is {sharp.shape[1]}x{sharp.shape[0]}"
            )
    return LoadedPair(frames, sharp)


def stack_frames(frames: tuple[np.ndarray, ...] | list[np.ndarray]) -> torch.Tensor:
    """Frames (H, W, 3) each → (len*3, H, W) float32 in [0, 1], oldest frame first."""
    return torch.cat([to_tensor(frame) for frame in frames], dim=0)


class PairsDataset(Dataset):
    """Pairs of one split as tensors, optionally cropped and augmented.

    Indexed by *sample number* when ``augment`` is on: sample n belongs to epoch
    n // len(pairs), pairs are shuffled per epoch and the crop/flip/rotation of sample n
    comes from an RNG seeded with (seed, n). Without ``augment`` index i is pair i, with
    a centre crop when ``crop_size`` is set.

    Args:
        pairs_dir: folder with ``manifest.jsonl``.
        split: "train" or "val".
        in_frames: blurred frames per sample (the generator's ``in_frames``).
        crop_size: side of the square crop in pixels; None keeps whole frames.
        augment: random crops, flips and 90° rotations (training); else deterministic.
        seed: base of every random choice.
        cache_mb: decode every pair once up front and keep it in memory when the decoded
            pairs are estimated to fit in this many MB (0 disables caching).
        max_pairs: use only the first this many pairs (validation speed); None for all.
        sharp_fraction: with ``augment``, the share of samples whose every input frame is
            the sharp target itself (sharp in, sharp out), drawn per sample from the seed:
            teaches the generator to leave sharp frames alone.
    """

    def __init__(
        self,
        pairs_dir: str | Path,
        *,
        split: str,
        in_frames: int = 1,
        crop_size: int | None = None,
        augment: bool = False,
        seed: int = 0,
        cache_mb: float = 0,
        max_pairs: int | None = None,
        sharp_fraction: float = 0.0,
    ) -> None:
        if not 0.0 <= sharp_fraction < 1.0:
            raise ValueError(f"sharp_fraction must be in [0, 1), got {sharp_fraction}")
        self.sharp_fraction = sharp_fraction
        self.records = read_manifest(pairs_dir, split=split)[:max_pairs]
        self.in_frames = in_frames
        self.crop_size = crop_size
        self.augment = augment
        self.seed = seed
        for record in self.records:
            frames_for(record, in_frames)  # fail now, not in a worker, if frames are missing
        self._cache: list[LoadedPair] | None = None
        self._permutations: dict[int, np.ndarray] = {}
        if cache_mb > 0:
            first = load_pair(self.records[0], in_frames)
            per_pair = sum(f.nbytes for f in first.blurry_frames) + first.sharp.nbytes
            estimate_mb = per_pair * len(self.records) / _BYTES_PER_MB
            if estimate_mb <= cache_mb:
                self._cache = [first] + [load_pair(r, in_frames) for r in self.records[1:]]
                logger.info("cached %d %s pairs in memory (%.0f MB)", len(self.records), split, estimate_mb)
            else:
                logger.info(
                    "%s pairs need ~%.0f MB decoded, above cache_mb=%g: reading PNGs per sample",
                    split, estimate_mb, cache_mb,
                )

    @property
    def cached(self) -> bool:
        """Whether every pair is decoded in memory."""
        return self._cache is not None

    def __len__(self) -> int:
        return len(self.records)

    def _pair(self, position: int) -> LoadedPair:
        if self._cache is not None:
            return self._cache[position]
        return load_pair(self.records[position], self.in_frames)

    def _position(self, sample: int) -> int:
        epoch, offset = divmod(sample, len(self.records))
        if epoch not in self._permutations:
            # Only the current epoch's order is needed; forget older ones.
            self._permutations = {
                epoch: np.random.default_rng([self.seed, _SHUFFLE_TAG, epoch]).permutation(len(self.records))
            }
        return int(self._permutations[epoch][offset])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One sample.

        Returns:
            {"blurry": (in_frames*3, h, w) float32 in [0, 1], oldest frame first,
             "sharp": (3, h, w) float32 in [0, 1]}, h = w = crop_size when cropping.
        """
        if index < 0:
            raise IndexError(index)
        if self.augment:
            position = self._position(index)
            rng = np.random.default_rng([self.seed, _AUGMENT_TAG, index])
        else:
            if index >= len(self.records):
                raise IndexError(index)
            position, rng = index, None
        pair = self._pair(position)
        images = [*pair.blurry_frames, pair.sharp]
        images = self._crop(images, rng, self.records[position])
        if rng is not None:
            images = _flip_rotate(images, rng)
            # A separate stream, so the crops and flips do not depend on sharp_fraction.
            if self.sharp_fraction and np.random.default_rng([self.seed, _SHARP_TAG, index]).random() < self.sharp_fraction:
                images = [images[-1]] * len(images)
        return {"blurry": stack_frames(images[:-1]), "sharp": to_tensor(images[-1])}

    def _crop(self, images: list[np.ndarray], rng: np.random.Generator | None, record: PairRecord) -> list[np.ndarray]:
        if self.crop_size is None:
            return images
        h, w = images[0].shape[:2]
        size = self.crop_size
        if h < size or w < size:
            if rng is not None:
                raise DataError(f"{record.sharp} is {w}x{h}, smaller than crop_size {size}")
            return images  # evaluation on a small frame: use it whole
        if rng is None:
            top, left = (h - size) // 2, (w - size) // 2
        else:
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        return [image[top : top + size, left : left + size] for image in images]


def _flip_rotate(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose for every image."""
    hflip, vflip, transpose = rng.random(3) < 0.5
    out = []
    for image in images:
        if hflip:
            image = image[:, ::-1]
        if vflip:
            image = image[::-1]
        if transpose:
            # With the flips this reaches all 8 rotations/reflections of the square.
            image = image.transpose(1, 0, 2)
        out.append(image)
    return out
