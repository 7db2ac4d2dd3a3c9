"""The PyTorch model zoo: spiking neurons, blocks, attentions, SpikeVideoFormer and heads.

Import the submodules as namespaces (``from svf_deploy.models import neurons``) or use the
curated names below.
"""

if __name__.split(".")[0] != "svf_deploy":  # a silently different copy otherwise
    raise ImportError(
        f"{__name__!r} was imported from the repository root, not as svf_deploy.models (the installed "
        "package): its relative imports would build a second, different copy of svf-deploy. "
        "Import svf_deploy.models instead; `make setup` installs it into .venv")


from .config import ZOO, ModelConfig, get_config
from .errors import CheckpointError, ConfigError, SVFError
from .neurons import ILIF, LIF, NeuronConfig
from .svf import SpikeVideoFormer, build_model

__all__ = ["ZOO", "ModelConfig", "get_config", "NeuronConfig", "LIF", "ILIF",
           "SpikeVideoFormer", "build_model", "SVFError", "ConfigError", "CheckpointError"]
