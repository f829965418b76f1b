"""A behavioral-cloning model as people write it elsewhere, for README's compare example.

RGB 64x128 input of the camera frame without its top 35% and bottom 10%, a Lambda normalizer
(x / 255 - 0.5), NVIDIA-style convolutions, saved as a legacy HDF5 .h5 file, so that
``drive-viz adopt`` has a real outside model to bring in.

    python docs/examples/train_bc_h5.py RECORDING OUT.h5 EPOCHS
"""
import sys

import cv2
import keras
import numpy as np

from drive_viz.recording.reader import open_recording

rec = open_recording(sys.argv[1])
cam = rec.cameras[0]
n = len(rec)
frames, steer = [], rec.steering()
for i in range(n):
    rgb = rec.image(i, cam)
    h = rgb.shape[0]
    crop = rgb[int(round(0.35 * h)): h - int(round(0.1 * h))]
    frames.append(cv2.resize(crop, (128, 64), interpolation=cv2.INTER_LINEAR))
x = np.stack(frames).astype(np.float32)
y = steer.astype(np.float32)
x = np.concatenate([x, x[:, :, ::-1]])  # horizontal flips with the steering negated
y = np.concatenate([y, -y])
keras.utils.set_random_seed(0)
inp = keras.Input((64, 128, 3))
t = keras.layers.Lambda(lambda v: v / 255.0 - 0.5, name="normalize")(inp)
for f in (24, 36, 48):
    t = keras.layers.Conv2D(f, 5, strides=2, activation="relu")(t)
t = keras.layers.Conv2D(64, 3, activation="relu")(t)
t = keras.layers.Flatten()(t)
t = keras.layers.Dense(50, activation="relu")(t)
t = keras.layers.Dense(10, activation="relu")(t)
out = keras.layers.Dense(1, name="steering")(t)
model = keras.Model(inp, out)
model.compile("adam", "mse")
model.fit(x, y, batch_size=64, epochs=int(sys.argv[3]), validation_split=0.1, verbose=2)
model.save(sys.argv[2])
