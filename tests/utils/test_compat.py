"""The compatibility patches applied by ``import mmseg_semi``."""
import functools
import http.server
import os
import os.path as osp
import pickle
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from torch import nn

import mmseg
import mmseg_semi  # noqa: F401  (applies the patches)
from helpers import (CONFIG_DIR, MEAN_TEACHER_CONFIG, REPO_ROOT,  # noqa: F401
                     TESTS_DIR, load_script, single_thread,
                     tiny_camvid_run_config)
from mmseg_semi.utils import adapt_config_to_device, compat


# ------------------------------------------------------------- checkpoints
def write_mmengine_style_checkpoint(path):
    """What mmengine's runner saves: numpy scalars and a message hub."""
    hub = MessageHub('compat_test_hub')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', 0.25)
    hub.update_info('iter', 3)
    model = nn.Linear(2, 1)
    torch.save(
        dict(
            meta=dict(seed=np.int64(7), best_score=np.float64(0.5)),
            state_dict=model.state_dict(),
            message_hub=hub.state_dict()), path)
    return model


def test_plain_torch_load_refuses_mmengine_checkpoints(tmp_path):
    """Why the patch exists: torch>=2.6 loads with weights_only=True."""
    path = str(tmp_path / 'ckpt.pth')
    write_mmengine_style_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_mmengine_loaders_accept_them(tmp_path):
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'ckpt.pth')
    source = write_mmengine_style_checkpoint(path)

    checkpoint = _load_checkpoint(path, map_location='cpu')
    assert checkpoint['meta']['seed'] == 7
    assert isinstance(checkpoint['meta']['best_score'], np.float64)
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.current() == 0.25 and buffer.mean() == 0.375
    hub = MessageHub('compat_test_resumed')
    hub.load_state_dict(checkpoint['message_hub'])
    assert hub.get_info('iter') == 3

    target = nn.Linear(2, 1)
    loaded = load_checkpoint(target, path, map_location='cpu', strict=True)
    assert loaded['meta']['seed'] == 7
    assert torch.equal(target.weight, source.weight)
    # The allowlist is scoped to mmengine's loaders: torch.load is unchanged.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_one_cycle_scheduler_state_loads(tmp_path):
    """OneCycleLR keeps its annealing function in its state: pickled as
    ``getattr(OneCycleParamScheduler, name)``, which is allowed."""
    from mmengine.optim.scheduler import OneCycleLR
    from mmengine.runner.checkpoint import _load_checkpoint
    model = nn.Linear(2, 1)

    def scheduler(strategy):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return OneCycleLR(
            optimizer, eta_max=0.1, total_steps=10, anneal_strategy=strategy)

    path = str(tmp_path / 'ckpt.pth')
    saved = scheduler('linear')
    saved.step()
    torch.save(dict(param_schedulers=[saved.state_dict()]), path)
    state = _load_checkpoint(path)['param_schedulers'][0]
    resumed = scheduler('cos')
    resumed.load_state_dict(state)
    assert resumed.anneal_func is saved.anneal_func
    assert resumed.last_step == saved.last_step == 1


@pytest.fixture(autouse=True)
def no_trusted_checkpoints(monkeypatch):
    monkeypatch.delenv(compat.TRUSTED_CHECKPOINTS_ENV, raising=False)


