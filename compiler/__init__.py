"""Compiler: trained torch model -> integer spike graph, and the golden reference executor."""

if __name__.split(".")[0] != "svf_deploy":  # a silently different copy otherwise
    raise ImportError(
        f"{__name__!r} was imported from the repository root, not as svf_deploy.compiler (the installed "
        "package): its relative imports would build a second, different copy of svf-deploy. "
        "Import svf_deploy.compiler instead; `make setup` installs it into .venv")

