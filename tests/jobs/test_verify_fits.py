"""`verify --run`: which machine names (`uname -m` inside the image) fit which platform.

Why: a 32-bit ARM image run on a 64-bit ARM CPU in its 32-bit personality (what docker and
64-bit ARM CI runners do) says `armv8l`, not `armv7l`; that is the image's platform running,
so it must not fail verification, while an arm64 or amd64 machine name still must.
"""

from __future__ import annotations

import pytest

from manifesto.jobs.verify import fits
from manifesto.oci.platform import Platform


@pytest.mark.parametrize(
    "machine, platform",
    [("x86_64", "linux/amd64"), ("aarch64", "linux/arm64/v8"), ("armv7l", "linux/arm/v7"), ("armv7l", "linux/arm/v6"),
     ("armv8l", "linux/arm/v7"), ("armv8l", "linux/arm/v6"), ("i686", "linux/386"), ("s390x", "linux/s390x")],
)  # fmt: skip
def test_a_machine_of_the_platform_fits(machine: str, platform: str) -> None:
    assert fits(machine, Platform.parse(platform), host="x86_64")


@pytest.mark.parametrize(
    "machine, platform",
    [("x86_64", "linux/arm64/v8"), ("armv6l", "linux/arm/v7"), ("armv8l", "linux/arm64/v8"), ("aarch64", "linux/arm/v7"),
     ("armv8l", "linux/amd64"), ("hello", "linux/amd64"), ("", "linux/amd64")],
)  # fmt: skip
def test_a_machine_of_another_platform_does_not(machine: str, platform: str) -> None:
    assert not fits(machine, Platform.parse(platform), host="x86_64")


@pytest.mark.parametrize(
    "machine, platform, host, fit",
    [("x86_64", "linux/386", "x86_64", True), ("aarch64", "linux/arm/v7", "aarch64", True),
     ("aarch64", "linux/arm/v7", "x86_64", False), ("x86_64", "linux/386", "aarch64", False),
     ("x86_64", "linux/arm/v7", "x86_64", False), ("aarch64", "linux/386", "aarch64", False)],
)  # fmt: skip
def test_a_32_bit_image_run_natively_says_its_64_bit_hosts_name(machine: str, platform: str, host: str, fit: bool) -> None:
    """No runtime here sets the linux32 personality: a 386 image on an x86_64 host says x86_64
    (and arm/v7 on an aarch64 host says aarch64). That fits there; under qemu it would not."""
    assert fits(machine, Platform.parse(platform), host) is fit
