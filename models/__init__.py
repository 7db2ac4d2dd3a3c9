"""The PyTorch model zoo: spiking neurons, blocks, attentions, SpikeVideoFormer and heads.

Import the submodules as namespaces (``from svf_deploy.models import neurons``) or use the
curated names below.
"""

from .config import ZOO, ModelConfig, get_config
from .errors import CheckpointError, ConfigError, SVFError
from .neurons import ILIF, LIF, NeuronConfig
from .svf import SpikeVideoFormer, build_model

__all__ = ["ZOO", "ModelConfig", "get_config", "NeuronConfig", "LIF", "ILIF",
           "SpikeVideoFormer", "build_model", "SVFError", "ConfigError", "CheckpointError"]
