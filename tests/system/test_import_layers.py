"""The package's import graph goes down the layers only and has no cycle.

Layers, top to bottom: ``engine`` (hooks, loops, optimiser wrappers),
``models/segmentors``, the components (``models/<kind>`` and
``datasets``), ``models/utils`` (the math and helpers on tensors and mmseg
modules), ``utils`` (stack and device helpers). A module may import from
its own layer or below; the package ``__init__`` files only collect.
"""
import ast
import os
import os.path as osp

from helpers import REPO_ROOT

PACKAGE = osp.join(REPO_ROOT, 'mmseg_semi')
LAYERS = (
    ('mmseg_semi.engine', 4),
    ('mmseg_semi.models.segmentors', 3),
    ('mmseg_semi.models.utils', 1),
    ('mmseg_semi.models', 2),
    ('mmseg_semi.datasets', 2),
    ('mmseg_semi.utils', 0),
)


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + '.'):
            return layer
    raise AssertionError(f'{module} is in no layer')


def package_modules() -> dict:
    """module name -> (path, is a package __init__)."""
    modules = {}
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(root, name)
            parts = osp.relpath(path, REPO_ROOT)[:-3].split(os.sep)
            is_init = parts[-1] == '__init__'
            if is_init:
                parts = parts[:-1]
            modules['.'.join(parts)] = (path, is_init)
    return modules


def imported_modules(module: str, path: str, is_init: bool, known) -> set:
    """Package modules that ``module`` imports (at any depth of its code)."""
    package = module if is_init else module.rsplit('.', 1)[0]
    with open(path) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                target = '.'.join(base + ([node.module]
                                          if node.module else []))
            else:
                target = node.module or ''
            names = [f'{target}.{alias.name}' for alias in node.names]
        elif isinstance(node, ast.Import):
            target, names = None, [alias.name for alias in node.names]
        else:
            continue
        for name in names + ([target] if target else []):
            # The deepest package module the name refers to.
            while name and name not in known:
                name = name.rpartition('.')[0]
            if name.startswith('mmseg_semi') and name != 'mmseg_semi':
                found.add(name)
    found.discard(module)
    return found


def import_graph() -> dict:
    modules = package_modules()
    return {
        module: imported_modules(module, path, is_init, modules)
        for module, (path, is_init) in modules.items()
    }


def test_imports_go_down_the_layers():
    modules = package_modules()
    upward = []
    for module, targets in import_graph().items():
        if module == 'mmseg_semi' or modules[module][1]:
            continue  # __init__ files collect their own sub-packages
        for target in targets:
            if layer_of(target) > layer_of(module):
                upward.append(f'{module} -> {target}')
    assert not upward, upward


def test_import_graph_has_no_cycle():
    graph = import_graph()
    modules = package_modules()
    # Edges into a package __init__ stand for its submodules; keep the
    # module-to-module edges.
    edges = {
        module: {t for t in targets if not modules[t][1]}
        for module, targets in graph.items() if not modules[module][1]
    }
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = 'open'
        for target in edges.get(node, ()):
            if state.get(target) == 'open':
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 'done'

    for module in edges:
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_checker_sees_an_upward_import():
    """The graph is read from the sources: the segmentors import the pair,
    and the pair imports the math layer."""
    graph = import_graph()
    assert 'mmseg_semi.models.segmentors.teacher_student' in graph[
        'mmseg_semi.models.segmentors.semi_base_segmentor']
    assert 'mmseg_semi.models.utils.segmentor_forward' in graph[
        'mmseg_semi.models.segmentors.teacher_student']
    assert layer_of('mmseg_semi.engine.hooks.ema_teacher_hook') > layer_of(
        'mmseg_semi.models.utils.cutmix')
