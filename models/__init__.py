"""The PyTorch model zoo: spiking neurons, blocks, attentions, SpikeVideoFormer and heads.

Import the submodules as namespaces (``from svf_deploy.models import neurons``) or use the
curated names below.
"""

if __name__.split(".")[0] != "svf_deploy":  # a silently different copy otherwise
    raise ImportError(
        f"{__name__!r} was imported from the repository root, not as svf_deploy.models (the installed "
        "package): its relative imports would build a second, different copy of svf-deploy. "
        "Import svf_deploy.models instead; `make setup` installs it into .venv")


from .errors import CheckpointError, ConfigError, SVFError

#: curated names -> the submodule that defines them; imported on first use (PEP 562), so
#: ``svf_deploy.models.errors`` / ``.leak`` stay importable without torch (``hw`` relies on it)
_LAZY = {"ZOO": "config", "ModelConfig": "config", "get_config": "config",
         "NeuronConfig": "neurons", "LIF": "neurons", "ILIF": "neurons",
         "SpikeVideoFormer": "svf", "build_model": "svf"}

__all__ = ["ZOO", "ModelConfig", "get_config", "NeuronConfig", "LIF", "ILIF",
           "SpikeVideoFormer", "build_model", "SVFError", "ConfigError", "CheckpointError"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
