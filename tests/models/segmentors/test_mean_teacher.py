"""MeanTeacherSegmentor on a tiny EncoderDecoder, and the export tool."""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmengine.structures import PixelData

import mmseg_semi  # noqa: F401
from helpers import (CAMVID_CLASSES, MEAN,  # noqa: F401
                     MEAN_TEACHER_CONFIG, REPO_ROOT, STD,
                     camvid_mean_teacher_checkpoint, camvid_root, load_script,
                     seg_preprocessor, single_thread, tiny_mean_teacher_cfg,
                     tiny_segmentor_cfg)
from mmseg.apis import MMSegInferencer, inference_model, init_model
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg_semi.engine.hooks.ema_teacher_hook import ema_update_
from mmseg_semi.models.pseudo_labelers import DistributionAlignment
from mmseg_semi.models.utils.class_balance_functional import \
    class_pixel_counts
from mmseg_semi.models.utils.segmentor_forward import (stack_gt_labels,
                                                       valid_pixel_mask)

init_default_scope('mmseg')
IGNORE = 255
NUM_CLASSES = 3


def build(**kwargs):
    return MODELS.build(ConfigDict(tiny_mean_teacher_cfg(**kwargs)))


@torch.no_grad()
def perturb_(module, seed, scale=0.1):
    """Deterministically move every float param and BN statistic."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(
            module.named_buffers()):
        if not tensor.is_floating_point():
            continue
        tensor.add_(scale * torch.randn(tensor.shape, generator=generator))
        if name.endswith('running_var'):
            tensor.abs_().add_(0.5)  # keep variances positive


def raw_image(height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (3, height, width), generator=generator, dtype=torch.uint8)


def sample(height, width, label_seed=None):
    data_sample = SegDataSample(
        metainfo=dict(img_shape=(height, width), ori_shape=(height, width)))
    if label_seed is not None:
        generator = torch.Generator().manual_seed(label_seed)
        data_sample.gt_sem_seg = PixelData(
            data=torch.randint(
                0, NUM_CLASSES, (1, height, width), generator=generator))
    return data_sample


def semi_batch(unlabeled_shapes=((32, 32), (32, 32)), labeled_shape=(32, 32)):
    """What SemiIterBasedTrainLoop yields: a labeled batch and a MultiBranch
    unlabeled batch with weak and strong views of the same images."""
    labeled = dict(
        inputs=[raw_image(*labeled_shape, 0), raw_image(*labeled_shape, 1)],
        data_samples=[sample(*labeled_shape, 10), sample(*labeled_shape, 11)])
    weak = [
        raw_image(h, w, 20 + i) for i, (h, w) in enumerate(unlabeled_shapes)
    ]
    strong = [255 - img for img in weak]  # a photometric change only
    unlabeled = dict(
        inputs=dict(weak=weak, strong=strong),
        data_samples=dict(
            weak=[sample(h, w) for h, w in unlabeled_shapes],
            strong=[sample(h, w) for h, w in unlabeled_shapes]))
    return dict(labeled=labeled, unlabeled=unlabeled)


def normalised(raw):
    """Reference preprocessing: BGR -> RGB, (x - mean) / std."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (raw[[2, 1, 0]].float() - mean) / std


def logits_at_input_size(segmentor, inputs):
    logits = segmentor.decode_head(segmentor.extract_feat(inputs))
    return F.interpolate(
        logits, size=inputs.shape[2:], mode='bilinear', align_corners=False)


# ------------------------------------------------------------- structure
def test_teacher_is_frozen_and_stays_in_eval_mode():
    model = build()
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.student.parameters())
    model.train()
    assert model.training and model.student.training
    assert not any(m.training for m in model.teacher.modules())
    assert all(m.training for m in model.student.modules())
    model.eval()
    assert not any(m.training for m in model.student.modules())
    # Teacher and student start identical (the teacher is a copy).
    for (name, t), s in zip(model.teacher.state_dict().items(),
                            model.student.state_dict().values()):
        assert torch.equal(t, s), name


