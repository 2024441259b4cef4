"""Rebuild the small test maps in this folder from EMD-3488 (human haemoglobin, 3.2 A, voxel 1.05 A, 100^3).

    python make_test_data.py /path/to/emd_3488.mrc /path/to/emd_3488_contour_mask.mrc

Writes (48^3, voxel 2.1 A, header origin = the crop's position in the deposited map):
  emd3488_half1.mrc, emd3488_half2.mrc  the deposited map, Fourier-binned 2x, plus independent white noise
                                        (SD = the map's SD) as a stand-in for the two half maps,
  emd3488_map.mrc                       their average (the "full" map),
  emd3488_mask.mrc                      the deposited contour mask binned 2x (any voxel set) and dilated once.
Needs numpy and mrcfile only. Deterministic (fixed seeds).
"""

import sys

import mrcfile
import numpy as np

CROP, BIN, START = 96, 2, 2          # voxels: 96^3 box starting at voxel 2 of the 100^3 map, binned by 2
VOXEL_IN = 1.05


def fourier_bin(data, factor):
    n = data.shape[0]
    m = n // factor
    f = np.fft.fftshift(np.fft.fftn(data))
    lo = (n - m) // 2
    f = f[lo:lo + m, lo:lo + m, lo:lo + m]
    return (np.fft.ifftn(np.fft.ifftshift(f)).real / factor ** 3).astype(np.float32)


def write(path, data, voxel, origin):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
        mrc.header.origin = origin
        mrc.update_header_stats()


def main(map_path, mask_path):
    with mrcfile.open(map_path, permissive=True) as mrc:
        full = np.asarray(mrc.data, dtype=np.float32)
    with mrcfile.open(mask_path, permissive=True) as mrc:
        mask = np.asarray(mrc.data, dtype=np.float32)
    # The contour mask is 91 x 91 x 100 (x, y, z): pad x and y at the high end to the map's shape.
    mask = np.pad(mask, [(0, full.shape[i] - mask.shape[i]) for i in range(3)])

    box = tuple(slice(START, START + CROP) for _ in range(3))
    clean = fourier_bin(full[box], BIN)
    voxel = VOXEL_IN * BIN
    origin = (START * VOXEL_IN,) * 3
    sd = float(clean.std())
    halves = [clean + np.random.default_rng(seed).normal(0, sd, clean.shape).astype(np.float32) for seed in (1, 2)]
    write("emd3488_half1.mrc", halves[0], voxel, origin)
    write("emd3488_half2.mrc", halves[1], voxel, origin)
    write("emd3488_map.mrc", (halves[0] + halves[1]) / 2, voxel, origin)

    m = mask[box].reshape(CROP // BIN, BIN, CROP // BIN, BIN, CROP // BIN, BIN).max(axis=(1, 3, 5)) > 0.5
    grown = m.copy()
    for axis in range(3):
        grown |= np.roll(m, 1, axis) | np.roll(m, -1, axis)
    write("emd3488_mask.mrc", grown.astype(np.float32), voxel, origin)
    print("voxel %.2f A, shape %s, map SD %.4f, mask fraction %.3f" % (voxel, clean.shape, sd, grown.mean()))


if __name__ == "__main__":
    main(*sys.argv[1:3])
