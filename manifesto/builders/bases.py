"""The image a buildah or podman build starts from, named as BuiltImage.base.

Why: a buildah or podman export holds every blob of its image, its base's layers too, and with
the blob cache (cache.prepare_blob_cache) those are the very bytes the base's registry serves.
Named as `host/repo@digest` (the base as the build resolved it), they let a push into the base's
registry mount them from the base's repository instead of uploading them again
(store/overlay.py, transfer.Copier), as `buildah manifest push` and buildx do.

The base is the image the final stage (or the `--target` stage) starts from, stage names
followed; its digest is the one the build key resolved (buildkey.PulledDigests: asked of the
registry about once a run, by HEAD). `FROM scratch`, a stage that names its own `--platform`,
a name of no one image or a base that cannot be resolved give none: the push then uploads
every blob, as before.
"""

from __future__ import annotations

from collections.abc import Mapping

from manifesto.builders.access import ShortNames, expand, global_args, image_reference, short_names
from manifesto.builders.base import BuildRequest
from manifesto.builders.buildkey import PulledDigests
from manifesto.errors import ManifestoError
from manifesto.log import get_logger
from manifesto.oci.reference import Reference

log = get_logger("manifesto.builders")


def final_base(
    text: str,
    args: Mapping[str, str],
    builtins: Mapping[str, str],
    target: str | None = None,
    names: ShortNames | None = None,
) -> Reference | None:
    """The image the final stage of a Dockerfile (or stage `target`) starts from, following
    stages that start from other stages; None for scratch, a stage that names its own
    `--platform` (its image is not the target platform's), or a name of no one image.

    `names`: access.ShortNames for short names (None: a short name gives None). A Dockerfile
    the parser rejects gives None too (the build reports it).
    """
    import dockerfile  # loaded only when building: it starts a Go runtime

    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError:
        return None
    scope = {**builtins, **global_args(commands, args, builtins)}
    stages: list[tuple[str | None, str, bool]] = []  # (name, FROM word expanded, --platform given)
    for command in commands:
        if command.cmd.upper() != "FROM" or not command.value:
            continue
        words = command.value
        name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else None
        platform = any(f.lower().startswith("--platform=") for f in command.flags)
        stages.append((name, expand(words[0], scope), platform))
    chosen = len(stages) - 1
    if target is not None:
        chosen = next((i for i, (name, _, _) in enumerate(stages) if name == target.lower()), -1)
    while chosen >= 0:
        _, word, platform = stages[chosen]
        earlier = [i for i, (name, _, _) in enumerate(stages[:chosen]) if name == word.lower()]
        if earlier:
            chosen = earlier[-1]
            continue
        if platform or word.lower() == "scratch" or word.isdigit():
            return None
        return image_reference(word, names)
    return None


def base_origin(request: BuildRequest, builtins: Mapping[str, str], pulled: PulledDigests) -> str | None:
    """`host/repo@digest` of the image `request` starts from (final_base, its digest as the
    build key resolved it), or None when it has none or it cannot be had."""
    try:
        text = request.dockerfile.read_text(errors="replace")
        ref = final_base(text, request.args, builtins, request.target, short_names())
    except (OSError, ManifestoError) as e:
        log.info("build_base_unknown", platform=str(request.platform), reason=str(e))
        return None
    if ref is None:
        return None
    digests = pulled.digests([ref], request.insecure)
    digest = (digests or {}).get(str(ref))
    return f"{ref.name}@{digest}" if digest else None
