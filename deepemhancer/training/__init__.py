"""Training: pseudo-experimental pairs from atomic models (:mod:`.simulate`, :mod:`.targets`), prepared folders
(:mod:`.prepare`), the training loop and evaluation (:mod:`.train`) and the ``deepemhancer-train`` command
(:mod:`.cli`)."""
