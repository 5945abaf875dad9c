"""Docker image references and the semver patch rule.

The grammar is Docker's distribution/reference one: optional registry host
(with port), slash-separated lowercase path components, optional tag,
optional digest. Written out here because no maintained Python package
exposes it without pulling a Docker client along.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import semver

from rtm_core.domain.errors import ImageRefNotSemver, SemverPatchOnly, StartConfigInvalid

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_MAX_NAME = 255


@dataclass(frozen=True)
class ImageRef:
    raw: str
    name: str
    tag: str | None
    digest: str | None


def parse_image_ref(raw: object) -> ImageRef:
    if not isinstance(raw, str) or not raw:
        raise StartConfigInvalid("image_ref is required")
    match = _REFERENCE_RE.fullmatch(raw)
    if match is None or len(match["name"]) > _MAX_NAME:
        raise StartConfigInvalid("image_ref shape rejected by docker reference parser")
    # A first component without '.', ':' or 'localhost' is a path, not a host,
    # and paths must be lowercase: the regex admits uppercase only in domains.
    domain = match["domain"]
    if domain and not ("." in domain or ":" in domain or domain == "localhost"):
        if domain != domain.lower():
            raise StartConfigInvalid("image_ref shape rejected by docker reference parser")
    return ImageRef(raw=raw, name=match["name"], tag=match["tag"], digest=match["digest"])


def check_allowed(ref: ImageRef, allowed_prefixes: tuple[str, ...]) -> None:
    if allowed_prefixes and not any(ref.raw.startswith(p) for p in allowed_prefixes):
        raise StartConfigInvalid(f"image_ref {ref.raw} is outside the allowed prefixes")


def validate_image_ref(raw: object, allowed_prefixes: tuple[str, ...]) -> ImageRef:
    ref = parse_image_ref(raw)
    check_allowed(ref, allowed_prefixes)
    return ref


def semver_of(ref: ImageRef) -> semver.Version:
    tag = ref.tag or ""
    candidate = tag[1:] if tag.startswith("v") else tag
    try:
        return semver.Version.parse(candidate)
    except ValueError:
        raise ImageRefNotSemver(f"image_ref tag {tag!r} of {ref.raw} is not semver") from None


def check_patch(current: ImageRef, target: ImageRef) -> None:
    """A patch may move only the patch (and pre-release/build) part of the version."""
    old, new = semver_of(current), semver_of(target)
    if (old.major, old.minor) != (new.major, new.minor):
        raise SemverPatchOnly(
            f"patch from {old} to {new} changes major or minor; only patch upgrades are allowed"
        )
