"""Registry credentials for pulls, from a Docker `config.json` (`RTMANAGER_DOCKER_CONFIG`).

Only the `auths` map is read: each key names a registry (`host[:port]`, with
or without a scheme and path; Docker Hub also as `docker.io`,
`index.docker.io`, `registry-1.docker.io` or `https://index.docker.io/v1/`),
each value holds `auth` (base64 `user:password`) or `username`/`password`,
and optionally an `identitytoken`. `credsStore` and `credHelpers` name
programs the Docker CLI would run; RTM runs none of them, so a registry known
only there is pulled from anonymously (a warning says so at boot).

The file is read again at every pull: a rotated secret (a Kubernetes
`dockerconfigjson` mounted as a file) applies without a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset(
    {DOCKER_HUB, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)


class DockerConfigError(ValueError):
    """The config file cannot be read, or its entry for a registry is unusable."""


def registry_of(image_ref: str) -> str:
    """The registry an image reference pulls from, as Docker decides it: a first
    path component with a `.` or `:`, or `localhost`, is a host; else Docker Hub."""
    first, slash, _ = image_ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return _canonical(first)
    return DOCKER_HUB


def registry_key(key: str) -> str:
    """An `auths` key as the registry it names: no scheme, no path, Hub aliases folded."""
    host = key.strip()
    for scheme in ("https://", "http://"):
        if host.lower().startswith(scheme):
            host = host[len(scheme) :]
    return _canonical(host.split("/", 1)[0])


def _canonical(host: str) -> str:
    host = host.lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def qualified(image_ref: str) -> str:
    """The reference with its registry spelled out, as the daemon's pull API
    needs when credentials go along (`nginx:1` → `docker.io/library/nginx:1`)."""
    first, slash, _ = image_ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return image_ref
    return f"{DOCKER_HUB}/{image_ref if slash else 'library/' + image_ref}"


@dataclass(frozen=True)
class RegistryAuth:
    """What the daemon gets in `X-Registry-Auth` for one registry."""

    registry: str
    username: str = ""
    password: str = ""
    identity_token: str = ""

    def header(self) -> dict[str, str]:
        if self.identity_token:
            return {"username": self.username, "identitytoken": self.identity_token}
        return {"username": self.username, "password": self.password}

    def __repr__(self) -> str:  # never print a secret
        return f"RegistryAuth(registry={self.registry!r}, username={self.username!r})"


def _entry_auth(registry: str, entry: Any) -> RegistryAuth | None:
    """None for an empty entry: what the CLI writes when a `credsStore` holds
    the secret, so the pull goes anonymous, as announced at boot."""
    if not isinstance(entry, dict):
        raise DockerConfigError(f"auths entry for {registry} is not an object")
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    token = str(entry.get("identitytoken") or "")
    if encoded := entry.get("auth"):
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise DockerConfigError(f"auths entry for {registry}: auth is not base64") from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise DockerConfigError(
                f"auths entry for {registry}: auth is not base64 of user:password"
            )
    if not username and not token:
        return None
    return RegistryAuth(registry, username, password, token)


class RegistryCredentials:
    """The `auths` of one Docker config file, looked up by image reference."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DockerConfigError(f"docker config {self.path}: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("auths", {}), dict):
            raise DockerConfigError(f"docker config {self.path}: no `auths` object")
        return document

    def for_image(self, image_ref: str) -> RegistryAuth | None:
        """The credentials of the image's registry; None: pull anonymously."""
        registry = registry_of(image_ref)
        auths: dict[str, Any] = self._document().get("auths", {})
        for key, entry in auths.items():
            if registry_key(key) == registry:
                return _entry_auth(registry, entry)
        return None

    def announce(self) -> None:
        """Log, once at boot, which registries have credentials and what is ignored."""
        try:
            document = self._document()
        except DockerConfigError as exc:
            log.warning("docker config unreadable; pulls go anonymous", extra={"error": str(exc)})
            return
        registries = sorted({registry_key(k) for k in document.get("auths", {})})
        log.info(
            "docker registry credentials loaded",
            extra={"docker_config": str(self.path), "registries": registries},
        )
        helpers = [name for name in ("credsStore", "credHelpers") if document.get(name)]
        if helpers:
            log.warning(
                "docker config names credential helpers, which RTM never runs; "
                "only its `auths` entries are used",
                extra={"docker_config": str(self.path), "ignored": helpers},
            )
