"""Train the U-Net on prepared pairs: cubes, augmentation, MAE + Adam, resumable checkpoints, per-epoch metrics.

Recipe (the paper's, scaled to what the machine affords):

* **Cubes.** ``cube^3`` cubes cut from the 1 A maps; a fraction ``signal_fraction`` is centred on a voxel inside the
  target mask (signal cubes), the rest anywhere in the box (mostly solvent, noise, detergent: "empty" cubes that
  teach the network to output 0 there).
* **Augmentation** (input and target together unless said): a random 90-degree rotation about a random axis and a
  random mirror (maps can come with either hand), then on the input only: Gaussian blur (sigma 0.5-1 voxel, 15 %),
  extra noise (SD 0-0.05, 20 %), patch corruption (a 4-12 voxel box zeroed, re-noised or blurred, 15 %).
* **Finer grids** (optional, ``zoom`` LO HI > 1): each training cube is a region of ``cube / z`` voxels (z uniform in
  LO-HI) resampled up to ``cube`` as the command resamples a map (Fourier, :mod:`deepemhancer.resample`; cut with a
  margin that takes the edge ringing), input and target alike: what the network sees when a map sampled finer than
  1 A is worked on at its own voxels, structures 1-z times larger than on the 1 A grid. Measured for that (model
  card, "High-resolution maps"): on simulated high-resolution maps a finer grid lost with it as without it.
* **Sharper targets for high-resolution pairs** (optional, ``sharp_below`` HI LO; tightTarget and masked): a pair whose
  half maps' FSC resolution d is better than HI gets highRes' sharper target (``B_t = d^2`` instead of ``2 d^2``,
  same tight mask) blended into its own, with weight ``(HI - d) / (HI - LO)`` clipped to 0-1: at an atom's local
  resolution the tight target keeps 61 % of its amplitude, the sharp one 78 %, and on a 2-3 A map the shells near
  that resolution decide its FSC0.5. Pairs coarser than HI, for which the tight target was made, keep it unchanged.
  Measured (model card, "tightTarget on the 1.75 A crop"): from the shipped tightTarget it changed nothing there.
* **Noise cubes** (optional, ``noise_cubes``): a fraction of the cubes is pure correlated Gaussian noise (SD
  log-uniform in ``noise_sd``, blur sigma in ``noise_blur``) with a target of 0. The prepared boxes are tight, so
  "empty" cubes still hold some molecule and the solvent is quieter than in many real boxes; without these a
  network without normalisation layers paints faint texture on strong solvent noise, which the fast tiling (which
  skips solvent) and the original tiling (which does not) then disagree on. ``noise_augment`` adds the same kind
  of noise to that fraction of the other cubes' inputs (target unchanged), so that noise level alone does not
  tell the network to output 0.
* **Masked kind.** The input is normalised inside a binary mask, as the command does with ``-m``: the model's wide
  envelope, grown by ``mask_dilation`` voxels (one draw per map from its own seeded generator), because the masks
  users give (RELION's automatic mask: low-pass, threshold, extension, soft edge) are wider and vary.
* **Optimisation.** Mean absolute error; Adam at ``lr`` (1e-3), halved when the validation loss has not improved for
  5 epochs (ReduceLROnPlateau semantics, kept in the checkpoint so a resumed run continues exactly). With
  ``keep_weight`` W > 0 the loss adds W times the mean shortfall ``max(target - output, 0)`` where the target has
  density (target > 0): an output below the target there costs 1 + W, above it 1. MAE alone predicts the median of
  what a weak region could be, which is 0 where it is as often noise as molecule, so fine-tuning towards sharper
  targets erased weak modelled density; the extra term moves that choice towards keeping it, and costs nothing in
  the solvent (target 0), where the output should stay empty. With ``shell_weight`` S > 0 it adds S times the mean
  over Fourier shells of ``1 - FSC`` of output and target, per cube (:func:`shell_correlation_loss`): the measure
  the product is judged by, which MAE hardly sees at high resolution. The validation loss (checkpoint choice,
  learning-rate schedule) is the same objective.
* **Validation.** A fixed set of cubes from the val split (same cubes every epoch): MAE, the loss (equal to the MAE
  without ``keep_weight`` and ``shell_weight``), and Pearson CC with the target of the output and, for reference, of
  the input. One CSV row per epoch in ``log.csv``; its ``train_mae`` is the mean training objective of the epoch's
  steps (the MAE only without the extra terms).
* **Checkpoints** (``<run>/checkpoint/``): weights, optimizer variables, epoch, learning-rate schedule state and the
  sampler's RNG state, written atomically after every epoch; rerunning the same command resumes there.
* **Seeds.** ``keras.utils.set_random_seed(seed)`` for the initial weights; cube sampling and augmentation use one
  numpy Generator whose state is checkpointed.

Multi-GPU: with the JAX backend, ``--data-parallel`` sets ``keras.distribution.DataParallel`` over all devices
(batch split across them). With TensorFlow, run the same code under ``tf.distribute.MirroredStrategy().scope()``;
with torch, use one GPU per run. On one GPU use the paper configuration: ``--filters 32,64,128
--convs-per-block 3 --cube 64 --batch 8``.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import ndimage

from .. import normalize as norm
from ..errors import InputError
from ..network import UNetConfig, build_unet
from ..resample import resample_to_shape
from ..tiling import predict_tiled, signal_envelope
from . import prepare as prep

KINDS = ("tightTarget", "wideTarget", "highRes", "masked")
TARGET_KEY = {"tightTarget": "target_tight", "highRes": "target_sharp", "masked": "target_tight",
              "wideTarget": "target_wide"}
CSV_FIELDS = ("epoch", "step", "lr", "train_mae", "val_mae", "val_cc", "val_cc_input", "val_noise_rms",
              "epoch_seconds", "seconds_per_step", "wall_seconds", "val_loss")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint and the model's metadata)."""

    kind: str = "tightTarget"
    filters: tuple = (16, 32, 64)
    convs_per_block: int = 2
    groups: int = 8
    norm_layer: str = "group"               # "none": no normalisation layers (tiling-independent output)
    input_gain: str | None = None           # "envelope_p99": inputs divided by normalize.signal_gain
    cube: int = 32
    batch: int = 4
    epochs: int = 30
    steps_per_epoch: int = 100
    val_cubes: int = 48
    lr: float = 1e-3
    keep_weight: float = 0.0                # extra cost of an output below the target where it has density
    shell_weight: float = 0.0               # weight of the shell-correlation (per-cube FSC) term of the loss
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    seed: int = 0
    signal_fraction: float | None = None
    max_resolution: float | None = None     # highRes: only pairs with FSC resolution better than this
    inference_cube: int | None = None       # original tiling's cube/stride in the metadata (default: training
    inference_stride: int | None = None     # cube, a quarter of it)
    fast_cube: int | None = None            # fast tiling's cube/stride in the metadata (default: inference cube,
    fast_stride: int | None = None          # half of it)
    noise_cubes: float = 0.0               # fraction of pure-noise cubes (target 0)
    noise_augment: float = 0.0             # fraction of other cubes given the same noise on the input
    noise_sd: tuple = (0.02, 0.2)           # SD range of that noise (network input units: after the gain)
    noise_blur: tuple = (0.5, 1.0)          # Gaussian blur (voxels) of that noise: unfiltered half-map solvent
    mask_dilation: tuple = (0, 0)           # masked: the binary input mask grown by this many voxels (one draw
                                            # per map), because users' masks are wider than the model's envelope
    zoom: tuple = (1.0, 1.0)                # training cubes drawn at 1/z A grids, z uniform in this range
    sharp_below: tuple | None = None        # (HI, LO) A: blend highRes' target into pairs finer than HI, all at LO
    data_parallel: bool = False
    init_weights: str | None = None         # start a new run from another model's weights (fine-tuning)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"unknown model kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.filters = tuple(int(f) for f in self.filters)
        self.noise_sd = tuple(float(v) for v in self.noise_sd)
        self.noise_blur = tuple(float(v) for v in self.noise_blur)
        self.mask_dilation = tuple(int(v) for v in self.mask_dilation)
        self.zoom = tuple(float(v) for v in self.zoom)
        if not 1.0 <= self.zoom[0] <= self.zoom[1] <= 2.0:
            raise InputError(f"zoom {self.zoom}: give MIN MAX with 1 <= MIN <= MAX <= 2")
        if self.sharp_below is not None:
            self.sharp_below = tuple(float(v) for v in self.sharp_below)
            if self.kind not in ("tightTarget", "masked") or not self.sharp_below[0] > self.sharp_below[1] > 0:
                raise InputError(f"sharp targets below {self.sharp_below}: give HI LO in A with HI > LO > 0, for "
                                 "tightTarget or masked (highRes' own target is the sharp one; wideTarget's keeps "
                                 "unmodelled density the sharp one has not)")
        if not 0 <= self.mask_dilation[0] <= self.mask_dilation[1]:
            raise InputError(f"mask dilation {self.mask_dilation}: give MIN MAX voxels with 0 <= MIN <= MAX")
        if self.signal_fraction is None:
            self.signal_fraction = 0.9 if self.kind == "highRes" else 0.75
        if self.max_resolution is None and self.kind == "highRes":
            self.max_resolution = 4.0
        if self.cube % (2 ** len(self.filters)):
            raise InputError(f"cube side {self.cube} must be a multiple of {2 ** len(self.filters)}")

    @property
    def unet(self) -> UNetConfig:
        return UNetConfig(filters=self.filters, convs_per_block=self.convs_per_block, groups=self.groups,
                          norm_layer=self.norm_layer)

    @property
    def normalization(self) -> str:
        return "mask" if self.kind == "masked" else "noise"


