"""Write docs/api/*.md from the registered mmseg_semi classes.

Every class that ``import mmseg_semi`` registers into one of mmseg's
registries gets a section: its registry and source file, its class
docstring (converted from the Google/reST style used in the code to
Markdown), a table of constructor arguments with their defaults and the
docstring's description of each, and a config snippet. The pages are a
pure function of the code, so ``tests/system/test_api_docs.py`` regenerates
them and compares with the committed files.

Usage::

    python tools/misc/gen_api_docs.py            # write docs/api/
    python tools/misc/gen_api_docs.py --check    # exit 1 if out of date
"""
import argparse
import inspect
import os
import os.path as osp
import re
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
API_DIR = osp.join(REPO_ROOT, 'docs', 'api')

#: (module prefix, page) pairs; the first matching prefix wins, so the
#: more specific prefixes come first.
PAGE_OF_MODULE = (
    ('mmseg_semi.models.pseudo_labelers.prototype_rectifier', 'rectifiers'),
    ('mmseg_semi.models.pseudo_labelers', 'pseudo_labelers'),
    ('mmseg_semi.models.segmentors', 'segmentors'),
    ('mmseg_semi.models.decode_heads', 'decode_heads'),
    ('mmseg_semi.models.losses', 'losses'),
    ('mmseg_semi.models.utils', 'memory_banks'),
    ('mmseg_semi.models.backbones', 'backbones'),
    ('mmseg_semi.models.data_preprocessors', 'data_preprocessors'),
    ('mmseg_semi.engine.hooks', 'hooks'),
    ('mmseg_semi.engine.optimizers', 'optim_wrappers'),
    ('mmseg_semi.engine.runner', 'loops'),
    ('mmseg_semi.datasets.transforms', 'transforms'),
    ('mmseg_semi.datasets', 'datasets'),
)

#: page -> (title, where the classes go in a config).
PAGE_INFO = {
    'segmentors': (
        'Segmentors',
        'The top-level `model` of a semi-supervised config. Each wraps one '
        '(mean teacher, U2PL) or two (RML) plain mmseg segmentors.'),
    'pseudo_labelers': (
        'Pseudo-labelers',
        "`model.pseudo_labeler`: turn a teacher's softmax into hard labels, "
        'a reliability mask and a loss weight.'),
    'rectifiers': (
        'Rectifiers',
        "`model.rectifier`: correct a teacher's softmax with class "
        'prototypes before pseudo-labelling.'),
    'decode_heads': (
        'Decode heads',
        '`decode_head` of an mmseg segmentor config, or `model.rep_head` '
        "of a U2PL config (on the decoder feature that enters the "
        "segmentor's classifier)."),
    'losses': (
        'Losses',
        '`model.contrastive_loss`: losses computed by the semi-supervised '
        'segmentor outside the wrapped segmentors.'),
    'memory_banks': (
        'Memory banks',
        '`model.contrastive_loss.memory_bank`: state kept across '
        'iterations (and in checkpoints) by a loss.'),
    'backbones': (
        'Backbones',
        '`backbone` of any mmseg segmentor config (inside '
        '`model.segmentor` of a semi-supervised config).'),
    'data_preprocessors': (
        'Data preprocessors',
        '`model.data_preprocessor`; the segmentors build it themselves '
        'from the wrapped segmentor\'s preprocessor.'),
    'hooks': ('Hooks', '`custom_hooks`.'),
    'optim_wrappers': ('Optimizer wrappers', '`optim_wrapper`.'),
    'loops': ('Loops', '`train_cfg` and `val_cfg`.'),
    'transforms': ('Transforms', 'Data pipelines (`dataset.pipeline`).'),
    'datasets': ('Datasets', '`dataset` of a data loader config.'),
}

#: Free names the snippets may use, with their meaning; the test provides
#: stand-ins for them.
SNIPPET_NAMES = {
    'segmentor': 'any mmseg segmentor config, e.g. `{{_base_.model}}` of '
    'a supervised config',
}

