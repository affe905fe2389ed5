"""SIGTERM (what CI runners and `timeout` send) stops running builds like Ctrl-C does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import require

REPO = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.slow
def test_sigterm_cancels_running_builds_and_cleans_up(tmp_path, tmp_home, registry):
    require("buildah")
    subprocess.run(["bash", str(REPO / "examples/hello/prepare.sh"), "amd64"], check=True, capture_output=True)
    context = tmp_path / "ctx"
    marker = f"signals-{os.getpid()}-{time.time_ns()}"  # other tests may be sleeping too
    shutil.copytree(REPO / "examples/hello/rootfs-amd64", context / "rootfs-amd64", symlinks=True)
    (context / "Dockerfile").write_text(
        'FROM scratch\nCOPY rootfs-amd64/ /\nRUN ["/bin/busybox", "sh", "-c", "echo started-sleeping; sleep 60; : %s"]\n' % marker
    )
    spec = tmp_path / "platforms.yaml"
    image = registry.ref("never/used")  # publish asks the target for push access before building
    spec.write_text(f"image: {image}\ntags: ['1']\nbuild:\n  context: {context}\nplatforms: [linux/amd64]\n")
    cache = tmp_home.cache
    proc = subprocess.Popen(
        [sys.executable, "-m", "manifesto", "publish", "-f", str(spec)],
        env={**os.environ, **tmp_home.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "manifesto: terminated" in err and "Traceback" not in err
    time.sleep(1)
    assert _processes_mentioning(str(cache)) == [], "a build outlived manifesto"
    assert _processes_mentioning(marker) == [], "the RUN step outlived manifesto"
    work = cache / "manifesto" / "work"
    assert not work.exists() or list(work.iterdir()) == [], "the work dir was left behind"