# ----------------------------------------------------------------------------------------------------------- data
@dataclass
class Volume:
    """One prepared pair in memory: network input, target, and where the molecule is (for signal cubes)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    resolution: float | None = None
    signal_voxels: np.ndarray = field(default=None, repr=False)


def _pad_to(a: np.ndarray, cube: int, mode: str) -> np.ndarray:
    pads = [(0, max(0, cube - n)) for n in a.shape]
    return np.pad(a, pads, mode=mode) if any(p for _, p in pads) else a


def sharp_share(resolution: float | None, sharp_below: tuple | None) -> float:
    """Weight of highRes' target in a pair's target (module docstring, "Sharper targets"): 0 without
    ``sharp_below`` or a known resolution, 1 at LO and finer."""
    if not sharp_below or not resolution:
        return 0.0
    hi, lo = sharp_below
    return float(np.clip((hi - resolution) / (hi - lo), 0.0, 1.0))


def load_volume(folder: str, entry: dict, kind: str, cube: int, input_gain: str | None = None,
                mask_dilation: int = 0, sharp_below: tuple | None = None) -> Volume:
    """One prepared pair as the network sees it; ``mask_dilation``: masked kind only, voxels added around the
    binary mask (the model envelope) the input is normalised in; ``sharp_below``: see :func:`sharp_share`."""
    with np.load(os.path.join(folder, entry["file"])) as z:
        x = z["input"].astype(np.float32)
        # pairs prepared before the sharper highRes target existed fall back to the tight one
        y = z[TARGET_KEY[kind] if TARGET_KEY[kind] in z.files else "target_tight"].astype(np.float32)
        share = sharp_share(entry.get("fsc_resolution"), sharp_below) if "target_sharp" in z.files else 0.0
        if share:
            y = (1 - share) * y + share * z["target_sharp"].astype(np.float32)
        mask = z["mask_tight"].astype(np.float32)
        if kind == "masked":
            # the masked model sees the raw map normalised inside a binary mask (what a user gives with -m)
            raw = x * np.float32(10 * z["noise_std"]) + np.float32(z["noise_mean"])
            binary = z["mask_wide"] > 0.5
            if mask_dilation:
                binary = ndimage.binary_dilation(binary, iterations=mask_dilation)
            binary = binary.astype(np.float32)
            x = norm.normalize_with_mask(raw, binary)
    if input_gain:
        x = x / np.float32(norm.signal_gain(x, signal_envelope(x)))
    x, y, mask = _pad_to(x, cube, "reflect"), _pad_to(y, cube, "constant"), _pad_to(mask, cube, "constant")
    sig = np.argwhere(mask > 0.5)
    if len(sig) > 4000:
        sig = sig[np.linspace(0, len(sig) - 1, 4000).astype(int)]
    return Volume(entry["name"], x.astype(np.float16), y.astype(np.float16), mask.astype(np.float16),
                  entry.get("fsc_resolution"), sig)


def load_split(folders: list[str], split: str, cfg: TrainConfig, log=print) -> list[Volume]:
    vols = []
    # one mask dilation per map, the same on every resume: its own generator, seeded by the run and the split
    dilations = np.random.default_rng([cfg.seed, 2718, zlib.crc32(split.encode())])
    lo, hi = cfg.mask_dilation
    for folder in folders:
        index = prep.load_index(folder)
        for e in index["pairs"]:
            if e["split"] != split:
                continue
            if cfg.max_resolution and e.get("fsc_resolution") and e["fsc_resolution"] > cfg.max_resolution:
                continue
            vols.append(load_volume(folder, e, cfg.kind, cfg.cube, cfg.input_gain,
                                    int(dilations.integers(lo, hi + 1)) if hi else 0, cfg.sharp_below))
    if not vols:
        raise InputError(f"no {split} pairs in {', '.join(folders)} for kind {cfg.kind}; run prepare first.")
    log(f"{split}: {len(vols)} maps, {sum(v.x.size for v in vols) / 1e6:.1f} M voxels at 1 A")
    return vols


#: voxels cut beyond a zoomed cube's region on each side, so that the resampling's edge ringing falls outside it
ZOOM_MARGIN = 6


def cut_cube(vol: Volume, cube: int, rng: np.random.Generator, signal: bool,
             zoom: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Input and target cube of side ``cube``; with ``zoom`` z > 1 the region of ``cube / z`` voxels there, resampled
    up to ``cube`` (with a margin of :data:`ZOOM_MARGIN` that is cut away after; a map too small for the margin gives
    an unzoomed cube)."""
    shape = np.array(vol.x.shape)
    side = cube if zoom == 1.0 else int(np.ceil(cube / zoom)) + 2 * ZOOM_MARGIN
    if np.any(shape < side):
        side, zoom = cube, 1.0
    if signal and len(vol.signal_voxels):
        centre = vol.signal_voxels[rng.integers(len(vol.signal_voxels))] + rng.integers(-4, 5, size=3)
        start = np.clip(centre - side // 2, 0, shape - side)
    else:
        start = np.array([rng.integers(0, n - side + 1) for n in shape])
    sl = tuple(slice(s, s + side) for s in start)
    x, y = vol.x[sl].astype(np.float32), vol.y[sl].astype(np.float32)
    if zoom == 1.0:
        return x, y
    up = max(cube, int(round(side * zoom)))
    first = (up - cube) // 2
    inner = (slice(first, first + cube),) * 3
    return (np.ascontiguousarray(resample_to_shape(x, (up,) * 3, workers=1)[inner]),
            np.ascontiguousarray(resample_to_shape(y, (up,) * 3, workers=1)[inner]))


def augment(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random 90-degree rotation + mirror (both), then blur / noise / patch corruption of the input only."""
    axes = [(0, 1), (0, 2), (1, 2)][rng.integers(3)]
    k = int(rng.integers(4))
    x, y = np.rot90(x, k, axes), np.rot90(y, k, axes)
    if rng.random() < 0.5:
        ax = int(rng.integers(3))
        x, y = np.flip(x, ax), np.flip(y, ax)
    x = np.ascontiguousarray(x)
    if rng.random() < 0.15:
        x = ndimage.gaussian_filter(x, rng.uniform(0.5, 1.0))
    if rng.random() < 0.2:
        x = x + rng.normal(0, rng.uniform(0, 0.05), size=x.shape).astype(np.float32)
    if rng.random() < 0.15:
        size = rng.integers(4, 13, size=3)
        start = [rng.integers(0, n - s + 1) for n, s in zip(x.shape, size)]
        sl = tuple(slice(a, a + s) for a, s in zip(start, size))
        choice = rng.integers(3)
        if choice == 0:
            x[sl] = 0.0
        elif choice == 1:
            x[sl] = rng.normal(0, 0.1, size=x[sl].shape)
        else:
            x[sl] = ndimage.gaussian_filter(x[sl], 2.0)
    return x.astype(np.float32), np.ascontiguousarray(y, dtype=np.float32)


def correlated_noise(cube: int, rng: np.random.Generator, sd_range: tuple[float, float],
                     blur_range: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Gaussian noise blurred by ``blur_range`` voxels (as solvent noise in a map), SD log-uniform in ``sd_range``,
    plus a small offset (an imperfect noise mean)."""
    noise = ndimage.gaussian_filter(rng.standard_normal((cube,) * 3).astype(np.float32), rng.uniform(*blur_range),
                                    mode="wrap")
    sd = np.exp(rng.uniform(np.log(sd_range[0]), np.log(sd_range[1])))
    return (noise * np.float32(sd / noise.std()) + np.float32(rng.normal(0, 0.01))).astype(np.float32)


def make_batch(vols: list[Volume], cfg: TrainConfig, rng: np.random.Generator, train: bool = True):
    xs, ys = [], []
    for _ in range(cfg.batch):
        if train and cfg.noise_cubes and rng.random() < cfg.noise_cubes:
            xs.append(correlated_noise(cfg.cube, rng, cfg.noise_sd, cfg.noise_blur))
            ys.append(np.zeros((cfg.cube,) * 3, np.float32))
            continue
        vol = vols[rng.integers(len(vols))]
        signal = rng.random() < cfg.signal_fraction
        # drawn only for a zoomed run, so that runs without it keep their random stream (and resume as before)
        zoom = float(rng.uniform(*cfg.zoom)) if train and cfg.zoom != (1.0, 1.0) else 1.0
        x, y = cut_cube(vol, cfg.cube, rng, signal=signal, zoom=zoom)
        if train:
            x, y = augment(x, y, rng)
            if cfg.noise_augment and rng.random() < cfg.noise_augment:
                x = x + correlated_noise(cfg.cube, rng, cfg.noise_sd, cfg.noise_blur)
        xs.append(x)
        ys.append(y)
    return np.stack(xs)[..., None], np.stack(ys)[..., None]


def validation_set(vols: list[Volume], cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """A fixed set of cubes (same every epoch and on resume): seeded independently of training."""
    rng = np.random.default_rng(cfg.seed + 7919)
    xs, ys = [], []
    for i in range(cfg.val_cubes):
        vol = vols[i % len(vols)]
        x, y = cut_cube(vol, cfg.cube, rng, signal=rng.random() < cfg.signal_fraction)
        xs.append(x)
        ys.append(y)
    return np.stack(xs)[..., None], np.stack(ys)[..., None]


def noise_validation_set(cfg: TrainConfig, n: int = 16) -> np.ndarray:
    """Fixed pure-noise cubes (SD spread over 0.02-0.3) on which the output should be 0; seeded like the val set."""
    rng = np.random.default_rng(cfg.seed + 104729)
    return np.stack([correlated_noise(cfg.cube, rng, (0.02, 0.3), (0.5, 1.5)) for _ in range(n)])[..., None]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------- checkpoints
def _ckpt_paths(run: str) -> dict[str, str]:
    d = os.path.join(run, "checkpoint")
    return {"dir": d, "last": os.path.join(d, "last.weights.h5"), "optimizer": os.path.join(d, "last_optimizer.npz"),
            "state": os.path.join(d, "state.json"), "best": os.path.join(d, "best.weights.h5")}


def _save_weights(model, path: str) -> None:
    """The layers' weights only, atomically: a compiled model's own file would also hold the optimizer's moments
    (3x the size; they are kept once, in ``last_optimizer.npz``), which matters for checkpoints committed to git."""
    import keras
    lean = keras.Model.from_config(model.get_config())   # uncompiled (clone_model would copy the compilation)
    lean.set_weights(model.get_weights())
    tmp = path.replace(".weights.h5", ".tmp.weights.h5")
    lean.save_weights(tmp)
    os.replace(tmp, path)


def save_checkpoint(run: str, model, state: dict) -> None:
    """Weights, optimizer variables and the loop state; state.json is written last and marks a complete set."""
    p = _ckpt_paths(run)
    os.makedirs(p["dir"], exist_ok=True)
    _save_weights(model, p["last"])
    tmp_o = p["optimizer"] + ".tmp.npz"
    np.savez(tmp_o, *[np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in model.optimizer.variables])
    os.replace(tmp_o, p["optimizer"])
    prep._write_json(p["state"], state)


def load_checkpoint(run: str, model) -> dict | None:
    p = _ckpt_paths(run)
    if not os.path.exists(p["state"]):
        return None
    with open(p["state"]) as f:
        state = json.load(f)
    opt = model.optimizer
    opt.build(model.trainable_variables)
    model.load_weights(p["last"])
    with np.load(p["optimizer"]) as z:
        values = [z[f"arr_{i}"] for i in range(len(z.files))]
    if len(values) != len(opt.variables):
        raise InputError(f"{p['optimizer']}: optimizer state does not match the model; delete {p['dir']} to "
                         f"start again.")
    for var, val in zip(opt.variables, values):
        var.assign(val)
    return state


# ------------------------------------------------------------------------------------------------------- training
def keep_loss(y_true, y_pred, keep_weight: float, xp):
    """Mean absolute error plus ``keep_weight`` times the mean shortfall below a target that has density (module
    docstring); ``xp`` is ``keras.ops`` in training and ``numpy`` for the validation loss, so both are the same."""
    loss = xp.mean(xp.abs(y_pred - y_true))
    if keep_weight:
        has_density = xp.where(y_true > 0, 1.0, 0.0)
        loss = loss + keep_weight * xp.mean(xp.maximum(y_true - y_pred, 0.0) * has_density)
    return loss


@functools.lru_cache(maxsize=4)
def _shells_and_window(n: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``n^3`` cubes: the one-hot ``(n^3, n // 2 - 1)`` matrix of Fourier shells 1 .. n/2 - 1 (radius in
    frequency voxels, rounded; FFT order, symmetric in the axes, so any axis order flattens the same) and the cosine
    edge window (1 inside, falling to 0 over the outer eighth of each face)."""
    k = np.fft.fftfreq(n) * n
    radius = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)).ravel()
    shells = (radius[:, None] == np.arange(1, n // 2)[None, :]).astype(np.float32)
    edge = max(1, n // 8)
    ramp = np.ones(n, np.float32)
    ramp[:edge] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(edge) + 0.5) / edge)
    ramp[-edge:] = ramp[:edge][::-1]
    return shells, ramp[:, None, None] * ramp[None, :, None] * ramp[None, None, :]


def _fft3(a, xp):
    """Real and imaginary parts of the 3D FFT of ``(b, n, n, n)`` cubes with ``numpy`` or ``keras.ops``; the keras
    route (2D FFT over the last two axes, then 1D over the first, moved last) leaves the axes in another order."""
    if xp is np:
        f = np.fft.fftn(a, axes=(1, 2, 3))
        return f.real, f.imag
    re, im = xp.fft2((a, xp.zeros_like(a)))
    return xp.fft((xp.moveaxis(re, 1, -1), xp.moveaxis(im, 1, -1)))


def shell_correlation_loss(y_true, y_pred, xp):
    """Mean of ``1 - FSC`` over the Fourier shells of each cube, averaged over the cubes whose target has density.

    Cubes are windowed (cosine edge) so that their borders add no common detail. A shell's correlation is blind to
    its scale, so this term rewards getting the fine detail right at every resolution, which MAE, dominated by the
    strong low-resolution density, barely weighs; the MAE beside it keeps the amplitudes. ``xp``: ``keras.ops`` in
    training, ``numpy`` for the validation loss."""
    n = int(y_true.shape[1])
    shells, window = _shells_and_window(n)
    t = xp.multiply(xp.reshape(y_true, (-1, n, n, n)), window)
    p = xp.multiply(xp.reshape(y_pred, (-1, n, n, n)), window)
    (tr, ti), (pr, pi) = _fft3(t, xp), _fft3(p, xp)
    flat = (-1, n ** 3)
    cross = xp.reshape(tr * pr + ti * pi, flat)
    power_t, power_p = xp.reshape(tr * tr + ti * ti, flat), xp.reshape(pr * pr + pi * pi, flat)
    fsc = xp.matmul(cross, shells) / xp.sqrt(xp.matmul(power_t, shells) * xp.matmul(power_p, shells) + 1e-12)
    has_density = xp.where(xp.mean(t * t, axis=(1, 2, 3)) > 1e-6, 1.0, 0.0)
    per_cube = xp.mean(1.0 - fsc, axis=1)
    return xp.sum(per_cube * has_density) / xp.maximum(xp.sum(has_density), 1.0)


def training_loss(y_true, y_pred, cfg: TrainConfig, xp):
    """The objective: :func:`keep_loss`, plus ``shell_weight`` x :func:`shell_correlation_loss` when asked."""
    loss = keep_loss(y_true, y_pred, cfg.keep_weight, xp)
    if cfg.shell_weight:
        loss = loss + cfg.shell_weight * shell_correlation_loss(y_true, y_pred, xp)
    return loss


def build_model(cfg: TrainConfig):
    import keras
    keras.utils.set_random_seed(cfg.seed)
    if cfg.data_parallel:
        from keras import distribution
        distribution.set_distribution(distribution.DataParallel(devices=distribution.list_devices()))
    model = build_unet(cfg.unet)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.lr),
                  loss=lambda y, p: training_loss(y, p, cfg, keras.ops))
    return model


def _initialise_from(model, cfg: TrainConfig, train_vols: list[Volume], log) -> None:
    """Copy another model's weights into ``model``; a group-normalised source is folded first when this run has
    no normalisation layers (statistics from 64 training cubes drawn with their own seed), and a narrower source
    is widened to this run's filters and/or deepened to its convolutions per block (:mod:`.widen`: the same
    function; widened copies perturbed by 1 %)."""
    from ..models import load_model
    from .fold import fold_group_norm
    from .widen import deepen_unet, widen_unet
    loaded = load_model(cfg.init_weights)
    source, source_config = loaded.model, UNetConfig.from_dict(loaded.metadata.architecture)
    if source_config.norm_layer == "group" and cfg.norm_layer == "none":
        rng = np.random.default_rng(cfg.seed + 104729)
        cubes = np.concatenate([make_batch(train_vols, cfg, rng, train=False)[0] for _ in range(64 // cfg.batch)])
        source = fold_group_norm(source, source_config, cubes)
        log(f"folded the group normalisation of {cfg.init_weights} into its convolutions")
    source_config = replace(source_config, norm_layer=cfg.norm_layer)
    try:
        if source_config.filters != cfg.unet.filters:
            wide_config = replace(cfg.unet, convs_per_block=source_config.convs_per_block)
            source = widen_unet(source, source_config, wide_config, rng=np.random.default_rng(cfg.seed + 15485863))
            log(f"widened {cfg.init_weights} from filters {list(source_config.filters)} to {list(cfg.unet.filters)}")
            source_config = wide_config
        if source_config.convs_per_block != cfg.unet.convs_per_block:
            source = deepen_unet(source, source_config, cfg.unet)
            log(f"deepened {cfg.init_weights} from {source_config.convs_per_block} to {cfg.unet.convs_per_block} "
                f"convolutions per block")
    except ValueError as exc:
        raise InputError(f"--init-weights {cfg.init_weights}: {exc}") from None
    if [w.shape for w in source.weights] != [w.shape for w in model.weights]:
        raise InputError(f"--init-weights {cfg.init_weights} has another architecture than this run.")
    model.set_weights(source.get_weights())


def _predict(model, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch])) for i in range(0, len(x), batch)])


def fit(pair_folders: list[str] | str, run: str, cfg: TrainConfig, *, install_dir: str | None = None,
        verbose: bool = True) -> dict:
    """Train (or resume) a run in folder ``run``; returns the final metadata dictionary."""
    import keras
    log = print if verbose else (lambda *a, **k: None)
    folders = [pair_folders] if isinstance(pair_folders, str) else list(pair_folders)
    os.makedirs(run, exist_ok=True)
    cfg_path = os.path.join(run, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            saved = json.load(f)
        if saved != json.loads(json.dumps(asdict(cfg))):
            changed = {k for k in saved if saved[k] != json.loads(json.dumps(asdict(cfg))).get(k)}
            if changed - {"epochs"}:
                raise InputError(f"{run} was started with other settings ({', '.join(sorted(changed))}); use "
                                 f"another output folder or the same options (only --epochs may grow).")
    prep._write_json(cfg_path, asdict(cfg))
    # where the pairs are, for `export` (relative to the working folder when inside it, as the campaign scripts run)
    relative = [os.path.relpath(f) for f in folders]
    prep._write_json(os.path.join(run, "pairs.json"),
                     [r if not r.startswith("..") else os.path.abspath(f) for r, f in zip(relative, folders)])
    os.makedirs(_ckpt_paths(run)["dir"], exist_ok=True)
    train_vols = load_split(folders, "train", cfg, log)
    val_vols = load_split(folders, "val", cfg, log)
    xv, yv = validation_set(val_vols, cfg)
    cc_input = float(np.mean([pearson(a, b) for a, b in zip(xv, yv) if b.std() > 0]))
    x_noise = noise_validation_set(cfg)

    model = build_model(cfg)
    state = load_checkpoint(run, model)
    rng = np.random.default_rng(cfg.seed)
    if state is None:
        state = {"epoch": 0, "step": 0, "lr": cfg.lr, "best_val": None, "wait": 0, "wall_seconds": 0.0}
        log(f"new run {run}: {model.count_params():,} parameters, kind {cfg.kind}, backend {keras.backend.backend()}")
        if cfg.init_weights:
            _initialise_from(model, cfg, train_vols, log)
            pred = _predict(model, xv, cfg.batch)
            log(f"initialised from {cfg.init_weights}: val_mae={np.mean(np.abs(pred - yv)):.5f} "
                f"val_cc={np.mean([pearson(a, b) for a, b in zip(pred, yv) if b.std() > 0]):.4f} "
                f"val_noise_rms={np.sqrt(np.mean(_predict(model, x_noise, cfg.batch) ** 2)):.5f}")
    else:
        rng.bit_generator.state = state["rng"]
        log(f"resuming {run} at epoch {state['epoch']} (step {state['step']}, lr {state['lr']:g})")
    model.optimizer.learning_rate.assign(state["lr"])
    csv_path = os.path.join(run, "log.csv")
    if os.path.exists(csv_path):  # a run started before a column was added keeps its columns
        with open(csv_path, newline="") as f:
            csv_fields = tuple(next(csv.reader(f), CSV_FIELDS))
    else:
        csv_fields = CSV_FIELDS
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(CSV_FIELDS)

    while state["epoch"] < cfg.epochs:
        t0 = time.time()
        losses = []
        for _ in range(cfg.steps_per_epoch):
            xb, yb = make_batch(train_vols, cfg, rng)
            out = model.train_on_batch(xb, yb)
            losses.append(float(out[0] if isinstance(out, (list, tuple)) else out))
        train_seconds = time.time() - t0
        pred = _predict(model, xv, cfg.batch)
        val_mae = float(np.mean(np.abs(pred - yv)))
        val_loss = float(training_loss(yv, pred, cfg, np))
        val_cc = float(np.mean([pearson(a, b) for a, b in zip(pred, yv) if b.std() > 0]))
        val_noise_rms = float(np.sqrt(np.mean(_predict(model, x_noise, cfg.batch) ** 2)))
        state["epoch"] += 1
        state["step"] += cfg.steps_per_epoch
        # ReduceLROnPlateau
        if state["best_val"] is None or val_loss < state["best_val"] - 1e-5:
            state["best_val"], state["wait"] = val_loss, 0
            _save_weights(model, _ckpt_paths(run)["best"])
            state["best_epoch"] = state["epoch"]
        else:
            state["wait"] += 1
            if state["wait"] >= cfg.plateau_patience:
                state["lr"] = max(cfg.min_lr, state["lr"] * cfg.plateau_factor)
                model.optimizer.learning_rate.assign(state["lr"])
                state["wait"] = 0
                log(f"validation loss stalled for {cfg.plateau_patience} epochs: lr -> {state['lr']:g}")
        epoch_seconds = time.time() - t0
        state["wall_seconds"] += epoch_seconds
        row = {"epoch": state["epoch"], "step": state["step"], "lr": state["lr"],
               "train_mae": round(float(np.mean(losses)), 5), "val_mae": round(val_mae, 5),
               "val_cc": round(val_cc, 4), "val_cc_input": round(cc_input, 4),
               "val_noise_rms": round(val_noise_rms, 5),
               "epoch_seconds": round(epoch_seconds, 1),
               "seconds_per_step": round(train_seconds / cfg.steps_per_epoch, 3),
               "wall_seconds": round(state["wall_seconds"], 1), "val_loss": round(val_loss, 5)}
        state["last_metrics"] = row
        state["rng"] = rng.bit_generator.state
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in csv_fields])
        save_checkpoint(run, model, state)
        log(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    # the shipped weights are the best validation epoch's
    best = _ckpt_paths(run)["best"]
    if os.path.exists(best):
        model.load_weights(best)
    metadata = training_metadata(cfg, state, folders, [v.name for v in train_vols], [v.name for v in val_vols])
    final_dir = os.path.join(run, "final")
    save_final(model, metadata, final_dir, cfg.kind)
    if install_dir:
        save_final(model, metadata, install_dir, cfg.kind)
    log(f"final model in {final_dir}" + (f" and {install_dir}" if install_dir else ""))
    return metadata


def training_metadata(cfg: TrainConfig, state: dict, folders, train_names: list[str], val_names: list[str]) -> dict:
    import keras
    cube = cfg.inference_cube or cfg.cube
    stride = cfg.inference_stride or cube // 4
    return {
        "kind": cfg.kind, "architecture": cfg.unet.to_dict(), "voxel_size": 1.0, "cube_size": cube,
        "stride": stride, "fast_cube": cfg.fast_cube, "fast_stride": cfg.fast_stride,
        "normalization": cfg.normalization, "input_gain": cfg.input_gain, "keras_backend": keras.backend.backend(),
        "description": f"DeepEMhancer-style {cfg.kind} model trained on simulated pairs from atomic models "
                       f"(deepemhancer-train); see MODEL_CARD.md.",
        "training": {
            "provenance": "deepemhancer-train fit (synthetic pairs from atomic models, deepemhancer.training)",
            "data": [_portable_path(f) for f in folders], "split": {"train": len(train_names), "val": len(val_names)},
            "train_maps": list(train_names), "val_maps": list(val_names),
            "config": json.loads(json.dumps(asdict(cfg))), "epochs": state["epoch"], "steps": state["step"],
            "wall_seconds": round(state["wall_seconds"], 1), "best_epoch": state.get("best_epoch"),
            "best_val_loss": state.get("best_val"), "final_metrics": state.get("last_metrics"),
            "target": {"tightTarget": "every modelled atom at its local resolution (B=2 d_local^2) x tight soft "
                                      "mask (radius max(3, 0.35 d_local) A)",
                       "masked": "as tightTarget, from a binary-mask-normalised input",
                       "wideTarget": "every modelled atom (B=2 d_local^2) x wide soft mask (radius max(6, 0.6 "
                                     "d_local) A) + unmodelled density blurred by 1.5 A",
                       "highRes": "every modelled atom at B=d_local^2 (sharper) x tight soft mask"}[cfg.kind]
                      + (f"; highRes' sharper target blended in for pairs finer than {cfg.sharp_below[0]:g} A "
                         f"(all of it at {cfg.sharp_below[1]:g} A)" if cfg.sharp_below else "")
                      + "; / p95 inside the tight mask; see deepemhancer/training/targets.py",
        },
    }


def export_checkpoint(run: str, out: str, which: str = "best") -> str:
    """Save a run's ``best`` (or ``last``) checkpoint as a model in ``out`` without finishing the run (to evaluate a
    campaign while it trains); returns the model's metadata file."""
    paths = _ckpt_paths(run)
    if not (os.path.exists(paths["state"]) and os.path.exists(os.path.join(run, "config.json"))):
        raise InputError(f"{run} is not a training run with a checkpoint (no config.json or checkpoint/state.json).")
    with open(os.path.join(run, "config.json")) as f:
        cfg = TrainConfig(**json.load(f))
    with open(paths["state"]) as f:
        state = json.load(f)
    model = build_unet(cfg.unet)
    model.load_weights(paths[which])
    folders = _run_pair_folders(run)
    names = {"train": [], "val": []}
    for folder in folders:
        for e in prep.load_index(folder)["pairs"]:
            if e["split"] in names:
                names[e["split"]].append(e["name"])
    metadata = training_metadata(cfg, state, folders, names["train"], names["val"])
    epoch = state.get("best_epoch") if which == "best" else state["epoch"]
    metadata["training"]["exported"] = f"{which} checkpoint, epoch {epoch} of a run still training"
    return save_final(model, metadata, out, cfg.kind)[0]


def _run_pair_folders(run: str) -> list[str]:
    """The pair folders a run was trained on (recorded in ``pairs.json`` by :func:`fit`)."""
    path = os.path.join(run, "pairs.json")
    if not os.path.exists(path):
        raise InputError(f"{run}/pairs.json is missing: pass the run's pair folders to fit again to record them.")
    with open(path) as f:
        return json.load(f)


def save_final(model, metadata: dict, directory: str, kind: str) -> list[str]:
    """Save with the engine's registry (``deepemhancer_<kind>.weights.h5`` + ``.json``, with the self-check's
    reference output); returns the files."""
    os.makedirs(directory, exist_ok=True)
    import keras
    from ..models import LoadedModel, ModelMetadata, save_model
    from ..selfcheck import reference_for
    # an uncompiled copy: Keras would otherwise store the optimizer's moments too (3x the file size)
    lean = build_unet(UNetConfig.from_dict(metadata["architecture"]))
    lean.set_weights(model.get_weights())
    meta = ModelMetadata.from_dict(metadata)
    # the output `deepemhancer --selfcheck` compares with, made here with Keras
    meta.selfcheck = reference_for(LoadedModel(model=lean, metadata=meta, path="", runtime=keras.backend.backend()))
    return [save_model(lean, meta, directory, kind)]


# ----------------------------------------------------------------------------------------------------- evaluation
def load_for_eval(path: str, kind: str):
    """(keras model, metadata dict) from a model folder or file, through the engine's registry."""
    from ..models import find_model, load_model
    loaded = load_model(find_model(kind, path))
    return loaded.model, asdict(loaded.metadata)


def evaluate(pairs: str, model_path: str, *, kind: str = "tightTarget", split: str = "test",
             csv_path: str | None = None, tiling: str = "fast") -> list[dict]:
    """Per pair: CC with the target of the input and of the tiled prediction (whole box and inside the mask)."""
    from ..models import ModelMetadata
    model, meta = load_for_eval(model_path, kind)
    tiling_plan = ModelMetadata.from_dict(meta).tiling_plan(tiling)
    index = prep.load_index(pairs)
    rows = []
    for e in index["pairs"]:
        if e["split"] != split:
            continue
        with np.load(os.path.join(pairs, e["file"])) as z:
            x = z["input"].astype(np.float32)
            y = z[TARGET_KEY.get(kind, "target_tight")].astype(np.float32)
            m = z["mask_tight"].astype(np.float32) > 0.5
            if meta.get("normalization") == "mask":
                raw = x * np.float32(10 * z["noise_std"]) + np.float32(z["noise_mean"])
                x = norm.normalize_with_mask(raw, (z["mask_wide"] > 0.5).astype(np.float32))
        t0 = time.time()
        # as `deepemhancer` does: one envelope for the signal level and the cubes to skip; the cube fitted to the map
        plan = tiling_plan.fitted(x.shape)
        envelope = signal_envelope(x) if (plan.skip_empty or meta.get("input_gain")) else None
        if meta.get("input_gain"):
            x = x / np.float32(norm.signal_gain(x, envelope))
        pred = predict_tiled(x, lambda b: np.asarray(model.predict_on_batch(b)), plan, batch_size=4,
                             mask=envelope if plan.skip_empty else None)
        rows.append({"name": e["name"], "fsc_resolution": e.get("fsc_resolution"), "shape": "x".join(map(str, x.shape)),
                     "cc_input": round(pearson(x, y), 4), "cc_output": round(pearson(pred, y), 4),
                     "cc_input_mask": round(pearson(x[m], y[m]), 4), "cc_output_mask": round(pearson(pred[m], y[m]), 4),
                     "seconds": round(time.time() - t0, 1)})
    if csv_path and rows:
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return rows


def _portable_path(folder: str) -> str:
    """The data folder as provenance without this machine's paths: relative to the working folder when inside it,
    else its last two components."""
    relative = os.path.relpath(os.path.abspath(folder))
    if not relative.startswith(".."):
        return relative
    return os.path.join(*os.path.normpath(os.path.abspath(folder)).split(os.sep)[-2:])
