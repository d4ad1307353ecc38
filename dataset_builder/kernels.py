"""Blur for still images: camera-shake kernels and object motion blur.

Camera shake: random trajectories of Boracchi & Foi ("Modeling the performance of
image restoration from motion blur", IEEE TIP 2012), as DeblurGAN used them: a
Markov process whose velocity is pulled to the centre, jittered by Gaussian
noise and now and then jerked back (a "big shake"); the trajectory is splatted
with bilinear (sub-pixel) weights into a kernel of unit sum. Unlike DeblurGAN's
code nothing is min-max normalised afterwards: that changes brightness.

Object motion: a masked region sweeps along a straight line during the exposure
and is composited over the background at every instant, in linear light, so its
edges become semi-transparent as a moving object's do.

Images here are float32 linear light (H, W, C) in [0, 1].
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Defaults of DeblurGAN's implementation of Boracchi & Foi.
TRAJECTORY_STEPS = 2000
CENTRIPETAL_MAX = 0.7  # pull towards the start, scaled by a uniform draw
BIG_SHAKE_PROB_MAX = 0.2  # chance of a jerk per step, before scaling by anxiety
GAUSSIAN_SHAKE_MAX = 10.0  # random-walk strength, scaled by a uniform draw
OBJECT_STEP_PX = 0.5  # object positions sampled every half pixel: continuous streaks


def random_trajectory(rng: np.random.Generator, *, length: float = 30.0,
                      anxiety: float = 0.005, steps: int = TRAJECTORY_STEPS) -> np.ndarray:
    """A camera-shake trajectory (Boracchi & Foi 2012).

    Args:
        rng: the generator (same seed, same trajectory).
        length: path length in pixels.
        anxiety: how erratic the motion is; 0.005 is DeblurGAN's default.
        steps: points along the path.

    Returns:
        (steps,) complex128 positions in pixels (x + iy), starting at 0.
    """
    centripetal = CENTRIPETAL_MAX * rng.uniform()
    big_shake = BIG_SHAKE_PROB_MAX * rng.uniform()
    gaussian_shake = GAUSSIAN_SHAKE_MAX * rng.uniform()
    step = length / (steps - 1)
    velocity = np.exp(1j * rng.uniform(0, 2 * math.pi)) * step
    x = np.zeros(steps, dtype=np.complex128)
    for t in range(steps - 1):
        jerk = 0.0
        if rng.uniform() < big_shake * anxiety:
            # Turn back sharply: twice the velocity, pointing roughly opposite.
            jerk = 2 * velocity * np.exp(1j * (math.pi + rng.uniform() - 0.5))
        dv = jerk + anxiety * (gaussian_shake * complex(rng.normal(), rng.normal())
                               - centripetal * x[t]) * step
        velocity += dv
        velocity = velocity / abs(velocity) * step
        x[t + 1] = x[t] + velocity
    return x


def trajectory_kernel(trajectory: np.ndarray, *, exposure: float = 1.0) -> np.ndarray:
    """Splat a trajectory into a blur kernel, centred on its centre of mass.

    Args:
        trajectory: (N,) complex positions in pixels.
        exposure: fraction of the trajectory the shutter sees, from its start.

    Returns:
        (S, S) float32 kernel, S odd, non-negative, summing to 1. Centring on the
        mass keeps the blurred image registered with the sharp one.
    """
    points = trajectory[:max(2, int(round(len(trajectory) * exposure)))]
    points = points - points.mean()
    extent = max(np.abs(points.real).max(), np.abs(points.imag).max())
    size = 2 * int(math.ceil(extent)) + 3
    centre = size // 2
    xs, ys = points.real + centre, points.imag + centre
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    kernel = np.zeros((size, size), np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                      (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(kernel, (y0 + dy, x0 + dx), w)
    return (kernel / kernel.sum()).astype(np.float32)


def random_shake_kernel(rng: np.random.Generator, *, length: float = 30.0,
                        anxiety: float = 0.005, exposure: float = 1.0) -> np.ndarray:
    """A random camera-shake kernel: :func:`random_trajectory` then :func:`trajectory_kernel`."""
    return trajectory_kernel(random_trajectory(rng, length=length, anxiety=anxiety),
                             exposure=exposure)


def apply_kernel(linear: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a linear-light image with a blur kernel (reflecting borders).

    Args:
        linear: (H, W, C) float32 linear light.
        kernel: (S, S) float32 summing to 1.

    Returns:
        (H, W, C) float32; the mean brightness is preserved.
    """
    # filter2D correlates; flipping the kernel makes it a convolution.
    blurred = cv2.filter2D(linear, -1, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)
    return blurred[..., None] if blurred.ndim == 2 else blurred


def object_motion_blur(linear: np.ndarray, mask: np.ndarray, motion: tuple[float, float], *,
                       background: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blur a masked object moving by ``motion`` pixels during the exposure.

    The object sweeps from -motion/2 to +motion/2 around where it is in ``linear``,
    so the sharp image of the pair is the object at the middle of the exposure.

    Args:
        linear: (H, W, C) float32 linear light holding the object.
        mask: (H, W) float in [0, 1], the object's coverage (soft edges allowed).
        motion: (dx, dy) travel during the exposure, pixels.
        background: (H, W, C) what the object hides. A still does not show it, so
            by default the masked region is inpainted (cv2.inpaint, Telea).

    Returns:
        (blurred, sharp): both (H, W, C) float32; ``sharp`` is the object at rest
        composited over the same background.
    """
    mask = np.clip(mask.astype(np.float32), 0, 1)
    if background is None:
        background = _inpaint(linear, mask)
    layer = linear * mask[..., None]
    distance = math.hypot(*motion)
    samples = max(2, int(math.ceil(distance / OBJECT_STEP_PX)) + 1)
    h, w = mask.shape
    acc = np.zeros_like(linear, dtype=np.float32)
    for i in range(samples):
        s = i / (samples - 1) - 0.5
        shift = np.float32([[1, 0, s * motion[0]], [0, 1, s * motion[1]]])
        moved = cv2.warpAffine(layer, shift, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cover = cv2.warpAffine(mask, shift, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        moved = moved[..., None] if moved.ndim == 2 else moved
        acc += moved + background * (1 - cover[..., None])
    sharp = layer + background * (1 - mask[..., None])
    return acc / samples, sharp.astype(np.float32)


def _inpaint(linear: np.ndarray, mask: np.ndarray) -> np.ndarray:
    hole = (mask > 0).astype(np.uint8) * 255
    # cv2.inpaint takes 8-bit images: the hole is filled at 8 bits, the rest of the
    # image is kept exactly.
    as8 = np.round(np.clip(linear, 0, 1) * 255).astype(np.uint8)
    channels = [cv2.inpaint(np.ascontiguousarray(as8[..., c]), hole, 5, cv2.INPAINT_TELEA)
                for c in range(as8.shape[2])]
    filled = np.stack(channels, axis=2).astype(np.float32) / 255
    return np.where(hole[..., None] > 0, filled, linear).astype(np.float32)
