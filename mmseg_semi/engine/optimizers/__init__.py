from .any_device_amp_optim_wrapper import AnyDeviceAmpOptimWrapper
from .finite_loss_optim_wrapper import FiniteLossOptimWrapper

__all__ = ['AnyDeviceAmpOptimWrapper', 'FiniteLossOptimWrapper']
