"""The main jobs: build, publish, assemble (split publish), copy, doctor.

Each module holds async cores that take an injected `Registries` and a thin sync wrapper for
library users, the only place library code calls asyncio.run: publish.publish (around the
builds, which run in threads), split.assemble, copy.copy. The package root exports those
wrappers and publish.plan (manifesto.publish, manifesto.assemble, ...). Nothing below this
layer imports it; this package imports none of its modules, so importing one job loads only
what that job needs. (Not a subpackage named `publish`: it would shadow manifesto.publish.)
"""
