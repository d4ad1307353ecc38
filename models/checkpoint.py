"""Save and load generator weights: our safetensors files and public ESRGAN-family checkpoints.

A user passes a file and nothing else, so the configuration travels with the weights:

* files we write are safetensors with the :class:`GeneratorConfig` as JSON in the
  metadata (``unsmear.generator_config``) beside free-form metadata such as the recipe;
* BasicSR / Real-ESRGAN ``.pth`` files (``params_ema`` preferred over ``params``, or a bare
  state dict, ``module.`` prefixes from DataParallel allowed) and the ESRGAN repository's
  older names (``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``, ``upconv1``, ``HRconv``) are
  read from tensor names and shapes alone (:func:`infer_config`). Their RRDBNet has no
  global residual, so they load with ``residual=False``.

Pickles are only ever opened with ``torch.load(weights_only=True)``: a checkpoint from
the internet must not be able to run code. Anything that does not fit raises
:class:`CheckpointError` with one sentence naming the file and what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from unsmear.errors import one_line
from unsmear.files import replaced_when_done

from .errors import CheckpointError
from .generator import GeneratorConfig, RRDBNet
from .registry import DEFAULT_ARCHITECTURE, architecture, architecture_of

logger = logging.getLogger(__name__)

# safetensors metadata key holding the generator configuration as JSON.
CONFIG_KEY = "unsmear.generator_config"
# Bumped when the meaning of a saved file changes, so old readers can refuse new files.
FORMAT_KEY = "unsmear.format_version"
# The generator's registered architecture (models.registry); absent = RRDBNet (older files).
ARCH_KEY = "unsmear.architecture"
# Written by save_generator itself, never copied from other metadata.
RESERVED_KEYS = (CONFIG_KEY, FORMAT_KEY, ARCH_KEY)
FORMAT_VERSION = "1"
# Wrappers around the state dict, most preferred first: BasicSR saves the EMA weights
# (the better ones) as "params_ema"; Lightning-style files use "state_dict".
WRAPPER_KEYS = ("params_ema", "params", "state_dict")
# Name prefixes added by DataParallel / DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Error messages list at most this many tensor names.
MAX_NAMES_SHOWN = 5
# First bytes of a PyTorch zip checkpoint and of a legacy pickle (PROTO opcode).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"
# The ESRGAN repository's names (xinntao/ESRGAN, RRDBNet_arch.py) → BasicSR's names.
OLD_ESRGAN_RENAMES = (
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\."), r"body.\1.rdb\2."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv([12])\."), r"conv_up\1."),
    (re.compile(r"^HRconv\."), "conv_hr."),
)
_BODY_BLOCK = re.compile(r"^body\.(\d+)\.")
_UNSUPPORTED = re.compile(r"Unsupported (?:global: GLOBAL (\S+)|(operand \d+))")
KNOWN_LAYOUTS = "expected an RRDBNet state dict (unsmear, BasicSR, Real-ESRGAN or ESRGAN)"


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _one_line(err: BaseException) -> str:
    """A library's exception as a short single line, with its type (a safetensors or pickle
    message alone rarely says what kind of failure it was)."""
    return f"{type(err).__name__}: {one_line(err)}" if str(err).strip() else type(err).__name__


def _sniff(path: Path) -> str:
    """Return "safetensors" or "torch" from the file's first bytes (suffixes get renamed)."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    with path.open("rb") as fh:
        head = fh.read(9)
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO):
        return "torch"
    # safetensors: 8-byte little-endian header length, then the JSON header.
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path}: not a checkpoint (neither a safetensors file nor a PyTorch .pth/.pt file)")


def _strip_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for name, tensor in state_dict.items():
        for prefix in WRAPPER_PREFIXES:
            while name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = tensor
    return out