def test_bad_constructor_args():
    with pytest.raises(ValueError, match='unsup_start_iter'):
        build(unsup_start_iter=-1)
    with pytest.raises(ValueError, match='unsup_start_iter'):
        build(unsup_start_iter=1.5)
    with pytest.raises(ValueError, match='predict_on'):
        build(predict_on='ema')


# ------------------------------------------------------ data preprocessor
def test_data_preprocessor_handles_semi_and_plain_batches():
    model = build()
    batch = semi_batch(unlabeled_shapes=((24, 32), (32, 32)))
    out = model.data_preprocessor(copy.deepcopy(batch), training=True)
    assert set(out['inputs']) == {'labeled', 'weak', 'strong'}
    assert set(out['data_samples']) == {'labeled', 'weak', 'strong'}
    for view in ('labeled', 'weak', 'strong'):
        assert out['inputs'][view].shape == (2, 3, 32, 32)
        assert out['inputs'][view].dtype == torch.float32
    labeled = out['inputs']['labeled']
    torch.testing.assert_close(labeled[1],
                               normalised(batch['labeled']['inputs'][1]))
    assert torch.equal(
        out['data_samples']['labeled'][0].gt_sem_seg.data,
        batch['labeled']['data_samples'][0].gt_sem_seg.data)
    # The 24x32 weak image is padded at the bottom to the size divisor (32).
    weak = out['inputs']['weak']
    torch.testing.assert_close(
        weak[0, :, :24], normalised(batch['unlabeled']['inputs']['weak'][0]))
    assert torch.count_nonzero(weak[0, :, 24:]) == 0
    torch.testing.assert_close(
        out['inputs']['strong'][1],
        normalised(batch['unlabeled']['inputs']['strong'][1]))
    assert out['data_samples']['weak'][0].img_shape == (24, 32)

    # A plain (val/test) batch goes straight through the wrapped preprocessor.
    plain = dict(inputs=[raw_image(24, 40, 3)], data_samples=[sample(24, 40)])
    out = model.data_preprocessor(plain, training=False)
    assert isinstance(out['inputs'], torch.Tensor)
    torch.testing.assert_close(out['inputs'][0], normalised(raw_image(24, 40,
                                                                      3)))

    bad = semi_batch()
    bad['unlabeled']['inputs'] = bad['unlabeled']['inputs']['weak']
    with pytest.raises(TypeError, match='MultiBranch'):
        model.data_preprocessor(bad, training=True)


def test_channels_last_applies_to_teacher_and_student():
    model = build(channels_last=True)
    for network in (model.teacher, model.student):
        kernels = [p for p in network.parameters() if p.dim() == 4]
        assert kernels
        assert all(
            p.is_contiguous(memory_format=torch.channels_last)
            for p in kernels)
    model.set_train_progress(5, 10)
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    total.backward()
    grad = model.student.decode_head.conv_seg.weight.grad
    assert grad is not None and torch.isfinite(grad).all()


