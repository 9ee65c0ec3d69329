"""KubeSpawner hooks and spawner class for renku-notebooks.

The notebooks service asks the hub to start a named server and posts the launch
as ``user_options`` (SPEC section 7). This file turns those options into the
pod: image, resources, a work volume, labels and annotations, an init container
that clones the project at the requested commit, and an ``autosave`` sidecar
that saves unsaved work to GitLab when the pod stops (SPEC section 9).

The hub loads this file through ``hub.extraConfig`` (Zero to JupyterHub), which
executes it where the traitlets config object ``c`` exists; the hook-up at the
bottom only runs then. Everything else is plain functions and a mixin taking a
spawner-like object, so the module imports without kubespawner or jupyterhub.

How the user's GitLab token reaches the pod
-------------------------------------------
Never in plain text in the pod spec, never in the notebook container. The
spawner (``RenkuSpawnerMixin`` on top of KubeSpawner, set as
``c.JupyterHub.spawner_class``) creates a per-server Secret ``<pod>-git`` with
the token before it creates the pod, gives it the pod as owner once the pod
exists (so Kubernetes removes it with the pod whatever deletes the pod) and
deletes it in ``stop()`` after the pod is gone. The Secret is mounted read-only
at ``/var/run/secrets/renku-notebooks/token`` into the clone init container and
the autosave sidecar only, which read it at run time (``GIT_ACCESS_TOKEN_FILE``);
the notebook container has neither the mount nor the variable. The pod does not
share its process namespace, so the notebook cannot reach the sidecar's files.

Saving before the pod dies
--------------------------
The ``autosave`` sidecar runs the clone image, idles, and shares the work
volume. Its ``preStop`` hook runs ``autosave.sh`` (mounted from the same
ConfigMap as ``clone-repo.sh``), whose output goes to the sidecar's log; a
failed save is also a ``FailedPreStopHook`` event. Kubernetes runs ``preStop``
for every deletion of the pod -- a stop through the hub (the service, the
culler, an admin), a notebook that exited by itself, an eviction or a
``kubectl delete`` -- and gives it the pod's termination grace period.
KubeSpawner deletes pods with ``delete_grace_period`` (default 1 s, which would
kill the save); this file sets it and the pod's ``terminationGracePeriodSeconds``
to ``RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT`` + 15 s (60 s by default): the save is
bounded by ``AUTOSAVE_TIMEOUT`` and the rest covers starting the hook and the
sidecar's exit. A relaunch that found an autosave passes ``autosave`` in the
user options; the clone gets it as ``GIT_AUTOSAVE_BRANCH`` and restores it.

Tokens that expire
------------------
GitLab's OAuth access tokens live 2 hours and a refresh invalidates the old
pair, so the Secret must follow ``auth_state``. The hub does it with
``fresh_gitlab_token`` from ``gitlab_token.py`` (mounted beside this file):

- ``stop()`` refreshes the token before deleting the pod and patches the Secret
  when it changed. The kubelet only rewrites a mounted Secret at its next sync
  of the pod (up to its sync period, 1 min, plus jitter), so after a change
  ``stop()`` waits ``RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS`` (90) before it
  deletes the pod; without a change it deletes at once.
- While a server runs, the hub's periodic ``poll()`` keeps the Secret equal to
  a fresh token every ``RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS`` (300). This also
  covers pods deleted without the hub (eviction): their token is stale only in
  the few minutes after an expiry, and the stop-time wait is only paid then.
- Refreshes of one user's token are serialised (servers share ``auth_state``
  and a refresh token works once). Without ``gitlab_token.py`` the hub logs so
  at start-up and copies ``auth_state``'s token as it is.

The hub needs ``get``, ``create``, ``patch`` and ``delete`` on Secrets in the
pods' namespace; without ``patch`` a changed token is written by deleting and
re-creating the Secret, and the Secret is not owned by the pod.

Settings come from the hub's environment (all optional):

``RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH``
    JSON file of the server options (the same options the service uses);
    default ``/usr/local/etc/jupyterhub/renku-notebooks/server-options.json``,
    and when that is missing the built-in defaults of SPEC section 5.
``RENKU_NOTEBOOKS_WORK_DIR``
    Where the work volume is mounted; the project is cloned into
    ``<work dir>/<project>``. Default ``/work``.
``RENKU_NOTEBOOKS_GIT_IMAGE``
    Image of the clone init container and the autosave sidecar; it needs
    ``sh``, ``git``, ``base64`` and ``sleep`` (``git-lfs`` for LFS). Default:
    the notebook's own image.
``RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP``
    ConfigMap (in the pods' namespace) holding ``clone-repo.sh`` and
    ``autosave.sh``. Default ``renku-notebooks-hub-files``.
``RENKU_NOTEBOOKS_HUB_FILES_DIR``
    Where the hub sees ``gitlab_token.py``. Default
    ``/usr/local/etc/jupyterhub/renku-notebooks``.
``RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT``
    Seconds a save may take (``AUTOSAVE_TIMEOUT``); default 45.
``RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS``
    Seconds between token checks of a running server; default 300.
``RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS``
    Seconds ``stop()`` waits after changing the token; default 90.

A ``singleuser.profileList`` is not supported: KubeSpawner applies profiles
after these hooks and would overwrite the image and resources of the launch.
"""

