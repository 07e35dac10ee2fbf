"""Export one network of a semi-supervised checkpoint as a plain mmseg model.

A semi-supervised checkpoint holds every network of the wrapper (``teacher.``
and ``student.`` keys for mean teacher / U2PL). This tool writes, into
``OUT_DIR``:

* ``<name>.pth``: the chosen network's weights with the prefix removed, and a
  small meta (``dataset_meta`` with classes and palette, where the weights
  came from) made of plain Python values, so it loads with
  ``torch.load(..., weights_only=True)``;
* ``<name>.py``: a plain mmseg config: the semi config with ``model``
  replaced by the network's segmentor config (``segmentor``, or
  ``segmentor1``/``segmentor2`` for RML's ``teacher1``... networks), keeping
  a data preprocessor; the semi-supervised loops, hooks and unlabeled data
  removed.

The pair works with mmseg's own APIs and tools::

    python tools/model_converters/export_semi_checkpoint.py \\
        configs/mean_teacher/CONFIG.py work_dirs/RUN/iter_1000.pth \\
        exported/ --which teacher
    # then: mmseg.apis.init_model('exported/NAME.py', 'exported/NAME.pth')

By default the written config is checked to build a model that loads the
exported weights strictly (``--skip-verify`` turns that off).
"""
import argparse
import copy
import os
import os.path as osp
import re
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint

import mmseg_semi  # noqa: F401  (registers modules, applies patches)
from mmseg.registry import DATASETS, MODELS

#: Loops of the semi-supervised configs and their plain mmengine equivalent.
PLAIN_LOOPS = {
    'SemiIterBasedTrainLoop': 'IterBasedTrainLoop',
    'TeacherStudentValLoop': 'ValLoop',
}
#: Hooks that only make sense for a teacher-student wrapper.
SEMI_HOOKS = ('EMATeacherHook', )
#: Wrapper prefixes DDP/mmengine may leave on keys (as mmengine strips them).
WRAPPER_KEY_PREFIX = re.compile(r'^module\.')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the teacher or student of a semi-supervised '
        'checkpoint as a plain mmseg config and checkpoint')
    parser.add_argument('config', help='semi-supervised config file')
    parser.add_argument('checkpoint', help='semi-supervised checkpoint')
    parser.add_argument('out_dir', help='directory to write into')
    parser.add_argument(
        '--which',
        default='teacher',
        help='network to export: teacher or student (mean teacher, U2PL), '
        'teacher1, student1, teacher2 or student2 (RML); default: teacher')
    parser.add_argument(
        '--name',
        help='base name of the written files (default: '
        '<config name>_<which>)')
    parser.add_argument(
        '--skip-verify',
        action='store_true',
        help='do not check that the written config builds a model that '
        'loads the exported weights strictly')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the semi config before exporting')
    return parser.parse_args(argv)


# ------------------------------------------------------------------ weights
def network_state_dict(state_dict: Dict[str, torch.Tensor],
                       which: str) -> Dict[str, torch.Tensor]:
    """Keys of ``which`` with the ``<which>.`` prefix removed."""
    state_dict = {
        WRAPPER_KEY_PREFIX.sub('', key): value
        for key, value in state_dict.items()
    }
    prefix = f'{which}.'
    selected = {
        key[len(prefix):]: value.detach().cpu().clone()
        for key, value in state_dict.items() if key.startswith(prefix)
    }
    if not selected:
        names = sorted({key.split('.', 1)[0] for key in state_dict})
        raise KeyError(
            f'The checkpoint has no {which!r} network (no key starts with '
            f'{prefix!r}); its top-level names are {names}')
    return selected


def plain_dataset_meta(meta: Optional[dict]) -> Optional[dict]:
    """classes/palette as lists of str/int (``weights_only``-loadable)."""
    if not meta or not meta.get('classes'):
        return None
    plain = dict(classes=[str(c) for c in meta['classes']])
    if meta.get('palette') is not None:
        plain['palette'] = [[int(v) for v in color]
                            for color in meta['palette']]
    return plain


def dataset_meta_from_config(cfg: Config) -> Optional[dict]:
    """classes/palette of the config's test (or val/train) dataset class."""
    for loader in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        if not dataset:
            continue
        meta = {}
        dataset_cls = DATASETS.get(dataset.get('type', ''))
        if dataset_cls is not None:
            meta.update(getattr(dataset_cls, 'METAINFO', {}))
        meta.update(dataset.get('metainfo') or {})
        if meta.get('classes'):
            return plain_dataset_meta(meta)
    return None


def export_meta(source_meta: dict, cfg: Config, args) -> dict:
    meta = dict(exported_from=dict(
        config=osp.abspath(args.config),
        checkpoint=osp.abspath(args.checkpoint),
        network=args.which))
    for key in ('iter', 'epoch'):
        if isinstance(source_meta.get(key), int):
            meta[key] = source_meta[key]
    dataset_meta = plain_dataset_meta(source_meta.get('dataset_meta'))
    if dataset_meta is None:
        dataset_meta = dataset_meta_from_config(cfg)
    if dataset_meta is not None:
        meta['dataset_meta'] = dataset_meta
    return meta


