"""The per-server Secret holding the user's GitLab token, and the spawner class that keeps it.

The token never appears in the pod spec: the spawner creates the Secret ``<pod>-git``
before the pod, the pod mounts it only where git runs, the hub keeps it equal to a
token GitLab accepts while the server runs, and it goes with the server.
"""

import asyncio
import base64
import importlib.util
import inspect
import logging
import os
import random
import secrets
import time
import weakref
from typing import Any, Mapping

from renku_containers import TOKEN_KEY, secret_name
from renku_options import SpawnRefused
from renku_pod import escape_username, is_label_value
from renku_settings import Settings

log = logging.getLogger("renku_notebooks.spawner")

# On the pod: which start made it, so that the Secret gets only that pod as owner (not a
# leftover pod of the same name that KubeSpawner is about to delete).
START_ANNOTATION = "renku.io/start-id"


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def gitlab_token(auth_state: Any) -> str:
    token = auth_state.get("access_token") if isinstance(auth_state, Mapping) else None
    if not isinstance(token, str) or not token:
        raise SpawnRefused("No GitLab token is known for you: log out and log in again.")
    return token


_USER_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]" = (
    weakref.WeakKeyDictionary()
)


def _user_lock(name: str) -> asyncio.Lock:
    # One refresh at a time per user: a refresh token works once, and all of a
    # user's servers read the same auth_state. (Per event loop: a lock belongs to one.)
    locks = _USER_LOCKS.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(name)
    if lock is None:
        lock = locks[name] = asyncio.Lock()
    return lock


def _status(error: BaseException) -> Any:
    # kubernetes_asyncio's ApiException carries the HTTP status.
    return getattr(error, "status", None)