import asyncio
import base64
import copy
import importlib.util
import inspect
import json
import logging
import os
import random
import re
import time
import weakref
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

log = logging.getLogger("renku_notebooks.spawner")

# SPEC section 5: used when no server options file can be read.
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
OPTIONAL_KEYS = ("notebook", "image", "default_image_used", "server_options", "autosave")
USER_OPTION_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS)

GPU_RESOURCE = "nvidia.com/gpu"
WORK_VOLUME = "renku-work"
SCRIPT_VOLUME = "renku-clone-script"
SCRIPT_DIR = "/opt/renku-notebooks"
SCRIPT_NAME = "clone-repo.sh"
AUTOSAVE_SCRIPT = "autosave.sh"
INIT_CONTAINER = "git-clone"
SIDECAR = "autosave"
TOKEN_VARIABLE = "GIT_ACCESS_TOKEN"
TOKEN_FILE_VARIABLE = "GIT_ACCESS_TOKEN_FILE"
TOKEN_VOLUME = "renku-git-token"
TOKEN_DIR = "/var/run/secrets/renku-notebooks"
TOKEN_KEY = "token"
# What stopping needs beyond the save itself: starting the hook, the sidecar's exit.
GRACE_MARGIN_SECONDS = 15

# Where the chart mounts this file, clone-repo.sh and server-options.json in the hub.
HUB_FILES_DIR = "/usr/local/etc/jupyterhub/renku-notebooks"
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
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
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


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    server_options: Mapping[str, Mapping[str, Any]]
    work_dir: str = "/work"
    git_image: str = ""
    clone_script_configmap: str = "renku-notebooks-hub-files"
    hub_files_dir: str = HUB_FILES_DIR
    autosave_timeout: int = 45
    token_sync_seconds: float = 300
    secret_propagation_seconds: float = 90
    # Bound on one token refresh (GitLab) plus the Secret's patch (Kubernetes).
    refresh_timeout_seconds: float = 20

    @property
    def termination_grace_seconds(self) -> int:
        return self.autosave_timeout + GRACE_MARGIN_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        path = env.get("RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH") or f"{HUB_FILES_DIR}/server-options.json"
        return cls(
            server_options=load_server_options(path),
            work_dir=(env.get("RENKU_NOTEBOOKS_WORK_DIR") or "/work").rstrip("/") or "/work",
            git_image=env.get("RENKU_NOTEBOOKS_GIT_IMAGE", ""),
            clone_script_configmap=env.get("RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP") or "renku-notebooks-hub-files",
            hub_files_dir=env.get("RENKU_NOTEBOOKS_HUB_FILES_DIR") or HUB_FILES_DIR,
            autosave_timeout=int(_seconds(env, "RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT", 45, minimum=1)),
            token_sync_seconds=_seconds(env, "RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS", 300, minimum=10),
            secret_propagation_seconds=_seconds(env, "RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS", 90, minimum=0),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value >= minimum or value != value:  # also refuses NaN
        # A typo must stop the hub, not quietly shorten the time a save gets.
        raise ValueError(f"renku-notebooks: {name} must be a number of seconds >= {minimum:g}, not {text!r}")
    return value


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(a: Any, b: Any) -> bool:
    # No coercion (SPEC 5): True is not 1 and "1.0" is not 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if _is_number(a) and _is_number(b):
        return True
    return isinstance(a, str) and isinstance(b, str)


def _in_range(value: Any, value_range: Mapping[str, Any]) -> bool:
    kind = value_range.get("type", "number")
    low, high = value_range.get("min"), value_range.get("max")
    try:
        if kind == "bytes":
            if not isinstance(value, str) and not _is_number(value):
                return False
            n = parse_bytes(value)
            return (low is None or n >= parse_bytes(low)) and (high is None or n <= parse_bytes(high))
        if not _is_number(value):
            return False
        return (low is None or value >= float(low)) and (high is None or value <= float(high))
    except (TypeError, ValueError):
        return False


def check_server_option(key: str, spec: Mapping[str, Any], value: Any) -> None:
    """Raises SpawnRefused unless ``value`` is allowed for option ``key`` (SPEC 5)."""
    kind = spec.get("type")
    options = spec.get("options")
    value_range = spec.get("value_range")
    allow_any = bool(spec.get("allow_any_value")) and isinstance(value_range, Mapping)

    if kind == "boolean" and not isinstance(value, bool):
        raise SpawnRefused(f"Server option {key!r} must be true or false.")
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise SpawnRefused(f"Server option {key!r} must be a whole number.")
    if kind == "float" and not _is_number(value):
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
    """A checked launch request: the user options of SPEC section 7."""

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
    # The autosave branch to restore (SPEC 9), only when the service found one.
    autosave: str | None = None


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
    )


