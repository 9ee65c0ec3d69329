"""The hub's settings for renku-notebooks, read from its environment at start-up."""

import os
from dataclasses import dataclass
from typing import Any, Mapping

from renku_options import load_server_options

# What stopping needs beyond the save itself: starting the hook, the sidecar's exit.
GRACE_MARGIN_SECONDS = 15

# Where the chart mounts this file, clone-repo.sh and server-options.json in the hub.
HUB_FILES_DIR = "/usr/local/etc/jupyterhub/renku-notebooks"


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
