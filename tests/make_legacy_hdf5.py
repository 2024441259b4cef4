"""Write a Keras-2 (tf_keras) HDF5 U-Net shaped like an official DeepEMhancer checkpoint, plus reference outputs.

Run in its own process (it imports TensorFlow's Keras 2): python make_legacy_hdf5.py OUT.hd5 REF.npz
The file carries a `code/custom_objects` payload that would create a marker file if anyone exec'd it.
"""

import sys

import h5py
import numpy as np
import tf_keras as k2

out, ref = sys.argv[1], sys.argv[2]
L = k2.layers
k2.utils.set_random_seed(3)
inp = L.Input(shape=(16, 16, 16, 1), name="input_1")


def cna(x, width, name, strides=1, transpose=False):
    conv = L.Conv3DTranspose if transpose else L.Conv3D
    x = conv(width, 3, strides=strides, padding="same", name=f"{name}_conv")(x)
    x = L.GroupNormalization(groups=2, epsilon=1e-5, name=f"{name}_gn",
                             gamma_initializer=k2.initializers.RandomUniform(0.5, 1.5),
                             beta_initializer=k2.initializers.RandomUniform(-0.1, 0.1))(x)
    return L.PReLU(shared_axes=[1, 2, 3], alpha_initializer=k2.initializers.Constant(0.2), name=f"{name}_prelu")(x)


d0 = cna(inp, 4, "d0")
p0 = cna(d0, 8, "p0", strides=2)
b = cna(p0, 8, "b")
u0 = cna(b, 4, "u0", strides=2, transpose=True)
c = L.Concatenate(name="concat")([u0, d0])
x = cna(c, 4, "u0b")
x = L.Dropout(0.1, name="drop")(x)
y = L.Conv3D(1, 1, activation="linear", name="head")(x)
model = k2.Model(inp, y)
model.save(out, save_format="h5")
with h5py.File(out, "a") as f:
    code = f.create_group("code")
    code.create_dataset("custom_objects", data="open('EXECUTED_MARKER', 'w').write('pwned')")
    code.create_dataset("normFun", data="import os; os.system('touch EXECUTED_MARKER')")
    params = f.create_group("configParams")
    params.create_dataset("NNET_INPUT_SIZE", data=16)
    params.create_dataset("NNET_INPUT_STRIDE", data=4)
x = np.random.default_rng(0).standard_normal((2, 16, 16, 16, 1)).astype(np.float32)
np.savez(ref, x=x, y=model.predict(x, verbose=0))
