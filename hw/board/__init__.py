"""The ZCU104 board: Amaranth platform (pins), Vivado block-design project generator."""

from .platform import ZCU104Platform, xdc
from .vivado import write_project

__all__ = ["ZCU104Platform", "xdc", "write_project"]