#: A config snippet per class: what a user writes to use it. Classes left
#: out get one built from their required arguments.
EXAMPLES = {
    'MeanTeacherSegmentor': """\
# Mean teacher (entropy pseudo-labels, CutMix of the strong view).
model = dict(
    type='MeanTeacherSegmentor',
    segmentor=segmentor,
    pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
    cutmix=dict(prob=1.0),
    unsup_start_iter=100)
# U2PL: the same plus the representation head and the contrastive loss.
u2pl_model = dict(
    type='MeanTeacherSegmentor',
    segmentor=segmentor,
    pseudo_labeler=dict(type='EntropyPseudoLabeler', alpha_0=0.2),
    rep_head=dict(
        type='RepresentationHead',
        in_channels=128,  # the decode head's `channels`
        channels=64),
    contrastive_loss=dict(
        type='U2PLContrastiveLoss', num_classes=11, feat_channels=64))
""",
    'DualStudentSegmentor': """\
model = dict(
    type='DualStudentSegmentor',
    segmentor1=segmentor,
    segmentor2=segmentor,  # or another architecture, same num_classes
    student1_noise=dict(dropout=0.5),
    student2_noise=dict(dropout=0.3),
    rectifier=dict(type='PrototypeRectifier', momentum=0.99),
    pseudo_labeler=dict(type='ConfidencePseudoLabeler', threshold=0.0),
    predict_on='teacher1')
""",
    'EntropyPseudoLabeler': """\
model = dict(
    pseudo_labeler=dict(
        type='EntropyPseudoLabeler', alpha_0=0.2, schedule='linear'))
""",
    'DistributionAlignment': """\
# The segmentors' default; they fill in num_classes from the student.
model = dict(
    class_balance=dict(
        type='DistributionAlignment', num_classes=11, momentum=0.99))
""",
    'ConfidencePseudoLabeler': """\
model = dict(
    pseudo_labeler=dict(type='ConfidencePseudoLabeler', threshold=0.95))
""",
    'PrototypeRectifier': """\
# DualStudentSegmentor fills num_classes and feat_channels from each
# teacher's decode head; MeanTeacherSegmentor needs them given.
model = dict(
    rectifier=dict(
        type='PrototypeRectifier',
        num_classes=11,
        feat_channels=128,
        momentum=0.99))
""",
    'RepresentationHead': """\
model = dict(
    rep_head=dict(
        type='RepresentationHead',
        in_channels=128,  # the decode head's `channels`
        channels=64,
        num_convs=1))
""",
    'U2PLContrastiveLoss': """\
model = dict(
    contrastive_loss=dict(
        type='U2PLContrastiveLoss',
        num_classes=11,
        feat_channels=64,  # rep_head.channels
        num_anchors=50,
        num_negatives=256,
        queue_size=30000,
        loss_weight=0.1))
""",
    'ClassMemoryBank': """\
model = dict(
    contrastive_loss=dict(
        type='U2PLContrastiveLoss',
        num_classes=11,
        feat_channels=64,
        # num_classes, feat_channels, queue_size and max_push_per_class
        # default to the loss's own arguments.
        memory_bank=dict(type='ClassMemoryBank', dtype='float16')))
""",
    'EfficientNetLite': """\
model = dict(
    backbone=dict(
        type='EfficientNetLite',
        arch='lite0',
        out_indices=(1, 6),
        output_stride=16,
        drop_path_rate=0.2))
""",
    'MultiBranchDataPreprocessor': """\
model = dict(
    data_preprocessor=dict(
        type='MultiBranchDataPreprocessor',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_val=0,
            seg_pad_val=255)))
""",
    'DeepLabV2Head': """\
model = dict(
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,  # ResNet-101's last stage
        in_index=3,
        dilations=(6, 12, 18, 24),
        num_classes=21))
""",
    'FiniteLossOptimWrapper': """\
optim_wrapper = dict(
    type='FiniteLossOptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    nonfinite_loss='skip')
""",
    'AnyDeviceAmpOptimWrapper': """\
optim_wrapper = dict(
    type='AnyDeviceAmpOptimWrapper',
    dtype='bfloat16',  # float16 needs a GPU
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))
""",
    'LoadCheckedAnnotations': """\
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=11),
    dict(type='PackSegInputs'),
]
""",
    'ClassCollapseGuardHook': """\
custom_hooks = [
    dict(type='EMATeacherHook', decay=0.99, warmup=True),
    dict(type='ClassCollapseGuardHook', interval=50, min_share_ratio=0.25,
         patience=2, pause_iters=0)
]
""",
    'CCPDataset': """\
# shared/data/ccp's layout; split files are read under data_root.
labeled = dict(
    type='CCPDataset',
    data_root='data/ccp',
    ann_file='splits/labeled_1of8.txt',
    data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
    pipeline=[])
# Unlabeled: the split lists "train/NAME"; no masks are read.
unlabeled = dict(
    type='CCPDataset',
    data_root='data/ccp',
    ann_file='splits/unlabeled_1of8.txt',
    data_prefix=dict(img_path='img_dir'),
    pipeline=[])
""",
    'EMATeacherHook': """\
custom_hooks = [dict(type='EMATeacherHook', decay=0.99, warmup=True)]
""",
    'SemiIterBasedTrainLoop': """\
train_cfg = dict(
    type='SemiIterBasedTrainLoop',
    max_iters=1000,
    val_interval=1000,
    unlabeled_dataloader=dict(
        batch_size=4,
        num_workers=2,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            type='CamVidDataset',
            data_root='data/camvid',
            ann_file='/path/to/splits/camvid/1-8_seed0/unlabeled.txt',
            data_prefix=dict(img_path='train'),
            pipeline=[])))  # ends in MultiBranch(weak=..., strong=...)
""",
    'TeacherStudentValLoop': """\
val_cfg = dict(type='TeacherStudentValLoop')  # every network
test_cfg = dict(type='TeacherStudentValLoop', predict_on=['teacher'])
""",
    'MultiBranch': """\
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=(256, 320)),  # geometry: once
    dict(
        type='MultiBranch',
        branches=dict(
            weak=[dict(type='PackSegInputs')],
            strong=[
                dict(type='RandomApply', prob=0.8,
                     transforms=[dict(type='RandomColorJitter')]),
                dict(type='PackSegInputs'),
            ])),
]
""",
    'RandAugmentPhotometric': """\
strong = [dict(type='RandAugmentPhotometric', num_ops=2),
          dict(type='PackSegInputs')]
""",
    'RandomColorJitter': """\
strong = [dict(type='RandomApply', prob=0.8,
               transforms=[dict(type='RandomColorJitter', brightness=0.5,
                                hue=0.25)]),
          dict(type='PackSegInputs')]
""",
    'RandomGaussianBlur': """\
strong = [dict(type='RandomApply', prob=0.5,
               transforms=[dict(type='RandomGaussianBlur',
                                sigma_range=(0.1, 2.0))]),
          dict(type='PackSegInputs')]
""",
    'CamVidDataset': """\
# A relative ann_file is read under data_root: give the split files of
# this repository (splits/camvid/...) as absolute paths.
splits = '/path/to/mmseg-semi/splits/camvid/1-8_seed0'
# Labeled split: images and masks.
labeled = dict(
    type='CamVidDataset',
    data_root='data/camvid',
    ann_file=splits + '/labeled.txt',
    data_prefix=dict(img_path='train', seg_map_path='trainannot'),
    pipeline=[])
# Unlabeled split: no seg_map_path, so no mask files are read.
unlabeled = dict(
    type='CamVidDataset',
    data_root='data/camvid',
    ann_file=splits + '/unlabeled.txt',
    data_prefix=dict(img_path='train'),
    pipeline=[])
""",
    'UnlabeledImageFolderDataset': """\
# Every image under data/my_data/unlabeled (sub-folders too), no split file
# and no masks; the pipeline makes the weak and strong views.
unlabeled = dict(
    type='UnlabeledImageFolderDataset',
    data_root='data/my_data',
    data_prefix=dict(img_path='unlabeled'),
    pipeline=[])
""",
}

