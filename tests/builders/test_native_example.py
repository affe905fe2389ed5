"""examples/hello-native builds as its README and the tutorial say: natively, with no tool on PATH.

Why: the example is what `make demo` publishes and the tutorial shows; if a change to the native
builder or to the example breaks it, this says so in the test suite, not at the next demo. Each
platform's image must hold that platform's own static binary (its ELF machine) and the config
the Dockerfile sets.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from tests.publish.conftest import State
from tests.support.tools import REPO_ROOT, elf_info, missing, run

EXAMPLE = REPO_ROOT / "examples" / "hello-native"
# platform -> ELF (bits, endianness, machine name) of its busybox-static
ELF = {
    "linux/amd64": (64, "little", "x86_64"),
    "linux/arm64/v8": (64, "little", "aarch64"),
    "linux/arm/v7": (32, "little", "arm"),
    "linux/ppc64le": (64, "little", "ppc64"),
    "linux/s390x": (64, "big", "s390"),
}


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / digest.replace(":", "/")).read_bytes()


def test_hello_native_builds_every_platform_without_tools(tmp_path: Path) -> None:
    done = run(["bash", EXAMPLE / "prepare.sh"], check=False, timeout=900)
    if done.returncode != 0:
        missing(f"examples/hello-native/prepare.sh failed (needs busybox-static .debs): {done.stderr[-800:]}")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    out = tmp_path / "out"
    state = State.make(tmp_path / "state")
    rc, stdout, err = state.run("build", "-f", EXAMPLE / "platforms.yaml", "-o", out, env={"PATH": str(empty)})
    assert rc == 0, err
    (top,) = [m for m in json.loads((out / "index.json").read_text())["manifests"]
              if m["annotations"]["org.opencontainers.image.ref.name"] == "1.0.0"]  # fmt: skip
    children = json.loads(_blob(out, top["digest"]))["manifests"]
    seen = []
    for child in children:
        p = child["platform"]
        platform = "/".join([p["os"], p["architecture"], *([p["variant"]] if p.get("variant") else [])])
        seen.append(platform)
        manifest = json.loads(_blob(out, child["digest"]))
        config = json.loads(_blob(out, manifest["config"]["digest"]))["config"]
        assert f"BUILT_FOR={platform}" in config["Env"]
        assert (config["User"], config["WorkingDir"]) == ("65534:65534", "/home/hello")
        assert config["Entrypoint"] == ["/bin/busybox", "sh", "-c"] and "busybox uname -m" in config["Cmd"][0]
        with tarfile.open(fileobj=io.BytesIO(_blob(out, manifest["layers"][0]["digest"]))) as tar:
            binary = tar.extractfile("bin/busybox").read()  # type: ignore[union-attr]
        (tmp_path / "busybox").write_bytes(binary)
        info = elf_info(tmp_path / "busybox")
        assert (info.bits, info.endian, info.machine_name) == ELF[platform], platform
    assert seen == list(ELF)
