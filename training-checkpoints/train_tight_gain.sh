#!/bin/bash
# Stage 2 of the shipped tightTarget: the group-normalised stage-1 model (run_tight/final) folded into a network
# without normalisation layers, then fine-tuned with the per-map input gain. Rerunning resumes (only --epochs may
# grow). Run from the repository root after `deepemhancer-train prepare ... -o work-data/pairs`.
set -e
KERAS_BACKEND=${KERAS_BACKEND:-torch} deepemhancer-train fit --pairs work-data/pairs --kind tightTarget \
  -o training-checkpoints/run_tight_gain --filters 8,16,32 --convs-per-block 2 --norm-layer none \
  --input-gain envelope_p99 --cube 32 --batch 4 --epochs ${EPOCHS:-60} --steps-per-epoch 50 --lr 5e-4 \
  --init-weights training-checkpoints/run_tight/final/deepemhancer_tightTarget.json \
  --inference-tiling 64/16 --fast-tiling 128/112 "$@"
