"""Media types of the OCI image spec and Docker's schema 2, and what each kind is.

OCI image spec media-types.md; Docker image manifest v2 schema 2. The registry tells a
manifest's type by Content-Type, so every GET/HEAD must Accept all four manifest kinds.
"""

from __future__ import annotations

from manifesto.errors import UsageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
# Layers a registry need not hold (image-spec layer.md, deprecated but still met): the manifest's
# `urls` point at them. The plain, gzip and zstd variants share this prefix.
OCI_NONDISTRIBUTABLE_PREFIX = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_NONDISTRIBUTABLE_GZIP = OCI_NONDISTRIBUTABLE_PREFIX + "+gzip"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFESTS = IMAGE_MANIFESTS | INDEXES

# Sent on every manifest GET/HEAD: distribution answers 404 for an OCI manifest it may not
# convert unless its type is acceptable.
ACCEPT_MANIFESTS = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})

FORMATS = {"oci": OCI_INDEX, "docker": DOCKER_LIST}


def index_type(fmt: str) -> str:
    """The list media type a `--format` / `format:` name asks for; any other name is a UsageError."""
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UsageError(f"format {fmt!r}: use one of {', '.join(FORMATS)}") from None


def is_index(media_type: str) -> bool:
    """True for an OCI image index or a Docker manifest list."""
    return media_type in INDEXES


def is_image_manifest(media_type: str) -> bool:
    """True for a single-image manifest (OCI or Docker schema 2)."""
    return media_type in IMAGE_MANIFESTS



def is_nondistributable(media_type: str) -> bool:
    """True for a layer that is not copied between registries: Docker's foreign layers and the
    OCI non-distributable layer types (plain, gzip, zstd)."""
    return media_type == DOCKER_FOREIGN_LAYER or media_type.startswith(OCI_NONDISTRIBUTABLE_PREFIX)


def format_name(media_type: str) -> str:
    """Short human name of a manifest media type for tables."""
    return {
        OCI_MANIFEST: "oci manifest",
        OCI_INDEX: "oci index",
        DOCKER_MANIFEST: "docker v2",
        DOCKER_LIST: "docker list",
    }.get(media_type, media_type)
