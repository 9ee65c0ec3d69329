"""The pod of one launch: image, resources, volumes, labels, annotations, its containers."""

import re
from typing import Any
from urllib.parse import quote

from renku_autosave import AUTOSAVE_SCRIPT, SIDECAR, build_autosave_container
from renku_clone import INIT_CONTAINER, SCRIPT_NAME, build_init_container
from renku_containers import (
    SCRIPT_VOLUME,
    TOKEN_FILE_VARIABLE,
    TOKEN_KEY,
    TOKEN_VARIABLE,
    TOKEN_VOLUME,
    WORK_VOLUME,
    add_item,
    literal,
    secret_name,
)
from renku_git_proxy import CA_DIR, CA_VOLUME, build_git_proxy_container, ca_file, proxy_url
from renku_git_proxy import SIDECAR as GIT_PROXY_SIDECAR
from renku_options import Launch, is_number, parse_bytes, parse_cpu
from renku_settings import Settings
from renku_volume import VOLUME_ANNOTATION, apply_session_volume

GPU_RESOURCE = "nvidia.com/gpu"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


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


def git_identity(auth_state: Any) -> dict[str, str]:
    """The user's name and e-mail on GitLab, from the user GitLab returned at login (OAuthenticator
    keeps it in ``auth_state["gitlab_user"]``), for the commits made in the server."""
    user = auth_state.get("gitlab_user") if isinstance(auth_state, dict) else None
    if not isinstance(user, dict):
        return {}
    identity = {}
    name = user.get("name") or user.get("username")
    email = user.get("commit_email") or user.get("email") or user.get("public_email")
    if isinstance(name, str) and name:
        identity["GIT_USER_NAME"] = name
    if isinstance(email, str) and email:
        identity["GIT_USER_EMAIL"] = email
    return identity


def apply_launch(
    spawner: Any,
    launch: Launch,
    settings: Settings,
    uid: Any = None,
    gid: Any = None,
    identity: dict[str, str] | None = None,
) -> None:
    """Sets the spawner's pod settings for one launch (``uid``/``gid`` resolved; ``identity``:
    ``git_identity`` of the user)."""
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
    if is_number(gpus) and gpus > 0:
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
    if settings.session_volumes:
        # Instead, the server's own claim, labelled with the user as the pod is (below).
        claim_label = escape_username(username)
        work_volume = apply_session_volume(
            spawner, launch, settings, claim_label if is_label_value(claim_label) else None
        )
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
    volumes = add_item(base["volumes"], WORK_VOLUME, work_volume)
    volumes = add_item(volumes, SCRIPT_VOLUME, script_volume)
    volumes = add_item(volumes, TOKEN_VOLUME, token_volume)
    mounts = add_item(base["volume_mounts"], WORK_VOLUME, {"name": WORK_VOLUME, "mountPath": settings.work_dir})
    with_proxy = bool(settings.git_proxy_image)
    if with_proxy:
        # The proxy's CA certificate (no key): written by the proxy, read by git in the notebook.
        volumes = add_item(volumes, CA_VOLUME, {"name": CA_VOLUME, "emptyDir": {"sizeLimit": "1Mi"}})
        mounts = add_item(mounts, CA_VOLUME, {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
    spawner.volumes = volumes
    spawner.volume_mounts = mounts

    project_dir = f"{settings.work_dir}/{launch.project}"
    spawner.working_dir = project_dir
    spawner.notebook_dir = project_dir
    url = default_url(options.get("defaultUrl"), launch.notebook)
    if url is not None:
        spawner.default_url = literal(url)

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
    if launch.volume:
        renku_annotations[VOLUME_ANNOTATION] = launch.volume
    annotations.pop("renku.io/autosave", None)
    annotations.pop(VOLUME_ANNOTATION, None)
    annotations.update({key: literal(value) for key, value in renku_annotations.items()})
    spawner.extra_annotations = annotations

    # The notebook container must never see the token, whatever was configured.
    environment = dict(base["environment"] or {})
    environment.pop(TOKEN_VARIABLE, None)
    environment.pop(TOKEN_FILE_VARIABLE, None)
    # It would override the sslCAInfo the clone sets for the repository (git proxy's CA).
    environment.pop("GIT_SSL_CAINFO", None)
    spawner.environment = environment

    git_image = settings.git_image or image
    git_config = dict(identity or {})
    if with_proxy:
        git_config["GIT_PROXY_URL"] = proxy_url(settings)
        ca = ca_file(launch)
        if ca:
            git_config["GIT_PROXY_CA_FILE"] = ca
    init = build_init_container(launch, git_image, settings, uid, gid, git_config)
    spawner.init_containers = add_item(base["init_containers"], INIT_CONTAINER, init)
    sidecar = build_autosave_container(launch, username, git_image, settings, uid, gid)
    containers = add_item(base["extra_containers"], SIDECAR, sidecar)
    if with_proxy:
        proxy = build_git_proxy_container(launch, settings, uid, gid)
        containers = add_item(containers, GIT_PROXY_SIDECAR, proxy)
    spawner.extra_containers = containers

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
