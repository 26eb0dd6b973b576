"""The VGG-19 backbone: named layers, pooling, and each source of weights."""

import pytest
import torch
from torchvision.models import vgg19

from stylekit.builtins.vgg19 import CAFFE_FEATURE_SCALE, VGG19, layer_names, load_caffe_state
from stylekit.errors import UserError


def test_layer_names_follow_the_papers():
    names = layer_names()
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-1] == "pool5" and "relu4_2" in names and len(names) == 37


def test_state_dict_path_in_torchvision_layout_loads(tmp_path):
    torch.manual_seed(3)
    reference = vgg19().features
    path = tmp_path / "vgg.pth"
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()}, path)
    net = VGG19(VGG19.Params(pooling="avg"), str(path))
    assert torch.equal(net.body.conv3_2.weight, reference[12].weight)
    assert isinstance(net.body.pool1, torch.nn.AvgPool2d)
    image = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    reference[4] = torch.nn.AvgPool2d(2, 2)
    expected = reference[:7]((image - mean) / std)  # up to relu2_1
    assert torch.allclose(net.features(image, frozenset(["relu2_1"]))["relu2_1"], expected, atol=1e-5)


def test_state_dict_missing_layers_is_a_user_error(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, path)
    with pytest.raises(UserError, match="lacks VGG-19 weights for conv1_2"):
        VGG19(VGG19.Params(), str(path))


def test_caffe_weights_see_bgr_0_255_and_are_scaled():
    net = VGG19(VGG19.Params(), "caffe")
    image = torch.rand(1, 3, 16, 16)
    weight, bias = load_caffe_state()["conv1_1"]
    bgr = image.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    expected = torch.nn.functional.conv2d(bgr, weight, bias, padding=1) * CAFFE_FEATURE_SCALE
    assert torch.allclose(net.features(image, frozenset(["conv1_1"]))["conv1_1"], expected, atol=1e-3)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_feature_scale_folded_into_weights_scales_every_layer_exactly(pooling):
    """The scale lives in the weights (no per-step copy), and still scales deep layers, past
    ReLUs and pools, exactly as multiplying the features would."""
    layers = frozenset(["conv1_1", "relu2_1", "pool3", "conv4_4", "conv5_1"])
    torch.manual_seed(0)
    plain = VGG19(VGG19.Params(pooling=pooling), "random")
    torch.manual_seed(0)
    scaled = VGG19(VGG19.Params(pooling=pooling, feature_scale=0.25), "random")
    image = torch.rand(1, 3, 48, 48)
    expected, found = plain.features(image, layers), scaled.features(image, layers)
    for name in layers:
        assert torch.allclose(found[name], expected[name] * 0.25, rtol=1e-4, atol=1e-6), name


def test_feature_scale_must_be_positive():
    with pytest.raises(ValueError, match="greater than 0"):
        VGG19.Params(feature_scale=-1.0)


def test_checkpointed_features_and_gradients_match_the_plain_pass():
    """Including conv1_1, which checkpointing recomputes as a branch off the image."""
    torch.manual_seed(0)
    net = VGG19(VGG19.Params(), "random").requires_grad_(False)
    layers = frozenset(["conv1_1", "conv2_1", "relu3_1", "conv4_2"])
    image = torch.rand(1, 3, 40, 48)
    results = []
    for checkpointing in (False, True):
        net.checkpointing = checkpointing
        x = image.clone().requires_grad_(True)
        found = net.features(x, layers)
        sum((value ** 2).mean() for value in found.values()).backward()
        results.append((found, x.grad))
    (plain, plain_grad), (checked, checked_grad) = results
    assert set(checked) == set(layers)
    for name in layers:
        assert torch.allclose(plain[name], checked[name], atol=1e-5), name
    assert torch.allclose(plain_grad, checked_grad, rtol=1e-4, atol=1e-7)
