"""The ``autosave`` sidecar, whose preStop hook saves the work tree when the pod stops."""

import copy
from typing import Any

from renku_containers import (
    SCRIPT_DIR,
    TOKEN_DIR,
    TOKEN_FILE_VARIABLE,
    TOKEN_KEY,
    env_list,
    git_mounts,
    literal,
    script_path,
    security_context,
)
from renku_options import Launch
from renku_settings import Settings

AUTOSAVE_SCRIPT = "autosave.sh"
SIDECAR = "autosave"


# (PID 1 ignores SIGTERM unless it traps it). `wait` lets the trap run mid-sleep.
IDLE_COMMAND = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]


def prestop_command(script_dir: str = SCRIPT_DIR) -> list[str]:
    """The sidecar's preStop hook: the save, its output in the sidecar's log.

    A hook's own output is not logged by Kubernetes (only a failure's, in a
    FailedPreStopHook event), so it writes to the stdout of the container's PID 1.
    """
    script = script_path(script_dir, AUTOSAVE_SCRIPT)
    return [
        "/bin/sh",
        "-c",
        f"if [ -w /proc/1/fd/1 ]; then exec {script} >/proc/1/fd/1 2>&1; fi; exec {script}",
    ]


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
        "command": [literal(part) for part in IDLE_COMMAND],
        "env": env_list(env),
        "volumeMounts": git_mounts(settings),
        "lifecycle": {"preStop": {"exec": {"command": [literal(p) for p in prestop_command()]}}},
        "resources": copy.deepcopy(dict(settings.git_container_resources)),
        "securityContext": security_context(uid, gid),
    }
