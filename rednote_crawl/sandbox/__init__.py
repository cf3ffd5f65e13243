"""The offline sandbox: a faithful replica of the note search v2 endpoint."""

from rednote_crawl.sandbox.server import Fault, SandboxConfig, SandboxServer

__all__ = ["Fault", "SandboxConfig", "SandboxServer"]
