#!/bin/bash
# Campaign v2 (issue 15), one kind per run: training-checkpoints/train_v2.sh tightTarget|wideTarget|highRes
# A 16/32/64-filter U-Net (1.2 M parameters, no normalisation layers) on the domain-randomised pairs
# (deepemhancer/training/simulate.py; targets in targets.py keep every modelled atom, the wide one also the unmodelled
# density at low resolution, the highRes one is sharper), 48^3 cubes, started from the shipped 8/16/32 model of the
# same kind widened to the new filters (deepemhancer/training/widen.py: the same function to start with). One thread,
# so the other core stays free. Rerunning the same command resumes from the last checkpoint (only --epochs may grow).
# RUN=folder names another run; flags after the kind override these (finetune_v2hr.sh uses both).
# Run from the repository root after
#   deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs-v2 \
#     --variants train=6,val=2,test=2 --seed 2 --solvent-share 0   # in vacuo: the maps made before step 4b
set -e
kind=${1:?usage: $0 tightTarget|wideTarget|highRes}
run=${RUN:-training-checkpoints/run_$(echo "$kind" | sed 's/Target//; s/highRes/highres/')_v2}
init=${INIT:-training-checkpoints/v1_models/deepemhancer_$kind.json}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
KERAS_BACKEND=${KERAS_BACKEND:-torch} deepemhancer-train fit --pairs work-data/pairs-v2 --kind "$kind" \
  -o "$run" --filters 16,32,64 --convs-per-block 2 --norm-layer none \
  --input-gain envelope_p99 --cube 48 --batch 2 --epochs ${EPOCHS:-80} --steps-per-epoch 100 --lr 5e-4 \
  --noise-cubes 0.15 --noise-augment 0.2 --noise-sd 0.02 0.2 --noise-blur 0.5 1.0 \
  --init-weights "$init" --inference-tiling 64/16 --fast-tiling 128/112 "${@:2}"
