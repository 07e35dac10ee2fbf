_base_ = ['mmseg::_base_/default_runtime.py']
# Registers mmseg-semi's components also for mmseg's own tools/train.py and
# `mim train mmsegmentation`.
custom_imports = dict(imports=['mmseg_semi'], allow_failed_imports=False)
