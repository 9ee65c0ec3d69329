"""What every container the spawner adds to a server's pod shares.

The clone init container, the autosave sidecar (and any later container that runs git
for the user) mount the work volume, the scripts and the token Secret the same way, and
run as the notebook's user. A new container module builds on these.
"""

from typing import Any, Mapping

from renku_settings import Settings

WORK_VOLUME = "renku-work"
SCRIPT_VOLUME = "renku-clone-script"
SCRIPT_DIR = "/opt/renku-notebooks"
TOKEN_VARIABLE = "GIT_ACCESS_TOKEN"
TOKEN_FILE_VARIABLE = "GIT_ACCESS_TOKEN_FILE"
TOKEN_VOLUME = "renku-git-token"
TOKEN_DIR = "/var/run/secrets/renku-notebooks"
TOKEN_KEY = "token"


def literal(value: str) -> str:
    # KubeSpawner expands "{username}"-style templates in labels, annotations,
    # volumes and init containers; doubled braces keep user data literal.
    return value.replace("{", "{{").replace("}", "}}")


def secret_name(pod_name: str) -> str:
    """The per-server Secret holding the user's GitLab token."""
    return f"{pod_name}-git"


def add_item(collection: Any, key: str, item: dict[str, Any]) -> Any:
    # KubeSpawner accepts dicts (keyed, sorted) as well as lists.
    if isinstance(collection, dict):
        collection = {k: v for k, v in collection.items() if k != key}
        collection[key] = item
        return collection
    items = [i for i in (collection or []) if name_of(i) != item["name"]]
    items.append(item)
    return items


def name_of(item: Any) -> Any:
    return item.get("name") if isinstance(item, dict) else getattr(item, "name", None)


def script_path(script_dir: str, name: str) -> str:
    return f"{script_dir}/{name}"


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


def env_list(values: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": literal(v)} for k, v in values.items()]


def git_mounts(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": WORK_VOLUME, "mountPath": settings.work_dir},
        {"name": SCRIPT_VOLUME, "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
    ]
