"""The ``user_options`` contract of a launch, as the hub checks it.

The notebooks service posts a launch to the hub as ``user_options`` (the README's
"Endpoints", ``POST servers``); ``parse_user_options`` turns it into a ``Launch`` or refuses it
with a ``SpawnRefused`` naming the first bad key, checking the server options against
the same server options file the service reads. Both hubs import this module: the
chart's (through ``spawner_config.py``) and the local stack's (``hub/local_config.py``).

Standard library only, so that either hub imports it as it is.
"""

import copy
import json
import logging
import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

log = logging.getLogger("renku_notebooks.spawner")

# The README's "Server options": used when no server options file can be read.
DEFAULT_SERVER_OPTIONS: dict[str, dict[str, Any]] = {
    "defaultUrl": {
        "order": 1,
        "displayName": "Default Environment",
        "type": "enum",
        "default": "/lab",
        "options": ["/lab"],
    },
    "cpu_request": {
        "order": 2,
        "displayName": "Number of CPUs",
        "type": "enum",
        "default": 0.5,
        "options": [0.5, 1.0],
    },
    "mem_request": {
        "order": 3,
        "displayName": "Amount of Memory",
        "type": "enum",
        "default": "1G",
        "options": ["1G", "2G"],
    },
    "disk_request": {
        "order": 4,
        "displayName": "Amount of storage",
        "type": "enum",
        "default": "1G",
        "options": ["1G"],
    },
    "gpu_request": {
        "order": 5,
        "displayName": "Number of GPUs",
        "type": "enum",
        "default": 0,
        "options": [0],
    },
    "lfs_auto_fetch": {
        "order": 6,
        "displayName": "Automatically fetch LFS data",
        "type": "boolean",
        "default": False,
    },
}

REQUIRED_KEYS = ("namespace", "project", "branch", "commit_sha", "project_id", "repository")
OPTIONAL_KEYS = ("notebook", "image", "default_image_used", "server_options", "autosave", "volume")
# With session volumes, whether the launch starts on a new volume or resumes a kept one.
VOLUME_STATES = ("new", "resumed")
USER_OPTION_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS)

_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
_PROJECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_MULTIPLIER = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_AUTOSAVE_BRANCH = re.compile(r"^renku/autosave/[^\x00-\x20~^:?*\[\\]+$")


