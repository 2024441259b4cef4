#!/bin/bash
# Stage 3 of the shipped tightTarget: the stage-2 model (run_tight_gain) fine-tuned with pure-noise cubes (target 0)
# and noise-augmented inputs, so that its output on solvent noise is ~0 whatever the tiling. Rerunning resumes.
# Run from the repository root after `deepemhancer-train prepare ... -o work-data/pairs`.
set -e
KERAS_BACKEND=${KERAS_BACKEND:-torch} deepemhancer-train fit --pairs work-data/pairs --kind tightTarget \
  -o training-checkpoints/run_tight_noise --filters 8,16,32 --convs-per-block 2 --norm-layer none \
  --input-gain envelope_p99 --cube 32 --batch 4 --epochs ${EPOCHS:-20} --steps-per-epoch 50 --lr 2.5e-4 \
  --noise-cubes 0.2 --noise-augment 0.2 --noise-sd 0.02 0.2 --noise-blur 0.5 1.0 \
  --init-weights training-checkpoints/run_tight_gain/final/deepemhancer_tightTarget.json \
  --inference-tiling 64/16 --fast-tiling 128/112 "$@"