_ARG_LINE = re.compile(r'^(?P<names>[\w*]+(?:\s*,\s*[\w*]+)*)'
                       r'(?:\s*\((?P<type>[^)]*)\))?\s*:\s*(?P<text>.*)$')
_SECTION = re.compile(r'^(?P<name>[A-Z][A-Za-z ]*):$')
_RST_TABLE_RULE = re.compile(r'^=+(\s+=+)+$')
_RST_ROLE = re.compile(r':(?:class|func|meth|attr|mod|data|obj):`~?([^`]+)`')


class Component(NamedTuple):
    """One registered class and where it lives."""
    registry: str
    name: str
    cls: type
    page: str


def registered_components() -> List[Component]:
    """Every mmseg_semi class registered in one of mmseg's registries."""
    import mmseg.registry
    from mmengine.registry import Registry

    import mmseg_semi  # noqa: F401  (registers the classes)

    components = []
    for registry_name in sorted(dir(mmseg.registry)):
        registry = getattr(mmseg.registry, registry_name)
        if not isinstance(registry, Registry):
            continue
        for name, cls in sorted(registry.module_dict.items()):
            module = getattr(cls, '__module__', '')
            if module.startswith('mmseg_semi'):
                components.append(
                    Component(registry_name, name, cls, page_of(module)))
    return components


