#!/bin/bash
# Campaign v2, stage 2 (issue 15): training-checkpoints/finetune_v2hr.sh tightTarget|wideTarget|highRes|masked
# The v2 model of the kind (the shipped one; highRes: the best of run_highres_v2) fine-tuned on its own pairs plus
# 2-3.3 A pairs at fine voxels (0.6-1.5 A), because v2 tightTarget gained nothing on the 2.8 A real map (EMD-20026
# crop) where highRes and LocScale gain 0.27 A: only 10 % of the v2 training pairs are better than 3 A. train_v2.sh's
# network, target and augmentation, with both pair folders (a quarter of the sampled maps from the new ones), lr 2e-4
# and 20 epochs; one thread. Rerunning the same command resumes from the last checkpoint (only EPOCHS may grow).
# RUN=folder names another run and later flags override these (stage 2b: RUN=..._keep, --lr 1e-4 --keep-weight 1).
# masked (mask-normalised input, tight target) starts from INIT=deepemhancer/models/deepemhancer_tightTarget.json:
#   RUN=training-checkpoints/run_masked_v2hr_x3 INIT=... finetune_v2hr.sh masked --keep-weight 1 \
#     --convs-per-block 3 --mask-dilation 0 10
# Run from the repository root after the pairs of train_v2.sh and
#   deepemhancer-train prepare --models ../shared/data/atomic_models -o work-data/pairs-hr \
#     --variants train=2,val=1 --resolution 2.0 3.3 --seed 3 --workers 2 --mrc-splits ""    # 176 pairs, ~8 min
#   deepemhancer-train export --run training-checkpoints/run_highres_v2 -o work-data/highres_v2    # highRes only
set -e
kind=${1:?usage: $0 tightTarget|wideTarget|highRes|masked}
init=deepemhancer/models/deepemhancer_$kind.json
[ "$kind" = highRes ] && init=work-data/highres_v2/deepemhancer_highRes.json
RUN=${RUN:-training-checkpoints/run_$(echo "$kind" | sed 's/Target//; s/highRes/highres/')_v2hr} INIT=${INIT:-$init} \
  EPOCHS=${EPOCHS:-20} exec "$(dirname "$0")/train_v2.sh" "$kind" --pairs work-data/pairs-v2 work-data/pairs-hr \
  --lr 2e-4 "${@:2}"
