"""manifesto: publish multi-arch container images."""

__version__ = "0.1.0"
