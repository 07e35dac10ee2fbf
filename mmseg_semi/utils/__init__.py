from .compat import apply_compat_patches, trusted_torch_load
from .device_config import adapt_config_to_device

__all__ = [
    'adapt_config_to_device', 'apply_compat_patches', 'trusted_torch_load'
]
