"""Session volumes: each named server's working directory on a PersistentVolumeClaim of its own.

With the chart's ``sessionVolumes.enabled`` (``hub-settings.json``), KubeSpawner creates the
claim before the pod, through its own PVC support, and the work volume the clone, the
autosave sidecar and the notebook share is that claim instead of an emptyDir. The claim
outlives the server; the next start of the same server (same user, project, branch and
commit: the same name) mounts it again, and ``clone-repo.sh`` finds its finished checkout
there and leaves it as it is. The notebooks service finds the claims by their labels, reads
the launch from their annotations, and deletes them (the README's "Session volumes").

What KubeSpawner 7 reads outside a start is set in the hub's configuration: it names the
claim (``pvc_name_template``) when it builds the spawner, and reads ``delete_pvc`` when a
server is removed at the hub (the culler removes named servers), possibly in a hub that
never started that server. The rest is set for each start, from the launch.
"""

from typing import Any

from renku_containers import WORK_VOLUME, literal
from renku_options import Launch, SpawnRefused, parse_bytes
from renku_settings import Settings

# One claim per named server; KubeSpawner 7 expands {user_server} to the escaped
# "<user>--<server>". The service never computes it: it selects claims by label.
PVC_NAME_TEMPLATE = "claim-{user_server}"
ACCESS_MODES = ["ReadWriteOnce"]
SESSION_VOLUME_LABEL = "renku.io/session-volume"
USERNAME_LABEL = "renku.io/username"
VOLUME_ANNOTATION = "renku.io/volume"


def configure_session_volumes(kube: Any, settings: Settings) -> None:
    """``c.KubeSpawner``'s claim settings; nothing at all without session volumes."""
    if not settings.session_volumes:
        return
    if "disk_request" not in settings.server_options:
        # Every claim needs a size; a hub that cannot give one must not start.
        raise ValueError("renku-notebooks: session volumes need the server option 'disk_request' (their size)")
    kube.storage_pvc_ensure = True
    kube.pvc_name_template = PVC_NAME_TEMPLATE
    # KubeSpawner 7 would delete the claim with the server at the hub, i.e. at every cull.
    kube.delete_pvc = False
    kube.storage_access_modes = list(ACCESS_MODES)
    if settings.session_volume_storage_class:
        kube.storage_class = settings.session_volume_storage_class


def _base(spawner: Any) -> dict[str, Any]:
    # The spawner object is reused for each start of a named server: rebuild from the
    # configured values, or a start would keep the launch of the one before.
    base = getattr(spawner, "_renku_volume_base", None)
    if base is None:
        base = {
            "storage_extra_labels": dict(getattr(spawner, "storage_extra_labels", None) or {}),
            "storage_extra_annotations": dict(getattr(spawner, "storage_extra_annotations", None) or {}),
        }
        spawner._renku_volume_base = base
    return {name: dict(value) for name, value in base.items()}


def apply_session_volume(
    spawner: Any, launch: Launch, settings: Settings, username_label: str | None
) -> dict[str, Any]:
    """Sets the claim of one start and returns the work volume that mounts it.

    ``username_label`` is the pod's ``renku.io/username`` label value, or None when the
    user name gives no valid one (the claim then goes without it, as the pod does).
    """
    disk = launch.server_options.get("disk_request")
    if disk is None:
        raise SpawnRefused("Session volumes need the server option 'disk_request' (their size).")
    parse_bytes(disk)  # a bad size must not reach Kubernetes
    base = _base(spawner)

    spawner.storage_pvc_ensure = True
    spawner.delete_pvc = False
    spawner.storage_access_modes = list(ACCESS_MODES)
    if settings.session_volume_storage_class:
        spawner.storage_class = settings.session_volume_storage_class
    # Only read when KubeSpawner creates the claim: a resumed claim keeps its size.
    spawner.storage_capacity = str(disk)

    labels = base["storage_extra_labels"]
    labels[SESSION_VOLUME_LABEL] = "true"
    if username_label is not None:
        labels[USERNAME_LABEL] = username_label
    else:
        labels.pop(USERNAME_LABEL, None)
    spawner.storage_extra_labels = labels
    # KubeSpawner adds hub.jupyter.org/username and hub.jupyter.org/servername itself.
    annotations = base["storage_extra_annotations"]
    annotations.update(
        {
            key: literal(value)
            for key, value in {
                "renku.io/namespace": launch.namespace,
                "renku.io/projectName": launch.project,
                "renku.io/branch": launch.branch,
                "renku.io/commit-sha": launch.commit_sha,
            }.items()
        }
    )
    spawner.storage_extra_annotations = annotations

    # {pvc_name}: KubeSpawner's name of this server's claim (expanded in volumes).
    return {"name": WORK_VOLUME, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
