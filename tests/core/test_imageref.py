"""Pure rules: Docker reference grammar, allowed prefixes, the semver patch rule."""

import pytest

from rtm_core.domain.errors import ImageRefNotSemver, SemverPatchOnly, StartConfigInvalid
from rtm_core.domain.imageref import check_patch, parse_image_ref, validate_image_ref


@pytest.mark.parametrize(
    "ref",
    [
        "galaxy/game:1.4.0",
        "busybox",
        "registry.example.com:5000/galaxy/game:1.4.0-rc.1",
        "localhost/game:latest",
        "galaxy/game@sha256:" + "a" * 64,
        "galaxy/game:1.4.0@sha256:" + "b" * 64,
        "my_org/game__x:v1",
    ],
)
def test_accepts_docker_references(ref: str) -> None:
    assert parse_image_ref(ref).raw == ref


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "Galaxy/Game:1.0",
        "galaxy/game:",
        "galaxy//game",
        "-galaxy/game",
        "galaxy/game:1 0",
        "galaxy/game:" + "x" * 129,
        "galaxy game",
        ":1.0",
        "galaxy/game@sha256:short",
        42,
    ],
)
def test_rejects_malformed_references(ref: object) -> None:
    with pytest.raises(StartConfigInvalid) as err:
        parse_image_ref(ref)
    assert err.value.code == "start_config_invalid"


def test_allowed_prefixes() -> None:
    assert validate_image_ref("galaxy/game:1.0.0", ("galaxy/",)).tag == "1.0.0"
    with pytest.raises(StartConfigInvalid, match="allowed prefixes"):
        validate_image_ref("evil/game:1.0.0", ("galaxy/", "registry.local/"))
    assert validate_image_ref("evil/game:1.0.0", ()).name == "evil/game"


@pytest.mark.parametrize(
    ("current", "target"),
    [("g/x:1.4.0", "g/x:1.4.2"), ("g/x:1.4.2", "g/x:1.4.0"), ("g/x:v1.4.0", "g/x:1.4.1-rc.1")],
)
def test_patch_within_minor_is_allowed(current: str, target: str) -> None:
    check_patch(parse_image_ref(current), parse_image_ref(target))


@pytest.mark.parametrize(
    ("current", "target"), [("g/x:1.4.0", "g/x:1.5.0"), ("g/x:1.4.0", "g/x:2.4.0")]
)
def test_cross_minor_or_major_is_refused(current: str, target: str) -> None:
    with pytest.raises(SemverPatchOnly):
        check_patch(parse_image_ref(current), parse_image_ref(target))


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("g/x:latest", "g/x:1.4.1"),
        ("g/x:1.4.0", "g/x:latest"),
        ("g/x:1.4", "g/x:1.4.1"),
        ("g/x", "g/x:1.0.0"),
    ],
)
def test_non_semver_tags_are_refused(current: str, target: str) -> None:
    with pytest.raises(ImageRefNotSemver):
        check_patch(parse_image_ref(current), parse_image_ref(target))
