"""Rebuild the bundled example: two pseudo half maps of the HCN4 channel (EMD-0093, 3.4 A) with its fitted model.

    python make_example.py ../../../shared/data/real/emd_0093/MAP_m4A.mrc.gz ../../../shared/data/real/emd_0093/6gyn.pdb

No real half-map pair of a deposited map is reachable here, so the pair is made from the deposited map the way a
reconstruction would look before post-processing (deterministic, fixed seed):

1. **Crop** a 112^3 box (150 A) at the map's native sampling (1.34 A/voxel) around the whole tetramer, keeping its
   place: the header origin is the crop's start, so the unmodified PDB 6GYN fits it.
2. **Unsharpen**: the deposited map is sharpened (apparent Guinier B about +77 A^2) and masked; its Fourier
   amplitudes are multiplied by ``exp(-B s^2 / 4)`` with B = 110 A^2, the fall-off of an unsharpened average.
3. **Noise** independent in each half, over the whole box (the deposited mask left exact zeros outside the
   molecule; a reconstruction has noise everywhere): Gaussian noise coloured by ``exp(-25 s^2 / 4) (1 + 1.5
   exp(-(15 s)^2))`` (more noise at low frequency, as in a reconstruction's solvent), scaled so that the expected
   half-map FSC, shell by shell ``S / (S + N)``, crosses 0.143 at 3.8 A: the FSC then falls smoothly from 1 to 0
   and stays near 0 up to Nyquist (2.68 A), as a real pair's does.
4. **Write** ``emd0093_half1.mrc`` and ``emd0093_half2.mrc`` as float16 MRC (mode 12; 2.8 MB each; the engine and
   Scipion read them), and ``6gyn.pdb.gz`` (the model, chains A-D with their 36 lipids, coordinates unchanged).

Needs numpy, mrcfile and (for the model) gzip only.
"""

import gzip
import os
import shutil
import sys

import mrcfile
import numpy as np

BOX = 112                      # voxels per side of the crop
CENTRE = (117, 110, 110)       # (z, y, x) voxel of the deposited map at the crop's centre (the tetramer's centre)
BLUR_B = 110.0                 # A^2, amplitude fall-off exp(-B s^2 / 4)
NOISE_B, NOISE_LOWFREQ, NOISE_LOWFREQ_WIDTH = 25.0, 1.5, 15.0
FSC_RESOLUTION = 3.8           # A, where the expected half-map FSC crosses 0.143
SEED = 93
HERE = os.path.dirname(os.path.abspath(__file__))


def radial_frequency(shape, voxel):
    fz, fy = (np.fft.fftfreq(n, d=voxel) for n in shape[:2])
    fx = np.fft.rfftfreq(shape[2], d=voxel)
    return np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)


def shells(s, n, voxel):
    return np.minimum(np.rint(s * n * voxel).astype(int), n // 2)


def expected_fsc_crossing(signal_power, noise_power, freq, threshold=0.143):
    fsc = signal_power / (signal_power + noise_power)
    below = np.nonzero(fsc[1:] < threshold)[0]
    return 1 / freq[below[0] + 1] if below.size else 1 / freq[-1]


def main(map_path, model_path, out=HERE):
    with mrcfile.open(map_path, permissive=True) as mrc:
        data = np.asarray(mrc.data, dtype=np.float32)
        voxel = float(mrc.voxel_size.x)
        origin = np.array([mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z], float)
    start = [c - BOX // 2 for c in CENTRE]
    crop = data[tuple(slice(a, a + BOX) for a in start)].astype(np.float64)
    s = radial_frequency(crop.shape, voxel)
    signal = np.fft.irfftn(np.fft.rfftn(crop) * np.exp(-BLUR_B * s ** 2 / 4), s=crop.shape)

    colour = np.exp(-NOISE_B * s ** 2 / 4) * (1 + NOISE_LOWFREQ * np.exp(-(NOISE_LOWFREQ_WIDTH * s) ** 2))
    shell = shells(s, BOX, voxel).ravel()
    count = np.maximum(np.bincount(shell, minlength=BOX // 2 + 1), 1)
    sig = np.bincount(shell, (np.abs(np.fft.rfftn(signal)) ** 2).ravel(), minlength=BOX // 2 + 1) / count
    noi = np.bincount(shell, (colour ** 2).ravel(), minlength=BOX // 2 + 1) / count * crop.size
    freq = np.arange(BOX // 2 + 1) / (BOX * voxel)
    lo, hi = -20.0, 20.0                      # bisection on log(noise amplitude)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if expected_fsc_crossing(sig, np.exp(2 * mid) * noi, freq) < FSC_RESOLUTION:
            lo = mid
        else:
            hi = mid
    amplitude = np.exp(0.5 * (lo + hi))

    rng = np.random.default_rng(SEED)
    # header origin of the crop: the deposited origin plus the crop's start (x, y, z), in A
    crop_origin = origin + voxel * np.array(start[::-1], float)
    for k in (1, 2):
        noise = np.fft.irfftn(np.fft.rfftn(rng.standard_normal(crop.shape)) * colour, s=crop.shape)
        half = (signal + amplitude * noise).astype(np.float16)
        path = os.path.join(out, "emd0093_half%d.mrc" % k)
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(half)
            mrc.voxel_size = voxel
            mrc.header.origin = tuple(crop_origin)
            mrc.update_header_stats()
            mrc.header.label[1] = ("EMD-0093 pseudo half map %d: make_example.py (unsharpened B=%g, coloured "
                                   "noise, FSC0.143 %g A)" % (k, BLUR_B, FSC_RESOLUTION)).encode()[:80]
            mrc.header.nlabl = 2
        print("%s: %s, voxel %.3f A, origin %s A" % (path, half.shape, voxel, np.round(crop_origin, 2)))
    with open(model_path, "rb") as src, open(os.path.join(out, "6gyn.pdb.gz"), "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as dst:   # byte-identical on every rebuild
        shutil.copyfileobj(src, dst)
    print("noise amplitude %.4g (signal SD %.4g)" % (amplitude, signal.std()))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
