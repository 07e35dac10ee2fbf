"""docs/api is generated from the registered classes and kept in sync.

``tools/misc/gen_api_docs.py`` writes one Markdown page per kind of
component from the constructors and class docstrings. These tests check
that every registered class is documented, that the committed pages are
exactly the generator's output, that every constructor argument has a
description, and that every config snippet in the pages builds.
"""
import inspect
import os
import os.path as osp
import re

import mmseg.registry
import pytest
from helpers import (REPO_ROOT, camvid_root, ccp_root, load_script,
                     tiny_segmentor_cfg)
from mmengine.optim import build_optim_wrapper
from mmengine.registry import Registry, init_default_scope
from torch import nn

import mmseg_semi  # noqa: F401

# Nested configs (data preprocessors, optimisers) resolve in mmseg's scope.
init_default_scope('mmseg')

GENERATOR = osp.join(REPO_ROOT, 'tools', 'misc', 'gen_api_docs.py')
API_DIR = osp.join(REPO_ROOT, 'docs', 'api')


def load_generator():
    return load_script(GENERATOR)


gen = load_generator()
COMPONENTS = gen.registered_components()


def registered_mmseg_semi_classes():
    """name -> class, walked here independently of the generator."""
    found = {}
    for attr in dir(mmseg.registry):
        registry = getattr(mmseg.registry, attr)
        if isinstance(registry, Registry):
            for name, cls in registry.module_dict.items():
                if cls.__module__.startswith('mmseg_semi.'):
                    found[name] = cls
    return found


def committed_pages():
    return {
        name: open(osp.join(API_DIR, name), encoding='utf-8').read()
        for name in sorted(os.listdir(API_DIR)) if name.endswith('.md')
    }


# ------------------------------------------------------------ completeness
def test_generator_finds_every_registered_class():
    expected = registered_mmseg_semi_classes()
    # The package's core components, so an empty walk cannot pass.
    assert {'MeanTeacherSegmentor', 'DualStudentSegmentor',
            'EntropyPseudoLabeler', 'U2PLContrastiveLoss', 'EMATeacherHook',
            'SemiIterBasedTrainLoop', 'MultiBranch',
            'CamVidDataset'} <= set(expected)
    assert {c.name: c.cls for c in COMPONENTS} == expected


def test_every_registered_class_has_one_section_in_the_committed_docs():
    pages = committed_pages()
    for name in registered_mmseg_semi_classes():
        holders = [page for page, text in pages.items()
                   if re.search(rf'^## {name}$', text, re.MULTILINE)]
        assert len(holders) == 1, (
            f'{name} has a section in {holders or "no page"} of docs/api; '
            'run python tools/misc/gen_api_docs.py')
        assert f'`{name}`' in pages['index.md'], name


def test_pages_follow_the_package_layout():
    pages = {c.name: c.page for c in COMPONENTS}
    assert pages['MeanTeacherSegmentor'] == 'segmentors'
    assert pages['PrototypeRectifier'] == 'rectifiers'
    assert pages['EntropyPseudoLabeler'] == 'pseudo_labelers'
    assert pages['ClassMemoryBank'] == 'memory_banks'
    assert pages['EMATeacherHook'] == 'hooks'
    assert pages['TeacherStudentValLoop'] == 'loops'
    assert pages['RandomColorJitter'] == 'transforms'
    assert pages['CamVidDataset'] == 'datasets'
    # A module in a package the table does not know gets its package's page.
    assert gen.page_of('mmseg_semi.models.necks.my_neck') == 'necks'


def test_committed_api_docs_are_up_to_date():
    stale = gen.stale_files(gen.render_pages())
    assert not stale, (f'docs/api is out of date ({stale}); run '
                       'python tools/misc/gen_api_docs.py')


def test_stale_files_reports_edited_missing_and_extra_pages(tmp_path):
    pages = {'a.md': 'A\n', 'b.md': 'B\n', 'c.md': 'C\n'}
    (tmp_path / 'a.md').write_text('A\n')
    (tmp_path / 'b.md').write_text('B edited by hand\n')
    (tmp_path / 'old.md').write_text('a class that no longer exists\n')
    assert gen.stale_files(pages, str(tmp_path)) == ['b.md', 'c.md',
                                                     'old.md']


