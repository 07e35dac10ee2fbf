"""Feature capture of segmentor_forward beyond the classifier input: the
``feature_source`` a representation head may read (issue "Paper fidelity",
U2PL item 3: U2PL's head reads DeepLabV3+'s fused ASPP + low-level feature,
which mmseg feeds to ``sep_bottleneck``)."""
import pytest
import torch
from helpers import single_thread  # noqa: F401
from helpers import (TINY_DLV3P_C1_CHANNELS, TINY_DLV3P_CHANNELS,
                     tiny_deeplabv3plus_cfg)
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules

import mmseg_semi  # noqa: F401
from mmseg_semi.models.utils.segmentor_forward import (decode_with_inputs,
                                                       feature_module,
                                                       forward_logits)

register_all_modules(init_default_scope=True)

SIZE = 32


def tiny_deeplabv3plus():
    torch.manual_seed(0)
    return MODELS.build(tiny_deeplabv3plus_cfg()).eval()


@torch.no_grad()
def test_sep_bottleneck_source_is_the_fused_aspp_and_low_level_feature():
    """The captured tensor is the ASPP output (upsampled to stride 4)
    joined with the low-level branch, recomputed here from the head's
    parts; one forward gives it and the classifier input."""
    segmentor = tiny_deeplabv3plus()
    head = segmentor.decode_head
    feats = segmentor.extract_feat(torch.randn(2, 3, SIZE, SIZE))
    logits, (fused, cls_in) = decode_with_inputs(
        head, feats, ['sep_bottleneck', None])
    low_level = head.c1_bottleneck(feats[0])
    x = feats[3]

    def upsample(tensor, like):
        return resize(tensor, size=like.shape[2:], mode='bilinear',
                      align_corners=False)

    aspp = torch.cat([upsample(head.image_pool(x), x)] +
                     list(head.aspp_modules(x)),
                     dim=1)
    aspp = upsample(head.bottleneck(aspp), low_level)
    assert fused.shape == (2, TINY_DLV3P_CHANNELS + TINY_DLV3P_C1_CHANNELS,
                           SIZE // 4, SIZE // 4)
    torch.testing.assert_close(fused, torch.cat([aspp, low_level], dim=1))
    # The classifier branch continues from it: sep_bottleneck, cls_seg.
    torch.testing.assert_close(head.sep_bottleneck(fused), cls_in)
    torch.testing.assert_close(head.cls_seg(cls_in), logits)
    # forward_logits names the same source.
    _, same = forward_logits(segmentor, torch.randn(1, 3, SIZE, SIZE), True,
                             'sep_bottleneck')
    assert same.shape[1] == fused.shape[1]


@pytest.mark.parametrize('source', ['nope', 'sep_bottleneck.9', '', 3])
def test_unknown_source_names_the_value_and_the_head(source):
    head = tiny_deeplabv3plus().decode_head
    with pytest.raises(ValueError) as error:
        feature_module(head, source)
    assert f'feature_source={source!r}' in str(error.value)
    assert 'DepthwiseSeparableASPPHead' in str(error.value)
    assert 'sep_bottleneck' in str(error.value)  # the modules it has


@torch.no_grad()
def test_a_module_the_forward_skips_is_refused():
    """loss_decode is a submodule the forward never calls: nothing would be
    captured, which must not pass silently."""
    segmentor = tiny_deeplabv3plus()
    feats = segmentor.extract_feat(torch.randn(1, 3, SIZE, SIZE))
    with pytest.raises(RuntimeError, match="did not call its 'loss_decode'"):
        decode_with_inputs(segmentor.decode_head, feats, ['loss_decode'])