# --------------------------------------------------------------------------- pod settings


def _literal(value: str) -> str:
    # KubeSpawner expands "{username}"-style templates in labels, annotations,
    # volumes and init containers; doubled braces keep user data literal.
    return value.replace("{", "{{").replace("}", "}}")


def escape_username(name: str) -> str:
    """The ``renku.io/username`` label value the service selects pods by.

    ``escapism.escape(name, escape_char="-").lower()`` (KubeSpawner's legacy
    ``{username}``), written out so it does not depend on KubeSpawner's slug
    scheme: every character but an ASCII letter or digit becomes ``-`` and the
    upper-case hex of its UTF-8 bytes, then all is lower-cased.
    """
    out = []
    for char in name:
        if char.isascii() and char.isalnum():
            out.append(char)
        else:
            out.extend(f"-{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out).lower()


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and _LABEL_VALUE.match(value) is not None


def default_url(base: str | None, notebook: str | None) -> str | None:
    """``defaultUrl`` plus ``/tree/<notebook>`` (JupyterLab and classic both serve that)."""
    if not notebook:
        return base
    root = (base or "/lab").rstrip("/")
    if not root.endswith("/tree"):
        root += "/tree"
    return f"{root}/{quote(notebook.strip('/'), safe='/')}"


def secret_name(pod_name: str) -> str:
    """The per-server Secret holding the user's GitLab token."""
    return f"{pod_name}-git"


def _plain_copy(value: Any) -> Any:
    # Copies the dicts and lists configuration is made of, and keeps other
    # objects (z2jh puts kubernetes V1Container models in init_containers) as they are.
    if isinstance(value, dict):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_copy(v) for v in value]
    return value


_SNAPSHOT_TRAITS = (
    "image",
    "volumes",
    "volume_mounts",
    "init_containers",
    "extra_containers",
    "extra_pod_config",
    "extra_labels",
    "extra_annotations",
    "extra_resource_limits",
    "extra_resource_guarantees",
    "environment",
    "delete_grace_period",
)


def _snapshot(spawner: Any) -> dict[str, Any]:
    # The spawner object is reused for every start of a named server: keep the
    # configured values and rebuild from them, or each start would add again.
    base = getattr(spawner, "_renku_notebooks_base", None)
    if base is None:
        base = {name: _plain_copy(getattr(spawner, name, None)) for name in _SNAPSHOT_TRAITS}
        spawner._renku_notebooks_base = base
    return _plain_copy(base)


def _add(collection: Any, key: str, item: dict[str, Any]) -> Any:
    # KubeSpawner accepts dicts (keyed, sorted) as well as lists.
    if isinstance(collection, dict):
        collection = {k: v for k, v in collection.items() if k != key}
        collection[key] = item
        return collection
    items = [i for i in (collection or []) if _name_of(i) != item["name"]]
    items.append(item)
    return items


def _name_of(item: Any) -> Any:
    return item.get("name") if isinstance(item, dict) else getattr(item, "name", None)


def _script(script_dir: str, name: str) -> str:
    return f"{script_dir}/{name}"


def clone_command(script_dir: str = SCRIPT_DIR) -> list[str]:
    """Runs clone-repo.sh with the token read from the mounted Secret.

    The token goes from the file into clone-repo.sh's environment only (which
    unsets it at once), never into the pod spec.
    """
    return [
        "/bin/sh",
        "-c",
        'if [ -z "${GIT_ACCESS_TOKEN:-}" ] && [ -n "${GIT_ACCESS_TOKEN_FILE:-}" ]; then '
        'GIT_ACCESS_TOKEN=$(cat "$GIT_ACCESS_TOKEN_FILE") || exit 1; export GIT_ACCESS_TOKEN; fi; '
        f"exec {_script(script_dir, SCRIPT_NAME)}",
    ]


# The sidecar's main process: idle until Kubernetes stops it, then exit at once
# (PID 1 ignores SIGTERM unless it traps it). `wait` lets the trap run mid-sleep.
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def prestop_command(script_dir: str = SCRIPT_DIR) -> list[str]:
    """The sidecar's preStop hook: the save, its output in the sidecar's log.

    A hook's own output is not logged by Kubernetes (only a failure's, in a
    FailedPreStopHook event), so it writes to the stdout of the container's PID 1.
    """
    script = _script(script_dir, AUTOSAVE_SCRIPT)
    return [
        "/bin/sh",
        "-c",
        f"if [ -w /proc/1/fd/1 ]; then exec {script} >/proc/1/fd/1 2>&1; fi; exec {script}",
    ]


