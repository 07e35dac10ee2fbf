from .compat import (apply_compat_patches,
                     mmengine_checkpoint_globals_allowed)
from .device_config import adapt_config_to_device

__all__ = [
    'adapt_config_to_device', 'apply_compat_patches',
    'mmengine_checkpoint_globals_allowed'
]
