"""The `--format` evaluator: the Go text/template forms docker, regctl and imagetools users type,
with Go's output rules, and one-line usage errors for what it does not read."""

from __future__ import annotations

from typing import Any

import pytest

from manifesto.cli.template import Record, parse, render
from manifesto.cli.template_values import printf
from manifesto.errors import UsageError

DATA = Record(
    name="r.example/app:1",
    digest="sha256:" + "ab" * 32,
    mediaType="application/vnd.oci.image.index.v1+json",
    size=512,
    local=False,
    artifactType=None,
    annotations={"org.opencontainers.image.source": "https://x", "b": "2"},
    manifests=[
        {"digest": "sha256:1", "size": 10, "platform": {"architecture": "amd64", "os": "linux"}, "annotations": {"k": "v"}},
        {"digest": "sha256:2", "size": 20, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    ],
    manifest={"schemaVersion": 2, "manifests": []},
)


def run(template: str, data: Any = DATA) -> str:
    return render(parse(template), data)


@pytest.mark.parametrize(
    "template, out",
    [
        ("{{.Digest}}", DATA["digest"]),
        ("{{ .MediaType }}", DATA["mediaType"]),
        ("{{.Name}}\\n", "r.example/app:1\\n"),  # text prints exactly as written, as in Go
        ("{{json .Manifest}}", '{"schemaVersion":2,"manifests":[]}'),
        ("{{json .Annotations}}", '{"org.opencontainers.image.source":"https://x","b":"2"}'),
        ("{{range .Manifests}}{{.Platform.Architecture}}{{.Platform.Variant}},{{end}}", "amd64<no value>,arm64v8,"),
        ("{{range $i, $m := .Manifests}}{{$i}}:{{$m.Size}} {{end}}", "0:10 1:20 "),
        ("{{range .Manifests}}{{index .Annotations \"k\"}};{{end}}", "v;<no value>;"),
        ('{{index .Annotations "org.opencontainers.image.source"}}', "https://x"),
        ('{{index .Annotations "missing"}}', ""),
        ("{{range .Annotations}}{{.}} {{end}}", "2 https://x "),  # map keys in sorted order, as Go ranges
        ("{{if .Local}}local{{else if .Size}}sized{{else}}none{{end}}", "sized"),
        ("{{if not .ArtifactType}}image{{end}}", "image"),
        ("{{.ArtifactType}}", "<nil>"),
        ("{{with .Manifest}}{{.schemaVersion}}{{end}}", "2"),
        ("{{range .Manifest.manifests}}x{{else}}empty{{end}}", "empty"),
        ("{{println .Size}}", "512\n"),
        ("{{print .Size .Size}}", "512 512"),
        ('{{printf "%-6s|%5d|%q|%x" "ab" 42 "q" 255}}', 'ab    |   42|"q"|ff'),
        ('{{printf "%s %s" .Size}}', "512 %!s(MISSING)"),
        ("{{.Name | printf \"[%s]\"}}", "[r.example/app:1]"),
        ("{{len .Manifests}} {{eq (len .Manifests) 2}} {{ne .Size 512}}", "2 true false"),
        ("{{if and .Size (eq .Local false)}}yes{{end}}", "yes"),
        ("{{or .ArtifactType \"none\"}}", "none"),
        ("{{$n := .Name}}{{range .Manifests}}{{$n}} {{end}}", "r.example/app:1 r.example/app:1 "),
        ("{{range .Manifests}}{{$.Size}}{{end}}", "512512"),
        ("{{(index .Manifests 1).Platform.OS}}", "linux"),
        ("a  {{- .Size -}}  b", "a512b"),
        ("{{/* a comment */}}x", "x"),
        ("{{join (index .Manifests 0).Platform \",\"}}", "<error>"),
        ('{{upper "x"}}{{lower "Y"}}', "Xy"),
        ("{{.Manifest.nope}}", "<no value>"),
        ("{{.}}", None),
    ],
)
def test_forms(template: str, out: str | None) -> None:
    if out == "<error>":
        with pytest.raises(UsageError):
            run(template)
    elif out is None:
        assert run(template).startswith("map[")
    else:
        assert run(template) == out


@pytest.mark.parametrize(
    "template, says",
    [
        ("{{.Nope}}", "no field 'Nope'"),
        ("{{.Digest", "unclosed action"),
        ("{{if .Size}}x", "missing {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{frobnicate .}}", 'function "frobnicate" not defined'),
        ("{{.Size .Name}}", "is not a function"),
        ("{{}}", "empty action"),
        ("{{/* open}}", "unclosed comment"),
        ('{{"unterminated}}', "cannot read"),
        ("{{range .Size}}{{end}}", "can't iterate"),
        ("{{$x}}", "undefined variable $x"),
        ("{{.Size.Deeper}}", "can't read field 'Deeper'"),
        ("{{index .Manifests 5}}", "out of range"),
        ("{{lt .Name 3}}", "can't compare"),
    ],
)
def test_errors(template: str, says: str) -> None:
    with pytest.raises(UsageError, match="^--format: ") as e:
        run(template)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_printf_verbs() -> None:
    assert printf("%v %t %X %5.2s %%", ["x", True, 255, "abcdef"]) == "x true FF    ab %"
    assert printf("%d", ["x"]) == "%!d(x)"