class SpawnRefused(ValueError):
    """A launch this hub will not start. The message says why, for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # JupyterHub's progress stream shows `jupyterhub_message` ("Spawn failed: ..."),
        # and its API error body is `log_message % args`: this puts the sentence in the
        # answer to the POST that asked for the server instead of a bare "error".
        self.jupyterhub_message = message
        self.log_message = "%s"


def load_server_options(path: str) -> dict[str, dict[str, Any]]:
    """Reads the server options file; a missing file means the built-in defaults.

    A file that exists but is broken stops the hub at start-up: silently falling
    back would let the hub accept values the service's form never offered.
    """
    try:
        with open(path, encoding="utf-8") as f:
            options = json.load(f)
    except FileNotFoundError:
        log.info("renku-notebooks: %s not found, using the default server options", path)
        return copy.deepcopy(DEFAULT_SERVER_OPTIONS)
    if not isinstance(options, dict) or not all(
        isinstance(spec, dict) and "default" in spec and "type" in spec for spec in options.values()
    ):
        raise ValueError(f"renku-notebooks: {path} does not hold valid server options")
    return options


# --------------------------------------------------------------------------- values


def parse_bytes(value: Any) -> int:
    """A Kubernetes quantity in bytes: ``G`` is 10^9, ``Gi`` is 2^30."""
    if isinstance(value, bool):
        raise ValueError("not a size")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("negative size")
        return int(value)
    if isinstance(value, str):
        match = _QUANTITY.match(value.strip())
        if match:
            return int(float(match.group(1)) * _MULTIPLIER[match.group(2)])
    raise ValueError(f"{value!r} is not a size such as 1G or 512Mi")


def parse_cpu(value: Any) -> float:
    """CPUs as a number: ``0.5``, ``"0.5"`` or ``"500m"``."""
    if isinstance(value, bool):
        raise ValueError("not a number of CPUs")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]+m", text):
            return int(text[:-1]) / 1000
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
            return float(text)
    raise ValueError(f"{value!r} is not a number of CPUs")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    # No coercion, as the service checks them: True is not 1 and "1.0" is not 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if is_number(a) and is_number(b):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _in_range(value: Any, value_range: Mapping[str, Any]) -> bool:
    kind = value_range.get("type", "number")
    low, high = value_range.get("min"), value_range.get("max")
    try:
        if kind == "bytes":
            if not isinstance(value, str) and not is_number(value):
                return False
            n = parse_bytes(value)
            return (low is None or n >= parse_bytes(low)) and (high is None or n <= parse_bytes(high))
        if not is_number(value):
            return False
        return (low is None or value >= float(low)) and (high is None or value <= float(high))
    except (TypeError, ValueError):
        return False


def check_server_option(key: str, spec: Mapping[str, Any], value: Any) -> None:
    """Raises SpawnRefused unless ``value`` is allowed for option ``key``."""
    kind = spec.get("type")
    options = spec.get("options")
    value_range = spec.get("value_range")
    allow_any = bool(spec.get("allow_any_value")) and isinstance(value_range, Mapping)

    if kind == "boolean" and not isinstance(value, bool):
        raise SpawnRefused(f"Server option {key!r} must be true or false.")
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise SpawnRefused(f"Server option {key!r} must be a whole number.")
    if kind == "float" and not is_number(value):
        raise SpawnRefused(f"Server option {key!r} must be a number.")
    if kind not in ("enum", "boolean", "int", "float"):
        raise SpawnRefused(f"Server option {key!r} has an unknown type in the hub's configuration.")
    if kind == "boolean":
        return

    if options and any(_same_kind(value, o) and value == o for o in options):
        return
    if allow_any and _in_range(value, value_range):
        return
    if kind in ("int", "float") and not options:
        if isinstance(value_range, Mapping):
            if _in_range(value, value_range):
                return
        elif value >= 0:
            return
    allowed = ", ".join(json.dumps(o) for o in options or [])
    raise SpawnRefused(
        f"Server option {key!r} does not allow {json.dumps(value)}" + (f"; choose one of {allowed}." if allowed else ".")
    )


def complete_server_options(
    given: Any, specs: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Checks the chosen server options and fills in the defaults of the others."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise SpawnRefused("user option 'server_options' must be an object.")
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise SpawnRefused(f"Unknown server option {unknown[0]!r}; known options: {', '.join(sorted(specs))}.")
    chosen: dict[str, Any] = {}
    for key, spec in specs.items():
        if key in given:
            check_server_option(key, spec, given[key])
            chosen[key] = given[key]
        else:
            chosen[key] = copy.deepcopy(spec.get("default"))
    return chosen


# --------------------------------------------------------------------------- user options


@dataclass(frozen=True)
class Launch:
    """A checked launch request: its ``user_options``."""

    namespace: str
    project: str
    branch: str
    commit_sha: str
    project_id: int
    repository: str
    image: str | None
    notebook: str | None
    default_image_used: bool
    server_options: dict[str, Any]
    # The autosave branch to restore (the README's "Autosave"), only when the service found one.
    autosave: str | None = None
    # "new" or "resumed", only with session volumes (the README's "Session volumes").
    volume: str | None = None


def _string(options: Mapping[str, Any], key: str, required: bool) -> str | None:
    value = options.get(key)
    if value is None:
        if required:
            raise SpawnRefused(f"user option {key!r} is missing: launch servers through the notebooks service.")
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpawnRefused(f"user option {key!r} must be a non-empty string.")
    return value


def parse_user_options(options: Any, specs: Mapping[str, Mapping[str, Any]]) -> Launch:
    """Checks ``user_options``; raises SpawnRefused naming the first bad key."""
    if not isinstance(options, Mapping) or not options:
        raise SpawnRefused(
            "This hub starts servers for GitLab projects only: launch them through the notebooks service."
        )
    unknown = sorted(set(options) - USER_OPTION_KEYS)
    if unknown:
        raise SpawnRefused(f"Unknown user option {unknown[0]!r}.")

    namespace = _string(options, "namespace", True)
    project = _string(options, "project", True)
    branch = _string(options, "branch", True)
    commit_sha = _string(options, "commit_sha", True)
    repository = _string(options, "repository", True)
    assert namespace and project and branch and commit_sha and repository  # for the type checker

    if not _NAMESPACE.match(namespace):
        raise SpawnRefused(f"user option 'namespace' is not a GitLab namespace path: {namespace!r}.")
    # The project names a directory: no slashes, no '..'.
    if not _PROJECT.match(project) or ".." in project:
        raise SpawnRefused(f"user option 'project' is not a GitLab project path: {project!r}.")
    if not _SHA.match(commit_sha):
        raise SpawnRefused("user option 'commit_sha' must be a full 40-character commit sha.")
    if any(c in branch for c in "\0\n\r") or branch.startswith("-"):
        raise SpawnRefused("user option 'branch' is not a valid branch name.")
    url = urlsplit(repository)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SpawnRefused("user option 'repository' must be an http(s) clone URL.")
    if url.username is not None or url.password is not None:
        # Credentials in the URL would be written into the pod's git config.
        raise SpawnRefused("user option 'repository' must not contain credentials.")

    project_id = options.get("project_id")
    if not isinstance(project_id, int) or isinstance(project_id, bool) or project_id < 0:
        raise SpawnRefused("user option 'project_id' must be a whole number.")

    image = _string(options, "image", False)
    notebook = _string(options, "notebook", False)
    if notebook is not None:
        parts = notebook.strip("/").split("/")
        if notebook.startswith("/") or ".." in parts or "\0" in notebook:
            raise SpawnRefused("user option 'notebook' must be a path inside the project.")

    default_image_used = options.get("default_image_used", False)
    if not isinstance(default_image_used, bool):
        raise SpawnRefused("user option 'default_image_used' must be true or false.")

    server_options = complete_server_options(options.get("server_options"), specs)
    default_url = server_options.get("defaultUrl")
    if default_url is not None and (not isinstance(default_url, str) or not default_url.startswith("/")):
        raise SpawnRefused("Server option 'defaultUrl' must be a path starting with '/'.")

    autosave = _string(options, "autosave", False)
    if autosave is not None and (
        not _AUTOSAVE_BRANCH.match(autosave)
        or ".." in autosave
        or "//" in autosave
        or "@{" in autosave
        or autosave.endswith(("/", ".", ".lock"))
    ):
        raise SpawnRefused("user option 'autosave' must name a renku/autosave/... branch.")

    volume = options.get("volume")
    if volume is not None and volume not in VOLUME_STATES:
        raise SpawnRefused("user option 'volume' must be \"new\" or \"resumed\".")

    return Launch(
        namespace=namespace,
        project=project,
        branch=branch,
        commit_sha=commit_sha.lower(),
        project_id=project_id,
        repository=repository,
        image=image,
        notebook=notebook,
        default_image_used=default_image_used,
        server_options=server_options,
        autosave=autosave,
        volume=volume,
    )


def refuse_foreign_autosave(launch: Launch, username: str) -> None:
    """Refuses a restore of an autosave that is not ``username``'s of this launch's branch and commit.

    Users may post ``user_options`` to the hub themselves, and a restore deletes the
    branch it restores.
    """
    if launch.autosave and not launch.autosave.startswith(
        f"renku/autosave/{username}/{launch.branch}/{launch.commit_sha[:7]}/"
    ):
        raise SpawnRefused("user option 'autosave' is not your autosave of this branch and commit.")
