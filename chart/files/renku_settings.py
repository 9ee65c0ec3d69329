"""The hub's settings for renku-notebooks, read at start-up.

What the chart's values decide (the autosave's time, the git containers' resources,
session volumes) comes from ``hub-settings.json``, which the chart renders into the
hub-files ConfigMap from ``gitContainers`` and ``sessionVolumes`` in its values: one source
for the sidecar's ``AUTOSAVE_TIMEOUT``, the pod's grace period derived from it, the
containers' resources, and whether servers keep their working directory on a claim of
their own. The rest comes from the hub's environment.
"""

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from renku_options import load_server_options

# What stopping needs beyond the save itself: starting the hook, the sidecar's exit.
GRACE_MARGIN_SECONDS = 15
# The defaults of chart/values.yaml's gitContainers (a test keeps them equal), for a hub
# without hub-settings.json, and the local stack's save.
DEFAULT_AUTOSAVE_TIMEOUT_SECONDS = 45
# The clone and the sidecar run git: the sidecar idles until the save at stop, where git's
# pack-objects needs memory (an OOM-killed save loses the work, hence a generous limit).
# Limits too, so that a namespace whose ResourceQuota requires them accepts the pods.
DEFAULT_GIT_CONTAINER_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}

# The git proxy sidecar (chart/values.yaml's gitProxy; a test keeps them equal): a Node.js
# process of 60-100 MiB RSS that streams pushes and LFS transfers, hence these limits.
DEFAULT_GIT_PROXY_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "10m", "memory": "96Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}
DEFAULT_GIT_PROXY_PORT = 8099
# After SIGTERM: what git in the notebook has in flight; the autosave does not use the proxy.
DEFAULT_GIT_PROXY_DRAIN_IDLE_SECONDS = 2

# Where the chart mounts this file, clone-repo.sh and server-options.json in the hub.
HUB_FILES_DIR = "/usr/local/etc/jupyterhub/renku-notebooks"


@dataclass(frozen=True)
class Settings:
    server_options: Mapping[str, Mapping[str, Any]]
    work_dir: str = "/work"
    git_image: str = ""
    clone_script_configmap: str = "renku-notebooks-hub-files"
    hub_files_dir: str = HUB_FILES_DIR
    autosave_timeout: int = DEFAULT_AUTOSAVE_TIMEOUT_SECONDS
    git_container_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_GIT_CONTAINER_RESOURCES)
    )
    # Session volumes (renku_volume): a PersistentVolumeClaim per named server, of this
    # StorageClass (None: the cluster's default).
    session_volumes: bool = False
    session_volume_storage_class: str | None = None
    # Empty: no git proxy (a hub without the chart's hub-settings.json).
    git_proxy_image: str = ""
    git_proxy_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: copy.deepcopy(DEFAULT_GIT_PROXY_RESOURCES)
    )
    git_proxy_port: int = DEFAULT_GIT_PROXY_PORT
    git_proxy_drain_idle_seconds: int = DEFAULT_GIT_PROXY_DRAIN_IDLE_SECONDS
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
        if env.get("RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT"):
            # Its one source is the chart's gitContainers.autosaveTimeoutSeconds.
            raise ValueError(
                "renku-notebooks: RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT is no longer read: "
                "set gitContainers.autosaveTimeoutSeconds in the chart's values"
            )
        hub_files_dir = env.get("RENKU_NOTEBOOKS_HUB_FILES_DIR") or HUB_FILES_DIR
        chart = load_hub_settings(
            env.get("RENKU_NOTEBOOKS_HUB_SETTINGS_PATH") or os.path.join(hub_files_dir, "hub-settings.json")
        )
        return cls(
            server_options=load_server_options(path),
            work_dir=(env.get("RENKU_NOTEBOOKS_WORK_DIR") or "/work").rstrip("/") or "/work",
            git_image=env.get("RENKU_NOTEBOOKS_GIT_IMAGE", ""),
            clone_script_configmap=env.get("RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP") or "renku-notebooks-hub-files",
            hub_files_dir=hub_files_dir,
            autosave_timeout=chart["autosave_timeout"],
            git_container_resources=chart["git_container_resources"],
            session_volumes=chart["session_volumes"],
            session_volume_storage_class=chart["session_volume_storage_class"],
            git_proxy_image=chart["git_proxy_image"],
            git_proxy_resources=chart["git_proxy_resources"],
            git_proxy_port=chart["git_proxy_port"],
            git_proxy_drain_idle_seconds=chart["git_proxy_drain_idle_seconds"],
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


def load_hub_settings(path: str) -> dict[str, Any]:
    """``hub-settings.json`` as the chart renders it; a missing file means the defaults.

    A file that exists but is wrong stops the hub: a typo must not quietly shorten the
    time a save gets.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"renku-notebooks: {path} must hold an object")
    timeout = data.get("autosaveTimeoutSeconds", DEFAULT_AUTOSAVE_TIMEOUT_SECONDS)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"renku-notebooks: autosaveTimeoutSeconds in {path} must be a whole number >= 1")
    resources = data.get("gitContainerResources", DEFAULT_GIT_CONTAINER_RESOURCES)
    if not isinstance(resources, dict) or not all(
        key in ("requests", "limits") and isinstance(values, dict) for key, values in resources.items()
    ):
        raise ValueError(f"renku-notebooks: gitContainerResources in {path} must be {{requests, limits}}")
    volumes = data.get("sessionVolumes", {})
    if not isinstance(volumes, dict):
        raise ValueError(f"renku-notebooks: sessionVolumes in {path} must be {{enabled, storageClass}}")
    enabled = volumes.get("enabled", False)
    storage_class = volumes.get("storageClass") or ""
    if not isinstance(enabled, bool) or not isinstance(storage_class, str):
        raise ValueError(
            f"renku-notebooks: sessionVolumes in {path} must hold enabled (true/false) and storageClass (a name)"
        )
    proxy = data.get("gitProxy", {})
    if not isinstance(proxy, dict):
        raise ValueError(f"renku-notebooks: gitProxy in {path} must be an object")
    image = proxy.get("image", "")
    proxy_resources = proxy.get("resources", DEFAULT_GIT_PROXY_RESOURCES)
    port = proxy.get("port", DEFAULT_GIT_PROXY_PORT)
    drain = proxy.get("drainIdleSeconds", DEFAULT_GIT_PROXY_DRAIN_IDLE_SECONDS)
    if not isinstance(image, str):
        raise ValueError(f"renku-notebooks: gitProxy.image in {path} must be a string")
    if not isinstance(proxy_resources, dict) or not all(
        key in ("requests", "limits") and isinstance(values, dict) for key, values in proxy_resources.items()
    ):
        raise ValueError(f"renku-notebooks: gitProxy.resources in {path} must be {{requests, limits}}")
    if not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65535:
        raise ValueError(f"renku-notebooks: gitProxy.port in {path} must be a port from 1024 to 65535")
    if not isinstance(drain, int) or isinstance(drain, bool) or drain < 0:
        raise ValueError(f"renku-notebooks: gitProxy.drainIdleSeconds in {path} must be a whole number >= 0")
    return {
        "autosave_timeout": timeout,
        "git_container_resources": resources,
        "session_volumes": enabled,
        # Empty: unset, so that the claims get the cluster's default StorageClass.
        "session_volume_storage_class": storage_class or None,
        "git_proxy_image": image,
        "git_proxy_resources": proxy_resources,
        "git_proxy_port": port,
        "git_proxy_drain_idle_seconds": drain,
    }