class Payload:
    """Pickles as ``fn(*args)``: what a malicious checkpoint runs on load."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def write_crafted_checkpoint(path, payload):
    """An mmengine-style checkpoint with ``payload`` hidden in its meta."""
    write_mmengine_style_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint['meta']['note'] = payload
    torch.save(checkpoint, path)


def crafted_payloads(target):
    """(payload, the refused object named by the error) pairs; the first
    two would create ``target``."""
    return [
        (Payload(open, str(target), 'w'), 'io.open'),
        (Payload(os.system, f'touch {target}'), f'{os.name}.system'),
        # a free getattr would reach e.g. functions' globals
        (Payload(getattr, HistoryBuffer, '__init__'),
         "getattr(HistoryBuffer, '__init__')"),
    ]


@pytest.mark.parametrize('case', range(3))
def test_crafted_checkpoint_is_refused(tmp_path, case):
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader
    target = tmp_path / 'created_by_unpickling'
    payload, named = crafted_payloads(target)[case]
    path = str(tmp_path / 'crafted.pth')
    write_crafted_checkpoint(path, payload)

    loads = (lambda: CheckpointLoader.load_checkpoint(path),
             lambda: load_checkpoint(nn.Linear(2, 1), path))
    for load in loads:
        with pytest.raises(pickle.UnpicklingError) as error:
            load()
        message = str(error.value)
        assert compat.TRUSTED_CHECKPOINTS_ENV in message
        assert path in message
        # the offending global, or for a refused call the cause, names it
        assert named in message + str(error.value.__cause__)
        assert not target.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not target.exists()


def test_trusted_checkpoint_opt_in(tmp_path, monkeypatch):
    """A listed file (only that one) is unpickled fully; harmless payload."""
    from mmengine.runner.checkpoint import _load_checkpoint
    path = tmp_path / 'legacy.pth'
    write_crafted_checkpoint(str(path), Fraction(1, 3))
    with pytest.raises(pickle.UnpicklingError, match='fractions.Fraction'):
        _load_checkpoint(str(path))

    env = compat.TRUSTED_CHECKPOINTS_ENV
    monkeypatch.setenv(env, str(tmp_path / 'other.pth'))
    with pytest.raises(pickle.UnpicklingError, match=env):
        _load_checkpoint(str(path))
    monkeypatch.setenv(env, f'https://example.com/a.pth, {path}')
    monkeypatch.chdir(tmp_path)
    assert _load_checkpoint('legacy.pth')['meta']['note'] == Fraction(1, 3)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_allowed_globals_are_scoped_to_the_load(tmp_path):
    """Nothing process-wide changes: torch.load is torch's, its allowlist
    is as before (a user's own entries included), and it still refuses
    mmengine's types and the crafted file."""
    from mmengine.runner.checkpoint import _load_checkpoint
    safe, crafted = str(tmp_path / 'safe.pth'), str(tmp_path / 'bad.pth')
    write_mmengine_style_checkpoint(safe)
    write_crafted_checkpoint(crafted, Payload(open, str(tmp_path / 'x'), 'w'))
    assert torch.load is torch.serialization.load
    before = torch.serialization.get_safe_globals()
    with torch.serialization.safe_globals([np.dtype]):  # the user's own
        assert _load_checkpoint(safe)['meta']['seed'] == 7
        assert np.dtype in torch.serialization.get_safe_globals()
    assert _load_checkpoint(safe)['meta']['seed'] == 7
    assert torch.serialization.get_safe_globals() == before
    assert torch.load is torch.serialization.load
    for path in (safe, crafted):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)
    assert not (tmp_path / 'x').exists()


def test_concurrent_loads(tmp_path):
    """One load leaving the allowlist must not break another one."""
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'ckpt.pth')
    write_mmengine_style_checkpoint(path)
    before = torch.serialization.get_safe_globals()
    with ThreadPoolExecutor(4) as pool:
        seeds = list(pool.map(lambda _: _load_checkpoint(path)['meta']['seed'],
                              range(100)))
    assert seeds == [7] * 100
    assert torch.serialization.get_safe_globals() == before


@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    """A folder served at the returned URL; torch.hub caches under tmp."""
    served = tmp_path / 'served'
    served.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    server.server_close()


def test_http_checkpoints_load_weights_only(http_dir, tmp_path):
    """load_from='http(s)://...': mmengine's checkpoints load, a crafted
    one is refused (torch.hub alone would unpickle it)."""
    from mmengine.runner import load_checkpoint
    served, url = http_dir
    source = write_mmengine_style_checkpoint(str(served / 'ok.pth'))
    target = nn.Linear(2, 1)
    loaded = load_checkpoint(target, f'{url}/ok.pth', map_location='cpu')
    assert loaded['meta']['seed'] == 7
    assert torch.equal(target.weight, source.weight)

    created = tmp_path / 'created_by_unpickling'
    write_crafted_checkpoint(str(served / 'bad.pth'),
                             Payload(open, str(created), 'w'))
    with pytest.raises(pickle.UnpicklingError, match='io.open') as error:
        load_checkpoint(nn.Linear(2, 1), f'{url}/bad.pth')
    assert f'{compat.TRUSTED_CHECKPOINTS_ENV}={url}/bad.pth' in str(
        error.value)
    assert not created.exists()


