"""Boot-time orchestrator for a minimal, stateless Xen dom0."""

__version__ = "0.1.0"