def page_of(module: str) -> str:
    """The docs/api page of a class defined in ``module``."""
    for prefix, page in PAGE_OF_MODULE:
        if module == prefix or module.startswith(prefix + '.'):
            return page
    # A new sub-package: its own page, named after the package.
    return module.split('.')[-2]


# ---------------------------------------------------------------- docstrings
def split_docstring(doc: str) -> Tuple[str, Dict[str, str], List[str]]:
    """Split a class docstring into body, Args entries and other lines.

    Returns:
        ``(body, args, examples)``: the text before ``Args:`` plus any later
        section other than ``Args``/``Example(s)`` (as Markdown), a mapping
        from argument name to its one-line description, and the lines of
        ``Example:`` sections.
    """
    body, arg_lines, examples = [], [], []
    section = None
    for line in doc.splitlines():
        match = _SECTION.match(line)
        if match and not line.startswith(' '):
            section = match.group('name')
            if section not in ('Args', 'Arguments', 'Example', 'Examples'):
                body.append(f'**{section}:**')
            continue
        if section in ('Args', 'Arguments'):
            arg_lines.append(line)
        elif section in ('Example', 'Examples'):
            examples.append(line)
        else:
            body.append(line[4:] if section and line.startswith('    ')
                        else line)
    return rst_to_markdown(body), parse_args(arg_lines), examples


def parse_args(lines: List[str]) -> Dict[str, str]:
    """``name (type): text`` entries (continuations indented) to a dict.

    ``a, b: text`` documents several arguments at once.
    """
    entries: List[Tuple[List[str], List[str]]] = []
    indent = None
    for line in lines:
        if not line.strip():
            continue
        stripped = line.lstrip()
        line_indent = len(line) - len(stripped)
        if indent is None:
            indent = line_indent
        match = _ARG_LINE.match(stripped)
        if line_indent == indent and match:
            names = [n.strip() for n in match.group('names').split(',')]
            entries.append((names, [match.group('text')]))
        elif entries:
            entries[-1][1].append(stripped)
    args = {}
    for names, text in entries:
        for name in names:
            args[name.lstrip('*')] = inline_markdown(' '.join(text).strip())
    return args


def inline_markdown(text: str) -> str:
    """reST inline markup to Markdown: roles and double backticks."""
    text = _RST_ROLE.sub(lambda m: f'`{m.group(1)}`', text)
    return text.replace('``', '`')


