"""copy-rss: peak memory of a cross-registry copy of a 5-architecture image of 5 x 64 MiB.

manifesto:  manifesto copy --insecure A/bench-big/src:1 B/bench-big/copy:1
peer:       skopeo --insecure-policy copy --all --src-tls-verify=false --dest-tls-verify=false \\
              docker://A/bench-big/src:1 docker://B/bench-big/copy:1

The image is written once as an OCI layout (bench/copy_rss.py: write_layout): five manifests,
each with its platform's config and one uncompressed tar layer holding 64 MiB of os.urandom
bytes, under an OCI index; skopeo pushes it to registry A. Every copy goes to a registry B
started fresh for it, so every byte is streamed from A to B (no mount, nothing skipped). Peak
RSS from `/usr/bin/time -f %M` (see bench.common.run); the judged figure is manifesto's largest
of the repetitions, target ≤ 40 MiB (issue 8). Wall times are in the notes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from bench.common import (
    MANIFESTO,
    BenchError,
    Context,
    Result,
    cpu_notes,
    index_children,
    interleaved,
    log,
    rss_result,
    run,
    sandbox_env,
)

NAME = "copy-rss"
TARGET_MIB = 40.0
LAYER_MIB = 64
PLATFORMS = (("amd64", None), ("arm64", "v8"), ("arm", "v7"), ("ppc64le", None), ("s390x", None))
SKOPEO = ["skopeo", "--insecure-policy", "copy", "--quiet", "--all", "--src-tls-verify=false", "--dest-tls-verify=false"]
OCI = "application/vnd.oci.image."


def _blob(layout: Path, path: Path) -> dict[str, object]:
    """Move `path` into the layout's blobs under its digest; its descriptor fields."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    size = path.stat().st_size
    path.replace(layout / "blobs" / "sha256" / h.hexdigest())
    return {"digest": f"sha256:{h.hexdigest()}", "size": size}


def _json_blob(layout: Path, media_type: str, doc: dict[str, object]) -> dict[str, object]:
    tmp = layout / "blobs" / "tmp"
    tmp.write_bytes(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())
    return {"mediaType": media_type, **_blob(layout, tmp)}


def write_layout(layout: Path, layer_mib: int = LAYER_MIB) -> None:
    """An OCI layout tagged 1: an index of five images, each one random tar layer of layer_mib."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    children = []
    for arch, variant in PLATFORMS:
        data = layout / "blobs" / f"{arch}.data"
        with data.open("wb") as f:
            for _ in range(layer_mib):
                f.write(os.urandom(1 << 20))
        tar_path = layout / "blobs" / f"{arch}.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tar.gettarinfo(str(data), arcname="data")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with data.open("rb") as f:
                tar.addfile(info, f)
        data.unlink()
        layer = {"mediaType": OCI + "layer.v1.tar", **_blob(layout, tar_path)}
        platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
        config = _json_blob(
            layout,
            OCI + "config.v1+json",
            {**platform, "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}, "config": {}},
        )
        manifest = {"schemaVersion": 2, "mediaType": OCI + "manifest.v1+json", "config": config, "layers": [layer]}
        children.append({**_json_blob(layout, OCI + "manifest.v1+json", manifest), "platform": platform})
    index = _json_blob(layout, OCI + "index.v1+json", {"schemaVersion": 2, "mediaType": OCI + "index.v1+json", "manifests": children})
    index["annotations"] = {"org.opencontainers.image.ref.name": "1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def bench(ctx: Context) -> list[Result]:
    source = ctx.registry()
    env = sandbox_env(ctx.work.fresh("copy-rss"))
    layout = ctx.work.fresh("copy-rss-layout")
    log(f"{NAME}: writing a 5 x {LAYER_MIB} MiB image")
    write_layout(layout)
    src = f"{source.host}/bench-big/src:1"
    run([*SKOPEO, f"oci:{layout}:1", f"docker://{src}"], env, timeout=900)

    rss: dict[str, list[float]] = {"manifesto": [], "skopeo": []}
    walls: dict[str, list[float]] = {"manifesto": [], "skopeo": []}
    cpu: dict[str, list[float]] = {"manifesto": [], "skopeo": []}
    repeat = ctx.repeat(3)
    for i, manifesto_first in interleaved(repeat):
        for tool in ("manifesto", "skopeo") if manifesto_first else ("skopeo", "manifesto"):
            target = ctx.registry()
            try:
                dst = f"{target.host}/bench-big/copy:1"
                argv = (
                    [str(MANIFESTO), "copy", "--insecure", src, dst]
                    if tool == "manifesto"
                    else [*SKOPEO, f"docker://{src}", f"docker://{dst}"]
                )
                p = run(argv, env, timeout=900, rss=True)
                if index_children(target.host, "bench-big/copy", "1") != len(PLATFORMS):
                    raise BenchError(f"{tool}: {dst} is not the five-entry index")
            finally:
                ctx.stop_registry(target)
            rss[tool].append(p.maxrss_kib / 1024)
            walls[tool].append(p.wall)
            cpu[tool].append(p.cpu)
        log(f"{NAME} {i + 1}/{repeat}: manifesto {rss['manifesto'][-1]:.1f} MiB, skopeo {rss['skopeo'][-1]:.1f} MiB")

    return [
        rss_result(
            NAME, rss, walls, "skopeo", "skopeo copy --all", TARGET_MIB,
            image=f"{len(PLATFORMS)} x {LAYER_MIB} MiB layers", **cpu_notes(cpu["manifesto"], cpu["skopeo"]),
        )
    ]  # fmt: skip