def test_apply_compat_patches_is_idempotent():
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = CheckpointLoader._schemes['']
    compat.apply_compat_patches()
    assert CheckpointLoader._schemes[''] is loader


# ------------------------------------ the methods' checkpoints and resume
METHOD_RUNS = dict(
    mean_teacher=(MEAN_TEACHER_CONFIG, ('segmentor', ), ''),
    u2pl=(osp.join(CONFIG_DIR, 'u2pl', 'u2pl_deeplabv3plus_effnetlite0-d16_'
                   '1xb4-1k_camvid-1-8-256x320.py'), ('segmentor', ),
          'model = dict(contrastive_loss=dict(queue_size=64, num_anchors=8, '
          'num_negatives=16))\n'),
    rml=(osp.join(CONFIG_DIR, 'rml', 'rml_deeplabv3plus_effnetlite0-d16_'
                  '1xb4-1k_camvid-1-8-256x320.py'),
         ('segmentor1', 'segmentor2'), ''),
)


@pytest.fixture(scope='module')
def train_tool():
    return load_script('tools', 'train.py', name='_compat_test_train_tool')


@pytest.fixture
def restore_global_determinism():
    """Runs set ``torch.use_deterministic_algorithms(True)`` process-wide."""
    enabled = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(enabled)


def same_content(a, b) -> bool:
    """Equal values of equal types, through containers and buffers."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, HistoryBuffer):
        return same_content(vars(a), vars(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same_content(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(same_content, a, b))
    return a == b


@pytest.mark.parametrize('method', list(METHOD_RUNS))
def test_method_checkpoints_resume_weights_only(tmp_path, train_tool,
                                                restore_global_determinism,
                                                method):
    """A tiny run's checkpoints (latest and best) load weights-only with
    exactly their content, and ``--resume`` continues from them."""
    base, segmentor_keys, overrides = METHOD_RUNS[method]
    config = tmp_path / f'{method}.py'
    config.write_text(
        tiny_camvid_run_config(
            base,
            semi=True,
            max_iters=2,
            val_interval=2,
            checkpoint_interval=2,
            segmentor_keys=segmentor_keys) + overrides)
    work_dir = tmp_path / 'work'

    def train(name, config, *args):
        train_tool.main([
            str(config), '--work-dir',
            str(work_dir), *args, '--cfg-options',
            f'experiment_name={method}_{name}',
            f'visualizer.name={method}_{name}'
        ])

    train('part1', config)
    checkpoints = sorted(work_dir.glob('*.pth'))
    assert len(checkpoints) == 2 and checkpoints[0].name.startswith('best_')
    for path in checkpoints:
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)  # torch alone refuses mmengine's meta
        with compat.mmengine_checkpoint_globals_allowed():
            assert torch.serialization.get_unsafe_globals_in_checkpoint(
                path) == []
            loaded = torch.load(path, weights_only=True)
        assert same_content(loaded, torch.load(path, weights_only=False))

    longer = tmp_path / f'{method}_3_iters.py'
    longer.write_text(f'_base_ = [{str(config)!r}]\n'
                      'train_cfg = dict(max_iters=3)\n')
    train('part2', longer, '--resume')
    final = torch.load(work_dir / 'iter_3.pth', weights_only=False)
    assert final['meta']['iter'] == 3
    # the message hub came back: the loss history spans both parts
    losses = final['message_hub']['log_scalars']['train/loss']
    assert losses.data[0].shape == (3, )


# -------------------------------------------------------- package lookup
@pytest.fixture
def no_pkg_resources(monkeypatch):
    """As with setuptools>=81: ``import pkg_resources`` fails."""
    monkeypatch.setitem(sys.modules, 'pkg_resources', None)
    with pytest.raises(ImportError):
        import pkg_resources  # noqa: F401


def original_package_utils():
    """mmengine's unpatched package_utils, loaded as a separate module."""
    import mmengine.utils.package_utils as patched
    return load_script(patched.__file__, name='_original_package_utils')


