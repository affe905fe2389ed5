"""The native builder's Dockerfile interpreter: expansion, config, history texts, refusals.

Expected configs come from what buildah 1.28 records for the same Dockerfile (the last test
builds one with real buildah and compares); where buildah and docker/buildkit differ, the
expectation is buildkit's and the test says so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from manifesto.builders.native.expand import expand, words
from manifesto.builders.native.history import format_duration, go_quote, parse_duration, quoted_list
from manifesto.builders.native.instructions import (
    NeedsBuilder,
    interpret,
    needs_execution,
    platform_args,
    read_base,
)
from manifesto.builders.native.steps import ConfigStep, CopyStep, Where
from manifesto.errors import UsageError
from manifesto.oci.platform import Platform
from tests.support.tools import require

AMD64 = Platform.parse("linux/amd64")
ARM64 = Platform.parse("linux/arm64/v8")
ARMV7 = Platform.parse("linux/arm/v7")
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(text: str, *, args: dict[str, str] | None = None, base: dict[str, Any] | None = None, platform=AMD64):
    return interpret(text, "Dockerfile", args or {}, platform, base)


def texts(recipe) -> list[str]:
    return [s.created_by for s in recipe.steps]


# ---- expansion ------------------------------------------------------------------------------

ENV = {"A": "a", "E": "", "P": "/usr/local/bin:/usr/bin", "F": "file.tar.gz", "S": "x y"}


@pytest.mark.parametrize(
    ("word", "result"),
    [
        ("$A", "a"),
        ("${A}b", "ab"),
        ("$Ab", ""),
        ("$U", ""),
        ("${U:-d}", "d"),
        ("${E:-d}", "d"),
        ("${E-d}", ""),
        ("${U-d}", "d"),
        ("${A:+set}", "set"),
        ("${E:+set}", ""),
        ("${E+set}", "set"),
        ("${U+set}", ""),
        ("${U:-$A$A}", "aa"),
        ("\\$A", "$A"),
        ("'$A'", "$A"),
        ('"$A"', "a"),
        ('"\\$A \\" \\x"', '$A " \\x'),
        ("a\\ b", "a b"),
        ("$", "$"),
        ("$-", ""),
        ("a$/b", "a$/b"),
        ("${F%.*}", "file.tar"),
        ("${F%%.*}", "file"),
        ("${F#*.}", "tar.gz"),
        ("${F##*.}", "gz"),
        ("${P/usr/opt}", "/opt/local/bin:/usr/bin"),
        ("${P//usr/opt}", "/opt/local/bin:/opt/bin"),
    ],
)
def test_expand_follows_buildkit(word: str, result: str) -> None:
    assert expand(word, ENV) == result


def test_expand_errors_and_escape_directive() -> None:
    with pytest.raises(UsageError, match="E: must be set"):
        expand("${E:?must be set}", ENV)
    assert expand("${E?x}", ENV) == ""
    for bad in ("${A", "${}", "'open", '"open', "${A:x}"):
        with pytest.raises(UsageError):
            expand(bad, ENV)
    assert expand("`$A\\b", ENV, escape="`") == "$A\\b"


def test_words_split_only_unquoted_expansion() -> None:
    assert words("$S '80 81' 82", ENV) == ["x", "y", "80 81", "82"]
    assert words("", ENV) == []


# ---- Go formats -----------------------------------------------------------------------------


def test_go_formats() -> None:
    assert quoted_list(["/bin/sh", "-c", 'echo "hi"\n']) == '["/bin/sh" "-c" "echo \\"hi\\"\\n"]'
    assert go_quote("é\x01") == '"é\\x01"'
    cases = {"5s": "5s", "1m30s": "1m30s", "90s": "1m30s", "1.5s": "1.5s", "500ms": "500ms", "2h": "2h0m0s",
             "1500us": "1.5ms", "0": "0s", "250ns": "250ns"}
    for given, shown in cases.items():
        assert format_duration(parse_duration(given)) == shown
    assert parse_duration("1m30s") == 90_000_000_000
    with pytest.raises(UsageError, match="missing unit"):
        parse_duration("5")


# ---- FROM -----------------------------------------------------------------------------------


def test_platform_args_have_dockers_values() -> None:
    args = platform_args(ARM64, build=AMD64)
    assert args["TARGETPLATFORM"] == "linux/arm64" and args["TARGETVARIANT"] == ""
    assert args["BUILDPLATFORM"] == "linux/amd64" and args["BUILDARCH"] == "amd64"
    armv7 = platform_args(ARMV7, build=AMD64)
    assert (armv7["TARGETPLATFORM"], armv7["TARGETARCH"], armv7["TARGETVARIANT"]) == ("linux/arm/v7", "arm", "v7")


def test_read_base_expands_global_args() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nARG REG=r.example\nARG IMG=${REG}/app\n"
        "FROM --platform=$TARGETPLATFORM ${IMG}:$TARGETARCH$TARGETVARIANT AS final\n"
    )
    assert read_base(text, "D", {}, ARMV7).image == "r.example/app:armv7"
    assert read_base(text, "D", {"REG": "other"}, ARM64).image == "other/app:arm64"
    base = read_base("FROM scratch\n", "D", {}, AMD64)
    assert base.image is None and base.where == Where("D", 1)
    assert read_base("FROM --platform=linux/arm64 x\n", "D", {}, ARM64).image == "x"


def test_read_base_refusals() -> None:
    with pytest.raises(UsageError, match=r"D:1: FROM --platform=linux/amd64 asks for linux/amd64, but this build"):
        read_base("FROM --platform=linux/amd64 x\n", "D", {}, ARM64)
    with pytest.raises(NeedsBuilder, match=r"^D:3: a second FROM .*; use builder: buildah$"):
        read_base("FROM a AS b\nCOPY x /\nFROM b\n", "D", {}, AMD64)
    with pytest.raises(UsageError, match=r"D:1: ENV before the first FROM"):
        read_base("ENV A=b\nFROM x\n", "D", {}, AMD64)
    with pytest.raises(UsageError, match="empty after ARG substitution"):
        read_base("ARG I\nFROM $I\n", "D", {}, AMD64)


# ---- config instructions: the Dockerfile buildah was run on ---------------------------------

ALL = """\
ARG G=glob
FROM scratch
ARG A=one
ARG G
ENV E1=x E2="y z" E3=${A}-$G
ENV LEG legacy value
LABEL l1=v1 "l 2"="v 2"
WORKDIR app
WORKDIR sub
USER 1000:1000
EXPOSE 80 81/udp
VOLUME ["/data", "/logs"]
VOLUME /v1 /v2
COPY --chmod=755 a.txt ./
ADD a.txt /abs/
CMD echo hi
ENTRYPOINT ["/bin/app", "x"]
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-c"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=1s --retries=2 CMD curl -f http://x/ || exit 1
ONBUILD COPY a b
MAINTAINER me <a@b>
CMD ["/x"]
"""

# What buildah 1.28 recorded for ALL (io.buildah.version label left out).
BUILDAH = {
    "User": "1000:1000",
    "ExposedPorts": {"80/tcp": {}, "81/udp": {}},
    "Env": [PATH, "E1=x", "E2=y z", "E3=one-glob", "LEG=legacy value"],
    "Entrypoint": ["/bin/app", "x"],
    "Cmd": ["/x"],
    "Volumes": {"/data": {}, "/logs": {}, "/v1": {}, "/v2": {}},
    "WorkingDir": "/app/sub",
    "Labels": {"l 2": "v 2", "l1": "v1"},
    "StopSignal": "SIGTERM",
}


def test_config_matches_buildah_and_adds_what_docker_keeps() -> None:
    recipe = run(ALL)
    assert recipe.base.image is None and recipe.author == "me <a@b>"
    config = dict(recipe.config)
    # buildah's OCI config drops these; docker/buildkit keep them
    assert config.pop("Shell") == ["/bin/bash", "-c"]
    assert config.pop("OnBuild") == ["COPY a b"]
    assert config.pop("ArgsEscaped") is True
    assert config.pop("Healthcheck") == {
        "Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"],
        "Interval": 5_000_000_000,
        "Timeout": 3_000_000_000,
        "StartPeriod": 1_000_000_000,
        "Retries": 2,
    }
    assert config == BUILDAH


def test_history_texts_are_buildkits() -> None:
    assert texts(run(ALL)) == [
        "ARG A=one",
        "ARG G=glob",
        "ENV E1=x E2=y z E3=one-glob",
        "ENV LEG=legacy value",
        "LABEL l1=v1 l 2=v 2",
        "WORKDIR /app",
        "WORKDIR /app/sub",
        "USER 1000:1000",
        "EXPOSE [80/tcp 81/udp]",
        "VOLUME [/data /logs]",
        "VOLUME [/v1 /v2]",
        "COPY --chmod=755 a.txt ./ # buildkit",
        "ADD a.txt /abs/ # buildkit",
        'CMD ["/bin/sh" "-c" "echo hi"]',
        'ENTRYPOINT ["/bin/app" "x"]',
        "STOPSIGNAL SIGTERM",
        "SHELL [/bin/bash -c]",
        "HEALTHCHECK {Test:[CMD-SHELL curl -f http://x/ || exit 1] Interval:5s Timeout:3s StartPeriod:1s "
        "StartInterval:0s Retries:2}",
        "MAINTAINER me <a@b>",
        'CMD ["/x"]',
    ]  # ONBUILD adds no history entry, as in docker


def test_steps_carry_config_and_layers() -> None:
    steps = run(ALL).steps
    workdir = steps[5]
    assert isinstance(workdir, ConfigStep) and workdir.mkdir == "/app" and workdir.owner is None
    assert workdir.where == Where("Dockerfile", 8) and workdir.config["WorkingDir"] == "/app"
    copy_step, add_step = steps[11], steps[12]
    assert copy_step == CopyStep(("a.txt",), "/app/sub/", Where("Dockerfile", 14), False, 0o755, None,
                                 "COPY --chmod=755 a.txt ./ # buildkit")
    assert add_step.add and add_step.dest == "/abs/"
    assert steps[0].config["Env"] == [PATH]  # ARG changes no config
    assert "Cmd" not in steps[10].config


def test_base_config_is_kept_and_extended() -> None:
    base = {"Env": ["PATH=/opt/bin", "HOME=/root"], "Cmd": ["sh"], "WorkingDir": "/srv", "Labels": {"z": "1"}}
    recipe = run("FROM img\nENV HOME=/home/app EXTRA=$HOME\nLABEL a=b\nWORKDIR data\n", base=base)
    assert recipe.config == {
        "Env": ["PATH=/opt/bin", "HOME=/home/app", "EXTRA=/root"],  # one ENV expands with the values before it
        "Cmd": ["sh"],
        "WorkingDir": "/srv/data",
        "Labels": {"a": "b", "z": "1"},
    }
    assert base["Env"] == ["PATH=/opt/bin", "HOME=/root"]  # the caller's dict is untouched
    assert run("FROM img\n", base={}).config == {"Env": [PATH]}  # docker adds PATH to any base lacking it
    assert run("FROM scratch\n").config == {"Env": [PATH], "WorkingDir": "/"}  # buildkit's empty image


def test_entrypoint_clears_the_bases_cmd_only() -> None:
    base = {"Cmd": ["base"], "Entrypoint": ["old"]}
    assert "Cmd" not in run('FROM x\nENTRYPOINT ["e"]\n', base=base).config
    assert run('FROM x\nCMD ["c"]\nENTRYPOINT ["e"]\n', base=base).config["Cmd"] == ["c"]
    cleared = run("FROM x\nCMD []\nENTRYPOINT []\n", base=base).config
    assert "Cmd" not in cleared and "Entrypoint" not in cleared


def test_arg_scope() -> None:
    text = "ARG V=global\nARG ONLY=g\nFROM x\nARG V\nENV A=$V B=$ONLY C=$TARGETARCH\n"
    text += "ARG TARGETARCH\nENV D=$TARGETARCH\n"
    env = run(text, platform=ARM64).config["Env"]
    assert env[1:] == ["A=global", "B=", "C=", "D=arm64"]  # a global ARG is visible only re-declared
    assert run(text, args={"V": "cli"}).config["Env"][1] == "A=cli"
    # ENV after ARG wins; an ARG declared after an ENV of the same name wins in buildkit (buildah: ENV)
    order = run("FROM x\nARG N=arg\nENV N=env\nENV A=$N\nARG N=arg2\nENV B=$N\n").config["Env"]
    assert order[1:] == ["N=env", "A=env", "B=arg2"]
    assert texts(run("FROM x\nARG N\nARG M=$N-m\n", args={"N": "n"})) == ["ARG N=n", "ARG M=n-m"]


def test_expose_volume_user_stopsignal() -> None:
    recipe = run("FROM x\nENV P=90\nEXPOSE $P 100-101/udp 1.2.3.4:8080:80/SCTP\nUSER ${U:-nobody}\nSTOPSIGNAL 9\n")
    assert recipe.config["ExposedPorts"] == {"100/udp": {}, "101/udp": {}, "80/sctp": {}, "90/tcp": {}}
    assert recipe.config["User"] == "nobody" and recipe.config["StopSignal"] == "9"
    assert texts(recipe)[1] == "EXPOSE [90/tcp 100/udp 101/udp 80/sctp]"
    bad_lines = ("EXPOSE 80/xyz", "EXPOSE 70000", "STOPSIGNAL SIGNOPE", 'VOLUME [""]', "SHELL /bin/bash", "WORKDIR $U")
    for bad in bad_lines:
        with pytest.raises(UsageError, match=r"^Dockerfile:2: "):
            run("FROM x\n" + bad + "\n")


def test_healthcheck_forms() -> None:
    none = run("FROM x\nHEALTHCHECK NONE\n")
    assert none.config["Healthcheck"] == {"Test": ["NONE"]}
    assert texts(none) == ["HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:0}"]
    exec_form = run('FROM x\nHEALTHCHECK --interval=1m30s --start-interval=500ms CMD ["curl", "-f", "x"]\n')
    assert exec_form.config["Healthcheck"] == {"Test": ["CMD", "curl", "-f", "x"], "Interval": 90_000_000_000,
                                               "StartInterval": 500_000_000}
    for bad in ("HEALTHCHECK --interval=1us CMD x", "HEALTHCHECK --retries=-1 CMD x", "HEALTHCHECK NONE x",
                "HEALTHCHECK PING x", "HEALTHCHECK --every=1s CMD x"):
        with pytest.raises(UsageError):
            run("FROM x\n" + bad + "\n")


def test_shell_and_escape_directive() -> None:
    recipe = run('# escape=`\nFROM x\nSHELL ["pwsh", "-c"]\nCMD echo `$HOME\nENV A=C:\\dir\n')
    assert recipe.config["Cmd"] == ["pwsh", "-c", "echo `$HOME"]  # CMD is not expanded
    assert recipe.config["Env"][1] == "A=C:\\dir"


def test_copy_destination_and_flags() -> None:
    recipe = run(
        "FROM x\nWORKDIR /app\nENV BIN=hello D=bin\n"
        "COPY --chown=10:20 ${BIN}-$TARGETARCH $D/\n"
        "COPY --chown=7 --link a b .\n"
        "COPY [\"a b\", \"/opt/c d\"]\n"
        "ADD --unpack=false x.tar ../up\n"
    )
    first, second, third, fourth = (s for s in recipe.steps if isinstance(s, CopyStep))
    assert (first.sources, first.dest, first.chown) == (("hello-",), "/app/bin/", (10, 20))
    assert first.created_by == "COPY --chown=10:20 hello- bin/ # buildkit"
    assert (second.sources, second.dest, second.chown) == (("a", "b"), "/app/", (7, 7))
    assert (third.sources, third.dest) == (("a b",), "/opt/c d")
    assert (fourth.dest, fourth.add) == ("/up", False)
    assert fourth.created_by == "ADD x.tar ../up # buildkit"
    with pytest.raises(UsageError, match="must be a directory and end with /"):
        run("FROM x\nCOPY a b /dest\n")
    with pytest.raises(UsageError, match="octal"):
        run("FROM x\nCOPY --chmod=u+x a /\n")
    with pytest.raises(UsageError, match="unknown flag --mode"):
        run("FROM x\nCOPY --mode=1 a /\n")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("RUN make", r"^Dockerfile:3: RUN needs a builder that executes commands; use builder: buildah$"),
        ("RUN <<EOF\necho\nEOF", "RUN needs a builder"),
        ("COPY --from=build /out /", r"COPY --from=build needs .*; use builder: buildah"),
        ("COPY --chown=app:app a /", r"--chown=app:app names a user .*; use builder: buildah"),
        ("ADD https://example.com/f /", r"ADD of a URL .*; use builder: buildah"),
        ("ADD git@github.com:o/r.git /", "ADD of a URL or a git repository"),
        ("COPY --parents a/b /", r"COPY --parents is not supported by the native builder$"),
        ("COPY --exclude=*.md . /", "--exclude is not supported"),
        ("COPY <<EOF /f\nhi\nEOF", "here-document"),
    ],
)
def test_refused_with_file_line_and_builder(line: str, message: str) -> None:
    text = "FROM x\nENV A=b\n" + line + "\n"
    with pytest.raises(NeedsBuilder, match=message):
        run(text)
    found = needs_execution(text, "Dockerfile")
    assert found is not None and found.where == Where("Dockerfile", 3)


def test_refusals_that_depend_on_the_base_or_args() -> None:
    with pytest.raises(NeedsBuilder, match=r"^Dockerfile:1: the base image has ONBUILD triggers"):
        run("FROM x\nENV A=b\n", base={"OnBuild": ["RUN make"]})
    with pytest.raises(NeedsBuilder, match=r"^Dockerfile:2: WORKDIR creates /app owned by USER app"):
        run("FROM x\nWORKDIR /app\n", base={"User": "app"})
    assert run("FROM x\nUSER 5:6\nWORKDIR /app\n").steps[1].owner == (5, 6)
    with pytest.raises(NeedsBuilder, match="--chown=me names a user"):
        run("FROM x\nARG WHO=me\nCOPY --chown=$WHO a /\n")
    with pytest.raises(UsageError, match="source cannot be a URL"):
        run("FROM x\nCOPY http://x/y /\n")
    with pytest.raises(UsageError, match="unknown instruction: FOO"):
        run("FROM x\nFOO bar\n")


def test_needs_execution() -> None:
    assert needs_execution(ALL, "Dockerfile") is None
    assert needs_execution("FROM a\nCOPY x /\n", "D") is None
    multi = needs_execution("FROM a AS build\nCOPY x /\nFROM b\n", "D")
    assert multi is not None and multi.where == Where("D", 3) and "multi-stage" in multi.reason
    run_first = needs_execution("FROM a\nRUN x\nFROM b\nCOPY --from=0 / /\n", "D")
    assert run_first is not None and str(run_first) == "D:2: RUN needs a builder that executes commands"
    assert needs_execution("FROM a\nCOPY --parents x /\n", "D").builder is None  # type: ignore[union-attr]


# ---- against real buildah -------------------------------------------------------------------

AGREED = """\
FROM scratch
ARG VERSION=1.2
ENV APP=/srv/app VERSION=$VERSION
LABEL org.opencontainers.image.version=$VERSION "with space"="a b"
WORKDIR $APP
USER 1000:1001
EXPOSE 8080 53/udp
VOLUME ["/data"]
COPY --chmod=0755 hello bin/
ENTRYPOINT ["/srv/app/bin/hello"]
CMD ["--serve"]
STOPSIGNAL SIGINT
"""


def test_config_facts_equal_a_real_buildah_build(tmp_path: Path) -> None:
    buildah = require("buildah")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello").write_text("#!/bin/sh\n")
    (context / "Dockerfile").write_text(AGREED)
    out = tmp_path / "out"
    cmd = [buildah, "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs",
           "build", "--isolation", "chroot", "-f", str(context / "Dockerfile"), "-t", f"oci:{out}:latest", str(context)]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    theirs = json.loads((out / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())["config"]
    theirs["Labels"].pop("io.buildah.version")
    ours = dict(run(AGREED).config)
    assert ours.pop("ArgsEscaped") is True  # docker's, not buildah's
    assert ours == theirs
