#!/bin/bash
# Campaign v2 of tightTarget (issue 15): a 16/32/64-filter U-Net (1.2 M parameters, no normalisation layers) on the
# domain-randomised pairs (deepemhancer/training/simulate.py), 48^3 cubes, started from the shipped 8/16/32 model
# widened to the new filters (deepemhancer/training/widen.py: the same function to start with). One thread, so the
# other core stays free. Rerunning the same command resumes from the last checkpoint (only --epochs may grow).
# Run from the repository root after
#   deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs-v2 \
#     --variants train=6,val=2,test=2 --seed 2
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
KERAS_BACKEND=${KERAS_BACKEND:-torch} deepemhancer-train fit --pairs work-data/pairs-v2 --kind tightTarget \
  -o training-checkpoints/run_tight_v2 --filters 16,32,64 --convs-per-block 2 --norm-layer none \
  --input-gain envelope_p99 --cube 48 --batch 2 --epochs ${EPOCHS:-80} --steps-per-epoch 100 --lr 5e-4 \
  --noise-cubes 0.15 --noise-augment 0.2 --noise-sd 0.02 0.2 --noise-blur 0.5 1.0 \
  --init-weights ${INIT:-training-checkpoints/run_tight_noise/final/deepemhancer_tightTarget.json} \
  --inference-tiling 64/16 --fast-tiling 128/112 "$@"