def security_context(uid: Any, gid: Any) -> dict[str, Any]:
    """The clone's and the sidecar's: the notebook's user, so files stay the notebook's."""
    run_as = uid if isinstance(uid, int) and not isinstance(uid, bool) else 1000
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsUser": run_as,
        "runAsNonRoot": run_as != 0,
    }
    # z2jh leaves gid unset (None): the image's group, as for the notebook container.
    if isinstance(gid, int) and not isinstance(gid, bool):
        security["runAsGroup"] = gid
    return security


def _env(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": _literal(v)} for k, v in values.items()]


def _git_mounts(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": WORK_VOLUME, "mountPath": settings.work_dir},
        {"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]


def build_init_container(launch: Launch, image: str, settings: Settings, uid: Any, gid: Any) -> dict[str, Any]:
    """The init container running clone-repo.sh (and the restore of an autosave)."""
    env = {
        "GIT_REPOSITORY_URL": launch.repository,
        "GIT_COMMIT_SHA": launch.commit_sha,
        "GIT_BRANCH": launch.branch,
        "GIT_TARGET_DIR": f"{settings.work_dir}/{launch.project}",
        "GIT_LFS_AUTO_FETCH": "true" if launch.server_options.get("lfs_auto_fetch") is True else "false",
        TOKEN_FILE_VARIABLE: f"{TOKEN_DIR}/{TOKEN_KEY}",
    }
    if launch.autosave:
        env["GIT_AUTOSAVE_BRANCH"] = launch.autosave
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "command": [_literal(part) for part in clone_command()],
        "env": _env(env),
        "volumeMounts": _git_mounts(settings),
        "securityContext": security_context(uid, gid),
    }


def build_autosave_container(
    launch: Launch, username: str, image: str, settings: Settings, uid: Any, gid: Any
) -> dict[str, Any]:
    """The sidecar whose preStop hook saves the work tree (contract: autosave.sh)."""
    env = {
        "GIT_TARGET_DIR": f"{settings.work_dir}/{launch.project}",
        "AUTOSAVE_USER": username,
        "GIT_BRANCH": launch.branch,
        "GIT_COMMIT_SHA": launch.commit_sha,
        "GIT_REPOSITORY_URL": launch.repository,
        TOKEN_FILE_VARIABLE: f"{TOKEN_DIR}/{TOKEN_KEY}",
        "AUTOSAVE_TIMEOUT": str(settings.autosave_timeout),
        # The image's user may have no home; git only needs somewhere to look.
        "HOME": "/tmp",
    }
    return {
        "name": SIDECAR,
        "image": image,
        "command": [_literal(part) for part in IDLE_COMMAND],
        "env": _env(env),
        "volumeMounts": _git_mounts(settings),
        "lifecycle": {"preStop": {"exec": {"command": [_literal(p) for p in prestop_command()]}}},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": security_context(uid, gid),
    }


def apply_launch(spawner: Any, launch: Launch, settings: Settings, uid: Any = None, gid: Any = None) -> None:
    """Sets the spawner's pod settings for one launch (``uid``/``gid`` resolved)."""
    base = _snapshot(spawner)
    options = launch.server_options
    username = getattr(getattr(spawner, "user", None), "name", "") or ""

    image = launch.image or base["image"]
    spawner.image = image

    if "cpu_request" in options:
        cpu = parse_cpu(options["cpu_request"])
        spawner.cpu_guarantee = cpu
        spawner.cpu_limit = cpu
    if "mem_request" in options:
        memory = parse_bytes(options["mem_request"])
        spawner.mem_guarantee = memory
        spawner.mem_limit = memory
    limits = dict(base["extra_resource_limits"] or {})
    guarantees = dict(base["extra_resource_guarantees"] or {})
    gpus = options.get("gpu_request", 0)
    if _is_number(gpus) and gpus > 0:
        # Kubernetes takes extended resources as limits (requests follow) and whole numbers only.
        limits[GPU_RESOURCE] = str(int(gpus))
    else:
        limits.pop(GPU_RESOURCE, None)
        guarantees.pop(GPU_RESOURCE, None)
    spawner.extra_resource_limits = limits
    spawner.extra_resource_guarantees = guarantees

    work_volume: dict[str, Any] = {"name": WORK_VOLUME, "emptyDir": {}}
    if "disk_request" in options:
        disk = options["disk_request"]
        parse_bytes(disk)  # checked above, but a bad size must not reach Kubernetes
        work_volume["emptyDir"]["sizeLimit"] = str(disk)
    script_volume = {
        "name": SCRIPT_VOLUME,
        "configMap": {
            "name": settings.clone_script_configmap,
            "items": [
                {"key": SCRIPT_NAME, "path": SCRIPT_NAME},
                {"key": AUTOSAVE_SCRIPT, "path": AUTOSAVE_SCRIPT},
            ],
            "defaultMode": 0o555,
        },
    }
    token_volume = {
        "name": TOKEN_VOLUME,
        "secret": {
            "secretName": secret_name(spawner.pod_name),
            "items": [{"key": TOKEN_KEY, "path": TOKEN_KEY}],
            # Readable by the user the two containers run as, whatever its group:
            # only those two containers mount it.
            "defaultMode": 0o444,
        },
    }
    volumes = _add(base["volumes"], WORK_VOLUME, work_volume)
    volumes = _add(volumes, SCRIPT_VOLUME, script_volume)
    spawner.volumes = _add(volumes, TOKEN_VOLUME, token_volume)
    spawner.volume_mounts = _add(
        base["volume_mounts"], WORK_VOLUME, {"name": WORK_VOLUME, "mountPath": settings.work_dir}
    )

    project_dir = f"{settings.work_dir}/{launch.project}"
    spawner.working_dir = project_dir
    spawner.notebook_dir = project_dir
    url = default_url(options.get("defaultUrl"), launch.notebook)
    if url is not None:
        spawner.default_url = _literal(url)

    labels = dict(base["extra_labels"] or {})
    labels.update(
        {
            "app": "jupyterhub",
            "component": "singleuser-server",
            "app.kubernetes.io/part-of": "renku-notebooks",
        }
    )
    user_label = escape_username(username)
    if is_label_value(user_label):
        labels["renku.io/username"] = user_label
    else:
        # Kubernetes would refuse the whole pod; without the label the server
        # still runs, the service just cannot show its pod's details.
        spawner.log.warning("renku-notebooks: user name %r gives no valid label value", username)
    spawner.extra_labels = labels
    annotations = dict(base["extra_annotations"] or {})
    renku_annotations = {
        "renku.io/username": username,
        "renku.io/namespace": launch.namespace,
        "renku.io/projectName": launch.project,
        "renku.io/branch": launch.branch,
        "renku.io/commit-sha": launch.commit_sha,
        "renku.io/gitlabProjectId": str(launch.project_id),
        "renku.io/repository": launch.repository,
        "renku.io/default_image_used": "True" if launch.default_image_used else "False",
    }
    if launch.autosave:
        renku_annotations["renku.io/autosave"] = launch.autosave
    annotations.pop("renku.io/autosave", None)
    annotations.update({key: _literal(value) for key, value in renku_annotations.items()})
    spawner.extra_annotations = annotations

    # The notebook container must never see the token, whatever was configured.
    environment = dict(base["environment"] or {})
    environment.pop(TOKEN_VARIABLE, None)
    environment.pop(TOKEN_FILE_VARIABLE, None)
    spawner.environment = environment

    git_image = settings.git_image or image
    init = build_init_container(launch, git_image, settings, uid, gid)
    spawner.init_containers = _add(base["init_containers"], INIT_CONTAINER, init)
    sidecar = build_autosave_container(launch, username, git_image, settings, uid, gid)
    spawner.extra_containers = _add(base["extra_containers"], SIDECAR, sidecar)

    # KubeSpawner's 1 s default would kill the save (see the module docstring).
    grace = max(int(base["delete_grace_period"] or 0), settings.termination_grace_seconds)
    spawner.delete_grace_period = grace
    pod_config = {
        k: v
        for k, v in (base["extra_pod_config"] or {}).items()
        if k not in ("termination_grace_period_seconds", "share_process_namespace")
    }
    # terminationGracePeriodSeconds: deletions that do not come from the hub (eviction).
    # shareProcessNamespace: would let the notebook read the sidecar's files and token.
    pod_config.update({"terminationGracePeriodSeconds": grace, "shareProcessNamespace": False})
    spawner.extra_pod_config = pod_config


# --------------------------------------------------------------------------- hooks


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def _resolved(spawner: Any, name: str) -> Any:
    # KubeSpawner's uid/gid may be callables taking the spawner, possibly async.
    value = getattr(spawner, name, None)
    if callable(value):
        value = await _maybe_await(value(spawner))
    return value


def gitlab_token(auth_state: Any) -> str:
    token = auth_state.get("access_token") if isinstance(auth_state, Mapping) else None
    if not isinstance(token, str) or not token:
        raise SpawnRefused("No GitLab token is known for you: log out and log in again.")
    return token


async def configure_launch(spawner: Any, user_options: Any, settings: Settings) -> None:
    """Checks the launch, gets a fresh token, sets up the pod."""
    if not getattr(spawner, "_renku_manages_secret", False):
        raise SpawnRefused(
            "The hub's spawner class does not create the GitLab token Secret: "
            "spawner_config.py must set c.JupyterHub.spawner_class."
        )
    launch = parse_user_options(user_options, settings.server_options)
    username = getattr(spawner.user, "name", "")
    if launch.autosave and not launch.autosave.startswith(
        f"renku/autosave/{username}/{launch.branch}/{launch.commit_sha[:7]}/"
    ):
        # Users may post user_options to the hub themselves: a restore deletes the
        # branch it restores, so it must be this user's autosave of this launch.
        raise SpawnRefused("user option 'autosave' is not your autosave of this branch and commit.")
    token = await spawner._renku_current_token()
    try:
        apply_launch(spawner, launch, settings, await _resolved(spawner, "uid"), await _resolved(spawner, "gid"))
    except SpawnRefused:
        raise
    except ValueError as e:
        # A server options file whose values Kubernetes would not take.
        raise SpawnRefused(f"The hub's server options cannot be applied: {e}") from None
    # Kept in the hub's memory until start() writes it into the Secret.
    spawner._renku_token = token
    spawner.log.info(
        "renku-notebooks: %s/%s at %s for %s%s",
        launch.namespace,
        launch.project,
        launch.commit_sha[:7],
        getattr(spawner.user, "name", "?"),
        f", restoring {launch.autosave}" if launch.autosave else "",
    )


def make_apply_user_options(settings: Settings, previous: Any = None):
    """The ``apply_user_options`` hook (JupyterHub 5.3+), which runs before ``pre_spawn_hook``."""

    async def apply_user_options(spawner: Any, user_options: Any) -> None:
        if callable(previous):
            await _maybe_await(previous(spawner, user_options))
        try:
            await configure_launch(spawner, user_options, settings)
        except SpawnRefused as e:
            # JupyterHub turns any other exception here into "Invalid user options".
            raise _http_error(e) from None
        spawner._renku_applied = True

    return apply_user_options


def _http_error(refusal: SpawnRefused) -> Exception:
    try:
        from tornado.web import HTTPError
    except ImportError:
        return refusal
    error = HTTPError(400, "%s", refusal.jupyterhub_message)
    error.jupyterhub_message = refusal.jupyterhub_message
    return error


def make_pre_spawn_hook(settings: Settings, previous: Any = None):
    """The pre-spawn hook: an earlier hook, then the launch unless apply_user_options did it."""

    async def pre_spawn_hook(spawner: Any) -> None:
        if previous is not None:
            await _maybe_await(previous(spawner))
        if getattr(spawner, "_renku_applied", False):
            spawner._renku_applied = False
            return
        await configure_launch(spawner, getattr(spawner, "user_options", None), settings)

    return pre_spawn_hook


# --------------------------------------------------------------------------- token Secret

_USER_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]" = (
    weakref.WeakKeyDictionary()
)


