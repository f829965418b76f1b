#!/usr/bin/env bash
# Rebuild models/dave2_synth.keras (+ .card.json, .curves.png) from scratch, from the repo root:
#   bash models/rebuild.sh
# 1. records the synthetic world: seed 1 for training (6,000 frames at 20 fps, 320x160, centre +
#    side cameras), seed 101 held out for evaluation (1,000 frames, centre camera only);
# 2. trains DAVE-2 on seed 1 (deterministic: same seed, same weights) and writes the steering
#    MAE on seed 101, with the always-predict-the-training-mean baseline, into the card.
# About 10 minutes on 2 cores. The exact training command is also in the card ("command").
set -euo pipefail
cd "$(dirname "$0")/.."

drive-viz synth recordings/synth_train_s1 --frames 6000 --seed 1 --side-cameras --no-masks \
    --overwrite
drive-viz synth recordings/synth_heldout_s101 --frames 1000 --seed 101 --no-masks --overwrite
drive-viz train recordings/synth_train_s1 --out models/dave2_synth.keras \
    --epochs 20 --patience 5 --seed 0 --heldout recordings/synth_heldout_s101 --no-progress
