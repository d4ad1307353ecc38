"""Small synthetic media for tests: clips with known frames, timestamps, audio and tags.

Content is a moving gradient with a bright square, so codecs have something to encode and a
model has edges to work on; everything is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from pipeline.video_reader import X264_FIXED_444_CORE

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def frame_rgb(index: int, width: int, height: int, *, depth: int = 8) -> np.ndarray:
    """Frame ``index`` of the synthetic scene: (H, W, 3) uint8 (or uint16 for depth > 8)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = (x / max(width - 1, 1) + index * 0.03) % 1.0
    g = y / max(height - 1, 1)
    b = 0.5 + 0.4 * np.sin((x + y) / 5.0 + index * 0.4)
    img = np.stack([r, g, b], axis=-1) * 0.8 + 0.1
    size = max(2, min(width, height) // 4)
    x0 = (index * 2) % max(1, width - size)
    y0 = height // 3 % max(1, height - size)
    img[y0:y0 + size, x0:x0 + size] = [0.95, 0.9, 0.2]
    peak = (1 << depth) - 1 if depth > 8 else 255
    if depth > 8:
        return np.round(img * 65535).astype(np.uint16)  # rgb48 spans the full 16 bits
    return np.round(img * peak).astype(np.uint8)


@dataclass(frozen=True)
class Clip:
    path: Path
    frames: int
    pts: tuple[int, ...]          # per frame, in time_base units
    time_base: Fraction
    audio_packets: int            # audio packets written (0 = no audio)


def make_clip(path: Path, *, frames: int = 24, width: int = 64, height: int = 48,
              fps: int = 24, codec: str = "libx264", pix_fmt: str = "yuv420p",
              options: dict[str, str] | None = None, vfr: bool = False, audio: str | None = None,
              rotation: int | None = None, colour: dict[str, int] | None = None,
              subtitles: bool = False, time_base: Fraction | None = None,
              container_options: dict[str, str] | None = None,
              field_order: str | None = None) -> Clip:
    """Write a test clip with PyAV.

    Args:
        vfr: irregular frame durations (variable frame rate), in a 1/1000 time base.
        time_base: the video's time base (default 1/fps); frames stay 1/fps apart.
        audio: audio encoder name (e.g. "aac", "libopus", "pcm_s16le") or None.
        rotation: display rotation in degrees, stored as a display matrix.
        colour: codec-context colour tags, e.g. {"color_primaries": 1, "color_trc": 1,
            "colorspace": 1, "color_range": 1}.
        field_order: "tff" or "bff" for interlaced video (x264's interlaced coding, every
            frame flagged with that field order).
    """
    container = av.open(str(path), "w", options=container_options or {})
    tb = time_base or (Fraction(1, 1000) if vfr else Fraction(1, fps))
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.time_base = tb
    stream.codec_context.time_base = tb
    if options or field_order:
        stream.options = dict(options or {}) | ({"flags": "+ilme+ildct"} if field_order else {})
    for key, value in (colour or {}).items():
        setattr(stream.codec_context, key, value)
    if field_order:
        # The stream's flag, as FFmpeg's tools set it from the frames (TT = 2, BB = 3).
        stream.codec_context.field_order = {"tff": 2, "bff": 3}[field_order]
    if rotation is not None:
        stream.set_display_rotation(rotation)
    depth = max(c.bits for c in av.VideoFormat(pix_fmt).components)
    rgb_format = "rgb48le" if depth > 8 else "rgb24"

    audio_stream = None
    if audio:
        audio_stream = container.add_stream(audio, rate=48000)
        audio_stream.layout = "mono"

    pts_list = []
    t = 0
    step = Fraction(1, fps) / tb
    assert vfr or step.denominator == 1, f"1/{fps} s is not a whole number of {tb} ticks"
    durations = [33, 50, 17, 41] if vfr else [int(step)]
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(frame_rgb(i, width, height, depth=depth),
                                           format=rgb_format)
        frame = frame.reformat(format=pix_fmt)
        for key, value in (colour or {}).items():
            if key in ("color_primaries", "color_trc", "colorspace", "color_range"):
                setattr(frame, key, value)
        if field_order:
            frame = _flag_fields(frame, field_order, tb)
        frame.pts = t
        frame.time_base = tb
        pts_list.append(t)
        t += durations[i % len(durations)]
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)

    audio_packets = 0
    if audio_stream is not None:
        seconds = float(t * tb)
        audio_packets = _write_audio(container, audio_stream, seconds)
    container.close()
    if subtitles:
        _add_subtitles(path)
    return Clip(path=path, frames=frames, pts=tuple(pts_list), time_base=tb,
                audio_packets=audio_packets)


def _flag_fields(frame: av.VideoFrame, mode: str, time_base: Fraction) -> av.VideoFrame:
    """``frame`` flagged interlaced, "tff" or "bff" (encoders read it per frame)."""
    import av.filter

    graph = av.filter.Graph()
    source = graph.add_buffer(width=frame.width, height=frame.height,
                              format=frame.format.name, time_base=time_base)
    mark = graph.add("setparams", f"field_mode={mode}")
    source.link_to(mark)
    mark.link_to(graph.add("buffersink"))
    graph.configure()
    graph.push(frame)
    return graph.pull()


def _write_audio(container, stream, seconds: float) -> int:
    rate = 48000
    total = int(seconds * rate)
    chunk = 1024
    written = 0
    sample = 0
    while sample < total:
        n = min(chunk, total - sample)
        tone = 0.2 * np.sin(2 * np.pi * 440 * (np.arange(sample, sample + n) / rate))
        frame = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None, :], format="flt",
                                           layout="mono")
        frame.sample_rate = rate
        frame.pts = sample
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
            written += 1
        sample += n
    for packet in stream.encode():
        container.mux(packet)
        written += 1
    return written