def _unwrap(obj: object, source: str) -> dict[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state dict; {KNOWN_LAYOUTS}")
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            logger.debug("%s: using the %r weights", source, key)
            obj = obj[key]
            break
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, Tensor) or not isinstance(k, str)]
    if not_tensors:
        raise CheckpointError(f"{source}: entries {_names(not_tensors)} are not named tensors; {KNOWN_LAYOUTS}")
    if not obj:
        raise CheckpointError(f"{source}: holds no tensors; {KNOWN_LAYOUTS}")
    return _strip_prefixes(obj)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read the tensors of a checkpoint, on the CPU.

    Args:
        path: A ``.safetensors`` file, or a ``.pth`` / ``.pt`` file opened with
            ``torch.load(weights_only=True)``. The format is told from the content.

    Returns:
        Name → tensor, unwrapped from ``params_ema`` / ``params`` and with ``module.``
        prefixes removed; names are not converted (see :func:`convert_old_esrgan`).
    """
    path = Path(path)
    if _sniff(path) == "safetensors":
        try:
            obj = load_file(path, device="cpu")
        except SafetensorError as err:
            raise CheckpointError(f"{path}: not a valid safetensors file ({_one_line(err)})") from err
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            found = _UNSUPPORTED.search(str(err))
            why = ""
            if found:
                why = f" (global {found.group(1)})" if found.group(1) else f" (pickle {found.group(2)})"
            raise CheckpointError(
                f"{path}: refused: it holds pickled Python objects that torch.load(weights_only=True) "
                f"will not run{why}; only plain tensor state dicts are loaded"
            ) from err
        except Exception as err:  # corrupt zip, truncated file, ...: re-raised with the file name
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_one_line(err)})") from err
    return _unwrap(obj, str(path))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The safetensors metadata of ``path`` (``{}`` for ``.pth`` files, which have none).

    Args:
        path: A checkpoint file.
    """
    path = Path(path)
    if _sniff(path) != "safetensors":
        return {}
    try:
        with safe_open(path, framework="pt") as fh:
            return dict(fh.metadata() or {})
    except SafetensorError as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({_one_line(err)})") from err