# ------------------------------------------------------------------ loss
def test_loss_keys_and_gradients_reach_only_the_student():
    model = build()
    model.set_train_progress(5, 10)
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert {'sup_decode.loss_ce', 'sup_decode.acc_seg', 'unsup_loss_ce',
            'unsup_weight', 'unsup_reliable_ratio'} <= set(losses)
    assert all(k.startswith(('sup_', 'unsup_')) for k in losses), losses
    assert losses['unsup_loss_ce'].requires_grad
    assert not losses['unsup_weight'].requires_grad
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(
        total, losses['sup_decode.loss_ce'] + losses['unsup_loss_ce'])
    total.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    grads = [p.grad for p in model.student.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_unsup_loss_matches_hand_computation():
    # The raw softmax (tests/models/pseudo_labelers/test_class_balance.py
    # covers the alignment).
    model = build(
        pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.3),
        unsup_weight=0.5,
        class_balance=None)
    perturb_(model.student, seed=1)  # teacher != student
    model.set_train_progress(3, 10)
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])

    with torch.no_grad():
        weak, strong = data['inputs']['weak'], data['inputs']['strong']
        probs = logits_at_input_size(model.teacher, weak).softmax(dim=1)
        valid = torch.ones(probs.shape[:1] + probs.shape[2:], dtype=bool)
        pseudo = model.pseudo_labeler(probs, valid, (3, 10))
        # alpha_t = 0.3 * (1 - 3/10): about 21% of the pixels are ignored.
        ignored = (pseudo.labels == IGNORE).float().mean().item()
        assert 0.15 < ignored < 0.3
        log_probs = logits_at_input_size(model.student,
                                         strong).log_softmax(dim=1)
        keep = pseudo.labels != IGNORE
        nll = -log_probs.gather(1, pseudo.labels.clamp(max=NUM_CLASSES - 1)
                                [:, None])[:, 0]
        # U2PL Eq. 3: the sum over reliable pixels / every pixel of the batch
        cross_entropy = (nll * keep).sum() / keep.numel()
        expected = 0.5 * pseudo.weight * cross_entropy
    torch.testing.assert_close(losses['unsup_loss_ce'].detach(), expected)
    torch.testing.assert_close(losses['unsup_weight'], pseudo.weight)
    assert losses['unsup_loss_ce'] > 0


def test_unsup_start_iter_suppresses_the_unsupervised_loss():
    model = build(unsup_start_iter=5)
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    model.set_train_progress(4, 10)
    before = model.loss(data['inputs'], data['data_samples'])
    assert before and all(k.startswith('sup_') for k in before), before
    model.set_train_progress(5, 10)
    after = model.loss(data['inputs'], data['data_samples'])
    assert 'unsup_loss_ce' in after
    torch.testing.assert_close(before['sup_decode.loss_ce'],
                               after['sup_decode.loss_ce'])


def test_pseudo_labels_ignore_padded_pixels():
    model = build(
        pseudo_labeler=dict(type='ConfidencePseudoLabeler', threshold=0.0))
    model.train()
    data = model.data_preprocessor(
        semi_batch(unlabeled_shapes=((24, 32), (32, 20))), training=True)
    weak, samples = data['inputs']['weak'], data['data_samples']['weak']
    assert weak.shape == (2, 3, 32, 32)
    valid = valid_pixel_mask(samples, *weak.shape[2:], weak.device)
    pseudo = model.pairs[0].pseudo_label(weak, valid, model.progress).pseudo
    labels = pseudo.labels
    # threshold 0 labels every real pixel; padding is always ignored.
    assert (labels[0, 24:] == IGNORE).all()
    assert (labels[0, :24] != IGNORE).all()
    assert (labels[1, :, 20:] == IGNORE).all()
    assert (labels[1, :, :20] != IGNORE).all()
    assert pseudo.valid.sum() == 24 * 32 + 32 * 20
    # and the full loss runs on such a batch
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['unsup_loss_ce'])


def test_mean_teacher_aligns_by_default_and_counts_classes():
    model = build(unsup_start_iter=0)
    assert isinstance(model.class_balance, DistributionAlignment)
    assert model.class_balance.num_classes == \
        model.student.decode_head.num_classes
    assert model.pseudo_labeler.class_wise
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['unsup_loss_ce'])
    labels = stack_gt_labels(data['data_samples']['labeled'])
    num_classes = model.class_balance.num_classes
    counts = class_pixel_counts(labels, num_classes)
    torch.testing.assert_close(model.class_balance.labeled_share,
                               counts / counts.sum())
    assert bool(model.class_balance.teacher_initialised)
    [(prefix, monitor)] = model.class_share_monitors().items()
    assert prefix == ''
    window = monitor.read_and_reset()
    torch.testing.assert_close(window['labeled'], counts)
    valid_pixels = data['inputs']['weak'].shape[0] * \
        data['inputs']['weak'][0, 0].numel()
    assert window['predicted'].sum() == valid_pixels
    assert window['flips'].sum() == valid_pixels


