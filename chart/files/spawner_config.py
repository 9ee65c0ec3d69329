"""KubeSpawner hooks and spawner class for renku-notebooks.

The notebooks service asks the hub to start a named server and posts the launch
as ``user_options`` (the README's "Endpoints"). This file hooks the
modules beside it into the hub; together they turn those options into the pod: image, resources, a work volume, labels and annotations, an init container
that clones the project at the requested commit, and an ``autosave`` sidecar
that saves unsaved work to GitLab when the pod stops (the README's "Autosave").

The hub loads this file through ``hub.extraConfig`` (Zero to JupyterHub), which
executes it where the traitlets config object ``c`` exists, with its directory
on ``sys.path``; the hook-up at the bottom only runs then. The modules, each
named for what it does, import without kubespawner or jupyterhub:

``renku_options``     the ``user_options`` contract and the server options (also
                      imported by the local stack's hub, ``hub/local_config.py``)
``renku_settings``    the settings below, read at start-up
``renku_containers``  what every container the spawner adds shares (mounts, user)
``renku_clone``       the init container that clones the project
``renku_autosave``    the sidecar that saves unsaved work at stop
``renku_volume``      session volumes: the work volume on a claim per named server
``renku_git_proxy``   the sidecar through which git in the notebook reaches GitLab
``renku_pod``         the pod of one launch
``renku_secret``      the token Secret and the spawner class that keeps it
``renku_hooks``       the launch hooks and ``configure(c)``

How the user's GitLab token reaches the pod
-------------------------------------------
Never in plain text in the pod spec, never in the notebook container. The
spawner (``RenkuSpawnerMixin`` on top of KubeSpawner, set as
``c.JupyterHub.spawner_class``) creates a per-server Secret ``<pod>-git`` with
the token before it creates the pod, gives it the pod as owner as soon as the
pod exists, while the start still waits for it (so Kubernetes removes it with
the pod whatever deletes the pod, a hub that dies meanwhile included), deletes
it at once when the start fails (KubeSpawner's ``poll()`` then says the server
does not run, so JupyterHub never calls ``stop()``) and in ``stop()`` after
the pod is gone. A start whose token GitLab refuses and cannot be refreshed is
refused with that reason before anything is created. The Secret is mounted read-only
at ``/var/run/secrets/renku-notebooks/token`` into the clone init container,
the autosave sidecar and the git-proxy sidecar only, which read it at run time
(``GIT_ACCESS_TOKEN_FILE``);
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
to the save's timeout + 15 s (60 s by default): the save is
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
    and when that is missing the built-in defaults (``renku_options``).
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
``RENKU_NOTEBOOKS_HUB_SETTINGS_PATH``
    ``hub-settings.json``, rendered by the chart from ``gitContainers`` and
    ``sessionVolumes`` in its values: the seconds a save may take
    (``AUTOSAVE_TIMEOUT``, 45 by default), the resources of the clone and the
    sidecar, and session volumes (off by default; ``renku_volume``). Default: in
    the hub files directory.
``RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS``
    Seconds between token checks of a running server; default 300.
``RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS``
    Seconds ``stop()`` waits after changing the token; default 90.

A ``singleuser.profileList`` is not supported: KubeSpawner applies profiles
after these hooks and would overwrite the image and resources of the launch.
"""

from renku_hooks import configure

if "c" in globals():
    configure(globals()["c"])
