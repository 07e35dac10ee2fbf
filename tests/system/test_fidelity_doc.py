"""docs/fidelity.md names a test for each row of the papers' recipes; every
named test must exist, so a renamed or deleted test shows up here."""
import ast
import os.path as osp
import re

from helpers import REPO_ROOT

FIDELITY_DOC = osp.join(REPO_ROOT, 'docs', 'fidelity.md')
TEST_REF = re.compile(r'`([\w/]+\.py)::(\w+)`')


def defined_tests(path: str) -> set:
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    return {
        node.name
        for node in tree.body if isinstance(node, ast.FunctionDef)
        and node.name.startswith('test_')
    }


def test_every_test_the_fidelity_table_names_exists():
    with open(FIDELITY_DOC, encoding='utf-8') as f:
        doc = f.read()
    rows = [line for line in doc.splitlines()
            if line.startswith('| ') and not line.startswith('| ---')]
    refs = TEST_REF.findall(doc)
    # Both papers' tables, each data row with at least one test.
    assert len(refs) >= 30
    for row in rows:
        if row.startswith('| equation'):
            continue
        assert TEST_REF.search(row), f'row names no test: {row[:80]}'
    missing = []
    for relpath, name in refs:
        path = osp.join(REPO_ROOT, 'tests', relpath)
        if not osp.isfile(path) or name not in defined_tests(path):
            missing.append(f'{relpath}::{name}')
    assert not missing, f'docs/fidelity.md names missing tests: {missing}'
