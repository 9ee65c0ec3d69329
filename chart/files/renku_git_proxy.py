"""The ``git-proxy`` sidecar: git inside the notebook reaches the project's repository as the user.

It runs the service's own image (``node dist/git-proxy/main.js``, see git-proxy/README.md), reads
the token from the pod's Secret as the autosave sidecar does, and listens on 127.0.0.1 in the
pod's network namespace, which the notebook container shares. The clone points git at it
(``http.<repository>.proxy``); for an https:// GitLab the proxy writes its CA certificate into a
small emptyDir that the notebook container mounts read-only (``http.<repository>.sslCAInfo``).
Nothing with the token is mounted into the notebook container.

Shutdown: the autosave's preStop save pushes straight to GitLab with the token (it does not need
this proxy), so the proxy only has to finish what git in the notebook has in flight: it exits
after ``GIT_PROXY_DRAIN_IDLE_SECONDS`` without requests once it gets SIGTERM, instead of holding
the pod for the whole grace period.
"""

import copy
from typing import Any

from renku_containers import TOKEN_DIR, TOKEN_FILE_VARIABLE, TOKEN_KEY, TOKEN_VOLUME, env_list, security_context
from renku_options import Launch
from renku_settings import Settings

SIDECAR = "git-proxy"
CA_VOLUME = "renku-git-proxy-ca"
CA_DIR = "/var/run/renku-git-proxy"
CA_FILE = f"{CA_DIR}/ca.pem"
# tini (the image's entrypoint, which `command` replaces) as PID 1 passes SIGTERM on.
COMMAND = ["/usr/bin/tini", "--", "node", "/app/dist/git-proxy/main.js"]


def proxy_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.git_proxy_port}"


def ca_file(launch: Launch) -> str | None:
    """The CA file git in the notebook trusts for the repository: only for an https:// GitLab."""
    return CA_FILE if launch.repository.startswith("https://") else None


def build_git_proxy_container(launch: Launch, settings: Settings, uid: Any, gid: Any) -> dict[str, Any]:
    env = {
        "GIT_PROXY_REPOSITORY_URL": launch.repository,
        TOKEN_FILE_VARIABLE: f"{TOKEN_DIR}/{TOKEN_KEY}",
        "GIT_PROXY_PORT": str(settings.git_proxy_port),
        "GIT_PROXY_DRAIN_IDLE_SECONDS": str(settings.git_proxy_drain_idle_seconds),
    }
    ca = ca_file(launch)
    if ca:
        env["GIT_PROXY_CA_FILE"] = ca
    security = security_context(uid, gid)
    security["readOnlyRootFilesystem"] = True
    return {
        "name": SIDECAR,
        "image": settings.git_proxy_image,
        "command": list(COMMAND),
        "env": env_list(env),
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": CA_VOLUME, "mountPath": CA_DIR},
        ],
        "resources": copy.deepcopy(dict(settings.git_proxy_resources)),
        "securityContext": security,
    }