# ------------------------------------------------------------------- config
def _type_name(cfg: dict) -> str:
    return str(cfg.get('type', '')).split('.')[-1]


def inner_data_preprocessor(cfg: Config) -> Optional[dict]:
    """The per-branch preprocessor of the semi model (or the top-level one)."""
    candidate = cfg.model.get('data_preprocessor') or cfg.get(
        'data_preprocessor')
    if candidate and _type_name(candidate) == 'MultiBranchDataPreprocessor':
        candidate = candidate.get('data_preprocessor')
    return copy.deepcopy(candidate) if candidate else None


def segmentor_key(model_cfg: dict, which: str) -> str:
    """Key of the segmentor config that built network ``which``.

    Mean teacher / U2PL: ``segmentor``. RML: ``segmentor1`` for ``teacher1``
    and ``student1``, ``segmentor2`` (a copy of ``segmentor1`` when unset)
    for ``teacher2`` and ``student2``.
    """
    keys = ['segmentor']
    index = re.search(r'(\d+)$', which)
    if index:
        keys.insert(0, f'segmentor{index.group(1)}')
    keys.append('segmentor1')
    for key in keys:
        if model_cfg.get(key):
            return key
    raise ValueError(
        f'The config model ({model_cfg.get("type")}) has no segmentor '
        f'config for {which!r} (looked for {keys}): it is not a '
        'semi-supervised config')


def plain_config(cfg: Config, which: str = 'teacher') -> Config:
    """The semi config turned into a plain mmseg config for ``which``."""
    key = segmentor_key(cfg.model, which)
    data = copy.deepcopy(cfg.to_dict())
    model = data['model'][key]
    if not model.get('data_preprocessor'):
        preprocessor = inner_data_preprocessor(cfg)
        if preprocessor is None:
            raise KeyError('No data_preprocessor in the segmentor, the semi '
                           'model or the config top level')
        model['data_preprocessor'] = preprocessor
    data['model'] = model

    data.pop('unlabeled_dataloader', None)
    for key in ('train_cfg', 'val_cfg', 'test_cfg'):
        loop = data.get(key)
        if not isinstance(loop, dict) or \
                _type_name(loop) not in PLAIN_LOOPS:
            continue
        loop = dict(loop, type=PLAIN_LOOPS[_type_name(loop)])
        loop.pop('unlabeled_dataloader', None)
        loop.pop('predict_on', None)
        data[key] = loop
    if data.get('custom_hooks'):
        data['custom_hooks'] = [
            hook for hook in data['custom_hooks']
            if _type_name(hook) not in SEMI_HOOKS
        ]
    checkpoint_hook = (data.get('default_hooks') or {}).get('checkpoint')
    if checkpoint_hook and isinstance(checkpoint_hook.get('save_best'), str):
        # 'teacher/mIoU' -> 'mIoU': a plain ValLoop has no network prefixes.
        checkpoint_hook['save_best'] = \
            checkpoint_hook['save_best'].split('/')[-1]
    if 'test_pipeline' not in data:  # mmseg's inference_model reads it
        pipeline = ((data.get('test_dataloader') or {}).get('dataset')
                    or {}).get('pipeline')
        if pipeline:
            data['test_pipeline'] = pipeline
    data['load_from'] = None
    data['resume'] = False
    return Config(data)


def verify(config: Config, state_dict: Dict[str, torch.Tensor]) -> None:
    """Build the plain model and load the weights strictly."""
    init_default_scope(config.get('default_scope', 'mmseg'))
    model_cfg = copy.deepcopy(config.model)
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, (dict, ConfigDict)):
        backbone['init_cfg'] = None  # build only; weights come from export
    model = MODELS.build(model_cfg)
    model.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> Dict[str, str]:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))

    checkpoint = _load_checkpoint(args.checkpoint, map_location='cpu')
    if 'state_dict' in checkpoint:
        state_dict, source_meta = checkpoint['state_dict'], \
            checkpoint.get('meta') or {}
    else:
        state_dict, source_meta = checkpoint, {}
    weights = network_state_dict(state_dict, args.which)
    config = plain_config(cfg, args.which)
    if not args.skip_verify:
        verify(config, weights)
    meta = export_meta(source_meta, cfg, args)

    name = args.name or '{}_{}'.format(
        osp.splitext(osp.basename(args.config))[0], args.which)
    os.makedirs(args.out_dir, exist_ok=True)
    config_path = osp.join(args.out_dir, f'{name}.py')
    checkpoint_path = osp.join(args.out_dir, f'{name}.pth')
    config.dump(config_path)
    torch.save(dict(meta=meta, state_dict=weights), checkpoint_path)

    num_params = sum(v.numel() for v in weights.values()
                     if v.is_floating_point())
    print(f'Exported the {args.which} of {args.checkpoint}:')
    print(f'  checkpoint: {checkpoint_path} ({len(weights)} tensors, '
          f'{num_params} floating-point values)')
    print(f'  config:     {config_path} (model type '
          f'{config.model.get("type")})')
    classes = meta.get('dataset_meta', {}).get('classes')
    if classes:
        print(f'  classes:    {len(classes)} ({", ".join(classes)})')
    return dict(config=config_path, checkpoint=checkpoint_path)


if __name__ == '__main__':
    main()
