"""hmt-stream: a self-hosted streaming translation server for Hunyuan-MT-7B."""

# The one place the version is written: setup.cfg reads it, `hmt-stream --version` and /api/health report it.
__version__ = "0.1.0"