def _b64(token: str) -> str:
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def load_fresh_gitlab_token(directory: str, log: logging.Logger = log) -> Any:
    """``fresh_gitlab_token`` from ``gitlab_token.py`` in ``directory``, or None."""
    path = os.path.join(directory, "gitlab_token.py")
    if not os.path.isfile(path):
        log.warning(
            "renku-notebooks: %s is missing: GitLab tokens are not refreshed, so servers "
            "running longer than the token's life (2 h) cannot save their work",
            path,
        )
        return None
    spec = importlib.util.spec_from_file_location("renku_notebooks_gitlab_token", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fresh_gitlab_token


class RenkuSpawnerMixin:
    """Keeps the per-server token Secret; put before KubeSpawner (``make_spawner_class``)."""

    _renku_manages_secret = True
    _renku_settings: Settings
    _renku_fresh_gitlab_token: Any = None
    _renku_starting = False
    _renku_sync_task: Any = None
    _renku_last_sync = 0.0

    @property
    def _renku_secret_name(self) -> str:
        return secret_name(self.pod_name)

    # -- tokens

    async def _renku_current_token(self, for_start: bool = False) -> str:
        """A token GitLab accepts now: refreshed through gitlab_token.py when it expired.

        ``for_start``: when GitLab refused the token and it could not be refreshed, the
        start is refused with that reason (a clone with it would fail later, less clearly).
        When GitLab could not be asked, the stored token is used as it is.
        """
        user = self.user
        fresh = self._renku_fresh_gitlab_token
        authenticator = getattr(self, "authenticator", None)
        gitlab_url = getattr(authenticator, "gitlab_url", None)
        async with _user_lock(user.name):
            if fresh is not None and gitlab_url:
                try:
                    token = await asyncio.wait_for(
                        fresh(
                            user,
                            gitlab_url,
                            getattr(authenticator, "client_id", ""),
                            getattr(authenticator, "client_secret", ""),
                            self.log,
                        ),
                        self._renku_settings.refresh_timeout_seconds,
                    )
                except Exception as e:  # noqa: BLE001 - GitLab down must not stop a stop
                    self.log.warning("renku-notebooks: refreshing %s's GitLab token failed: %s", user.name, type(e).__name__)
                else:
                    if token:
                        return token
                    if for_start:
                        # fresh_gitlab_token's None: no token, or refused and not refreshable.
                        raise SpawnRefused(
                            "GitLab refused your access token and it could not be refreshed: "
                            "log out and log in again."
                        )
            # No refresher, or it could not refresh: what auth_state holds.
            return gitlab_token(await user.get_auth_state())

    # -- the Secret through the Kubernetes API (KubeSpawner's self.api, kubernetes_asyncio)

    def _renku_secret_manifest(self, token: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/part-of": "renku-notebooks", "app.kubernetes.io/component": "git-credentials"}
        user_label = escape_username(self.user.name)
        if is_label_value(user_label):
            labels["renku.io/username"] = user_label
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self._renku_secret_name,
                "labels": labels,
                "annotations": {"hub.jupyter.org/username": self.user.name, "hub.jupyter.org/servername": self.name or ""},
            },
            "type": "Opaque",
            "data": {TOKEN_KEY: _b64(token)},
        }

    async def _renku_create_secret(self, token: str) -> None:
        body = self._renku_secret_manifest(token)
        try:
            await self.api.create_namespaced_secret(namespace=self.namespace, body=body)
        except Exception as e:
            if _status(e) != 409:
                # Said in words: this is what the progress stream shows.
                raise RuntimeError(
                    f"The hub could not create the Secret {self._renku_secret_name} for the GitLab token "
                    f"in namespace {self.namespace} (Kubernetes answered {_status(e) or type(e).__name__})."
                ) from e
            # Left by a server the hub lost track of, maybe owned by its old pod
            # (whose deletion would take it along): start afresh.
            await self._renku_delete_secret()
            await self.api.create_namespaced_secret(namespace=self.namespace, body=body)

    async def _renku_read_token(self) -> str | None:
        """The token in the Secret; None when there is no Secret (a server from before autosave)."""
        try:
            secret = await self.api.read_namespaced_secret(name=self._renku_secret_name, namespace=self.namespace)
        except Exception as e:
            if _status(e) == 404:
                return None
            raise
        data = secret.get("data") if isinstance(secret, dict) else getattr(secret, "data", None)
        encoded = (data or {}).get(TOKEN_KEY)
        return base64.b64decode(encoded).decode("utf-8") if encoded else ""

    async def _renku_write_token(self, token: str) -> None:
        name = self._renku_secret_name
        try:
            await self.api.patch_namespaced_secret(
                name=name, namespace=self.namespace, body={"data": {TOKEN_KEY: _b64(token)}}
            )
        except Exception as e:
            if _status(e) != 403:
                raise
            # z2jh's hub Role may lack `patch` on Secrets: re-create it instead.
            self.log.warning("renku-notebooks: may not patch Secret %s, re-creating it (grant the hub patch)", name)
            await self._renku_delete_secret()
            await self.api.create_namespaced_secret(namespace=self.namespace, body=self._renku_secret_manifest(token))

    async def _renku_pod_uid(self, start_id: str | None = None) -> str | None:
        """The uid of this server's pod (made by the start ``start_id``, if given), unless
        there is none or it is being deleted."""
        try:
            pod = await self.api.read_namespaced_pod(name=self.pod_name, namespace=self.namespace)
        except Exception as e:
            if _status(e) == 404:
                return None
            raise
        metadata = pod.get("metadata") if isinstance(pod, dict) else getattr(pod, "metadata", None)
        field = (lambda name: metadata.get(name)) if isinstance(metadata, dict) else (lambda name: getattr(metadata, name, None))
        # A conflicting pod of the same name that KubeSpawner is deleting: its deletion would take the Secret.
        if metadata is None or field("deletion_timestamp") or field("deletionTimestamp"):
            return None
        if start_id is not None and (field("annotations") or {}).get(START_ANNOTATION) != start_id:
            return None
        return field("uid")

    async def _renku_own_secret_once_the_pod_exists(self, start_id: str) -> None:
        """Runs beside the start: the Secret is ownerless only until the pod is created,
        not for the whole start (a hub dying meanwhile would leave it)."""
        while True:
            try:
                uid = await self._renku_pod_uid(start_id)
            except Exception:  # noqa: BLE001 - tried again; start() owns it at the end anyway
                uid = None
            if uid:
                await self._renku_own_secret(uid)
                return
            await asyncio.sleep(0.5)

    async def _renku_own_secret(self, uid: str | None = None) -> None:
        """Makes the pod the Secret's owner, so Kubernetes deletes it with the pod."""
        uid = uid or await self._renku_pod_uid()
        if not uid:
            return
        owner = {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": uid}
        try:
            await self.api.patch_namespaced_secret(
                name=self._renku_secret_name,
                namespace=self.namespace,
                body={"metadata": {"ownerReferences": [owner]}},
            )
        except Exception as e:  # noqa: BLE001 - stop() still deletes it
            self.log.warning(
                "renku-notebooks: Secret %s not owned by its pod (status %s); stop() deletes it",
                self._renku_secret_name,
                _status(e),
            )

    async def _renku_delete_secret_quietly(self) -> None:
        try:
            await self._renku_delete_secret()
        except Exception as e:  # noqa: BLE001 - owned by the pod, if there is one
            self.log.warning("renku-notebooks: deleting Secret %s failed: %s", self._renku_secret_name, e)

    async def _renku_delete_secret(self) -> None:
        try:
            await self.api.delete_namespaced_secret(name=self._renku_secret_name, namespace=self.namespace)
        except Exception as e:
            if _status(e) != 404:
                raise

    async def _renku_sync_token(self) -> bool:
        """Writes a fresh token into the Secret when it differs; True when it did."""
        current = await self._renku_read_token()
        if current is None:
            return False
        token = await self._renku_current_token()
        if token == current:
            return False
        await self._renku_write_token(token)
        self.log.info("renku-notebooks: updated the GitLab token Secret of %s", self._log_name_safe)
        return True

    @property
    def _log_name_safe(self) -> str:
        return f"{self.user.name}:{self.name}" if self.name else self.user.name

    # -- the spawner's life

    async def start(self):
        self._renku_starting = True
        owner = None
        try:
            token = getattr(self, "_renku_token", None) or await self._renku_current_token(for_start=True)
            self._renku_token = None
            await self._renku_create_secret(token)
            start_id = secrets.token_hex(8)
            self.extra_annotations = {**(self.extra_annotations or {}), START_ANNOTATION: start_id}
            owner = asyncio.ensure_future(self._renku_own_secret_once_the_pod_exists(start_id))
            try:
                url = await maybe_await(super().start())
            except BaseException:
                # No token may outlive a server that failed to start (a pod Kubernetes refused,
                # say, for a quota): KubeSpawner's poll() then says it is not running, so
                # JupyterHub never calls stop().
                await self._renku_delete_secret_quietly()
                raise
        finally:
            self._renku_starting = False
            if owner is not None and not owner.done():
                owner.cancel()
        self._renku_last_sync = time.monotonic()
        await self._renku_own_secret()
        return url

    async def poll(self):
        status = await super().poll()
        settings = self._renku_settings
        if not self._renku_last_sync:
            # First poll after the hub started: spread the servers' checks over the interval.
            self._renku_last_sync = time.monotonic() - random.uniform(0, settings.token_sync_seconds)
        if (
            status is None
            and not self._renku_starting
            and (self._renku_sync_task is None or self._renku_sync_task.done())
            and time.monotonic() - self._renku_last_sync >= settings.token_sync_seconds
        ):
            # In the background: the hub's poll must stay quick.
            self._renku_last_sync = time.monotonic()
            self._renku_sync_task = asyncio.ensure_future(self._renku_sync_quietly())
        return status

    async def _renku_sync_quietly(self) -> bool:
        try:
            return await asyncio.wait_for(self._renku_sync_token(), self._renku_settings.refresh_timeout_seconds * 2)
        except Exception as e:  # noqa: BLE001 - tried again at the next poll
            self.log.warning("renku-notebooks: keeping %s's token Secret fresh failed: %s", self._log_name_safe, e)
            return False

    async def stop(self, now=False):
        if now and self._renku_starting:
            # KubeSpawner clearing a conflicting or failed pod while starting.
            return await super().stop(now)
        settings = self._renku_settings
        task = self._renku_sync_task
        if task is not None and not task.done():
            await asyncio.wait([task])
        # Graceful even when KubeSpawner asks for `now` (a notebook that exited by
        # itself): the sidecar's preStop save needs the grace period.
        self.delete_grace_period = max(int(self.delete_grace_period or 0), settings.termination_grace_seconds)
        if await self._renku_sync_quietly() and settings.secret_propagation_seconds > 0:
            self.log.info(
                "renku-notebooks: waiting %gs for the kubelet to update %s's token before stopping",
                settings.secret_propagation_seconds,
                self._log_name_safe,
            )
            await asyncio.sleep(settings.secret_propagation_seconds)
        try:
            return await super().stop(False)
        finally:
            # The pod is gone (KubeSpawner waits for that): its token goes too.
            try:
                await self._renku_delete_secret()
            except Exception as e:  # noqa: BLE001 - the pod owns it: Kubernetes deletes it anyway
                self.log.warning("renku-notebooks: deleting Secret %s failed: %s", self._renku_secret_name, e)


def make_spawner_class(base: type, settings: Settings, fresh_gitlab_token: Any = None, *mixins: type) -> type:
    """``base`` (KubeSpawner or a subclass) with the token Secret's life and ``mixins`` added."""
    return type(
        "RenkuKubeSpawner",
        (*mixins, RenkuSpawnerMixin, base),
        {
            "_renku_settings": settings,
            "_renku_fresh_gitlab_token": staticmethod(fresh_gitlab_token) if fresh_gitlab_token else None,
            "__module__": __name__,
        },
    )
