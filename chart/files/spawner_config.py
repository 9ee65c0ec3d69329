"""KubeSpawner hooks for renku-notebooks.

The notebooks service asks the hub to start a named server and posts the launch
as ``user_options`` (SPEC section 7). These hooks turn those options into the
pod: image, resources, a work volume, labels and annotations, and an init
container that clones the project at the requested commit with the user's
GitLab token.

The hub loads this file through ``hub.extraConfig`` (Zero to JupyterHub), which
executes it where the traitlets config object ``c`` exists; the hook-up at the
bottom only runs then. Everything else is plain functions taking a
spawner-like object, so the module imports without kubespawner or jupyterhub.

Settings come from the hub's environment (all optional):

``RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH``
    JSON file of the server options (the same options the service uses);
    default ``/usr/local/etc/jupyterhub/renku-notebooks/server-options.json``,
    and when that is missing the built-in defaults of SPEC section 5.
``RENKU_NOTEBOOKS_WORK_DIR``
    Where the work volume is mounted; the project is cloned into
    ``<work dir>/<project>``. Default ``/work``.
``RENKU_NOTEBOOKS_GIT_IMAGE``
    Image of the clone init container; it needs ``sh``, ``git`` and
    ``base64`` (``git-lfs`` for LFS). Default: the notebook's own image.
``RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP``
    ConfigMap (in the pods' namespace) holding ``clone-repo.sh``.
    Default ``renku-notebooks-hub-files``.
"""

import copy
import json
import logging
import os
import re
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
OPTIONAL_KEYS = ("notebook", "image", "default_image_used", "server_options")
USER_OPTION_KEYS = frozenset(REQUIRED_KEYS + OPTIONAL_KEYS)

GPU_RESOURCE = "nvidia.com/gpu"
WORK_VOLUME = "renku-work"
SCRIPT_VOLUME = "renku-clone-script"
SCRIPT_DIR = "/opt/renku-notebooks"
SCRIPT_NAME = "clone-repo.sh"
INIT_CONTAINER = "git-clone"
TOKEN_VARIABLE = "GIT_ACCESS_TOKEN"

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        path = env.get("RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH") or f"{HUB_FILES_DIR}/server-options.json"
        return cls(
            server_options=load_server_options(path),
            work_dir=(env.get("RENKU_NOTEBOOKS_WORK_DIR") or "/work").rstrip("/") or "/work",
            git_image=env.get("RENKU_NOTEBOOKS_GIT_IMAGE", ""),
            clone_script_configmap=env.get("RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP") or "renku-notebooks-hub-files",
        )


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


def _snapshot(spawner: Any) -> dict[str, Any]:
    # The spawner object is reused for every start of a named server: keep the
    # configured values and rebuild from them, or each start would add again.
    base = getattr(spawner, "_renku_notebooks_base", None)
    if base is None:
        base = {
            name: copy.deepcopy(getattr(spawner, name, None))
            for name in (
                "image",
                "volumes",
                "volume_mounts",
                "init_containers",
                "extra_labels",
                "extra_annotations",
                "extra_resource_limits",
                "extra_resource_guarantees",
                "environment",
            )
        }
        spawner._renku_notebooks_base = base
    return copy.deepcopy(base)


def _add(collection: Any, key: str, item: dict[str, Any]) -> Any:
    # Newer KubeSpawner versions accept dicts (keyed, sorted) as well as lists.
    if isinstance(collection, dict):
        collection = {k: v for k, v in collection.items() if k != key}
        collection[key] = item
        return collection
    items = [i for i in (collection or []) if not (isinstance(i, dict) and i.get("name") == item["name"])]
    items.append(item)
    return items


