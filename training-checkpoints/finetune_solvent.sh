#!/bin/bash
# Campaign v3 (issue 15): training-checkpoints/finetune_solvent.sh tightTarget|wideTarget|highRes|masked
# The shipped model of the kind fine-tuned on pairs whose half maps carry the displaced solvent (simulate.py step
# 4b: real maps' 60-15 A amplitudes are 0.34-0.78 of a model map's; no earlier training map had that), with
# train_v2.sh's recipe and stage 2b's settings (lr 1e-4, --keep-weight 1, the shipped network's depth), 20 epochs,
# one thread. Rerunning the same command resumes from the last checkpoint (only EPOCHS may grow); RUN=folder names
# another run and later flags override these. Run from the repository root after
#   deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs-v3 \
#     --variants train=4,val=2,test=0 --seed 5 --workers 2 --mrc-splits val                   # 352 pairs
#   deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs-hr3 \
#     --variants train=2,val=1 --resolution 2.0 3.3 --seed 6 --workers 2 --mrc-splits ""     # 176 pairs
# and, for the "mixed" runs (--pairs work-data/pairs-v3 work-data/pairs-hr3 work-data/pairs-v2), train_v2.sh's in-vacuo
# pairs-v2 (its prepare command has --solvent-share 0: without it, pairs-v2 would carry solvent too).
set -e
kind=${1:?usage: $0 tightTarget|wideTarget|highRes|masked}
init=deepemhancer/models/deepemhancer_$kind.json
convs=$(python -c "import json; print(json.load(open('$init'))['architecture']['convs_per_block'])")
RUN=${RUN:-training-checkpoints/run_$(echo "$kind" | sed 's/Target//; s/highRes/highres/')_v3_solvent} \
  INIT=${INIT:-$init} EPOCHS=${EPOCHS:-20} exec "$(dirname "$0")/train_v2.sh" "$kind" \
  --pairs work-data/pairs-v3 work-data/pairs-hr3 --lr 1e-4 --keep-weight 1 --convs-per-block "$convs" "${@:2}"
