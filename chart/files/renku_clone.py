"""The init container that clones the project at the launch's commit (``clone-repo.sh``)."""

import copy
from typing import Any, Mapping

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

SCRIPT_NAME = "clone-repo.sh"
INIT_CONTAINER = "git-clone"


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
        f"exec {script_path(script_dir, SCRIPT_NAME)}",
    ]


def build_init_container(
    launch: Launch,
    image: str,
    settings: Settings,
    uid: Any,
    gid: Any,
    git_config: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The init container running clone-repo.sh (and the restore of an autosave).

    ``git_config``: what the clone configures for git in the server (``GIT_PROXY_URL``,
    ``GIT_PROXY_CA_FILE``, ``GIT_USER_NAME``, ``GIT_USER_EMAIL``)."""
    env = {
        **(git_config or {}),
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
        "command": [literal(part) for part in clone_command()],
        "env": env_list(env),
        "volumeMounts": git_mounts(settings),
        "resources": copy.deepcopy(dict(settings.git_container_resources)),
        "securityContext": security_context(uid, gid),
    }
