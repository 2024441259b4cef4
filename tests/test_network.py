"""Stage 4: the paper's U-Net and its narrower variants."""

import numpy as np
import pytest

from deepemhancer.network import PAPER_CONFIG, UNetConfig, build_unet


def _layers_of(model, class_name):
    return [layer for layer in model.layers if layer.__class__.__name__ == class_name]


def test_paper_configuration_structure_and_parameter_count():
    model = build_unet(PAPER_CONFIG)
    # 3 down blocks + bottleneck + 3 up blocks, 3 convolutions each, plus 3 strided convolutions and the head
    assert len(_layers_of(model, "Conv3D")) == 7 * 3 + 3 + 1
    assert len(_layers_of(model, "Conv3DTranspose")) == 3
    assert len(_layers_of(model, "GroupNormalization")) == 7 * 3 + 3 + 3
    assert len(_layers_of(model, "PReLU")) == 7 * 3 + 3 + 3
    assert len(_layers_of(model, "Concatenate")) == 3
    widths = [layer.filters for layer in _layers_of(model, "Conv3D")]
    assert sorted(set(widths)) == [1, 32, 64, 128]
    for layer in _layers_of(model, "Conv3D")[:-1] + _layers_of(model, "Conv3DTranspose"):
        assert tuple(layer.kernel_size) == (3, 3, 3)
    strided = [layer for layer in _layers_of(model, "Conv3D") if tuple(layer.strides) == (2, 2, 2)]
    assert [layer.filters for layer in strided] == [32, 64, 128]
    head = model.get_layer("head")
    assert head.filters == 1 and head.activation.__name__ == "linear"
    assert model.count_params() == 6_396_289


@pytest.mark.parametrize("config,params", [
    (UNetConfig(filters=(16, 32, 64), convs_per_block=2), 1_199_425),
    (UNetConfig(filters=(8, 16, 32), convs_per_block=2), 300_769),
])
def test_narrow_variants(config, params):
    assert build_unet(config).count_params() == params


def test_fully_convolutional_output_shape_and_depth_parameter():
    model = build_unet(UNetConfig(filters=(4, 8), convs_per_block=1, groups=2))
    x = np.random.default_rng(0).standard_normal((2, 12, 16, 20, 1)).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert len(_layers_of(model, "Conv3DTranspose")) == 2


def test_config_round_trip_and_validation():
    config = UNetConfig(filters=(8, 16, 32), convs_per_block=2, groups=4)
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({"filters": [8], "dropout": 0.5})


def test_without_normalisation_layers_a_voxel_does_not_depend_on_its_cube():
    config = UNetConfig(filters=(4, 8), convs_per_block=1, groups=2, norm_layer="none")
    model = build_unet(config)
    assert not _layers_of(model, "GroupNormalization")
    assert UNetConfig.from_dict(config.to_dict()) == config
    x = np.random.default_rng(1).standard_normal((1, 96, 96, 96, 1)).astype(np.float32)
    whole = np.asarray(model.predict_on_batch(x))[0, ..., 0]
    # the same voxels inside a smaller cube, farther from its faces than the receptive field reaches, get the same
    # prediction; with group normalisation they would not, because the cube's statistics change
    part = np.asarray(model.predict_on_batch(x[:, 24:72, 24:72, 24:72]))[0, ..., 0]
    np.testing.assert_allclose(part[16:32, 16:32, 16:32], whole[40:56, 40:56, 40:56], atol=1e-5)
    with pytest.raises(ValueError, match="norm_layer"):
        UNetConfig(norm_layer="batch")


def test_folding_group_normalisation_reproduces_the_model_on_its_calibration_cube():
    from deepemhancer.training.fold import fold_group_norm
    config = UNetConfig(filters=(4, 8), convs_per_block=1, groups=2)
    source = build_unet(config)
    rng = np.random.default_rng(2)
    for layer in source.layers:  # non-trivial gamma/beta
        if layer.__class__.__name__ == "GroupNormalization":
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in layer.get_weights()])
    cube = rng.standard_normal((1, 16, 16, 16, 1)).astype(np.float32)
    folded = fold_group_norm(source, config, cube)
    assert not _layers_of(folded, "GroupNormalization")
    # statistics pooled over one cube are that cube's group statistics, so the outputs agree on it
    np.testing.assert_allclose(np.asarray(folded.predict_on_batch(cube)), np.asarray(source.predict_on_batch(cube)),
                               rtol=1e-3, atol=1e-4)
    other = rng.standard_normal((1, 16, 16, 16, 1)).astype(np.float32) * 3
    assert not np.allclose(folded.predict_on_batch(other), source.predict_on_batch(other), atol=1e-3)
