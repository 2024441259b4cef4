"""Validation: how much of a processed map can be believed, and is it better than ordinary sharpening?

Modules, in the order of a report:

- :mod:`.fsc`: FSC (any box, any voxel), resolution at 0.5 / 0.143, real-space CC, local CC, soft masks;
- :mod:`.modelmap`: map of an atomic model on exactly a map's grid (gemmi, electron scattering);
- :mod:`.sharpen`: baseline global automatic B-factor sharpening;
- :mod:`.relion`: baseline RELION 3.1 ``relion_mask_create`` + ``relion_postprocess`` (when installed);
- :mod:`.compare`: the metrics table of several maps against a reference;
- :mod:`.report`: PNG + HTML report;
- :mod:`.cli`: the ``deepemhancer-eval`` command.
"""