def test_paused_unsupervised_loss_and_the_paper_switches():
    model = build(unsup_start_iter=0, class_balance=None,
                  pseudo_labeler=dict(type='EntropyPseudoLabeler',
                                      class_wise=False))
    assert model.class_balance is None
    assert not model.pseudo_labeler.class_wise
    model.train()
    data = model.data_preprocessor(semi_batch(), training=True)
    model.pause_unsup(5)
    model.set_train_progress(3, 10)
    assert 'unsup_loss_ce' not in model.loss(data['inputs'],
                                             data['data_samples'])
    model.set_train_progress(5, 10)
    assert 'unsup_loss_ce' in model.loss(data['inputs'],
                                         data['data_samples'])


# ------------------------------------------------------------- predict
def plain_val_batch(model):
    raw = dict(
        inputs=[raw_image(32, 48, 5), raw_image(32, 48, 6)],
        data_samples=[sample(32, 48), sample(32, 48)])
    return model.data_preprocessor(raw, training=False)


def test_predict_on_selects_the_network():
    model = build()
    perturb_(model.student, seed=2)
    model.eval()
    data = plain_val_batch(model)
    assert model.predict_choices() == ['teacher', 'student']
    assert model.predict_on == 'teacher'
    logits = {}
    for name in ('teacher', 'student'):
        model.predict_on = name
        network = getattr(model, name)
        with torch.no_grad():
            out = model.predict(data['inputs'],
                                copy.deepcopy(data['data_samples']))
            ref = network.predict(data['inputs'],
                                  copy.deepcopy(data['data_samples']))
            tensor = model(data['inputs'], mode='tensor')
            assert torch.equal(tensor, network._forward(data['inputs']))
        logits[name] = torch.stack([o.seg_logits.data for o in out])
        assert torch.equal(logits[name],
                           torch.stack([r.seg_logits.data for r in ref]))
        assert out[0].pred_sem_seg.shape == (32, 48)
    assert not torch.allclose(logits['teacher'], logits['student'])
    with pytest.raises(ValueError, match='predict_on'):
        model.predict_on = 'ema'
    assert model.predict_on == 'student'
    assert build(predict_on='student').predict_model() is not None


# ----------------------------------------------------- checkpoint loading
def assert_same_state(module, reference):
    state = module.state_dict()
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_plain_checkpoint_initialises_teacher_and_student(tmp_path):
    plain = MODELS.build(ConfigDict(tiny_segmentor_cfg()))
    perturb_(plain, seed=3)
    plain_state = {k: v.clone() for k, v in plain.state_dict().items()}
    path = str(tmp_path / 'plain.pth')
    torch.save(dict(state_dict=plain.state_dict(), meta={}), path)

    model = build()
    load_checkpoint(model, path, map_location='cpu', strict=True)
    assert_same_state(model.teacher, plain_state)
    assert_same_state(model.student, plain_state)
    assert all(not p.requires_grad for p in model.teacher.parameters())

    model = build()
    given = plain.state_dict()
    model.load_state_dict(given, strict=True)
    assert_same_state(model.teacher, plain_state)
    assert_same_state(model.student, plain_state)
    assert set(given) == set(plain_state)  # the caller's dict is untouched


def test_wrapper_checkpoint_loads_unchanged(tmp_path):
    source = build()
    perturb_(source.student, seed=4)
    ema_update_(source.teacher, source.student, decay=0.5)
    path = str(tmp_path / 'semi.pth')
    torch.save(dict(state_dict=source.state_dict(), meta={}), path)
    model = build()
    load_checkpoint(model, path, map_location='cpu', strict=True)
    assert_same_state(model.teacher, source.teacher.state_dict())
    assert_same_state(model.student, source.student.state_dict())
    assert not torch.equal(model.teacher.decode_head.conv_seg.weight,
                           model.student.decode_head.conv_seg.weight)


