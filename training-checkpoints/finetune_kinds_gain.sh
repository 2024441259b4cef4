#!/bin/bash
# wideTarget, highRes and masked, fine-tuned from the stage-2 (norm-free) tightTarget and installed into MODELS_DIR
# (default: a scratch folder; the shipped ones are in deepemhancer/models). Run from the repository root.
set -e
out=${MODELS_DIR:-work-data/kinds_out}
for kind in wideTarget highRes masked; do
  KERAS_BACKEND=${KERAS_BACKEND:-torch} deepemhancer-train fit --pairs work-data/pairs --kind $kind \
    -o work-data/run_${kind}_gain --filters 8,16,32 --convs-per-block 2 --norm-layer none \
    --input-gain envelope_p99 --cube 32 --batch 4 --epochs ${EPOCHS:-16} --steps-per-epoch 50 --lr 2.5e-4 \
    --init-weights training-checkpoints/run_tight_gain/final/deepemhancer_tightTarget.json \
    --inference-tiling 64/16 --fast-tiling 128/112 --install "$out"
done