def convert_old_esrgan(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the ESRGAN repository's tensor names to BasicSR's; other names pass unchanged.

    ``RRDB_trunk.N.RDB1.conv1`` → ``body.N.rdb1.conv1``, ``trunk_conv`` → ``conv_body``,
    ``upconv1/2`` → ``conv_up1/2``, ``HRconv`` → ``conv_hr``; ``conv_first`` and
    ``conv_last`` keep their names. Idempotent.

    Args:
        state_dict: Name → tensor.
    """
    out = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in OLD_ESRGAN_RENAMES:
            name = pattern.sub(replacement, name)
        out[name] = tensor
    return out


def _conv_weight(state_dict: Mapping[str, Tensor], name: str, source: str) -> Tensor:
    weight = state_dict.get(name)
    if weight is None or weight.dim() != 4:
        if "model.0.weight" in state_dict:
            raise CheckpointError(
                f"{source}: uses the 2018 'model.1.sub.N' ESRGAN layout, which unsmear does not read; "
                f"{KNOWN_LAYOUTS}"
            )
        raise CheckpointError(f"{source}: has no 4-D {name}; {KNOWN_LAYOUTS}")
    return weight


def infer_config(state_dict: Mapping[str, Tensor], *, source: str = "state dict") -> GeneratorConfig:
    """Work out the :class:`GeneratorConfig` of a foreign checkpoint from names and shapes.

    The upsampling convolutions present give the downscale (none: 1, ``conv_up1``: 2,
    both: 4); ``conv_first``'s input channels must then be ``num_ch * d * d * in_frames``
    with an odd ``in_frames``. Anything else with upsamplers is a super-resolution model
    and is refused. ``residual`` is False: BasicSR's RRDBNet has no global residual.

    Args:
        state_dict: Name → tensor, BasicSR or old ESRGAN names.
        source: How to name the checkpoint in error messages (e.g. its path).

    Raises:
        CheckpointError: Not an RRDBNet, or not a same-size one.
    """
    sd = convert_old_esrgan(_strip_prefixes(state_dict))
    first = _conv_weight(sd, "conv_first.weight", source)
    last = _conv_weight(sd, "conv_last.weight", source)
    num_feat, in_ch = int(first.shape[0]), int(first.shape[1])
    num_ch = int(last.shape[0])
    blocks = sorted({int(m.group(1)) for name in sd if (m := _BODY_BLOCK.match(name))})
    if not blocks:
        raise CheckpointError(f"{source}: has no body.N RRDB blocks; {KNOWN_LAYOUTS}")
    if blocks != list(range(len(blocks))):
        raise CheckpointError(f"{source}: RRDB blocks are numbered {blocks[0]}..{blocks[-1]} with gaps")
    num_grow_ch = int(_conv_weight(sd, "body.0.rdb1.conv1.weight", source).shape[0])
    has_up1, has_up2 = "conv_up1.weight" in sd, "conv_up2.weight" in sd
    if has_up2 and not has_up1:
        raise CheckpointError(f"{source}: has conv_up2 without conv_up1; {KNOWN_LAYOUTS}")
    upsampling = 2 ** (int(has_up1) + int(has_up2))

    per_frame = num_ch * upsampling * upsampling
    in_frames, remainder = divmod(in_ch, per_frame)
    if remainder == 0 and in_frames % 2 == 1:
        return GeneratorConfig(
            num_feat=num_feat,
            num_block=len(blocks),
            num_grow_ch=num_grow_ch,
            downscale=upsampling,
            in_frames=in_frames,
            residual=False,
            num_ch=num_ch,
        )
    # BasicSR's scale=4 / scale=2 models: unshuffle by 1 / 2, upsample by 4 → larger output.
    for unshuffle in (1, 2, 4):
        if in_ch == num_ch * unshuffle * unshuffle and upsampling > unshuffle:
            scale = upsampling // unshuffle
            raise CheckpointError(
                f"{source} is a x{scale} super-resolution model, not a same-size model; "
                f"use it with `models train --init` to start from its trunk"
            )
    raise CheckpointError(
        f"{source}: conv_first takes {in_ch} channels, which fits no same-size layout with "
        f"{upsampling}x upsampling and {num_ch}-channel frames (expected an odd multiple of {per_frame})"
    )


def _config_from_metadata(text: str, source: str, config_class: type = GeneratorConfig):
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{source}: metadata {CONFIG_KEY} is not valid JSON ({err})") from err
    if not isinstance(fields, dict):
        raise CheckpointError(f"{source}: metadata {CONFIG_KEY} is not a JSON object")
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise CheckpointError(
            f"{source}: generator config has unknown fields {_names(unknown)} "
            f"(written by a newer unsmear?)"
        )
    try:
        return config_class(**fields)
    except ValueError as err:
        raise CheckpointError(f"{source}: invalid generator config: {err}") from err


def _check_fits(model: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> None:
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state_dict.items()}
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected]
    wrong = [f"{n} {got[n]} (model {expected[n]})" for n in expected if n in got and got[n] != expected[n]]
    problems = []
    if missing:
        problems.append(f"missing tensors {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors {_names(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes {_names(wrong)}")
    if problems:
        config = getattr(model, "config", None)
        raise CheckpointError(f"{source}: {'; '.join(problems)}; expected an RRDBNet state dict for {config}")


def load_generator(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Build the generator a checkpoint describes and load its weights.

    Args:
        path: Our ``.safetensors`` (config from its metadata), or a BasicSR / Real-ESRGAN /
            ESRGAN same-size checkpoint (config inferred from tensor names and shapes).
        device: Where to put the model.

    Returns:
        The model in eval mode with ``requires_grad`` off.

    Raises:
        CheckpointError: Missing file, not a checkpoint, refused pickle, super-resolution
            model, or tensors that do not fit.
    """
    path = Path(path)
    source = str(path)
    state_dict = read_state_dict(path)
    metadata = read_metadata(path)
    version = metadata.get(FORMAT_KEY, FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: format version {version} was written by a newer unsmear (this one reads {FORMAT_VERSION})"
        )
    try:
        network, config_class = architecture(metadata.get(ARCH_KEY, DEFAULT_ARCHITECTURE))
    except ValueError as err:
        raise CheckpointError(f"{source}: {err} (written by a newer unsmear?)") from err
    if CONFIG_KEY in metadata:
        config = _config_from_metadata(metadata[CONFIG_KEY], source, config_class)
    else:
        state_dict = convert_old_esrgan(state_dict)
        config = infer_config(state_dict, source=source)
    model = network(config)
    _check_fits(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    model.eval().requires_grad_(False)
    logger.info("loaded generator %s: %s", source, config)
    return model.to(device)


def _unwrap_model(model: nn.Module) -> nn.Module:
    # DataParallel / DDP keep the network in .module, torch.compile in ._orig_mod.
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_generator(
    model: RRDBNet, path: str | os.PathLike[str], *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write the generator's weights and config to a safetensors file, atomically.

    Args:
        model: The generator (DataParallel / DDP / torch.compile wrappers are unwrapped).
        path: Destination, ending in ``.safetensors``; replaced only once fully written.
        metadata: Extra string → string entries (e.g. the training recipe), kept verbatim.
    """
    path = Path(path)
    net = _unwrap_model(model)
    try:
        name = architecture_of(net)
    except ValueError as err:
        raise TypeError(f"save_generator: {err}") from err
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: generator weights are saved as safetensors; use a .safetensors name")
    extra = dict(metadata or {})
    bad = [k for k, v in extra.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"save_generator metadata must map str to str; bad entries: {_names(bad)}")
    reserved = sorted(set(RESERVED_KEYS) & set(extra))
    if reserved:
        raise ValueError(f"save_generator metadata may not set {', '.join(reserved)}")
    extra[CONFIG_KEY] = json.dumps(dataclasses.asdict(net.config), sort_keys=True)
    extra[ARCH_KEY] = name
    extra[FORMAT_KEY] = FORMAT_VERSION
    # contiguous(): channels_last parameters are saved in the standard layout.
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in net.state_dict().items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_when_done(path) as partial:
        save_file(tensors, str(partial), metadata=extra)
        # safetensors writes the file private (0600); a model file gets the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)
    logger.info("saved generator %s (%s)", path, net.config)


def load_trunk(model: nn.Module, state_dict: Mapping[str, Tensor]) -> tuple[list[str], list[str]]:
    """Copy every tensor of ``state_dict`` whose name and shape fit ``model``, in place.

    For starting training from a related model, e.g. the trunk of an x4 ESRGAN: names are
    converted from the old ESRGAN layout and ``module.`` prefixes removed first.

    Args:
        model: The generator to fill (its other tensors keep their values).
        state_dict: Name → tensor, e.g. from :func:`read_state_dict`.

    Returns:
        (loaded, skipped): names (after conversion to BasicSR names) copied into the model,
        and those of ``state_dict`` that were not (absent from the model or another shape).

    Raises:
        CheckpointError: Not a single tensor fits.
    """
    net = _unwrap_model(model)
    source = convert_old_esrgan(_strip_prefixes(_unwrap(state_dict, "state dict")))
    own = net.state_dict()
    loaded, skipped = [], []
    with torch.no_grad():
        for name, tensor in source.items():
            target = own.get(name)
            if target is not None and target.shape == tensor.shape:
                target.copy_(tensor)
                loaded.append(name)
            else:
                skipped.append(name)
    if not loaded:
        raise CheckpointError(
            f"none of the {len(source)} tensors fit the model (e.g. {_names(skipped)}); {KNOWN_LAYOUTS}"
        )
    logger.info("initialised %d tensors; skipped %d: %s", len(loaded), len(skipped), _names(skipped))
    return loaded, skipped