# ------------------------------------------------------------- docstrings
def test_every_constructor_argument_is_documented():
    undocumented = [
        f'{c.name}.{arg.name}' for c in COMPONENTS
        for arg in gen.constructor_arguments(c.cls) if not arg.description
    ]
    assert not undocumented, (
        f'constructor arguments without a docstring entry: {undocumented}')


def test_every_class_has_a_docstring():
    missing = [c.name for c in COMPONENTS if not inspect.getdoc(c.cls)]
    assert not missing


@pytest.mark.parametrize('name,citation', [
    ('MeanTeacherSegmentor', 'U2PL Eq. 3'),
    ('DualStudentSegmentor', 'Eq. 5'),
    ('EntropyPseudoLabeler', 'U2PL Eq. 5-8'),
    ('PrototypeRectifier', 'Eq. 9'),
    ('RepresentationHead', 'Eq. 4'),
    ('U2PLContrastiveLoss', 'U2PL Eq. 4'),
    ('ClassMemoryBank', 'Eq. 16'),
])
def test_method_classes_cite_their_paper_equations(name, citation):
    cls = registered_mmseg_semi_classes()[name]
    assert citation in ' '.join(inspect.getdoc(cls).split())


def test_docstring_parsing_by_hand():
    doc = '\n'.join([
        'Summary with ``code`` and :class:`Other`.',
        '',
        'Call order::',
        '',
        '    a = b(c)',
        '',
        '======  ====',
        'index   size',
        '======  ====',
        '0       16',
        '======  ====',
        '',
        'Args:',
        '    alpha (float): First line',
        '        continued. Defaults to 0.5.',
        '    beta, gamma: Shared text.',
        '    **kwargs: Passed on.',
        '',
        'Example:',
        "    >>> Thing(alpha=0.5,",
        "    ...       beta=1)",
    ])
    body, args, examples = gen.split_docstring(doc)
    assert args == {
        'alpha': 'First line continued. Defaults to 0.5.',
        'beta': 'Shared text.',
        'gamma': 'Shared text.',
        'kwargs': 'Passed on.',
    }
    assert body.splitlines() == [
        'Summary with `code` and `Other`.', '', 'Call order:', '',
        '```python', 'a = b(c)', '```', '', '```text', '======  ====',
        'index   size', '======  ====', '0       16', '======  ====', '```'
    ]
    assert gen.example_code(examples) == ['Thing(alpha=0.5,',
                                          '      beta=1)']


def test_see_base_class_pointer_is_resolved():
    args = {a.name: a for a in gen.constructor_arguments(
        registered_mmseg_semi_classes()['MeanTeacherSegmentor'])}
    # "data_preprocessor, ...: see SemiBaseSegmentor" in the class itself.
    assert args['unsup_start_iter'].description.startswith(
        'Supervised-only warm-up')
    assert args['unsup_start_iter'].default == '0'
    assert args['segmentor'].default == ''  # required
    assert args['pseudo_labeler'].default == \
        "dict(type='EntropyPseudoLabeler')"


# --------------------------------------------------------------- snippets
def typed_dicts(value, inside_typed=False):
    """Outermost dicts with a 'type' key in a snippet's values."""
    if isinstance(value, dict):
        if 'type' in value and not inside_typed:
            return [value]
        found = []
        for item in value.values():
            found += typed_dicts(item, inside_typed)
        return found
    if isinstance(value, (list, tuple)):
        return [d for item in value for d in typed_dicts(item, inside_typed)]
    return []


def contains_instance(obj, cls):
    if isinstance(obj, cls):
        return True
    if isinstance(obj, nn.Module):
        return any(isinstance(m, cls) for m in obj.modules())
    return cls.__name__ in repr(obj)  # e.g. MultiBranch(strong=Compose(..))


def snippet_namespace():
    segmentor = tiny_segmentor_cfg(num_classes=11)
    # The snippets use the channels of the CamVid DeepLabV3+ head.
    segmentor['decode_head']['channels'] = 128
    return dict(segmentor=segmentor)