def test_package_lookup_without_pkg_resources(no_pkg_resources):
    import mmengine.config.config as config_module
    import mmengine.utils as mmengine_utils
    from mmengine.utils import get_installed_path, is_installed

    # mmengine's own helpers need pkg_resources ...
    with pytest.raises(ImportError):
        original_package_utils().get_installed_path('mmsegmentation')
    # ... the patched ones, used by mmengine's config, do not.
    assert config_module.get_installed_path is compat.get_installed_path
    assert mmengine_utils.is_installed is compat.is_installed
    mmseg_dir = osp.dirname(mmseg.__file__)
    assert get_installed_path('mmsegmentation') == mmseg_dir
    assert get_installed_path('mmseg') == mmseg_dir
    assert is_installed('mmsegmentation')
    assert is_installed('mmseg')
    assert not is_installed('surely_not_an_installed_package_xyz')
    with pytest.raises(ModuleNotFoundError):
        get_installed_path('surely_not_an_installed_package_xyz')


def test_config_inherits_mmseg_base_without_pkg_resources(
        no_pkg_resources, tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text("_base_ = ['mmseg::_base_/default_runtime.py']\n"
                    'log_level = "WARNING"\n')
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmseg'
    assert cfg.log_level == 'WARNING'
    # the rest comes from mmseg's configs/_base_/default_runtime.py
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.visualizer.type == 'SegLocalVisualizer'
    assert cfg.log_processor == dict(by_epoch=False)


# ------------------------------------------------------------ device config
def syncbn_config():
    sync = dict(type='SyncBN', requires_grad=True)
    return Config(
        dict(
            model=dict(
                type='MeanTeacherSegmentor',
                segmentor=dict(
                    type='EncoderDecoder',
                    backbone=dict(type='ResNetV1c', norm_cfg=sync),
                    decode_head=dict(type='FCNHead', norm_cfg=sync),
                    auxiliary_head=[
                        dict(type='FCNHead', norm_cfg=dict(type='SyncBN')),
                        dict(
                            type='FCNHead',
                            norm_cfg=dict(type='BN', requires_grad=False))
                    ])),
            env_cfg=dict(dist_cfg=dict(backend='nccl'))))


def test_adapt_config_to_device_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = adapt_config_to_device(syncbn_config())
    segmentor = cfg.model.segmentor
    assert segmentor.backbone.norm_cfg == dict(type='BN', requires_grad=True)
    assert segmentor.decode_head.norm_cfg == dict(
        type='BN', requires_grad=True)
    assert segmentor.auxiliary_head[0].norm_cfg == dict(type='BN')
    assert segmentor.auxiliary_head[1].norm_cfg == dict(
        type='BN', requires_grad=False)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'

    # A config without env_cfg gets one; a non-NCCL backend is kept.
    cfg = adapt_config_to_device(Config(dict(model=dict(type='X'))))
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    cfg = Config(dict(model={}, env_cfg=dict(dist_cfg=dict(backend='mpi'))))
    assert adapt_config_to_device(cfg).env_cfg.dist_cfg.backend == 'mpi'


def test_adapt_config_to_device_wraps_cpu_modules_in_ddp(monkeypatch):
    """mmengine gives DDP device_ids=[LOCAL_RANK], which DDP rejects for
    CPU modules; the adapted config asks for device_ids=None."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = syncbn_config()
    cfg.find_unused_parameters = True
    wrapper = adapt_config_to_device(cfg).model_wrapper_cfg
    assert wrapper == dict(
        type='MMDistributedDataParallel',
        device_ids=None,
        broadcast_buffers=False,
        find_unused_parameters=True)
    # A user's DDP wrapper keeps its settings and gains device_ids=None ...
    cfg = syncbn_config()
    cfg.model_wrapper_cfg = dict(
        type='MMSeparateDistributedDataParallel', broadcast_buffers=True)
    wrapper = adapt_config_to_device(cfg).model_wrapper_cfg
    assert wrapper == dict(
        type='MMSeparateDistributedDataParallel',
        broadcast_buffers=True,
        device_ids=None)
    # ... unless it chose devices itself; other wrappers are left alone.
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=[0])
    assert adapt_config_to_device(cfg).model_wrapper_cfg.device_ids == [0]
    cfg.model_wrapper_cfg = dict(type='SomeOtherWrapper')
    assert adapt_config_to_device(cfg).model_wrapper_cfg == dict(
        type='SomeOtherWrapper')


def test_cpu_ddp_wrapper_builds(monkeypatch, tmp_path):
    """The adapted wrapper config really wraps a CPU model (world of 1)."""
    from mmengine.registry import MODEL_WRAPPERS
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    wrapper = adapt_config_to_device(syncbn_config()).model_wrapper_cfg
    torch.distributed.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        model = MODEL_WRAPPERS.build(
            wrapper, default_args=dict(module=nn.Linear(2, 1),
                                       device_ids=[0]))
        assert model.device_ids is None
        assert model(torch.ones(3, 2)).shape == (3, 1)
    finally:
        torch.distributed.destroy_process_group()


def test_adapt_config_to_device_keeps_gpu_configs(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = adapt_config_to_device(syncbn_config())
    assert cfg.model.segmentor.backbone.norm_cfg.type == 'SyncBN'
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert 'model_wrapper_cfg' not in cfg


SUPERVISED_STEPS = """
import sys
import torch
if sys.argv[1] == 'with':
    import mmseg_semi  # noqa: F401
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData
sys.path.insert(0, sys.argv[2])
from helpers import tiny_segmentor_cfg
init_default_scope('mmseg')
torch.manual_seed(0)
torch.set_num_threads(1)
cfg = tiny_segmentor_cfg()
# 'weighted': class weights and ignored pixels, which mmseg 1.2.2 cannot
# compute (IndexError); a process-wide patch of its loss would show.
loss_decode = dict(type='CrossEntropyLoss', avg_non_ignore=True)
if sys.argv[3] == 'weighted':
    loss_decode['class_weight'] = [0.5, 2.0, 1.0]
cfg['decode_head']['loss_decode'] = loss_decode
model = MODELS.build(cfg)
model.init_weights()
model.train()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for step in range(3):
    images = torch.rand(2, 3, 32, 32) * 255
    samples = []
    for _ in range(2):
        label = torch.randint(0, 3, (1, 32, 32))
        label[:, :4] = 255
        sample = SegDataSample(gt_sem_seg=PixelData(data=label))
        sample.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32)))
        samples.append(sample)
    data = model.data_preprocessor(
        dict(inputs=list(images.byte()), data_samples=samples), True)
    try:
        losses = model(**data, mode='loss')
    except Exception as error:
        print('RESULT raised', type(error).__name__)
        break
    loss = sum(v for k, v in losses.items() if 'loss' in k)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print('RESULT', repr(loss.item()))
print('RESULT', repr(sum(p.double().sum().item() for p in model.parameters())))
"""


def test_plain_mmseg_training_is_unchanged_by_import(tmp_path):
    """A user's supervised mmseg model trains identically with and without
    ``import mmseg_semi`` (same losses and weights, bit for bit), and fails
    identically where mmseg fails (class weights with ignored pixels)."""
    script = tmp_path / 'supervised_steps.py'
    script.write_text(SUPERVISED_STEPS)
    for loss in ('plain', 'weighted'):
        outputs = {}
        for mode in ('without', 'with'):
            result = subprocess.run(
                [sys.executable, str(script), mode, TESTS_DIR, loss],
                capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr[-2000:]
            outputs[mode] = [
                line for line in result.stdout.splitlines()
                if line.startswith('RESULT ')
            ]
        assert outputs['with'] == outputs['without'], loss
        if loss == 'plain':
            assert len(outputs['with']) == 4
        else:
            assert outputs['with'][0] == 'RESULT raised IndexError'