def _add_subtitles(path: Path) -> None:
    """Mux one SubRip cue into the clip with the ffmpeg binary (stream copy)."""
    import subprocess

    import imageio_ffmpeg

    srt = path.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,500\nhello\n\n")
    tmp = path.with_name(f"with-subs-{path.name}")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-i", str(srt),
                    "-map", "0", "-map", "1", "-c", "copy", str(tmp)], check=True)
    tmp.replace(path)
    srt.unlink()


def packet_counts(path: Path) -> dict[str, int]:
    """Packets per stream type ("video", "audio", "subtitle")."""
    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                counts[packet.stream.type] = counts.get(packet.stream.type, 0) + 1
    return counts


def stream_summary(path: Path) -> list[tuple[str, str]]:
    """(type, codec) of every stream, in order."""
    with av.open(str(path)) as container:
        return [(s.type, s.codec_context.name if s.codec_context else "") for s in container.streams]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two same-dtype integer images."""
    peak = float(np.iinfo(a.dtype).max)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def frame_times(path: Path) -> list[float]:
    """Every decoded frame's presentation time in seconds, as FFmpeg reports it (the frame's
    own pts: no repair, unlike the pipeline's reader)."""
    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


def audio_packet_times(path: Path) -> list[float]:
    """The presentation time in seconds of every audio packet of the first audio stream."""
    with av.open(str(path)) as container:
        return [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.size]


def shown_field_orders(path: Path) -> list[str]:
    """Per decoded frame, as FFmpeg's showinfo filter prints it: "T" (interlaced, top field
    first), "B" (bottom first) or "P" (progressive). PyAV can't read a frame's field order."""
    import re
    import subprocess

    import imageio_ffmpeg

    done = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path),
                           "-vf", "showinfo", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    return re.findall(r" i:([TBP])", done.stderr)



def make_old_x264_444_clip(path: Path, *, frames: int = 48, gop: int = 12, **kwargs) -> Clip:
    """A lossless x264 4:4:4 clip whose version note (the SEI "x264 - core NNN") names a build
    older than core 151, as such a build writes it: FFmpeg decodes it differently from its
    start than after a seek to a later keyframe (the fault straight decodes guard against)."""
    clip = make_clip(path, frames=frames, pix_fmt="yuv444p",
                     options={"qp": "0", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"},
                     **kwargs)
    data = path.read_bytes()
    note = b"x264 - core "
    at = data.index(note) + len(note)
    digits = len(str(int(data[at:at + 3])))
    old = str(X264_FIXED_444_CORE - 1).rjust(digits, "0").encode()
    path.write_bytes(data[:at] + old + data[at + digits:])
    return clip


# A disc moving over a still background (a frame of the shipped sample clip): issue 19's
# "one moving object over a still background" (benchmarks/still_background.py, the tests).
DISC_SIZE = (192, 256)  # (h, w)
DISC_RADIUS, DISC_SPEED, DISC_INSTANTS = 14, 18.0, 16  # px, px per frame, instants per exposure
DISC_MARGIN = 8  # px beyond two radii from the disc's path that count as still
DISC_COLOUR = np.array([0.9, 0.3, 0.1])  # linear RGB


def disc_centre(t: float) -> tuple[float, float]:
    """Where the disc is at time ``t`` (in frames)."""
    return 40 + DISC_SPEED * t, 96 + 4 * np.sin(t)


def moving_disc_clip(path: Path, *, frames: int = 8, noise: float = 0.0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Write the clip (lossless RGB H.264, 30 fps) and return its frames and their sharp
    versions, (H, W, 3) uint8.

    The disc moves ``DISC_SPEED`` px per frame, blurred by averaging ``DISC_INSTANTS`` instants
    of a 360-degree exposure in linear light; sharp: the disc at the middle of the exposure.
    ``noise``: sigma of a camera's Gaussian noise in 8-bit levels, drawn anew for every frame.
    """
    from dataset_builder.response import load_response

    srgb = load_response("srgb")
    height, width = DISC_SIZE
    with av.open(str(Path(__file__).resolve().parents[1] / "samples" / "bikes.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    background = srgb.to_linear(first)[:height, :width].astype(np.float64)
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)

    def disc_at(t: float) -> np.ndarray:
        cx, cy = disc_centre(t)
        alpha = np.clip(DISC_RADIUS + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1)[..., None]
        return background * (1 - alpha) + DISC_COLOUR * alpha

    blurred, sharps = [], []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(frames):
            exposure = sum(disc_at(i + k / DISC_INSTANTS) for k in range(DISC_INSTANTS)) / DISC_INSTANTS
            frame = srgb.from_linear(exposure.astype(np.float32), np.uint8)
            if noise:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).round().astype(np.uint8)
            blurred.append(frame)
            sharps.append(srgb.from_linear(disc_at(i + 0.5).astype(np.float32), np.uint8))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return blurred, sharps


def disc_still_mask(index: int) -> np.ndarray:
    """(H, W) bool: the still region of frame ``index``, far from the disc during that frame
    and its neighbours (more than two radii and ``DISC_MARGIN`` from its centre)."""
    height, width = DISC_SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.full((height, width), np.inf)
    for t in np.linspace(index - 1, index + 2, 49):
        cx, cy = disc_centre(t)
        distance = np.minimum(distance, np.hypot(xx - cx, yy - cy))
    return distance > 2 * DISC_RADIUS + DISC_MARGIN