@pytest.mark.parametrize('component', COMPONENTS, ids=lambda c: c.name)
def test_config_snippet_builds(component, tmp_path):
    namespace = snippet_namespace()
    assert set(namespace) == set(gen.SNIPPET_NAMES)
    exec(gen.example_of(component), namespace)
    configs = [d for key, value in namespace.items()
               if key not in gen.SNIPPET_NAMES and not key.startswith('__')
               for d in typed_dicts(value)]
    assert configs, f'the {component.name} snippet has no typed config'
    registry = getattr(mmseg.registry, component.registry)
    if component.registry == 'LOOPS':
        config = next(d for d in configs if d['type'] == component.name)
        kwargs = {k: v for k, v in config.items() if k != 'type'}
        # runner, dataloader (and evaluator) come from the runner.
        signature = inspect.signature(component.cls)
        given_by_runner = {
            name: None for name in ('runner', 'dataloader', 'evaluator')
            if name in signature.parameters
        }
        signature.bind(**given_by_runner, **kwargs)
        return
    built = []
    for config in configs:
        config = dict(config)
        if component.name == 'CCPDataset':
            config['data_root'] = ccp_root()
        elif component.registry == 'DATASETS':
            # The snippet's paths are placeholders: use the real ones.
            config['data_root'] = camvid_root()
            if 'ann_file' in config:
                config['ann_file'] = osp.join(
                    REPO_ROOT, 'splits', 'camvid', '1-8_seed0',
                    osp.basename(config['ann_file']))
            else:  # a folder dataset: CamVid's training images
                config['data_prefix'] = dict(img_path='train')
        if component.registry == 'OPTIM_WRAPPERS':
            built.append(build_optim_wrapper(nn.Linear(2, 2), config))
        else:
            built.append(registry.build(config))
    assert any(contains_instance(obj, component.cls) for obj in built), (
        f'the {component.name} snippet builds {built} but no '
        f'{component.name}')


# ------------------------------------------------------------------ links
DOCS_DIR = osp.join(REPO_ROOT, 'docs')
#: Link targets another engineer is writing at the same time; a target in
#: this set may be missing, and is checked like any other once it exists.
PENDING_TARGETS = {
    osp.join(DOCS_DIR, 'tutorials', 'semi_supervised_from_your_config.md')
}
_LINK = re.compile(r'\]\(([^)\s]+)\)')


def heading_anchors(path):
    """GitHub-style anchors of a Markdown file's headings."""
    anchors = set()
    for line in open(path, encoding='utf-8'):
        match = re.match(r'^#+\s+(.*?)\s*$', line)
        if match:
            slug = re.sub(r'[^\w\- ]', '', match.group(1).lower())
            anchors.add(slug.replace(' ', '-'))
    return anchors


def markdown_files():
    for root, _, files in os.walk(DOCS_DIR):
        for name in sorted(files):
            if name.endswith('.md'):
                yield osp.join(root, name)


def test_relative_links_in_docs_resolve():
    broken = []
    for path in markdown_files():
        for target in _LINK.findall(open(path, encoding='utf-8').read()):
            if '://' in target:
                continue
            file_part, _, anchor = target.partition('#')
            resolved = osp.normpath(
                osp.join(osp.dirname(path), file_part)) if file_part \
                else path
            if not osp.exists(resolved):
                if resolved not in PENDING_TARGETS:
                    broken.append(f'{osp.relpath(path, REPO_ROOT)}: {target}')
                continue
            if anchor and resolved.endswith('.md') \
                    and anchor not in heading_anchors(resolved):
                broken.append(f'{osp.relpath(path, REPO_ROOT)}: {target} '
                              '(no such heading)')
    assert not broken, f'broken links: {broken}'


def test_docs_index_links_every_api_page():
    index = open(osp.join(DOCS_DIR, 'index.md'), encoding='utf-8').read()
    missing = [name for name in gen.render_pages()
               if f'](api/{name})' not in index]
    assert not missing, f'docs/index.md does not link {missing}'


def test_heading_anchors_by_hand(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# Get started\n\n## U2PL: using `x`\ntext # no\n')
    assert heading_anchors(str(page)) == {'get-started', 'u2pl-using-x'}
