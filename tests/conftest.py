"""The tests mirror the package: tests/models/pseudo_labelers/ tests
mmseg_semi/models/pseudo_labelers/, and so on; tests/configs/ checks the
config files, tests/tools/ the scripts under tools/, tests/system/ the whole
(training end to end, golden steps, docs, import layers, registry).

The folders are not packages, so pytest imports every test module by its
basename (its default ``prepend`` import mode): basenames must stay unique
across folders. Shared helpers live in ``tests/helpers.py``; this file puts
``tests/`` on ``sys.path`` so that every test module, in whatever folder,
imports them as ``from helpers import ...``.
"""
import os.path as osp
import sys

TESTS_DIR = osp.dirname(osp.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