# ------------------------------------------------------------- export tool
def load_export_tool():
    return load_script('tools', 'model_converters',
                       'export_semi_checkpoint.py')


TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 48), keep_ratio=True),
    dict(type='PackSegInputs'),
]
CLASSES = ('road', 'car', 'sky')
PALETTE = [[128, 64, 128], [64, 0, 128], [128, 128, 128]]


def semi_config_text(model_cfg):
    """A semi-supervised config (as the repo's) around ``model_cfg``."""
    dataset = dict(
        type='CamVidDataset',
        data_root=camvid_root(),
        data_prefix=dict(img_path='test', seg_map_path='testannot'),
        metainfo=dict(classes=CLASSES, palette=PALETTE),
        pipeline=TEST_PIPELINE)
    unlabeled = dict(
        batch_size=2,
        dataset=dict(
            type='CamVidDataset',
            data_root=camvid_root(),
            data_prefix=dict(img_path='train'),
            pipeline=[]))
    cfg = dict(
        default_scope='mmseg',
        custom_imports=dict(imports=['mmseg_semi'],
                            allow_failed_imports=False),
        model=model_cfg,
        test_pipeline=TEST_PIPELINE,
        test_dataloader=dict(batch_size=1, dataset=dataset),
        unlabeled_dataloader=unlabeled,
        train_cfg=dict(
            type='SemiIterBasedTrainLoop',
            max_iters=10,
            val_interval=5,
            unlabeled_dataloader=unlabeled),
        val_cfg=dict(type='TeacherStudentValLoop'),
        custom_hooks=[
            dict(type='EMATeacherHook', decay=0.99),
            dict(type='EmptyCacheHook')
        ],
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=5,
                save_best='teacher/mIoU')))
    return '\n'.join(f'{key} = {value!r}' for key, value in cfg.items())


def write_image(path, seed=7):
    rng = np.random.RandomState(seed)
    coarse = rng.randint(0, 256, (6, 8, 3)).astype(np.uint8)
    cv2.imwrite(path, cv2.resize(coarse, (64, 48)))
    return path