def rst_to_markdown(lines: List[str]) -> str:
    """Docstring body lines to Markdown.

    Literal blocks (after a line ending in ``::``) and reST simple tables
    become fenced code blocks; inline markup is converted line by line.
    """
    out: List[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _RST_TABLE_RULE.match(line.strip()):
            # A simple table: three rules (top, under the header, bottom).
            block, rules = [], 0
            while index < len(lines) and rules < 3:
                if _RST_TABLE_RULE.match(lines[index].strip()):
                    rules += 1
                block.append(lines[index])
                index += 1
            out.extend(['```text'] + block + ['```'])
            continue
        if line.rstrip().endswith('::'):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(inline_markdown(head) + ':')
            index += 1
            block = []
            while index < len(lines) and (not lines[index].strip()
                                          or lines[index].startswith(' ')):
                block.append(lines[index])
                index += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out.extend([''] + ['```python'] + dedent_lines(block) +
                       ['```', ''])
            continue
        out.append(inline_markdown(line))
        index += 1
    return '\n'.join(out).strip()


def dedent_lines(lines: List[str]) -> List[str]:
    indents = [len(x) - len(x.lstrip()) for x in lines if x.strip()]
    cut = min(indents) if indents else 0
    return [x[cut:] for x in lines]


def example_code(lines: List[str]) -> List[str]:
    """``>>>``/``...`` doctest lines to plain Python lines."""
    code = []
    for line in dedent_lines(lines):
        if line.startswith(('>>> ', '... ')):
            code.append(line[4:])
        elif line.strip() in ('>>>', '...'):
            code.append('')
        elif line.strip():
            code.append(line)
    return code


# ----------------------------------------------------------------- arguments
class Argument(NamedTuple):
    name: str
    default: str  # '' when required, '-' for *args and **kwargs
    description: str


def constructor_arguments(cls: type) -> List[Argument]:
    """Constructor arguments, defaults and descriptions of ``cls``.

    A description is looked up in the class docstring, then in the
    docstrings of its bases (arguments a subclass passes on); "see
    :class:`Base`" entries are replaced by the base's own description.
    """
    docs = [split_docstring(inspect.getdoc(klass) or '')[1]
            for klass in cls.__mro__ if klass is not object]
    arguments = []
    if cls.__init__ is object.__init__:
        return arguments  # takes no argument
    for param in inspect.signature(cls.__init__).parameters.values():
        if param.name == 'self':
            continue
        if param.kind is param.VAR_POSITIONAL:
            name = f'*{param.name}'
        elif param.kind is param.VAR_KEYWORD:
            name = f'**{param.name}'
        else:
            name = param.name
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            default = '-'
        elif param.default is param.empty:
            default = ''
        else:
            default = format_value(param.default)
        arguments.append(
            Argument(name, default, describe(param.name, docs)))
    return arguments


def describe(name: str, docs: List[Dict[str, str]]) -> str:
    """The first description of ``name`` that is not a pointer ("see X",
    "as X") to another class, else the first one found."""
    found = [doc[name] for doc in docs if name in doc]
    real = [text for text in found
            if not text.lower().startswith(('see ', 'as '))]
    return (real or found or [''])[0]


def format_value(value) -> str:
    """A default as it would be written in a config file."""
    if isinstance(value, dict):
        items = ', '.join(f'{k}={format_value(v)}' if str(k).isidentifier()
                          else f'{k!r}: {format_value(v)}'
                          for k, v in value.items())
        return f'dict({items})'
    if isinstance(value, (list, tuple)):
        inner = ', '.join(format_value(v) for v in value)
        if isinstance(value, tuple):
            return f'({inner},)' if len(value) == 1 else f'({inner})'
        return f'[{inner}]'
    return repr(value)


def default_example(component: Component) -> str:
    """``dict(type=..., <required>=...)`` for classes without an example."""
    required = [
        a.name for a in constructor_arguments(component.cls)
        if not a.default and not a.name.startswith('*')
        and a.name not in ('runner', 'dataloader')
    ]
    fields = ''.join(f', {name}=...' for name in required)
    return f"cfg = dict(type='{component.name}'{fields})\n"


def example_of(component: Component) -> str:
    return EXAMPLES.get(component.name) or default_example(component)


# -------------------------------------------------------------------- pages
def escape_cell(text: str) -> str:
    return text.replace('|', '\\|').replace('\n', ' ')


def source_path(cls: type) -> str:
    return osp.relpath(inspect.getsourcefile(cls), REPO_ROOT).replace(
        os.sep, '/')


def render_component(component: Component) -> str:
    cls = component.cls
    body, _, examples = split_docstring(inspect.getdoc(cls) or '')
    path = source_path(cls)
    lines = [
        f'## {component.name}', '',
        f'Registry: `mmseg.registry.{component.registry}` · source: '
        f'[`{path}`](../../{path})', '',
        body or '*(no docstring)*', ''
    ]
    arguments = constructor_arguments(cls)
    if arguments:
        lines += [
            '| argument | default | description |', '|---|---|---|'
        ]
        for arg in arguments:
            if arg.default == '-':
                default = '-'
            elif arg.default:
                default = f'`{escape_cell(arg.default)}`'
            else:
                default = '*required*'
            lines.append(f'| `{arg.name}` | {default} | '
                         f'{escape_cell(arg.description)} |')
        lines.append('')
    if examples:
        lines += ['Docstring example:', '', '```python'] + \
            example_code(examples) + ['```', '']
    lines += ['Config:', '', '```python', example_of(component).rstrip(),
              '```', '']
    return '\n'.join(lines)


def render_pages(components: Optional[List[Component]] = None
                 ) -> Dict[str, str]:
    """File name (relative to docs/api) -> Markdown text."""
    if components is None:
        components = registered_components()
    by_page: Dict[str, List[Component]] = {}
    for component in components:
        by_page.setdefault(component.page, []).append(component)
    pages = {}
    header = ('<!-- Generated by tools/misc/gen_api_docs.py from the code; '
              'do not edit. -->\n\n')
    for page, members in sorted(by_page.items()):
        title, where = PAGE_INFO.get(page, (page.replace('_', ' ').title(),
                                            ''))
        names = ', '.join(f'[`{c.name}`](#{c.name.lower()})'
                          for c in members)
        text = [header + f'# {title}\n', where, '', f'Classes: {names}', '']
        uses = sorted({n for c in members for n in SNIPPET_NAMES
                       if re.search(rf'\b{n}\b', example_of(c))})
        if uses:
            text.append('In the config snippets, ' + '; '.join(
                f'`{n}` is {SNIPPET_NAMES[n]}' for n in uses) + '.')
            text.append('')
        text += [render_component(c) for c in members]
        pages[f'{page}.md'] = '\n'.join(text).rstrip() + '\n'
    index = [header + '# API reference\n',
             'Every class that `import mmseg_semi` (or '
             "`custom_imports = dict(imports=['mmseg_semi'])`) registers "
             "into mmseg's registries, one page per kind.", '',
             '| page | classes |', '|---|---|']
    for page, members in sorted(by_page.items()):
        title = PAGE_INFO.get(page, (page, ''))[0]
        names = ', '.join(f'[`{c.name}`]({page}.md#{c.name.lower()})'
                          for c in members)
        index.append(f'| [{title}]({page}.md) | {names} |')
    pages['index.md'] = '\n'.join(index) + '\n'
    return pages


def stale_files(pages: Dict[str, str], api_dir: str = API_DIR) -> List[str]:
    """Files of ``api_dir`` that differ from ``pages`` or are not in it."""
    stale = [name for name, text in pages.items()
             if not osp.isfile(osp.join(api_dir, name))
             or open(osp.join(api_dir, name), encoding='utf-8').read() != text]
    if osp.isdir(api_dir):
        stale += sorted(set(f for f in os.listdir(api_dir)
                            if f.endswith('.md')) - set(pages))
    return stale


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default=API_DIR)
    parser.add_argument(
        '--check', action='store_true',
        help='only report files that are out of date (exit status 1)')
    args = parser.parse_args(argv)
    pages = render_pages()
    if args.check:
        stale = stale_files(pages, args.out_dir)
        for name in stale:
            print(f'out of date: {osp.join(args.out_dir, name)}')
        return 1 if stale else 0
    os.makedirs(args.out_dir, exist_ok=True)
    for name in set(f for f in os.listdir(args.out_dir)
                    if f.endswith('.md')) - set(pages):
        os.remove(osp.join(args.out_dir, name))  # a class moved or vanished
    for name, text in pages.items():
        with open(osp.join(args.out_dir, name), 'w', encoding='utf-8') as f:
            f.write(text)
    print(f'wrote {len(pages)} pages to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