def build_init_container(
    launch: Launch, token: str, image: str, settings: Settings, uid: int | None, gid: int | None
) -> dict[str, Any]:
    """The init container running clone-repo.sh; the only place the token goes."""
    env = {
        "GIT_REPOSITORY_URL": launch.repository,
        "GIT_COMMIT_SHA": launch.commit_sha,
        "GIT_BRANCH": launch.branch,
        "GIT_TARGET_DIR": f"{settings.work_dir}/{launch.project}",
        "GIT_LFS_AUTO_FETCH": "true" if launch.server_options.get("lfs_auto_fetch") is True else "false",
        TOKEN_VARIABLE: token,
    }
    security: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    run_as = uid if isinstance(uid, int) else 1000
    security["runAsUser"] = run_as
    security["runAsNonRoot"] = run_as != 0
    if isinstance(gid, int):
        security["runAsGroup"] = gid
    return {
        "name": INIT_CONTAINER,
        "image": image,
        "command": [f"{SCRIPT_DIR}/{SCRIPT_NAME}"],
        "env": [{"name": k, "value": _literal(v)} for k, v in env.items()],
        "volumeMounts": [
            {"name": WORK_VOLUME, "mountPath": settings.work_dir},
            {"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": True},
        ],
        "securityContext": security,
    }


def apply_launch(spawner: Any, launch: Launch, token: str, settings: Settings) -> None:
    """Sets the spawner's pod settings for one launch."""
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
            "items": [{"key": SCRIPT_NAME, "path": SCRIPT_NAME}],
            "defaultMode": 0o555,
        },
    }
    volumes = _add(base["volumes"], WORK_VOLUME, work_volume)
    spawner.volumes = _add(volumes, SCRIPT_VOLUME, script_volume)
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
    annotations.update(
        {
            key: _literal(value)
            for key, value in {
                "renku.io/username": username,
                "renku.io/namespace": launch.namespace,
                "renku.io/projectName": launch.project,
                "renku.io/branch": launch.branch,
                "renku.io/commit-sha": launch.commit_sha,
                "renku.io/gitlabProjectId": str(launch.project_id),
                "renku.io/repository": launch.repository,
                "renku.io/default_image_used": "True" if launch.default_image_used else "False",
            }.items()
        }
    )
    spawner.extra_annotations = annotations

    # The notebook container must never see the token, whatever was configured.
    environment = dict(base["environment"] or {})
    environment.pop(TOKEN_VARIABLE, None)
    spawner.environment = environment

    init = build_init_container(
        launch,
        token,
        settings.git_image or image,
        settings,
        getattr(spawner, "uid", None),
        getattr(spawner, "gid", None),
    )
    spawner.init_containers = _add(base["init_containers"], INIT_CONTAINER, init)


# --------------------------------------------------------------------------- hooks


def gitlab_token(auth_state: Any) -> str:
    token = auth_state.get("access_token") if isinstance(auth_state, Mapping) else None
    if not isinstance(token, str) or not token:
        raise SpawnRefused("No GitLab token is known for you: log out and log in again.")
    return token


def make_pre_spawn_hook(settings: Settings, previous: Any = None):
    """The pre-spawn hook: check the launch, read the token, set up the pod."""

    async def pre_spawn_hook(spawner: Any) -> None:
        if previous is not None:
            result = previous(spawner)
            if hasattr(result, "__await__"):
                await result
        launch = parse_user_options(getattr(spawner, "user_options", None), settings.server_options)
        token = gitlab_token(await spawner.user.get_auth_state())
        try:
            apply_launch(spawner, launch, token, settings)
        except SpawnRefused:
            raise
        except ValueError as e:
            # A server options file whose values Kubernetes would not take.
            raise SpawnRefused(f"The hub's server options cannot be applied: {e}") from None
        spawner.log.info(
            "renku-notebooks: %s/%s at %s for %s",
            launch.namespace,
            launch.project,
            launch.commit_sha[:7],
            getattr(spawner.user, "name", "?"),
        )

    return pre_spawn_hook


def configure(c: Any, settings: Settings | None = None) -> Settings:
    """Hooks renku-notebooks into the hub's KubeSpawner configuration ``c``."""
    settings = settings or Settings.from_env()
    kube = c.KubeSpawner
    previous = None
    try:
        # Keep a hook an operator configured before this file ran.
        if "pre_spawn_hook" in kube:
            previous = kube.pre_spawn_hook
    except TypeError:
        previous = getattr(kube, "pre_spawn_hook", None)
    kube.pre_spawn_hook = make_pre_spawn_hook(settings, previous)
    return settings


if "c" in globals():
    configure(globals()["c"])
