from typing import Optional, Union

import torch
from mmengine.device import get_device
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmseg.registry import OPTIM_WRAPPERS
from ...utils.device_config import cpu_autocast_dtype
from .finite_loss_guard import FiniteLossGuardMixin


@OPTIM_WRAPPERS.register_module()
class AnyDeviceAmpOptimWrapper(FiniteLossGuardMixin, AmpOptimWrapper):
    """mmengine's ``AmpOptimWrapper`` that also trains on CPU (bfloat16).

    mmengine 0.10's ``AmpOptimWrapper`` asserts that a GPU (or NPU, MLU,
    MUSA) is present. On such devices this class is exactly that wrapper.
    On CPU it autocasts to bfloat16 (torch's only CPU autocast dtype) and
    uses a disabled gradient scaler: bfloat16 has float32's exponent range,
    so gradients need no loss scaling. float16 autocast is GPU-only and is
    refused on CPU with an error naming ``optim_wrapper.dtype``.

    Optionally guards against non-finite losses like
    :class:`FiniteLossOptimWrapper` (``nonfinite_loss``; off by default, as
    with float16 the gradient scaler already skips overflowing steps).

    Args:
        loss_scale, dtype, use_fsdp: as ``AmpOptimWrapper`` (on CPU
            ``dtype`` must be None or 'bfloat16' and ``loss_scale`` is
            unused).
        nonfinite_loss: 'raise', 'skip' or None.
        **kwargs: :class:`mmengine.optim.OptimWrapper` arguments.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None,
                 use_fsdp: bool = False,
                 nonfinite_loss: Optional[str] = None,
                 **kwargs) -> None:
        if get_device() != 'cpu':
            super().__init__(
                loss_scale=loss_scale,
                dtype=dtype,
                use_fsdp=use_fsdp,
                **kwargs)
        else:
            # AmpOptimWrapper.__init__ asserts a GPU: set up its state here.
            OptimWrapper.__init__(self, **kwargs)
            self._scale_update_param = None
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)
            self.cast_dtype = cpu_autocast_dtype(dtype)
        self.init_finite_loss_guard(nonfinite_loss)