def test_export_round_trip(tmp_path, capsys):
    tool = load_export_tool()
    model = build()
    # One real training step, then an EMA step: teacher != student != init.
    optim = OptimWrapper(torch.optim.SGD(model.student.parameters(), lr=0.1))
    model.set_train_progress(0, 10)
    model.train_step(semi_batch(), optim)
    ema_update_(model.teacher, model.student, decay=0.5)
    semi_ckpt = str(tmp_path / 'semi.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), semi_ckpt)
    semi_cfg = tmp_path / 'semi_cfg.py'
    semi_cfg.write_text(semi_config_text(tiny_mean_teacher_cfg()))

    out_dir = str(tmp_path / 'exported')
    teacher_files = tool.main(
        [str(semi_cfg), semi_ckpt, out_dir, '--which', 'teacher'])
    printed = capsys.readouterr().out
    assert teacher_files['checkpoint'] in printed
    assert teacher_files['config'] in printed
    student_files = tool.main(
        [str(semi_cfg), semi_ckpt, out_dir, '--which', 'student',
         '--name', 'student'])
    assert student_files['checkpoint'] == osp.join(out_dir, 'student.pth')

    # The checkpoint: only the teacher's keys, unprefixed, loadable safely.
    exported = torch.load(teacher_files['checkpoint'], weights_only=True)
    assert_same_state_dict(exported['state_dict'],
                           model.teacher.state_dict())
    assert exported['meta']['dataset_meta'] == dict(
        classes=list(CLASSES), palette=PALETTE)
    assert exported['meta']['exported_from']['network'] == 'teacher'

    # The config: a plain mmseg config of the segmentor.
    plain = Config.fromfile(teacher_files['config'])
    assert plain.model.type == 'EncoderDecoder'
    assert plain.model.data_preprocessor == seg_preprocessor()
    assert plain.train_cfg.type == 'IterBasedTrainLoop'
    assert 'unlabeled_dataloader' not in plain.train_cfg
    assert 'unlabeled_dataloader' not in plain
    assert plain.val_cfg.type == 'ValLoop'
    assert [h['type'] for h in plain.custom_hooks] == ['EmptyCacheHook']
    assert plain.default_hooks.checkpoint.save_best == 'mIoU'

    # mmseg's own API runs it and reproduces the wrapper's networks.
    image = write_image(str(tmp_path / 'image.png'))
    model.cfg = Config(dict(test_pipeline=TEST_PIPELINE))
    model.eval()
    for files, name in ((teacher_files, 'teacher'),
                        (student_files, 'student')):
        segmentor = init_model(files['config'], files['checkpoint'],
                               device='cpu')
        assert segmentor.dataset_meta['classes'] == list(CLASSES)
        result = inference_model(segmentor, image)
        model.predict_on = name
        reference = inference_model(model, image)
        assert result.seg_logits.data.shape == (NUM_CLASSES, 48, 64)
        assert torch.equal(result.seg_logits.data,
                           reference.seg_logits.data), name
        assert torch.equal(result.pred_sem_seg.data,
                           reference.pred_sem_seg.data)
        if name == 'teacher':
            teacher_logits = result.seg_logits.data
    assert not torch.allclose(teacher_logits, result.seg_logits.data)


def assert_same_state_dict(state, reference):
    assert set(state) == set(reference)
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


def test_export_errors(tmp_path):
    tool = load_export_tool()
    model = build()
    semi_ckpt = str(tmp_path / 'semi.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), semi_ckpt)
    semi_cfg = tmp_path / 'semi_cfg.py'
    semi_cfg.write_text(semi_config_text(tiny_mean_teacher_cfg()))
    with pytest.raises(KeyError, match="no 'ema' network"):
        tool.main([str(semi_cfg), semi_ckpt, str(tmp_path), '--which', 'ema'])
    plain_cfg = tmp_path / 'plain_cfg.py'
    plain_cfg.write_text(semi_config_text(tiny_segmentor_cfg()))
    with pytest.raises(ValueError, match='not a semi-supervised config'):
        tool.main([str(plain_cfg), semi_ckpt, str(tmp_path)])


def test_data_preprocessor_pads_every_branch_to_one_size():
    """Labeled crops that came out smaller than the unlabeled ones (a
    down-scaling RandomResize before RandomCrop) are padded to the unlabeled
    size, labels with 255, so U2PL can pool labeled and unlabeled pixels; a
    U2PL CamVid 1/4 run crashed at iteration ~550 on such a batch."""
    model = build()
    batch = semi_batch(unlabeled_shapes=((64, 32), (40, 32)),
                       labeled_shape=(24, 32))
    out = model.data_preprocessor(copy.deepcopy(batch), training=True)
    for view in ('labeled', 'weak', 'strong'):
        assert out['inputs'][view].shape == (2, 3, 64, 32), view
    labeled = out['inputs']['labeled']
    torch.testing.assert_close(labeled[0, :, :24],
                               normalised(batch['labeled']['inputs'][0]))
    assert torch.count_nonzero(labeled[:, :, 24:]) == 0
    for index, sample_ in enumerate(out['data_samples']['labeled']):
        label = sample_.gt_sem_seg.data
        assert label.shape == (1, 64, 32)
        assert torch.equal(
            label[:, :24],
            batch['labeled']['data_samples'][index].gt_sem_seg.data)
        assert (label[:, 24:] == 255).all()
        assert sample_.pad_shape == (64, 32)
        assert sample_.img_shape == (24, 32)
    # The larger branch is untouched; the second weak image keeps its own
    # size-divisor padding (40 -> 64).
    torch.testing.assert_close(
        out['inputs']['weak'][1, :, :40],
        normalised(batch['unlabeled']['inputs']['weak'][1]))
    assert out['data_samples']['weak'][1].img_shape == (40, 32)


def test_export_takes_the_preprocessor_from_the_semi_model():
    """A segmentor config without data_preprocessor gets the semi model's
    (unwrapped from MultiBranchDataPreprocessor) or the top-level one."""
    tool = load_export_tool()
    segmentor = tiny_segmentor_cfg()
    del segmentor['data_preprocessor']
    inner = seg_preprocessor(size_divisor=16)
    wrapped = Config(
        dict(
            model=dict(
                type='MeanTeacherSegmentor',
                segmentor=segmentor,
                data_preprocessor=dict(
                    type='MultiBranchDataPreprocessor',
                    data_preprocessor=inner))))
    assert tool.plain_config(wrapped).model.data_preprocessor == inner
    top_level = Config(
        dict(
            data_preprocessor=inner,
            model=dict(type='MeanTeacherSegmentor', segmentor=segmentor)))
    assert tool.plain_config(top_level).model.data_preprocessor == inner


def test_export_picks_the_segmentor_of_each_rml_network():
    tool = load_export_tool()
    one, two = tiny_segmentor_cfg(num_classes=3), tiny_segmentor_cfg(5)
    rml = dict(type='DualStudentSegmentor', segmentor1=one, segmentor2=two)
    for which, expected in (('teacher1', one), ('student1', one),
                            ('teacher2', two), ('student2', two)):
        plain = tool.plain_config(Config(dict(model=rml)), which)
        assert plain.model.decode_head.num_classes == \
            expected['decode_head']['num_classes'], which
    # segmentor2 defaults to a copy of segmentor1 in DualStudentSegmentor.
    rml = dict(type='DualStudentSegmentor', segmentor1=one)
    plain = tool.plain_config(Config(dict(model=rml)), 'student2')
    assert plain.model.decode_head.num_classes == 3


# ------------------------------------- mmseg's inference APIs, real CamVid
def test_mmseg_inference_apis_on_the_camvid_config_and_its_export(tmp_path):
    """init_model + inference_model on the CamVid mean-teacher config
    (LoadCheckedAnnotations in its test pipeline, predict_on picks the
    network), then on the exported teacher, and MMSegInferencer on that."""
    checkpoint = camvid_mean_teacher_checkpoint(str(tmp_path / 'semi.pth'))
    image = osp.join(camvid_root(), 'test',
                     sorted(os.listdir(osp.join(camvid_root(), 'test')))[0])
    model = init_model(MEAN_TEACHER_CONFIG, checkpoint, device='cpu')
    assert type(model).__name__ == 'MeanTeacherSegmentor'
    assert model.predict_on == 'teacher'
    assert model.dataset_meta['classes'] == list(CAMVID_CLASSES)
    teacher = inference_model(model, image)
    assert teacher.seg_logits.data.shape == (11, 360, 480)
    assert teacher.pred_sem_seg.data.shape == (1, 360, 480)
    assert len(teacher.pred_sem_seg.data.unique()) > 1
    # An image array goes through the same pipeline.
    array = inference_model(model, cv2.imread(image))
    assert torch.equal(array.seg_logits.data, teacher.seg_logits.data)
    student_model = init_model(
        MEAN_TEACHER_CONFIG, checkpoint, device='cpu',
        cfg_options={'model.predict_on': 'student'})
    student = inference_model(student_model, image)
    assert not torch.allclose(student.seg_logits.data, teacher.seg_logits.data)

    files = load_export_tool().main(
        [MEAN_TEACHER_CONFIG, checkpoint, str(tmp_path / 'exported')])
    plain = init_model(files['config'], files['checkpoint'], device='cpu')
    assert type(plain).__name__ == 'EncoderDecoder'
    exported = inference_model(plain, image)
    # The semi model runs channels-last convolutions: rounding differs.
    torch.testing.assert_close(exported.seg_logits.data,
                               teacher.seg_logits.data)
    agreement = (exported.pred_sem_seg.data ==
                 teacher.pred_sem_seg.data).float().mean()
    assert agreement > 0.999
    inferencer = MMSegInferencer(
        files['config'], files['checkpoint'], device='cpu')
    assert inferencer.model.dataset_meta['classes'] == list(CAMVID_CLASSES)
    result = inferencer(image, return_datasamples=True)
    torch.testing.assert_close(result.seg_logits.data,
                               exported.seg_logits.data)


def test_semi_segmentors_take_init_models_keys_only_as_none():
    """mmseg's init_model sets model.pretrained/train_cfg = None."""
    build(pretrained=None, train_cfg=None)
    with pytest.raises(ValueError, match=r'model.pretrained=.*segmentor'):
        build(pretrained='weights.pth')
    with pytest.raises(ValueError, match='model.train_cfg'):
        MODELS.build(dict(type='DualStudentSegmentor',
                          segmentor1=tiny_segmentor_cfg(), train_cfg=dict()))


def test_init_weights_makes_the_teacher_the_student():
    """mmengine initialises teacher and student independently (the head's
    random conv_seg differs); init_weights then copies the student, so the
    first pseudo-labels come from the network the student is."""
    torch.manual_seed(0)
    model = build(unsup_start_iter=0)
    head = 'decode_head.conv_seg.weight'
    model.init_weights()
    teacher, student = model.teacher.state_dict(), model.student.state_dict()
    assert teacher.keys() == student.keys()
    for key in teacher:
        assert torch.equal(teacher[key], student[key]), key
    # The copy is of values: training the student leaves the teacher.
    with torch.no_grad():
        model.student.decode_head.conv_seg.weight.add_(1.0)
    assert not torch.equal(model.teacher.state_dict()[head],
                           model.student.state_dict()[head])


def test_teacher_posterior_removes_the_supervised_class_weights():
    """With class weights c on the student's loss, the teacher step divides
    the teacher's softmax by c ** (t / T) (``remove_class_weights``, the
    default); the labeler sees that posterior. With the option off it is
    the plain softmax."""
    weight = [0.2, 1.0, 5.0]
    segmentor = tiny_segmentor_cfg()
    segmentor['decode_head']['loss_decode'] = dict(
        type='ClassWeightedCrossEntropyLoss', class_weight=weight)
    data = None
    for remove, expected_weight in ((True, weight), (False, None)):
        model = build(segmentor=copy.deepcopy(segmentor), class_balance=None,
                      remove_class_weights=remove)
        model.eval()
        if data is None:
            data = model.data_preprocessor(semi_batch(), training=True)
        weak = data['inputs']['weak']
        valid = torch.ones(weak.shape[:1] + weak.shape[2:], dtype=bool)
        for progress in ((0, 10), (4, 10), (10, 10)):
            output = model.pairs[0].pseudo_label(weak, valid, progress)
            with torch.no_grad():
                probs = logits_at_input_size(model.teacher,
                                             weak).softmax(dim=1)
            if expected_weight is not None:
                power = progress[0] / progress[1]
                probs = probs / torch.tensor(expected_weight).view(
                    1, -1, 1, 1)**power
                probs = probs / probs.sum(dim=1, keepdim=True)
            torch.testing.assert_close(output.probs, probs)
            torch.testing.assert_close(output.pseudo.probs, probs)
    with pytest.raises(ValueError, match='remove_class_weights'):
        build(remove_class_weights=1)
