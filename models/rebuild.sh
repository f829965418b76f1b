#!/usr/bin/env bash
# Rebuild models/dave2_synth.keras (+ .card.json, .curves.png) from scratch, from the repo root:
#   bash models/rebuild.sh
# 1. records the synthetic world: seed 1 for training (6,000 frames at 20 fps, 320x160, centre +
#    side cameras), seeds 101, 102 and 103 held out for evaluation (1,500 frames each, centre
#    camera only);
# 2. trains DAVE-2 on seed 1 (deterministic: same seed, same weights) with Adam whose rate
#    decays to 0 on a cosine over the 10 epochs (at a constant rate the last weights carried a
#    constant offset of -0.01 even on their own training frames: the "left bias"), and writes
#    the steering MAE on each held-out seed, with the always-predict-the-training-mean
#    baseline, into the card.
# About 10 minutes on 2 quiet cores. The exact training command is also in the card ("command").
set -euo pipefail
cd "$(dirname "$0")/.."
DRIVE_VIZ=${DRIVE_VIZ:-drive-viz}

$DRIVE_VIZ synth recordings/synth_train_s1 --frames 6000 --seed 1 --side-cameras --no-masks \
    --overwrite
for seed in 101 102 103; do
    $DRIVE_VIZ synth "recordings/synth_heldout_s$seed" --frames 1500 --seed "$seed" --no-masks \
        --overwrite
done
$DRIVE_VIZ train recordings/synth_train_s1 --out models/dave2_synth.keras \
    --epochs 10 --patience 5 --seed 0 --lr-schedule cosine --no-progress \
    --heldout recordings/synth_heldout_s101 --heldout recordings/synth_heldout_s102 \
    --heldout recordings/synth_heldout_s103