def _user_lock(name: str) -> asyncio.Lock:
    # One refresh at a time per user: a refresh token works once, and all of a
    # user's servers read the same auth_state. (Per event loop: a lock belongs to one.)
    locks = _USER_LOCKS.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(name)
    if lock is None:
        lock = locks[name] = asyncio.Lock()
    return lock


def _status(error: BaseException) -> Any:
    # kubernetes_asyncio's ApiException carries the HTTP status.
    return getattr(error, "status", None)


def _b64(token: str) -> str:
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def load_fresh_gitlab_token(directory: str, log: logging.Logger = log) -> Any:
    """``fresh_gitlab_token`` from ``gitlab_token.py`` in ``directory``, or None."""
    path = os.path.join(directory, "gitlab_token.py")
    if not os.path.isfile(path):
        log.warning(
            "renku-notebooks: %s is missing: GitLab tokens are not refreshed, so servers "
            "running longer than the token's life (2 h) cannot save their work",
            path,
        )
        return None
    spec = importlib.util.spec_from_file_location("renku_notebooks_gitlab_token", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fresh_gitlab_token


class RenkuSpawnerMixin:
    """Keeps the per-server token Secret; put before KubeSpawner (``make_spawner_class``)."""

    _renku_manages_secret = True
    _renku_settings: Settings
    _renku_fresh_gitlab_token: Any = None
    _renku_starting = False
    _renku_sync_task: Any = None
    _renku_last_sync = 0.0

    @property
    def _renku_secret_name(self) -> str:
        return secret_name(self.pod_name)

    # -- tokens

    async def _renku_current_token(self) -> str:
        """A token GitLab accepts now: refreshed through gitlab_token.py when it expired."""
        user = self.user
        fresh = self._renku_fresh_gitlab_token
        authenticator = getattr(self, "authenticator", None)
        gitlab_url = getattr(authenticator, "gitlab_url", None)
        async with _user_lock(user.name):
            if fresh is not None and gitlab_url:
                try:
                    token = await asyncio.wait_for(
                        fresh(
                            user,
                            gitlab_url,
                            getattr(authenticator, "client_id", ""),
                            getattr(authenticator, "client_secret", ""),
                            self.log,
                        ),
                        self._renku_settings.refresh_timeout_seconds,
                    )
                except Exception as e:  # noqa: BLE001 - GitLab down must not stop a stop
                    self.log.warning("renku-notebooks: refreshing %s's GitLab token failed: %s", user.name, type(e).__name__)
                    token = None
                if token:
                    return token
            # No refresher, or it could not refresh: what auth_state holds.
            return gitlab_token(await user.get_auth_state())

    # -- the Secret through the Kubernetes API (KubeSpawner's self.api, kubernetes_asyncio)

    def _renku_secret_manifest(self, token: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/part-of": "renku-notebooks", "app.kubernetes.io/component": "git-credentials"}
        user_label = escape_username(self.user.name)
        if is_label_value(user_label):
            labels["renku.io/username"] = user_label
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self._renku_secret_name,
                "labels": labels,
                "annotations": {"hub.jupyter.org/username": self.user.name, "hub.jupyter.org/servername": self.name or ""},
            },
            "type": "Opaque",
            "data": {TOKEN_KEY: _b64(token)},
        }

    async def _renku_create_secret(self, token: str) -> None:
        body = self._renku_secret_manifest(token)
        try:
            await self.api.create_namespaced_secret(namespace=self.namespace, body=body)
        except Exception as e:
            if _status(e) != 409:
                # Said in words: this is what the progress stream shows.
                raise RuntimeError(
                    f"The hub could not create the Secret {self._renku_secret_name} for the GitLab token "
                    f"in namespace {self.namespace} (Kubernetes answered {_status(e) or type(e).__name__})."
                ) from e
            # Left by a server the hub lost track of, maybe owned by its old pod
            # (whose deletion would take it along): start afresh.
            await self._renku_delete_secret()
            await self.api.create_namespaced_secret(namespace=self.namespace, body=body)

    async def _renku_read_token(self) -> str | None:
        """The token in the Secret; None when there is no Secret (a server from before autosave)."""
        try:
            secret = await self.api.read_namespaced_secret(name=self._renku_secret_name, namespace=self.namespace)
        except Exception as e:
            if _status(e) == 404:
                return None
            raise
        data = secret.get("data") if isinstance(secret, dict) else getattr(secret, "data", None)
        encoded = (data or {}).get(TOKEN_KEY)
        return base64.b64decode(encoded).decode("utf-8") if encoded else ""

    async def _renku_write_token(self, token: str) -> None:
        name = self._renku_secret_name
        try:
            await self.api.patch_namespaced_secret(
                name=name, namespace=self.namespace, body={"data": {TOKEN_KEY: _b64(token)}}
            )
        except Exception as e:
            if _status(e) != 403:
                raise
            # z2jh's hub Role may lack `patch` on Secrets: re-create it instead.
            self.log.warning("renku-notebooks: may not patch Secret %s, re-creating it (grant the hub patch)", name)
            await self._renku_delete_secret()
            await self.api.create_namespaced_secret(namespace=self.namespace, body=self._renku_secret_manifest(token))

    async def _renku_own_secret(self) -> None:
        """Makes the pod the Secret's owner, so Kubernetes deletes it with the pod."""
        uid = getattr(self, "pod_id", None)
        if not uid:
            return
        owner = {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": uid}
        try:
            await self.api.patch_namespaced_secret(
                name=self._renku_secret_name,
                namespace=self.namespace,
                body={"metadata": {"ownerReferences": [owner]}},
            )
        except Exception as e:  # noqa: BLE001 - stop() still deletes it
            self.log.warning(
                "renku-notebooks: Secret %s not owned by its pod (status %s); stop() deletes it",
                self._renku_secret_name,
                _status(e),
            )

    async def _renku_delete_secret(self) -> None:
        try:
            await self.api.delete_namespaced_secret(name=self._renku_secret_name, namespace=self.namespace)
        except Exception as e:
            if _status(e) != 404:
                raise

    async def _renku_sync_token(self) -> bool:
        """Writes a fresh token into the Secret when it differs; True when it did."""
        current = await self._renku_read_token()
        if current is None:
            return False
        token = await self._renku_current_token()
        if token == current:
            return False
        await self._renku_write_token(token)
        self.log.info("renku-notebooks: updated the GitLab token Secret of %s", self._log_name_safe)
        return True

    @property
    def _log_name_safe(self) -> str:
        return f"{self.user.name}:{self.name}" if self.name else self.user.name

    # -- the spawner's life

    async def start(self):
        self._renku_starting = True
        try:
            token = getattr(self, "_renku_token", None) or await self._renku_current_token()
            self._renku_token = None
            await self._renku_create_secret(token)
            url = await _maybe_await(super().start())
        finally:
            self._renku_starting = False
        self._renku_last_sync = time.monotonic()
        await self._renku_own_secret()
        return url

    async def poll(self):
        status = await super().poll()
        settings = self._renku_settings
        if not self._renku_last_sync:
            # First poll after the hub started: spread the servers' checks over the interval.
            self._renku_last_sync = time.monotonic() - random.uniform(0, settings.token_sync_seconds)
        if (
            status is None
            and not self._renku_starting
            and (self._renku_sync_task is None or self._renku_sync_task.done())
            and time.monotonic() - self._renku_last_sync >= settings.token_sync_seconds
        ):
            # In the background: the hub's poll must stay quick.
            self._renku_last_sync = time.monotonic()
            self._renku_sync_task = asyncio.ensure_future(self._renku_sync_quietly())
        return status

    async def _renku_sync_quietly(self) -> bool:
        try:
            return await asyncio.wait_for(self._renku_sync_token(), self._renku_settings.refresh_timeout_seconds * 2)
        except Exception as e:  # noqa: BLE001 - tried again at the next poll
            self.log.warning("renku-notebooks: keeping %s's token Secret fresh failed: %s", self._log_name_safe, e)
            return False

    async def stop(self, now=False):
        if now and self._renku_starting:
            # KubeSpawner clearing a conflicting or failed pod while starting.
            return await super().stop(now)
        settings = self._renku_settings
        task = self._renku_sync_task
        if task is not None and not task.done():
            await asyncio.wait([task])
        # Graceful even when KubeSpawner asks for `now` (a notebook that exited by
        # itself): the sidecar's preStop save needs the grace period.
        self.delete_grace_period = max(int(self.delete_grace_period or 0), settings.termination_grace_seconds)
        if await self._renku_sync_quietly() and settings.secret_propagation_seconds > 0:
            self.log.info(
                "renku-notebooks: waiting %gs for the kubelet to update %s's token before stopping",
                settings.secret_propagation_seconds,
                self._log_name_safe,
            )
            await asyncio.sleep(settings.secret_propagation_seconds)
        try:
            return await super().stop(False)
        finally:
            # The pod is gone (KubeSpawner waits for that): its token goes too.
            try:
                await self._renku_delete_secret()
            except Exception as e:  # noqa: BLE001 - the pod owns it: Kubernetes deletes it anyway
                self.log.warning("renku-notebooks: deleting Secret %s failed: %s", self._renku_secret_name, e)


def make_spawner_class(base: type, settings: Settings, fresh_gitlab_token: Any = None) -> type:
    """``base`` (KubeSpawner or a subclass) with the token Secret's life added."""
    return type(
        "RenkuKubeSpawner",
        (RenkuSpawnerMixin, base),
        {
            "_renku_settings": settings,
            "_renku_fresh_gitlab_token": staticmethod(fresh_gitlab_token) if fresh_gitlab_token else None,
            "__module__": __name__,
        },
    )


# --------------------------------------------------------------------------- hook-up


def _configured(section: Any, name: str) -> Any:
    try:
        return section[name] if name in section else None
    except TypeError:
        return getattr(section, name, None)


def _hub_supports_apply_user_options() -> bool:
    try:
        from jupyterhub.spawner import Spawner
    except ImportError:
        return False
    return "apply_user_options" in Spawner.class_trait_names()


def _kubespawner_class() -> Any:
    try:
        from kubespawner import KubeSpawner
    except ImportError:
        return None
    return KubeSpawner


def configure(
    c: Any,
    settings: Settings | None = None,
    *,
    spawner_base: Any = None,
    fresh_gitlab_token: Any = None,
    apply_user_options: bool | None = None,
) -> Settings:
    """Hooks renku-notebooks into the hub's configuration ``c``.

    Without arguments (as the hub loads it) it finds KubeSpawner, JupyterHub's
    version and ``gitlab_token.py`` itself; tests pass them.
    """
    settings = settings or Settings.from_env()
    kube = c.KubeSpawner
    spawner_section = c.Spawner

    # Keep a hook an operator configured: KubeSpawner's, else the one for every spawner.
    previous = _configured(kube, "pre_spawn_hook") or _configured(spawner_section, "pre_spawn_hook")
    if apply_user_options is None:
        apply_user_options = _hub_supports_apply_user_options()
    if apply_user_options:
        previous_apply = _configured(kube, "apply_user_options") or _configured(spawner_section, "apply_user_options")
        if previous_apply is not None and not callable(previous_apply):
            log.warning("renku-notebooks: replacing a non-callable apply_user_options")
            previous_apply = None
        kube.apply_user_options = make_apply_user_options(settings, previous_apply)
    kube.pre_spawn_hook = make_pre_spawn_hook(settings, previous)
    grace = _configured(kube, "delete_grace_period")
    kube.delete_grace_period = max(int(grace or 0), settings.termination_grace_seconds)

    jupyterhub = c.JupyterHub
    configured_class = _configured(jupyterhub, "spawner_class")
    base = spawner_base or (configured_class if isinstance(configured_class, type) else None) or _kubespawner_class()
    if base is None:
        raise RuntimeError("renku-notebooks: kubespawner is not installed in the hub")
    if fresh_gitlab_token is None:
        fresh_gitlab_token = load_fresh_gitlab_token(settings.hub_files_dir)
    jupyterhub.spawner_class = make_spawner_class(base, settings, fresh_gitlab_token)
    return settings


if "c" in globals():
    configure(globals()["c"])
