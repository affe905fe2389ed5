"""The main jobs: build, publish, assemble (split publish), copy, doctor.

Each module holds an async core that takes an injected `Registries` and a thin sync wrapper for
library users; nothing below this layer imports it.
"""
