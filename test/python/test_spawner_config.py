"""Tests of chart/files/spawner_config.py and its modules against a stand-in KubeSpawner (no hub, no cluster).

The stand-in is built on JupyterHub's own ``Spawner`` with KubeSpawner 7.0.0's traits
(types and defaults as KubeSpawner declares them: ``uid``/``gid`` integer or callable,
``delete_grace_period`` 1, ``volumes`` and containers as list or dict...), loaded with a
traitlets ``Config`` shaped as Zero to JupyterHub 4 writes it (``uid`` 1000, ``gid`` None,
``fs_gid`` 100, a ``V1Container`` in ``init_containers``). Its ``start``/``stop``/``poll``
do what KubeSpawner's do with the Kubernetes API: build the pod the way ``get_pod_manifest``
does (template expansion included), create it, delete it with the grace period and wait
for it to go. The Kubernetes API is a stand-in with kubernetes_asyncio's method
signatures. ``fresh_gitlab_token`` is a test double of contract 4 (``gitlab_token.py``).

Run: /usr/bin/python3 -m unittest discover -s test/python -v
"""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import types
import unittest
from pathlib import Path
from typing import Any

from jupyterhub.spawner import Spawner
from jupyterhub.traitlets import Callable
from tornado.web import HTTPError
from traitlets import Bool, Dict, Integer, List, Unicode, Union
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
CHART_FILES = ROOT / "chart" / "files"
CONFIG_FILE = CHART_FILES / "spawner_config.py"
SERVER_OPTIONS_FILE = ROOT / "config" / "server-options.json"
# As the hub's extraConfig does: the modules beside spawner_config.py are importable.
if str(CHART_FILES) not in sys.path:
    sys.path.insert(0, str(CHART_FILES))

import renku_autosave  # noqa: E402
import renku_clone  # noqa: E402
import renku_containers  # noqa: E402
import renku_hooks  # noqa: E402
import renku_options  # noqa: E402
import renku_pod  # noqa: E402
import renku_secret  # noqa: E402
import renku_settings  # noqa: E402
import renku_volume  # noqa: E402


def load_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("renku_spawner_config", CONFIG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sc = load_module()

TOKEN = "glpat-very-secret-token-0123456789"
SHA = "0123456789ABCDEF0123456789abcdef01234567"
NAMESPACE = "jhub"
AUTOSAVE = "renku/autosave/alice/master/0123456/89abcde"


# --------------------------------------------------------------------------- Kubernetes stand-in


class ApiException(Exception):
    """kubernetes_asyncio.client.rest.ApiException: what callers read is `status`."""

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status = status


class V1Secret:
    def __init__(self, manifest: dict[str, Any]) -> None:
        self.metadata = types.SimpleNamespace(**manifest["metadata"])
        self.data = manifest.get("data")


class V1Container:
    """The shape of a kubernetes client model, as z2jh puts in init_containers."""

    attribute_map = {"name": "name", "image": "image", "command": "command", "security_context": "securityContext"}

    def __init__(self, name: str, image: str, command: list[str], security_context: dict[str, Any]) -> None:
        self.name = name
        self.image = image
        self.command = command
        self.security_context = security_context

    def __eq__(self, other: Any) -> bool:
        # Like the client's models: equal when their fields are.
        return isinstance(other, V1Container) and vars(self) == vars(other)


def serialize(obj: Any) -> Any:
    """kubernetes_asyncio's ApiClient.sanitize_for_serialization, for what tests build."""
    if isinstance(obj, V1Container):
        return {obj.attribute_map[k]: serialize(getattr(obj, k)) for k in obj.attribute_map}
    if isinstance(obj, dict):
        return {k: serialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [serialize(v) for v in obj]
    return obj


# KubeSpawner's make_pod turns container dicts and extra_pod_config into V1Container and
# V1PodSpec models (get_k8s_model / update_k8s_model), refusing keys the models lack.
CONTAINER_FIELDS = {
    "args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
    "ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "securityContext", "startupProbe",
    "stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty", "volumeDevices",
    "volumeMounts", "workingDir",
}
POD_SPEC_FIELDS = {
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers",
    "hostname", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector", "os", "overhead",
    "preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims", "restartPolicy",
    "runtimeClassName", "schedulerName", "schedulingGates", "securityContext", "serviceAccount",
    "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
    "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
    "termination_grace_period_seconds", "priority_class_name",  # snake_case is accepted too
}


def check_model_keys(spec: dict[str, Any]) -> None:
    assert set(spec) <= POD_SPEC_FIELDS, set(spec) - POD_SPEC_FIELDS
    for c in spec["initContainers"] + spec["containers"]:
        if isinstance(c, dict):
            assert set(c) <= CONTAINER_FIELDS, set(c) - CONTAINER_FIELDS


class CoreV1Api:
    """The calls the spawner makes, with kubernetes_asyncio's parameter names and errors."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, float]] = []
        self.forbid_patch = False
        # A ResourceQuota the pod exceeds: Kubernetes answers 403 to its creation.
        self.quota_exceeded = False
        self.running = asyncio.Event()
        self.running.set()
        self._uids = 0

    def _record(self, what: str, name: str) -> None:
        self.calls.append((what, name, time.monotonic()))

    def ops(self) -> list[tuple[str, str]]:
        return [(what, name) for what, name, _ in self.calls]

    async def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> Any:
        assert namespace == NAMESPACE
        name = body["metadata"]["name"]
        if self.quota_exceeded:
            self._record("refuse pod", name)
            raise ApiException(403, "Forbidden: exceeded quota")
        if name in self.pods:
            raise ApiException(409, "AlreadyExists")
        # What the API server does with it: JSON.
        pod = json.loads(json.dumps(serialize(body)))
        self._uids += 1
        pod["metadata"]["uid"] = f"pod-uid-{self._uids}"
        self.pods[name] = pod
        self._record("create pod", name)
        return pod

    async def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        if name not in self.pods:
            raise ApiException(404, "NotFound")
        return copy.deepcopy(self.pods[name])

    async def delete_namespaced_pod(self, name: str, namespace: str, body: Any = None, grace_period_seconds: Any = None) -> Any:
        self._record(f"delete pod grace={grace_period_seconds}", name)
        if self.pods.pop(name, None) is None:
            raise ApiException(404, "NotFound")
        # Owner references: the garbage collector deletes what the pod owned.
        for secret_name, secret in list(self.secrets.items()):
            owners = secret["metadata"].get("ownerReferences") or []
            if any(o["kind"] == "Pod" and o["name"] == name for o in owners):
                del self.secrets[secret_name]
                self._record("garbage-collect secret", secret_name)

    async def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> Any:
        assert namespace == NAMESPACE
        name = body["metadata"]["name"]
        self._record("create secret", name)
        if name in self.secrets:
            raise ApiException(409, "AlreadyExists")
        self.secrets[name] = json.loads(json.dumps(body))
        return V1Secret(self.secrets[name])

    async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self._record("read secret", name)
        if name not in self.secrets:
            raise ApiException(404, "NotFound")
        return V1Secret(self.secrets[name])

    async def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        # A dict body is sent as a strategic merge patch.
        self._record("patch secret", name)
        if self.forbid_patch:
            raise ApiException(403, "Forbidden")
        if name not in self.secrets:
            raise ApiException(404, "NotFound")
        secret = self.secrets[name]
        secret.setdefault("data", {}).update(body.get("data", {}))
        owners = body.get("metadata", {}).get("ownerReferences")
        if owners:
            known = secret["metadata"].setdefault("ownerReferences", [])
            known.extend(o for o in owners if o["uid"] not in {k["uid"] for k in known})
        return V1Secret(secret)

    async def delete_namespaced_secret(self, name: str, namespace: str) -> Any:
        self._record("delete secret", name)
        if self.secrets.pop(name, None) is None:
            raise ApiException(404, "NotFound")

    async def create_namespaced_persistent_volume_claim(self, namespace: str, body: dict[str, Any]) -> Any:
        assert namespace == NAMESPACE
        name = body["metadata"]["name"]
        if name in self.claims:
            self._record("claim exists", name)
            raise ApiException(409, "AlreadyExists")
        self._record("create claim", name)
        self.claims[name] = json.loads(json.dumps(body))
        return self.claims[name]

    async def read_namespaced_persistent_volume_claim(self, name: str, namespace: str) -> Any:
        if name not in self.claims:
            raise ApiException(404, "NotFound")
        return copy.deepcopy(self.claims[name])

    async def delete_namespaced_persistent_volume_claim(self, name: str, namespace: str) -> Any:
        self._record("delete claim", name)
        if self.claims.pop(name, None) is None:
            raise ApiException(404, "NotFound")

    def token_in_secret(self, name: str) -> str:
        return base64.b64decode(self.secrets[name]["data"]["token"]).decode()


# --------------------------------------------------------------------------- KubeSpawner stand-in


class KubeSpawner(Spawner):
    """KubeSpawner 7.0.0's traits the config touches, and its start/stop/poll against the API."""

    namespace = Unicode(NAMESPACE, config=True)
    image = Unicode("quay.io/jupyterhub/singleuser:latest", config=True)
    uid = Union([Integer(), Callable()], default_value=None, allow_none=True, config=True)
    gid = Union([Integer(), Callable()], default_value=None, allow_none=True, config=True)
    fs_gid = Union([Integer(), Callable()], default_value=None, allow_none=True, config=True)
    volumes = Union([List(), Dict()], config=True)
    volume_mounts = Union([List(), Dict()], config=True)
    init_containers = Union([List(), Dict()], config=True)
    extra_containers = Union([List(), Dict()], config=True)
    extra_pod_config = Dict(config=True)
    extra_container_config = Dict(config=True)
    lifecycle_hooks = Dict(config=True)
    extra_labels = Dict(config=True)
    extra_annotations = Dict(config=True)
    extra_resource_guarantees = Dict(config=True)
    extra_resource_limits = Dict(config=True)
    working_dir = Unicode(None, allow_none=True, config=True)
    delete_grace_period = Integer(1, config=True)
    # Its PVC support (kubespawner/spawner.py, 7.0.0).
    storage_pvc_ensure = Bool(False, config=True)
    delete_pvc = Bool(True, config=True)
    pvc_name_template = Unicode("claim-{user_server}", config=True)
    storage_capacity = Unicode(None, config=True, allow_none=True)
    storage_extra_annotations = Dict(config=True)
    storage_extra_labels = Dict(config=True)
    storage_class = Unicode(None, config=True, allow_none=True)
    storage_access_modes = List(["ReadWriteOnce"], config=True)
    storage_selector = Dict(config=True)
    # JupyterHub 5.3's Spawner trait (absent from the 3.0 installed here).
    apply_user_options = Union([Callable(), Dict()], default_value=None, allow_none=True, config=True)

    def __init__(self, *args: Any, api: CoreV1Api | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pod_name = f"jupyter-{self.user.name}--{self.name}"
        # As KubeSpawner's __init__: named once, from the configured template.
        self.pvc_name = self._expand(self.pvc_name_template)
        self.api = api or CoreV1Api()
        self.pod_id = None
        self._start_future = None
        self.manifests: list[dict[str, Any]] = []

    def _expand(self, value: Any) -> Any:
        # KubeSpawner's _expand_all: str.format on every string, models left alone.
        if isinstance(value, list):
            return [self._expand(v) for v in value]
        if isinstance(value, dict):
            return {k: self._expand(v) for k, v in value.items()}
        if isinstance(value, str):
            return value.format(
                username=self.user.name, servername=self.name, user_server=f"{self.user.name}--{self.name}",
                unescaped_username=self.user.name, pod_name=self.pod_name, namespace=self.namespace,
                pvc_name=getattr(self, "pvc_name", "pvc_name_unavailable!"),
            )
        return value

    @staticmethod
    def _values(value: Any) -> Any:
        return [value[k] for k in sorted(value)] if isinstance(value, dict) else value

    async def get_pod_manifest(self) -> dict[str, Any]:
        async def resolve(v: Any) -> Any:
            return await renku_secret.maybe_await(v(self)) if callable(v) else v

        uid, gid, fs_gid = await resolve(self.uid), await resolve(self.gid), await resolve(self.fs_gid)
        env = self.get_env()
        env.update(self._expand(dict(self.environment)))
        security = {"runAsUser": uid, "runAsGroup": gid, "allowPrivilegeEscalation": False}
        notebook = {
            "name": "notebook",
            "image": self.image,
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "volumeMounts": self._expand(self._values(self.volume_mounts)),
            "securityContext": {k: v for k, v in security.items() if v is not None},
            "workingDir": self.working_dir,
            "lifecycle": self.lifecycle_hooks or None,
            "resources": {"limits": {"cpu": self.cpu_limit, "memory": self.mem_limit, **self.extra_resource_limits}},
        }
        notebook.update(self.extra_container_config)
        spec = {
            "securityContext": {"fsGroup": fs_gid},
            "initContainers": self._expand(self._values(self.init_containers)),
            "containers": [notebook] + self._expand(self._values(self.extra_containers)),
            "volumes": self._expand(self._values(self.volumes)),
        }
        spec.update(self._expand(self.extra_pod_config))
        check_model_keys(spec)
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod_name,
                "labels": {"component": "singleuser-server", **self._expand(self.extra_labels)},
                "annotations": {"hub.jupyter.org/username": self.user.name, **self._expand(self.extra_annotations)},
            },
            "spec": spec,
        }

    def get_pvc_manifest(self) -> dict[str, Any]:
        # KubeSpawner's: its common labels and annotations under the configured extra ones.
        labels = {"hub.jupyter.org/username": self.user.name, **self._expand(self.storage_extra_labels)}
        labels.update({"app.kubernetes.io/component": "singleuser-server", "component": "singleuser-storage"})
        annotations = {"hub.jupyter.org/username": self.user.name}
        if self.name:
            annotations["hub.jupyter.org/servername"] = self.name
        annotations.update(self._expand(self.storage_extra_annotations))
        spec: dict[str, Any] = {
            "accessModes": self.storage_access_modes,
            "resources": {"requests": {"storage": self.storage_capacity}},
        }
        if self.storage_class is not None:
            spec["storageClassName"] = self.storage_class
        selector = self._expand(self.storage_selector)
        if selector:
            spec["selector"] = selector
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": self.pvc_name, "labels": labels, "annotations": annotations},
            "spec": spec,
        }

    def start(self) -> Any:
        self._start_future = asyncio.ensure_future(self._start())
        return self._start_future

    async def _start(self) -> str:
        if self.storage_pvc_ensure:
            # A claim that exists (409) is kept as it is: its labels and size are the first start's.
            try:
                await self.api.create_namespaced_persistent_volume_claim(self.namespace, self.get_pvc_manifest())
            except ApiException as e:
                if e.status != 409:
                    raise
        pod = await self.get_pod_manifest()
        self.manifests.append(pod)
        try:
            created = await self.api.create_namespaced_pod(self.namespace, pod)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.stop(True)
            created = await self.api.create_namespaced_pod(self.namespace, pod)
        self.pod_id = created["metadata"]["uid"]
        # Until the pod runs (image pull, clone): a test may hold the start here.
        await self.api.running.wait()
        return f"http://10.0.0.1:8888"

    async def stop(self, now: bool = False) -> None:
        grace = 0 if now else self.delete_grace_period
        try:
            await self.api.delete_namespaced_pod(
                name=self.pod_name, namespace=self.namespace, body={"gracePeriodSeconds": grace}, grace_period_seconds=grace
            )
        except ApiException as e:
            if e.status != 404:
                raise

    async def poll(self) -> Any:
        return None if self.pod_name in self.api.pods else 1

    async def delete_forever(self) -> None:
        # What JupyterHub calls when a named server is removed (the culler removes them).
        if not self.delete_pvc:
            return
        try:
            await self.api.delete_namespaced_persistent_volume_claim(name=self.pvc_name, namespace=self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise


# --------------------------------------------------------------------------- hub stand-ins


class FakeUser:
    def __init__(self, name: str = "alice", auth_state: Any = None) -> None:
        self.name = name
        self.url = f"/user/{name}/"
        self._auth_state = {"access_token": TOKEN, "refresh_token": "refresh-1"} if auth_state is None else auth_state

    async def get_auth_state(self) -> Any:
        return copy.deepcopy(self._auth_state)

    async def save_auth_state(self, auth_state: Any) -> None:
        self._auth_state = copy.deepcopy(auth_state)


class FakeGitLab:
    """A double of gitlab_token.fresh_gitlab_token (contract 4) over an in-memory GitLab.

    Access tokens in `valid` work; a refresh token works once and returns a new pair.
    """

    def __init__(self) -> None:
        self.valid = {TOKEN}
        self.refresh_tokens = {"refresh-1"}
        self.down = False
        self.checks = 0
        self.grants = 0
        self.refused_grants = 0

    def expire(self, token: str = TOKEN) -> None:
        self.valid.discard(token)

    async def fresh_gitlab_token(self, user: Any, gitlab_url: str, client_id: str, client_secret: str, log: Any = None) -> str | None:
        assert (gitlab_url, client_id, client_secret) == ("https://gitlab.example.com", "app-id", "app-secret")
        state = await user.get_auth_state()
        if not state or not state.get("access_token"):
            return None
        self.checks += 1
        await asyncio.sleep(0.01)  # the real one waits on GitLab in a thread
        if self.down:
            # As gitlab_token.py: what it is used for then fails with GitLab's own reason.
            if log:
                log.warning("Cannot check the GitLab token: GitLab is unreachable")
            return state["access_token"]
        if state["access_token"] in self.valid:
            return state["access_token"]
        if state.get("refresh_token") not in self.refresh_tokens:
            self.refused_grants += 1
            if log:
                log.warning("GitLab token refresh failed: invalid_grant")
            return None
        self.refresh_tokens.discard(state["refresh_token"])
        self.grants += 1
        new, new_refresh = f"gl-oauth-fresh-{self.grants}", f"refresh-{self.grants + 1}"
        self.valid.add(new)
        self.refresh_tokens.add(new_refresh)
        await user.save_auth_state({**state, "access_token": new, "refresh_token": new_refresh})
        return new


AUTHENTICATOR = types.SimpleNamespace(gitlab_url="https://gitlab.example.com", client_id="app-id", client_secret="app-secret")
BLOCK_METADATA = V1Container(
    "block-cloud-metadata", "quay.io/jupyterhub/k8s-network-tools:4.2.0", ["iptables", "-A", "OUTPUT"], {"runAsUser": 0}
)


def z2jh_config() -> Config:
    """What Zero to JupyterHub 4's jupyterhub_config.py leaves in `c` before hub.extraConfig."""
    c = Config()
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    c.KubeSpawner.uid = 1000
    c.KubeSpawner.fs_gid = 100
    c.KubeSpawner.image = "jupyterhub/k8s-singleuser-sample:4.0.0"
    c.KubeSpawner.init_containers = [BLOCK_METADATA]
    c.KubeSpawner.volumes = [{"name": "shared", "emptyDir": {}}]
    c.KubeSpawner.volume_mounts = [{"name": "shared", "mountPath": "/shared"}]
    c.KubeSpawner.extra_labels = {"team": "data"}
    c.KubeSpawner.environment = {"EXISTING": "1"}
    return c


SETTINGS = renku_settings.Settings(server_options=copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS), secret_propagation_seconds=0)


class Hub:
    """One hub: the config as the hub loads it, its spawner class, its users' spawners.

    By default JupyterHub 5.3's (production's, z2jh 4.2): the stand-in KubeSpawner
    declares ``apply_user_options`` and ``spawn`` calls it before ``pre_spawn_hook``.
    ``jupyterhub_3`` is the Debian hub these tests run in: no ``apply_user_options``.
    ``test_spawner_config_jupyterhub3.py`` runs every test that way too.
    """

    # Set by test_spawner_config_jupyterhub3.py for the whole suite.
    default_jupyterhub_3 = False

    def __init__(
        self,
        settings: Any = SETTINGS,
        c: Config | None = None,
        gitlab: FakeGitLab | None = None,
        jupyterhub_3: bool | None = None,
        refresher: bool = True,
    ) -> None:
        self.c = c or z2jh_config()
        self.gitlab = gitlab or FakeGitLab()
        self.api = CoreV1Api()
        self.jupyterhub_3 = Hub.default_jupyterhub_3 if jupyterhub_3 is None else jupyterhub_3
        self.unhandled_user_options = 0
        renku_hooks.configure(
            self.c,
            settings,
            spawner_base=KubeSpawner,
            fresh_gitlab_token=self.gitlab.fresh_gitlab_token if refresher else None,
            # KubeSpawner here is 5.3-shaped: say so when this hub is a 3.x.
            apply_user_options=False if self.jupyterhub_3 else None,
        )
        self.spawner_class = self.c.JupyterHub.spawner_class
        self.users: dict[str, FakeUser] = {}

    def spawner(self, user: str = "alice", server: str = "my-project-1a2b3c4d", auth_state: Any = None) -> Any:
        if user not in self.users or auth_state is not None:
            self.users[user] = FakeUser(user, auth_state)
        return self.spawner_class(
            config=self.c,
            user=self.users[user],
            orm_spawner=types.SimpleNamespace(name=server, server=None),
            authenticator=AUTHENTICATOR,
            hub=types.SimpleNamespace(api_url="http://hub:8081/hub/api", base_url="/hub/", public_host=""),
            log=logging.getLogger("test-spawner"),
            api=self.api,
        )

    async def spawn(self, spawner: Any, options: Any) -> Any:
        """What User.spawn does: apply_user_options (5.3+), pre_spawn_hook, start."""
        spawner.user_options = options
        if not self.jupyterhub_3:
            # JupyterHub 5.3's Spawner._run_apply_user_options.
            hook = spawner.apply_user_options
            if callable(hook):
                await renku_secret.maybe_await(hook(spawner, options))
            elif options:
                self.unhandled_user_options += 1
        await renku_secret.maybe_await(spawner.run_pre_spawn_hook())
        await spawner.start()
        return spawner


# How the hub hears a refused launch: a SpawnRefused from pre_spawn_hook (3.x), an
# HTTPError 400 carrying the same sentence from apply_user_options (5.3).
REFUSED = (renku_options.SpawnRefused, HTTPError)


def refusal(error: BaseException) -> str:
    """The sentence a person sees: JupyterHub shows `jupyterhub_message` in the progress stream."""
    message = getattr(error, "jupyterhub_message", None)
    assert isinstance(message, str), f"{error!r} carries no message for the user"
    return message


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def user_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "namespace": "group/sub",
        "project": "my-project",
        "branch": "master",
        "commit_sha": SHA,
        "project_id": 42,
        "notebook": None,
        "image": "registry.example.com/group/sub/my-project:0123456",
        "default_image_used": False,
        "repository": "https://gitlab.example.com/group/sub/my-project.git",
        "server_options": {},
    }
    options.update(overrides)
    return {k: v for k, v in options.items() if v is not ...}


def spawn(options: Any, settings: Any = SETTINGS, spawner: Any = None, hub: Hub | None = None) -> Any:
    hub = hub or Hub(settings)
    spawner = spawner or hub.spawner()
    return run(hub.spawn(spawner, options))


def env_of(container: Any) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def pod_of(spawner: Any) -> dict[str, Any]:
    return spawner.api.pods[spawner.pod_name]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    return next(c for c in spec["containers"] + spec["initContainers"] if c["name"] == name)


def ours(spawner: Any, name: str = renku_clone.INIT_CONTAINER) -> dict[str, Any]:
    items = spawner.init_containers if name == renku_clone.INIT_CONTAINER else spawner.extra_containers
    items = list(items.values()) if isinstance(items, dict) else items
    return next(i for i in items if isinstance(i, dict) and i["name"] == name)


class DefaultsTest(unittest.TestCase):
    def test_bundled_options_match_the_built_in_defaults(self) -> None:
        # The hub falls back to the built-in table; it must equal the service's bundled file.
        with open(SERVER_OPTIONS_FILE, encoding="utf-8") as f:
            self.assertEqual(json.load(f), renku_options.DEFAULT_SERVER_OPTIONS)

    def test_missing_server_options_take_defaults(self) -> None:
        s = spawn(user_options(server_options=...))
        self.assertEqual(s.cpu_guarantee, 0.5)
        self.assertEqual(s.cpu_limit, 0.5)
        self.assertEqual(s.mem_guarantee, 1_000_000_000)
        self.assertEqual(s.mem_limit, 1_000_000_000)
        self.assertNotIn("nvidia.com/gpu", s.extra_resource_limits)
        self.assertEqual(s.default_url, "/lab")
        work = next(v for v in s.volumes if v["name"] == renku_containers.WORK_VOLUME)
        self.assertEqual(work, {"name": renku_containers.WORK_VOLUME, "emptyDir": {"sizeLimit": "1G"}})
        self.assertEqual(env_of(ours(s))["GIT_LFS_AUTO_FETCH"], "false")

    def test_partial_server_options_fill_the_rest(self) -> None:
        s = spawn(user_options(server_options={"mem_request": "2G"}))
        self.assertEqual(s.mem_guarantee, 2_000_000_000)
        self.assertEqual(s.cpu_guarantee, 0.5)

    def test_settings_from_env(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "options.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"cpu_request": {"displayName": "CPUs", "type": "float", "default": 1}}, f)
            resources = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
            with open(os.path.join(tmp, "hub-settings.json"), "w", encoding="utf-8") as f:
                json.dump({"autosaveTimeoutSeconds": 100, "gitContainerResources": resources}, f)
            settings = renku_settings.Settings.from_env(
                {
                    "RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path,
                    "RENKU_NOTEBOOKS_WORK_DIR": "/home/jovyan/work/",
                    "RENKU_NOTEBOOKS_GIT_IMAGE": "alpine/git:2.47.2",
                    "RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP": "other-files",
                    "RENKU_NOTEBOOKS_HUB_FILES_DIR": tmp,
                    "RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS": "600",
                    "RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS": "0",
                }
            )
            self.assertEqual(list(settings.server_options), ["cpu_request"])
            self.assertEqual(settings.work_dir, "/home/jovyan/work")
            self.assertEqual(settings.hub_files_dir, tmp)
            self.assertEqual((settings.autosave_timeout, settings.termination_grace_seconds), (100, 115))
            self.assertEqual(settings.git_container_resources, resources)
            self.assertEqual((settings.token_sync_seconds, settings.secret_propagation_seconds), (600, 0))
            missing = renku_settings.Settings.from_env(
                {
                    "RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": os.path.join(tmp, "nope.json"),
                    "RENKU_NOTEBOOKS_HUB_SETTINGS_PATH": os.path.join(tmp, "nope.json"),
                }
            )
            self.assertEqual(missing.server_options, renku_options.DEFAULT_SERVER_OPTIONS)
            self.assertEqual((missing.autosave_timeout, missing.termination_grace_seconds), (45, 60))
            self.assertEqual(missing.git_container_resources, renku_settings.DEFAULT_GIT_CONTAINER_RESOURCES)
            for name, bad in (
                ("RENKU_NOTEBOOKS_AUTOSAVE_TIMEOUT", "100"),  # the chart's values decide it now
                ("RENKU_NOTEBOOKS_TOKEN_SYNC_SECONDS", "5m"),
                ("RENKU_NOTEBOOKS_SECRET_PROPAGATION_SECONDS", "nan"),
            ):
                with self.subTest(name=name), self.assertRaises(ValueError) as caught:
                    renku_settings.Settings.from_env({"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path, name: bad})
                self.assertIn(name, str(caught.exception))
            for bad_settings in ({"autosaveTimeoutSeconds": "45"}, {"autosaveTimeoutSeconds": 0}, [45]):
                with self.subTest(hub_settings=bad_settings), self.assertRaises(ValueError):
                    bad = os.path.join(tmp, "bad-settings.json")
                    with open(bad, "w", encoding="utf-8") as f:
                        json.dump(bad_settings, f)
                    renku_settings.Settings.from_env(
                        {"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path, "RENKU_NOTEBOOKS_HUB_SETTINGS_PATH": bad}
                    )
            with open(path, "w", encoding="utf-8") as f:
                f.write("[1, 2]")
            with self.assertRaises(ValueError):
                renku_settings.Settings.from_env({"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path})

        s = spawn(user_options(server_options={"cpu_request": 2.5}), settings=settings)
        self.assertEqual(s.cpu_guarantee, 2.5)
        self.assertEqual(s.working_dir, "/home/jovyan/work/my-project")
        self.assertEqual(ours(s)["image"], "alpine/git:2.47.2")
        self.assertEqual(ours(s, renku_autosave.SIDECAR)["image"], "alpine/git:2.47.2")
        self.assertEqual(env_of(ours(s, renku_autosave.SIDECAR))["AUTOSAVE_TIMEOUT"], "100")
        self.assertEqual(s.delete_grace_period, 115)
        for name in (renku_clone.INIT_CONTAINER, renku_autosave.SIDECAR):
            self.assertEqual(container(pod_of(s), name)["resources"], resources, name)
        script = next(v for v in s.volumes if v["name"] == renku_containers.SCRIPT_VOLUME)
        self.assertEqual(script["configMap"]["name"], "other-files")


class ChartValuesTest(unittest.TestCase):
    def test_the_python_defaults_are_the_charts(self) -> None:
        # A hub without hub-settings.json (and the local stack) uses the chart's defaults.
        import yaml

        values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text(encoding="utf-8"))
        git = values["gitContainers"]
        self.assertEqual(git["autosaveTimeoutSeconds"], renku_settings.DEFAULT_AUTOSAVE_TIMEOUT_SECONDS)
        self.assertEqual(git["resources"], renku_settings.DEFAULT_GIT_CONTAINER_RESOURCES)
        proxy = values["gitProxy"]
        self.assertEqual(proxy["resources"], renku_settings.DEFAULT_GIT_PROXY_RESOURCES)
        self.assertEqual(proxy["port"], renku_settings.DEFAULT_GIT_PROXY_PORT)
        self.assertEqual(proxy["drainIdleSeconds"], renku_settings.DEFAULT_GIT_PROXY_DRAIN_IDLE_SECONDS)

    def test_git_containers_have_limits_by_default(self) -> None:
        # A namespace whose ResourceQuota requires limits refuses every container without them.
        s = spawn(user_options())
        for name in (renku_clone.INIT_CONTAINER, renku_autosave.SIDECAR):
            resources = container(pod_of(s), name)["resources"]
            self.assertEqual(set(resources["limits"]), {"cpu", "memory"}, name)
            self.assertEqual(set(resources["requests"]), {"cpu", "memory"}, name)


class ServerOptionsTest(unittest.TestCase):
    def test_each_option_reaches_the_pod(self) -> None:
        options = copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS)
        options["defaultUrl"]["options"] = ["/lab", "/tree"]
        options["disk_request"]["options"] = ["1G", "10Gi"]
        options["gpu_request"]["options"] = [0, 1, 2]
        settings = renku_settings.Settings(server_options=options)
        s = spawn(
            user_options(
                server_options={
                    "defaultUrl": "/tree",
                    "cpu_request": 1.0,
                    "mem_request": "2G",
                    "disk_request": "10Gi",
                    "gpu_request": 2,
                    "lfs_auto_fetch": True,
                }
            ),
            settings=settings,
        )
        self.assertEqual((s.cpu_guarantee, s.cpu_limit), (1.0, 1.0))
        self.assertEqual((s.mem_guarantee, s.mem_limit), (2_000_000_000, 2_000_000_000))
        self.assertEqual(s.extra_resource_limits, {"nvidia.com/gpu": "2"})
        work = next(v for v in s.volumes if v["name"] == renku_containers.WORK_VOLUME)
        self.assertEqual(work["emptyDir"], {"sizeLimit": "10Gi"})
        self.assertEqual(s.default_url, "/tree")
        self.assertEqual(env_of(ours(s))["GIT_LFS_AUTO_FETCH"], "true")
        self.assertEqual(pod_of(s)["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"], "2")

    def test_gi_is_binary_and_g_decimal(self) -> None:
        self.assertEqual(renku_options.parse_bytes("1G"), 10**9)
        self.assertEqual(renku_options.parse_bytes("1Gi"), 2**30)
        self.assertEqual(renku_options.parse_bytes("512Mi"), 512 * 2**20)
        self.assertEqual(renku_options.parse_cpu("500m"), 0.5)
        for bad in ("1 GB", "-1G", True, "lots"):
            with self.assertRaises(ValueError):
                renku_options.parse_bytes(bad)

    def test_allow_any_value_within_range(self) -> None:
        options = copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS)
        options["mem_request"].update(allow_any_value=True, value_range={"type": "bytes", "min": "1G", "max": "8Gi"})
        options["cpu_request"] = {"displayName": "CPUs", "type": "float", "default": 0.5,
                                  "value_range": {"type": "number", "min": 0.1, "max": 4}}
        settings = renku_settings.Settings(server_options=options)
        s = spawn(user_options(server_options={"mem_request": "3Gi", "cpu_request": 3}), settings=settings)
        self.assertEqual(s.mem_guarantee, 3 * 2**30)
        self.assertEqual(s.cpu_guarantee, 3.0)
        for bad in ({"mem_request": "9Gi"}, {"mem_request": 5}, {"cpu_request": 5}, {"cpu_request": "1"}):
            with self.subTest(bad=bad), self.assertRaises(REFUSED) as caught:
                spawn(user_options(server_options=bad), settings=settings)
            self.assertIn(repr(next(iter(bad))), refusal(caught.exception))

    def test_number_without_options_or_range_is_any_non_negative(self) -> None:
        options = {"gpu_request": {"displayName": "GPUs", "type": "int", "default": 0}}
        settings = renku_settings.Settings(server_options=options)
        s = spawn(user_options(server_options={"gpu_request": 3}), settings=settings)
        self.assertEqual(s.extra_resource_limits, {"nvidia.com/gpu": "3"})
        for bad in (-1, 1.5, True):
            with self.subTest(bad=bad), self.assertRaises(REFUSED):
                spawn(user_options(server_options={"gpu_request": bad}), settings=settings)

    def test_respawn_does_not_accumulate(self) -> None:
        hub = Hub()
        s = hub.spawner()
        run(hub.spawn(s, user_options(server_options={"mem_request": "2G"})))
        run(s.stop())
        run(hub.spawn(s, user_options(commit_sha="f" * 40)))
        self.assertEqual(
            [v["name"] for v in s.volumes], ["shared", renku_containers.WORK_VOLUME, renku_containers.SCRIPT_VOLUME, renku_containers.TOKEN_VOLUME]
        )
        # z2jh's V1Container stays as it is, once.
        self.assertEqual(s.init_containers[0], BLOCK_METADATA)
        self.assertEqual([renku_containers.name_of(c) for c in s.init_containers], ["block-cloud-metadata", renku_clone.INIT_CONTAINER])
        self.assertEqual([c["name"] for c in s.extra_containers], [renku_autosave.SIDECAR])
        self.assertEqual(s.mem_guarantee, 1_000_000_000)
        self.assertEqual(env_of(ours(s))["GIT_COMMIT_SHA"], "f" * 40)
        self.assertEqual(env_of(ours(s, renku_autosave.SIDECAR))["GIT_COMMIT_SHA"], "f" * 40)
        init = pod_of(s)["spec"]["initContainers"]
        self.assertEqual(init[0], serialize(BLOCK_METADATA))

    def test_dict_style_collections_are_kept(self) -> None:
        c = z2jh_config()
        c.KubeSpawner.volumes = {"shared": {"name": "shared", "emptyDir": {}}}
        c.KubeSpawner.extra_containers = {"01-proxy": {"name": "proxy", "image": "envoy"}}
        s = spawn(user_options(), hub=Hub(c=c))
        self.assertEqual(sorted(s.volumes), [renku_containers.SCRIPT_VOLUME, renku_containers.TOKEN_VOLUME, renku_containers.WORK_VOLUME, "shared"])
        self.assertEqual(sorted(s.extra_containers), ["01-proxy", renku_autosave.SIDECAR])
        names = [c["name"] for c in pod_of(s)["spec"]["containers"]]
        self.assertEqual(names, ["notebook", "proxy", renku_autosave.SIDECAR])


class RefusalTest(unittest.TestCase):
    def refused(self, options: Any, *words: str) -> str:
        with self.assertRaises(REFUSED) as caught:
            spawn(options)
        message = refusal(caught.exception)
        for word in words:
            self.assertIn(word, message)
        self.assertEqual(caught.exception.jupyterhub_message, message)
        # What JupyterHub's API handler puts in its error body.
        self.assertEqual(caught.exception.log_message % caught.exception.args, message)
        self.assertNotIn(TOKEN, message)
        return message

    def test_unknown_user_option(self) -> None:
        self.refused(user_options(cpu_limit=4), "'cpu_limit'", "Unknown")

    def test_unknown_server_option(self) -> None:
        self.refused(user_options(server_options={"cpus": 2}), "'cpus'")

    def test_wrong_type(self) -> None:
        self.refused(user_options(server_options={"cpu_request": "1.0"}), "'cpu_request'")
        self.refused(user_options(server_options={"lfs_auto_fetch": "yes"}), "'lfs_auto_fetch'")
        self.refused(user_options(server_options={"gpu_request": False}), "'gpu_request'")
        self.refused(user_options(project_id="42"), "'project_id'")
        self.refused(user_options(default_image_used="False"), "'default_image_used'")
        self.refused(user_options(server_options=[1]), "'server_options'")

    def test_disallowed_value(self) -> None:
        message = self.refused(user_options(server_options={"mem_request": "64G"}), "'mem_request'", '"64G"')
        self.assertIn('"1G", "2G"', message)
        self.refused(user_options(server_options={"gpu_request": 1}), "'gpu_request'")

    def test_missing_commit(self) -> None:
        self.refused(user_options(commit_sha=...), "'commit_sha'", "missing")
        self.refused(user_options(commit_sha="0123abc"), "'commit_sha'", "40")
        self.refused(user_options(commit_sha="z" * 40), "'commit_sha'")

    def test_missing_or_bad_project_fields(self) -> None:
        self.refused(user_options(repository=...), "'repository'")
        self.refused(user_options(repository="git@gitlab.example.com:a/b.git"), "'repository'")
        self.refused(user_options(repository=f"https://oauth2:{TOKEN}@gitlab.example.com/a/b.git"), "credentials")
        self.refused(user_options(project="../etc"), "'project'")
        self.refused(user_options(project="a/b"), "'project'")
        self.refused(user_options(namespace=""), "'namespace'")
        self.refused(user_options(notebook="../../secret.ipynb"), "'notebook'")

    def test_bad_autosave_branch(self) -> None:
        for bad in ("main", "renku/autosave/alice/../x", "renku/autosave/a b", "renku/autosave/x.lock", 7,
                    "renku/autosave/a\nb", "-renku/autosave/x"):
            with self.subTest(bad=bad):
                self.refused(user_options(autosave=bad), "'autosave'")

    def test_someone_elses_autosave_is_refused(self) -> None:
        for other in ("renku/autosave/bob/master/0123456/89abcde", "renku/autosave/alice/dev/0123456/89abcde",
                      "renku/autosave/alice/master/fffffff/89abcde"):
            with self.subTest(other=other):
                self.refused(user_options(autosave=other), "'autosave'", "your autosave")

    def test_unusable_configured_value_is_refused(self) -> None:
        options = copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS)
        options["cpu_request"]["options"] = ["lots"]
        options["cpu_request"]["default"] = "lots"
        with self.assertRaises(REFUSED) as caught:
            spawn(user_options(), settings=renku_settings.Settings(server_options=options))
        self.assertIn("'lots'", refusal(caught.exception))

    def test_empty_options_are_refused(self) -> None:
        self.refused({}, "notebooks service")

    def test_missing_token_is_refused(self) -> None:
        for state in ({}, {"access_token": ""}):
            hub = Hub()
            with self.subTest(state=state), self.assertRaises(REFUSED) as caught:
                run(hub.spawn(hub.spawner(auth_state=state), user_options()))
            self.assertIn("log in again", refusal(caught.exception))
            self.assertEqual(hub.api.ops(), [])

    def test_a_spawner_class_without_the_secret_is_refused(self) -> None:
        # An operator whose own config replaced spawner_class after this file.
        c = z2jh_config()
        renku_hooks.configure(c, SETTINGS, spawner_base=KubeSpawner, fresh_gitlab_token=None, apply_user_options=False)
        spawner = KubeSpawner(config=c, user=FakeUser(), orm_spawner=types.SimpleNamespace(name="s", server=None))
        spawner.user_options = user_options()
        with self.assertRaises(REFUSED) as caught:
            run(renku_secret.maybe_await(spawner.run_pre_spawn_hook()))
        self.assertIn("spawner_class", refusal(caught.exception))


class PodTest(unittest.TestCase):
    def test_image_labels_annotations_and_paths(self) -> None:
        s = spawn(user_options(notebook="notebooks/Analysis 1.ipynb", default_image_used=True))
        self.assertEqual(s.image, "registry.example.com/group/sub/my-project:0123456")
        self.assertEqual(s.working_dir, "/work/my-project")
        self.assertEqual(s.notebook_dir, "/work/my-project")
        self.assertEqual(s.default_url, "/lab/tree/notebooks/Analysis%201.ipynb")
        labels = pod_of(s)["metadata"]["labels"]
        self.assertEqual(labels["renku.io/username"], "alice")
        self.assertEqual((labels["team"], labels["app"], labels["component"]), ("data", "jupyterhub", "singleuser-server"))
        annotations = pod_of(s)["metadata"]["annotations"]
        self.assertEqual(
            {
                k: v
                for k, v in annotations.items()
                if k.startswith("renku.io/") and k not in ("renku.io/username", renku_secret.START_ANNOTATION)
            },
            {
                "renku.io/namespace": "group/sub",
                "renku.io/projectName": "my-project",
                "renku.io/branch": "master",
                "renku.io/commit-sha": SHA.lower(),
                "renku.io/gitlabProjectId": "42",
                "renku.io/repository": "https://gitlab.example.com/group/sub/my-project.git",
                "renku.io/default_image_used": "True",
            },
        )
        self.assertTrue(all(isinstance(v, str) for v in annotations.values()))
        mount = next(m for m in container(pod_of(s), "notebook")["volumeMounts"] if m["name"] == renku_containers.WORK_VOLUME)
        self.assertEqual(mount["mountPath"], "/work")

    def test_default_image_when_none_given(self) -> None:
        s = spawn(user_options(image=...))
        self.assertEqual(s.image, "jupyterhub/k8s-singleuser-sample:4.0.0")
        self.assertEqual(s.extra_annotations["renku.io/default_image_used"], "False")
        self.assertEqual(ours(s, renku_autosave.SIDECAR)["image"], "jupyterhub/k8s-singleuser-sample:4.0.0")

    def test_username_label_is_escaped_as_the_service_expects(self) -> None:
        # Same cases as the service's escapeUsername (lib/kubernetes/labels.ts).
        self.assertEqual(renku_pod.escape_username("alice@example.com"), "alice-40example-2ecom")
        self.assertEqual(renku_pod.escape_username("jean-luc"), "jean-2dluc")
        self.assertEqual(renku_pod.escape_username("Zoë"), "zo-c3-ab")
        hub = Hub()
        s = run(hub.spawn(hub.spawner(user="Jane.Doe@example"), user_options()))
        self.assertEqual(s.extra_labels["renku.io/username"], "jane-2edoe-40example")
        self.assertEqual(s.extra_annotations["renku.io/username"], "Jane.Doe@example")
        self.assertEqual(env_of(ours(s, renku_autosave.SIDECAR))["AUTOSAVE_USER"], "Jane.Doe@example")

    def test_username_without_a_valid_label_value_still_spawns(self) -> None:
        for name in ("_bob", "x" * 64):
            hub = Hub()
            with self.subTest(name=name), self.assertLogs("test-spawner", level="WARNING"):
                s = run(hub.spawn(hub.spawner(user=name), user_options()))
            self.assertNotIn("renku.io/username", s.extra_labels)
            self.assertEqual(s.extra_annotations["renku.io/username"], name)

    def test_braces_stay_literal_for_kubespawner_templates(self) -> None:
        s = spawn(user_options(branch="feature/{x}"))
        pod = pod_of(s)
        self.assertEqual(pod["metadata"]["annotations"]["renku.io/branch"], "feature/{x}")
        self.assertEqual(env_of(container(pod, renku_clone.INIT_CONTAINER))["GIT_BRANCH"], "feature/{x}")
        self.assertEqual(env_of(container(pod, renku_autosave.SIDECAR))["GIT_BRANCH"], "feature/{x}")
        # The shell commands keep their ${...} after KubeSpawner's expansion.
        self.assertEqual(container(pod, renku_clone.INIT_CONTAINER)["command"], renku_clone.clone_command())
        self.assertEqual(container(pod, renku_autosave.SIDECAR)["command"], renku_autosave.IDLE_COMMAND)
        self.assertEqual(
            container(pod, renku_autosave.SIDECAR)["lifecycle"]["preStop"]["exec"]["command"], renku_autosave.prestop_command()
        )

    def test_callable_uid_and_gid_are_honoured(self) -> None:
        async def async_gid(spawner: Any) -> int:
            return 2000 if spawner.user.name == "alice" else 3000

        cases = [
            ("z2jh: uid 1000, gid None", None, None, {"runAsUser": 1000, "runAsNonRoot": True}),
            ("callables", lambda s: 1234, async_gid, {"runAsUser": 1234, "runAsNonRoot": True, "runAsGroup": 2000}),
            ("root", 0, 0, {"runAsUser": 0, "runAsNonRoot": False, "runAsGroup": 0}),
        ]
        for label, uid, gid, expected in cases:
            c = z2jh_config()
            if uid is not None:
                c.KubeSpawner.uid = uid
            if gid is not None:
                c.KubeSpawner.gid = gid
            with self.subTest(label):
                s = spawn(user_options(), hub=Hub(c=c))
                pod = pod_of(s)
                for name in (renku_clone.INIT_CONTAINER, renku_autosave.SIDECAR):
                    security = container(pod, name)["securityContext"]
                    self.assertEqual({k: security[k] for k in expected}, expected)
                    self.assertEqual("runAsGroup" in security, "runAsGroup" in expected)
                    self.assertFalse(security["allowPrivilegeEscalation"])
                    self.assertEqual(security["capabilities"], {"drop": ["ALL"]})
                # The notebook container runs as the same user, so the files stay its own.
                notebook = container(pod, "notebook")["securityContext"]
                self.assertEqual(notebook["runAsUser"], expected["runAsUser"])


class TokenOutOfThePodSpecTest(unittest.TestCase):
    def test_the_token_is_in_a_secret_mounted_only_where_git_runs(self) -> None:
        hub = Hub()
        s = hub.spawner()
        s.environment = {"EXISTING": "1", "GIT_ACCESS_TOKEN": "configured-by-mistake"}
        run(hub.spawn(s, user_options()))
        pod = pod_of(s)
        # Nowhere in the pod as Kubernetes stores it.
        self.assertNotIn(TOKEN, json.dumps(pod))
        self.assertNotIn(base64.b64encode(TOKEN.encode()).decode(), json.dumps(pod))
        # In the Secret the pod mounts.
        name = f"{s.pod_name}-git"
        self.assertEqual(hub.api.token_in_secret(name), TOKEN)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == renku_containers.TOKEN_VOLUME)
        self.assertEqual(volume["secret"]["secretName"], name)
        self.assertEqual(volume["secret"]["items"], [{"key": "token", "path": "token"}])
        for name in (renku_clone.INIT_CONTAINER, renku_autosave.SIDECAR):
            c = container(pod, name)
            mount = next(m for m in c["volumeMounts"] if m["name"] == renku_containers.TOKEN_VOLUME)
            self.assertEqual((mount["mountPath"], mount["readOnly"]), ("/var/run/secrets/renku-notebooks", True))
            self.assertEqual(env_of(c)["GIT_ACCESS_TOKEN_FILE"], "/var/run/secrets/renku-notebooks/token")
            self.assertNotIn("GIT_ACCESS_TOKEN", env_of(c))
        # Not in the notebook container: no mount, no variable, whatever was configured.
        notebook = container(pod, "notebook")
        self.assertNotIn(renku_containers.TOKEN_VOLUME, [m["name"] for m in notebook["volumeMounts"]])
        self.assertFalse({"GIT_ACCESS_TOKEN", "GIT_ACCESS_TOKEN_FILE"} & set(env_of(notebook)))
        self.assertEqual(env_of(notebook)["EXISTING"], "1")
        # The notebook cannot reach the sidecar's files through a shared process namespace.
        self.assertIs(pod["spec"]["shareProcessNamespace"], False)
        # The repository URL carries no credentials, so git writes none into .git/config.
        self.assertNotIn("@", env_of(container(pod, renku_clone.INIT_CONTAINER))["GIT_REPOSITORY_URL"])

    def test_secret_exists_before_the_pod_and_is_owned_by_it(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        name = f"{s.pod_name}-git"
        ops = hub.api.ops()
        self.assertLess(ops.index(("create secret", name)), ops.index(("create pod", s.pod_name)))
        secret = hub.api.secrets[name]
        self.assertEqual(
            secret["metadata"]["ownerReferences"],
            [{"apiVersion": "v1", "kind": "Pod", "name": s.pod_name, "uid": pod_of(s)["metadata"]["uid"]}],
        )
        self.assertEqual(secret["metadata"]["labels"]["renku.io/username"], "alice")
        self.assertEqual(secret["type"], "Opaque")
        # A pod deleted without the hub (eviction) takes its Secret along.
        run(hub.api.delete_namespaced_pod(name=s.pod_name, namespace=NAMESPACE, grace_period_seconds=60))
        self.assertNotIn(name, hub.api.secrets)

    def test_a_leftover_secret_is_replaced(self) -> None:
        hub = Hub()
        s = hub.spawner()
        name = f"{s.pod_name}-git"
        hub.api.secrets[name] = {"metadata": {"name": name, "ownerReferences": [{"kind": "Pod", "name": "old", "uid": "u0"}]},
                                 "data": {"token": base64.b64encode(b"old-token").decode()}}
        run(hub.spawn(s, user_options()))
        self.assertEqual(hub.api.token_in_secret(name), TOKEN)
        self.assertEqual([o["uid"] for o in hub.api.secrets[name]["metadata"]["ownerReferences"]], [s.pod_id])

    def test_the_token_is_not_logged(self) -> None:
        gitlab = FakeGitLab()
        hub = Hub(gitlab=gitlab)
        with self.assertLogs("test-spawner", level="INFO") as logs:
            s = run(hub.spawn(hub.spawner(), user_options()))
            gitlab.expire()
            run(s.stop())
        self.assertTrue(logs.output)
        self.assertNotIn(TOKEN, "\n".join(logs.output))
        self.assertNotIn("gl-oauth-fresh-1", "\n".join(logs.output))


class AutosaveTest(unittest.TestCase):
    def test_sidecar_saves_in_its_prestop_hook(self) -> None:
        s = spawn(user_options(branch="dev"))
        pod = pod_of(s)
        sidecar = container(pod, renku_autosave.SIDECAR)
        self.assertIn(sidecar, pod["spec"]["containers"])  # a container, not an init container
        self.assertEqual(sidecar["image"], s.image)
        self.assertEqual(sidecar["lifecycle"]["preStop"]["exec"]["command"], renku_autosave.prestop_command())
        self.assertIn("/opt/renku-notebooks/autosave.sh", sidecar["lifecycle"]["preStop"]["exec"]["command"][2])
        self.assertEqual(
            env_of(sidecar),
            {
                "GIT_TARGET_DIR": "/work/my-project",
                "AUTOSAVE_USER": "alice",
                "GIT_BRANCH": "dev",
                "GIT_COMMIT_SHA": SHA.lower(),
                "GIT_REPOSITORY_URL": "https://gitlab.example.com/group/sub/my-project.git",
                "GIT_ACCESS_TOKEN_FILE": "/var/run/secrets/renku-notebooks/token",
                "AUTOSAVE_TIMEOUT": "45",
                "HOME": "/tmp",
            },
        )
        mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
        self.assertEqual(mounts[renku_containers.WORK_VOLUME]["mountPath"], "/work")  # the notebook's work tree
        self.assertTrue(mounts[renku_containers.SCRIPT_VOLUME]["readOnly"])
        script = next(v for v in pod["spec"]["volumes"] if v["name"] == renku_containers.SCRIPT_VOLUME)
        self.assertEqual(
            script["configMap"]["items"],
            [{"key": "clone-repo.sh", "path": "clone-repo.sh"}, {"key": "autosave.sh", "path": "autosave.sh"}],
        )
        self.assertEqual(script["configMap"]["defaultMode"], 0o555)
        # The notebook's own lifecycle is left alone.
        self.assertIsNone(container(pod, "notebook")["lifecycle"])

    def test_grace_period_gives_the_save_its_time(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        # KubeSpawner's default of 1 s would kill the save.
        self.assertEqual(KubeSpawner(config=Config(), user=FakeUser()).delete_grace_period, 1)
        self.assertEqual(s.delete_grace_period, 60)
        self.assertEqual(pod_of(s)["spec"]["terminationGracePeriodSeconds"], 60)
        run(s.stop())
        self.assertIn(("delete pod grace=60", s.pod_name), hub.api.ops())

    def test_a_larger_configured_grace_period_is_kept(self) -> None:
        c = z2jh_config()
        c.KubeSpawner.delete_grace_period = 300
        c.KubeSpawner.extra_pod_config = {"termination_grace_period_seconds": 5, "priorityClassName": "users"}
        s = spawn(user_options(), hub=Hub(c=c))
        spec = pod_of(s)["spec"]
        self.assertEqual((s.delete_grace_period, spec["terminationGracePeriodSeconds"]), (300, 300))
        self.assertNotIn("termination_grace_period_seconds", spec)
        self.assertEqual(spec["priorityClassName"], "users")

    def test_after_a_hub_restart_the_grace_period_holds(self) -> None:
        # The hub's new spawner object for a running server has not run the hooks.
        hub = Hub()
        run(hub.spawn(hub.spawner(), user_options()))
        restarted = hub.spawner()
        run(restarted.stop())
        self.assertIn(("delete pod grace=60", restarted.pod_name), hub.api.ops())
        self.assertEqual(hub.api.secrets, {})

    def test_a_notebook_that_exits_is_stopped_gracefully_too(self) -> None:
        # KubeSpawner's poll() calls stop(now=True) when the notebook container ended.
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        run(s.stop(now=True))
        self.assertIn(("delete pod grace=60", s.pod_name), hub.api.ops())

    def test_restore_passes_the_autosave_branch_to_the_clone(self) -> None:
        s = spawn(user_options(autosave=AUTOSAVE))
        pod = pod_of(s)
        self.assertEqual(env_of(container(pod, renku_clone.INIT_CONTAINER))["GIT_AUTOSAVE_BRANCH"], AUTOSAVE)
        self.assertEqual(pod["metadata"]["annotations"]["renku.io/autosave"], AUTOSAVE)
        self.assertNotIn("GIT_AUTOSAVE_BRANCH", env_of(container(pod, renku_autosave.SIDECAR)))

    def test_no_autosave_no_restore_even_on_a_respawn(self) -> None:
        hub = Hub()
        s = hub.spawner()
        run(hub.spawn(s, user_options(autosave=AUTOSAVE)))
        run(s.stop())
        run(hub.spawn(s, user_options()))
        pod = pod_of(s)
        self.assertNotIn("GIT_AUTOSAVE_BRANCH", env_of(container(pod, renku_clone.INIT_CONTAINER)))
        self.assertNotIn("renku.io/autosave", pod["metadata"]["annotations"])


class SecretLifecycleTest(unittest.TestCase):
    def test_stop_deletes_the_pod_then_the_secret(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        name = f"{s.pod_name}-git"
        hub.api.calls.clear()
        run(s.stop())
        self.assertEqual(
            hub.api.ops(),
            [("read secret", name), ("delete pod grace=60", s.pod_name), ("garbage-collect secret", name),
             ("delete secret", name)],
        )
        self.assertEqual((hub.api.pods, hub.api.secrets), ({}, {}))
        self.assertEqual(hub.gitlab.grants, 0)

    def test_stop_refreshes_an_expired_token_before_the_pod_goes(self) -> None:
        settings = renku_settings.Settings(server_options=SETTINGS.server_options, secret_propagation_seconds=0.2)
        hub = Hub(settings)
        s = run(hub.spawn(hub.spawner(), user_options()))
        name = f"{s.pod_name}-git"
        hub.gitlab.expire()  # two hours later
        hub.api.calls.clear()
        run(s.stop())
        self.assertEqual(hub.gitlab.grants, 1)
        ops = hub.api.ops()
        self.assertEqual(ops[:3], [("read secret", name), ("patch secret", name), ("delete pod grace=60", s.pod_name)])
        patched, deleted = hub.api.calls[1][2], hub.api.calls[2][2]
        # The kubelet rewrites the mounted file at its next sync: the pod waits for it.
        self.assertGreaterEqual(deleted - patched, 0.2)
        self.assertEqual(hub.users["alice"]._auth_state["access_token"], "gl-oauth-fresh-1")
        self.assertEqual(hub.api.secrets, {})

    def test_the_patched_secret_holds_the_new_token(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        hub.gitlab.expire()
        self.assertTrue(run(s._renku_sync_token()))
        self.assertEqual(hub.api.token_in_secret(f"{s.pod_name}-git"), "gl-oauth-fresh-1")
        self.assertFalse(run(s._renku_sync_token()))  # nothing new: no write
        self.assertEqual(hub.gitlab.grants, 1)

    def test_gitlab_down_at_stop_still_stops(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        hub.gitlab.expire()
        hub.gitlab.down = True
        hub.api.calls.clear()
        with self.assertLogs("test-spawner", level="WARNING") as logs:
            run(s.stop())
        self.assertIn("unreachable", "\n".join(logs.output))
        self.assertEqual((hub.api.pods, hub.api.secrets), ({}, {}))
        self.assertNotIn("patch secret", [op for op, _ in hub.api.ops()])

    def test_a_refresher_that_raises_does_not_block_the_stop(self) -> None:
        gitlab = FakeGitLab()

        async def broken(*args: Any, **kwargs: Any) -> str:
            raise OSError("connection refused")

        gitlab.fresh_gitlab_token = broken  # type: ignore[method-assign]
        hub = Hub(gitlab=gitlab)
        s = run(hub.spawn(hub.spawner(), user_options()))
        with self.assertLogs("test-spawner", level="WARNING") as logs:
            run(s.stop())
        self.assertIn("OSError", "\n".join(logs.output))
        self.assertEqual(hub.api.pods, {})

    def test_without_gitlab_token_py_the_secret_follows_auth_state(self) -> None:
        # E.g. OAuthenticator refreshed the token; there is nothing to refresh with here.
        hub = Hub(refresher=False)
        s = run(hub.spawn(hub.spawner(), user_options()))
        hub.users["alice"]._auth_state["access_token"] = "refreshed-by-the-authenticator"
        run(s.stop())
        self.assertIn(("patch secret", f"{s.pod_name}-git"), hub.api.ops())

    def test_patch_forbidden_recreates_the_secret(self) -> None:
        # z2jh's hub Role: get/list/watch/create/delete on Secrets, no patch.
        hub = Hub()
        hub.api.forbid_patch = True
        with self.assertLogs("test-spawner", level="WARNING") as logs:
            s = run(hub.spawn(hub.spawner(), user_options()))
        self.assertIn("not owned by its pod", "\n".join(logs.output))
        name = f"{s.pod_name}-git"
        hub.gitlab.expire()
        self.assertTrue(run(s._renku_sync_token()))
        self.assertEqual(hub.api.token_in_secret(name), "gl-oauth-fresh-1")
        run(s.stop())
        self.assertEqual(hub.api.secrets, {})

    def test_secrets_forbidden_fails_the_spawn_in_words(self) -> None:
        hub = Hub()

        async def forbidden(namespace: str, body: Any) -> Any:
            raise ApiException(403, "Forbidden")

        hub.api.create_namespaced_secret = forbidden  # type: ignore[method-assign]
        with self.assertRaises(RuntimeError) as caught:
            run(hub.spawn(hub.spawner(), user_options()))
        self.assertIn("could not create the Secret jupyter-alice--my-project-1a2b3c4d-git", str(caught.exception))
        self.assertIn("403", str(caught.exception))
        self.assertEqual(hub.api.pods, {})

    def test_a_server_from_before_autosave_stops_as_before(self) -> None:
        hub = Hub()
        s = run(hub.spawn(hub.spawner(), user_options()))
        hub.api.secrets.clear()
        run(s.stop())
        self.assertEqual(hub.gitlab.checks, 1)  # the spawn's
        self.assertEqual(hub.api.pods, {})

    def test_conflicting_pod_during_start_keeps_the_new_secret(self) -> None:
        # KubeSpawner deletes a leftover pod of the same name with stop(now=True) and retries.
        hub = Hub()
        s = hub.spawner()
        hub.api.pods[s.pod_name] = {"metadata": {"name": s.pod_name, "uid": "old"}}
        run(hub.spawn(s, user_options()))
        self.assertIn(("delete pod grace=0", s.pod_name), hub.api.ops())
        self.assertEqual(hub.api.token_in_secret(f"{s.pod_name}-git"), TOKEN)


class NoTokenOutlivesAFailedStartTest(unittest.TestCase):
    def test_a_pod_kubernetes_refuses_leaves_no_secret(self) -> None:
        hub = Hub()
        hub.api.quota_exceeded = True
        s = hub.spawner()
        with self.assertRaises(ApiException) as caught:
            run(hub.spawn(s, user_options()))
        self.assertEqual(caught.exception.status, 403)
        self.assertEqual(hub.api.secrets, {}, "the token Secret went with the refused start")
        self.assertEqual(hub.api.ops()[-2:], [("refuse pod", s.pod_name), ("delete secret", f"{s.pod_name}-git")])
        # JupyterHub calls stop() only when poll() says the server runs; it does not.
        self.assertEqual(run(s.poll()), 1)

    def test_the_secret_is_owned_by_the_pod_while_the_start_is_pending(self) -> None:
        # A hub that dies during a long start (image pull, clone) must not leave the token:
        # the pod owns it as soon as it exists, so deleting the pod deletes it.
        hub = Hub()
        s = hub.spawner()
        name = f"{s.pod_name}-git"

        async def scenario() -> list[tuple[str, str]]:
            hub.api.running.clear()
            start = asyncio.ensure_future(hub.spawn(s, user_options()))
            try:
                for _ in range(100):
                    owners = hub.api.secrets.get(name, {}).get("metadata", {}).get("ownerReferences")
                    if owners:
                        break
                    await asyncio.sleep(0.05)
                self.assertFalse(start.done(), "the start is still pending")
                self.assertEqual(owners, [{"apiVersion": "v1", "kind": "Pod", "name": s.pod_name, "uid": pod_of(s)["metadata"]["uid"]}])
                # The hub is gone; whoever deletes the pod takes the token with it.
                await hub.api.delete_namespaced_pod(name=s.pod_name, namespace=NAMESPACE)
                self.assertNotIn(name, hub.api.secrets)
                return hub.api.ops()
            finally:
                start.cancel()

        self.assertIn(("garbage-collect secret", name), run(scenario()))

    def test_a_leftover_pod_of_the_same_name_never_owns_the_new_secret(self) -> None:
        hub = Hub()
        s = hub.spawner()
        hub.api.pods[s.pod_name] = {"metadata": {"name": s.pod_name, "uid": "old", "annotations": {}}}
        run(hub.spawn(s, user_options()))
        owners = hub.api.secrets[f"{s.pod_name}-git"]["metadata"]["ownerReferences"]
        self.assertEqual([o["uid"] for o in owners], [pod_of(s)["metadata"]["uid"]])


class DeadTokenTest(unittest.TestCase):
    def test_a_token_gitlab_refuses_and_cannot_refresh_refuses_the_start(self) -> None:
        gitlab = FakeGitLab()
        gitlab.expire(TOKEN)
        gitlab.refresh_tokens.clear()  # the refresh token was used up or revoked
        hub = Hub(gitlab=gitlab)
        with self.assertRaises(REFUSED) as caught:
            run(hub.spawn(hub.spawner(), user_options()))
        self.assertIn("GitLab refused your access token", refusal(caught.exception))
        self.assertIn("log in again", refusal(caught.exception))
        self.assertEqual(hub.api.ops(), [], "no Secret, no pod")

    def test_an_expired_token_that_refreshes_starts(self) -> None:
        gitlab = FakeGitLab()
        gitlab.expire(TOKEN)
        hub = Hub(gitlab=gitlab)
        s = run(hub.spawn(hub.spawner(), user_options()))
        self.assertEqual(hub.api.token_in_secret(f"{s.pod_name}-git"), "gl-oauth-fresh-1")

    def test_gitlab_unreachable_at_start_uses_the_stored_token(self) -> None:
        gitlab = FakeGitLab()
        gitlab.down = True
        hub = Hub(gitlab=gitlab)
        s = run(hub.spawn(hub.spawner(), user_options()))
        self.assertEqual(hub.api.token_in_secret(f"{s.pod_name}-git"), TOKEN)


class TokenSyncTest(unittest.TestCase):
    def test_poll_keeps_the_secret_fresh_in_the_background(self) -> None:
        settings = renku_settings.Settings(server_options=SETTINGS.server_options, token_sync_seconds=0.05)
        hub = Hub(settings)

        async def scenario() -> Any:
            s = await hub.spawn(hub.spawner(), user_options())
            self.assertIsNone(await s.poll())  # within the interval: no check
            self.assertIsNone(s._renku_sync_task)
            hub.gitlab.expire()
            await asyncio.sleep(0.06)
            self.assertIsNone(await s.poll())
            self.assertTrue(await s._renku_sync_task)
            return s

        s = run(scenario())
        self.assertEqual(hub.api.token_in_secret(f"{s.pod_name}-git"), "gl-oauth-fresh-1")

    def test_first_poll_after_a_hub_restart_spreads_the_checks(self) -> None:
        settings = renku_settings.Settings(server_options=SETTINGS.server_options, token_sync_seconds=3600)
        hub = Hub(settings)
        s = run(hub.spawn(hub.spawner(), user_options()))
        restarted = hub.spawner()  # the hub's new spawner object for the running server
        self.assertIsNone(run(restarted.poll()))
        self.assertIsNone(restarted._renku_sync_task)
        self.assertGreater(restarted._renku_last_sync, time.monotonic() - 3600)
        self.assertEqual(s.pod_name, restarted.pod_name)

    def test_one_refresh_per_user_across_servers(self) -> None:
        hub = Hub()

        async def scenario() -> list[Any]:
            spawners = [hub.spawner(server=f"project-{i}") for i in range(3)]
            for s in spawners:
                await hub.spawn(s, user_options(project=f"project-{spawners.index(s)}"))
            hub.gitlab.expire()
            hub.api.calls.clear()
            await asyncio.gather(*(s.stop() for s in spawners))
            return spawners

        run(scenario())
        # A refresh token works once: racing servers would use it more than once.
        self.assertEqual((hub.gitlab.grants, hub.gitlab.refused_grants), (1, 0))
        patches = [name for op, name in hub.api.ops() if op == "patch secret"]
        self.assertEqual(len(patches), 3)


class InitContainerTest(unittest.TestCase):
    def test_init_container_clones_the_commit(self) -> None:
        s = spawn(user_options(branch="dev"))
        init = container(pod_of(s), renku_clone.INIT_CONTAINER)
        self.assertEqual(init["command"], renku_clone.clone_command())
        self.assertEqual(init["image"], s.image)
        self.assertEqual(
            env_of(init),
            {
                "GIT_REPOSITORY_URL": "https://gitlab.example.com/group/sub/my-project.git",
                "GIT_COMMIT_SHA": SHA.lower(),
                "GIT_BRANCH": "dev",
                "GIT_TARGET_DIR": "/work/my-project",
                "GIT_LFS_AUTO_FETCH": "false",
                "GIT_ACCESS_TOKEN_FILE": "/var/run/secrets/renku-notebooks/token",
            },
        )
        mounts = {m["name"]: m for m in init["volumeMounts"]}
        self.assertEqual(mounts[renku_containers.WORK_VOLUME]["mountPath"], "/work")
        self.assertTrue(mounts[renku_containers.SCRIPT_VOLUME]["readOnly"])
        script = next(v for v in s.volumes if v["name"] == renku_containers.SCRIPT_VOLUME)
        self.assertEqual(script["configMap"]["name"], "renku-notebooks-hub-files")


class ShellCommandTest(unittest.TestCase):
    """The containers' commands, run by a real sh against stand-in scripts."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w", encoding="utf-8") as f:
            f.write(TOKEN)

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def script(self, name: str, body: str) -> None:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\n" + body)
        os.chmod(path, 0o555)

    def test_clone_gets_the_token_from_the_file_in_its_environment_only(self) -> None:
        self.script("clone-repo.sh", 'printf "%s|%s\\n" "$GIT_ACCESS_TOKEN" "$GIT_BRANCH"\n')
        env = {"PATH": os.environ["PATH"], "GIT_ACCESS_TOKEN_FILE": self.token_file, "GIT_BRANCH": "dev"}
        done = subprocess.run(renku_clone.clone_command(self.dir), env=env, capture_output=True, text=True, timeout=10)
        self.assertEqual((done.returncode, done.stdout), (0, f"{TOKEN}|dev\n"))
        # An unreadable token file fails the clone instead of cloning without credentials.
        env["GIT_ACCESS_TOKEN_FILE"] = os.path.join(self.dir, "missing")
        done = subprocess.run(renku_clone.clone_command(self.dir), env=env, capture_output=True, text=True, timeout=10)
        self.assertNotEqual(done.returncode, 0)
        self.assertEqual(done.stdout, "")

    def test_prestop_runs_the_save_and_keeps_its_exit_code(self) -> None:
        self.script("autosave.sh", 'echo "autosave: error: GitLab unreachable"; exit 1\n')
        done = subprocess.run(renku_autosave.prestop_command(self.dir), capture_output=True, text=True, timeout=10)
        self.assertEqual(done.returncode, 1)  # a FailedPreStopHook event records it
        self.assertIn("autosave: error: GitLab unreachable", done.stdout + done.stderr)

    def test_sidecar_idles_and_exits_at_once_on_sigterm(self) -> None:
        process = subprocess.Popen(renku_autosave.IDLE_COMMAND, start_new_session=True)
        try:
            time.sleep(0.3)
            self.assertIsNone(process.poll())
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            self.assertEqual(process.wait(timeout=5), 0)
            self.assertLess(time.monotonic() - started, 2)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            else:
                # Its idle `sleep`, left behind by the shell, goes too.
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


VOLUME_SETTINGS = renku_settings.Settings(
    server_options=copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS),
    secret_propagation_seconds=0,
    session_volumes=True,
    session_volume_storage_class="fast-ssd",
)
CLAIM = "claim-alice--my-project-1a2b3c4d"


def mounts_of(container: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


class SessionVolumeTest(unittest.TestCase):
    """Session volumes through KubeSpawner 7's PVC support (renku_volume)."""

    def test_kubespawner_creates_a_claim_per_server_before_the_pod(self) -> None:
        hub = Hub(VOLUME_SETTINGS)
        s = spawn(user_options(), hub=hub)
        # The traits as KubeSpawner 7 reads them when it starts the server.
        self.assertIs(s.storage_pvc_ensure, True)
        self.assertEqual(s.pvc_name, CLAIM)
        self.assertEqual(s.storage_capacity, "1G")
        self.assertEqual(s.storage_class, "fast-ssd")
        self.assertEqual(s.storage_access_modes, ["ReadWriteOnce"])
        self.assertIs(s.delete_pvc, False)
        self.assertEqual(
            [op for op in hub.api.ops() if "claim" in op[0] or "pod" in op[0]],
            [("create claim", CLAIM), ("create pod", s.pod_name)],
        )
        claim = hub.api.claims[CLAIM]
        self.assertEqual(claim["spec"]["resources"], {"requests": {"storage": "1G"}})
        self.assertEqual(claim["spec"]["storageClassName"], "fast-ssd")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        labels = claim["metadata"]["labels"]
        self.assertEqual((labels["renku.io/session-volume"], labels["renku.io/username"]), ("true", "alice"))
        annotations = claim["metadata"]["annotations"]
        self.assertEqual(
            {k: v for k, v in annotations.items() if k.startswith("renku.io/")},
            {
                "renku.io/namespace": "group/sub",
                "renku.io/projectName": "my-project",
                "renku.io/branch": "master",
                "renku.io/commit-sha": SHA.lower(),
            },
        )
        self.assertEqual(annotations["hub.jupyter.org/username"], "alice")
        self.assertEqual(annotations["hub.jupyter.org/servername"], "my-project-1a2b3c4d")

    def test_the_claim_is_the_working_directory_of_all_three_containers(self) -> None:
        s = spawn(user_options(), settings=VOLUME_SETTINGS)
        pod = pod_of(s)
        work = [v for v in pod["spec"]["volumes"] if v["name"] == renku_containers.WORK_VOLUME]
        self.assertEqual(work, [{"name": renku_containers.WORK_VOLUME, "persistentVolumeClaim": {"claimName": CLAIM}}])
        for name in (renku_clone.INIT_CONTAINER, renku_autosave.SIDECAR, "notebook"):
            self.assertEqual(mounts_of(container(pod, name))[renku_containers.WORK_VOLUME], "/work", name)
        self.assertEqual(container(pod, "notebook")["workingDir"], "/work/my-project")
        self.assertEqual(env_of(container(pod, renku_clone.INIT_CONTAINER))["GIT_TARGET_DIR"], "/work/my-project")
        # The configured volumes stay.
        self.assertIn({"name": "shared", "emptyDir": {}}, pod["spec"]["volumes"])

    def test_disk_request_sizes_the_claim(self) -> None:
        options = copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS)
        options["disk_request"]["options"] = ["1G", "10Gi"]
        settings = renku_settings.Settings(server_options=options, session_volumes=True)
        hub = Hub(settings)
        s = spawn(user_options(server_options={"disk_request": "10Gi"}), hub=hub)
        self.assertEqual(s.storage_capacity, "10Gi")
        self.assertEqual(hub.api.claims[CLAIM]["spec"]["resources"]["requests"]["storage"], "10Gi")

    def test_no_storage_class_is_the_clusters_default(self) -> None:
        hub = Hub(renku_settings.Settings(server_options=copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS), session_volumes=True))
        s = spawn(user_options(), hub=hub)
        self.assertIsNone(s.storage_class)
        self.assertNotIn("storageClassName", hub.api.claims[CLAIM]["spec"])

    def test_a_resumed_server_mounts_its_kept_claim(self) -> None:
        hub = Hub(VOLUME_SETTINGS)
        s = spawn(user_options(volume="new"), hub=hub)
        self.assertEqual(pod_of(s)["metadata"]["annotations"]["renku.io/volume"], "new")
        run(s.stop())
        self.assertIn(CLAIM, hub.api.claims, "stopping keeps the claim")
        s = spawn(user_options(volume="resumed"), hub=hub, spawner=s)
        self.assertEqual(pod_of(s)["metadata"]["annotations"]["renku.io/volume"], "resumed")
        self.assertEqual([op for op in hub.api.ops() if "claim" in op[0]], [("create claim", CLAIM), ("claim exists", CLAIM)])
        work = next(v for v in pod_of(s)["spec"]["volumes"] if v["name"] == renku_containers.WORK_VOLUME)
        self.assertEqual(work["persistentVolumeClaim"]["claimName"], CLAIM)
        # A start without the option (a hub-side restart of the server) claims nothing.
        s = spawn(user_options(), hub=hub, spawner=s)
        self.assertNotIn("renku.io/volume", pod_of(s)["metadata"]["annotations"])

    def test_removing_the_server_at_the_hub_keeps_its_claim(self) -> None:
        # The culler removes named servers; JupyterHub then calls delete_forever, maybe in a
        # hub that never started the server (after a restart): the configuration decides.
        hub = Hub(VOLUME_SETTINGS)
        s = spawn(user_options(), hub=hub)
        run(s.stop())
        later = Hub(VOLUME_SETTINGS)
        later.api = hub.api
        fresh = later.spawner()
        self.assertIs(fresh.delete_pvc, False)
        self.assertEqual(fresh.pvc_name, CLAIM)
        run(fresh.delete_forever())
        self.assertIn(CLAIM, hub.api.claims)

    def test_each_server_has_a_claim_of_its_own(self) -> None:
        # Also where the hub's configuration named claims per user (z2jh's pvcNameTemplate).
        c = z2jh_config()
        c.KubeSpawner.pvc_name_template = "claim-{username}"
        hub = Hub(VOLUME_SETTINGS, c=c)
        first = spawn(user_options(), hub=hub)
        second = spawn(user_options(project="other"), hub=hub, spawner=hub.spawner(server="other-5e6f7a8b"))
        self.assertEqual(sorted(hub.api.claims), [CLAIM, "claim-alice--other-5e6f7a8b"])
        self.assertNotEqual(first.pvc_name, second.pvc_name)

    def test_labels_and_annotations_follow_the_user_and_the_launch(self) -> None:
        c = z2jh_config()
        c.KubeSpawner.storage_extra_labels = {"team": "data"}
        c.KubeSpawner.storage_extra_annotations = {"owner": "platform"}
        hub = Hub(VOLUME_SETTINGS, c=c)
        spawner = hub.spawner(user="Alice.Smith@example.com", server="other-1a2b3c4d")
        s = spawn(user_options(branch="feat/{x}"), hub=hub, spawner=spawner)
        claim = hub.api.claims[s.pvc_name]
        labels = claim["metadata"]["labels"]
        # The pod's escaping: the service selects the user's claims by it.
        self.assertEqual(labels["renku.io/username"], renku_pod.escape_username("Alice.Smith@example.com"))
        self.assertEqual(labels["renku.io/username"], pod_of(s)["metadata"]["labels"]["renku.io/username"])
        self.assertEqual((labels["team"], claim["metadata"]["annotations"]["owner"]), ("data", "platform"))
        # Raw values, braces included (KubeSpawner expands templates in annotations).
        self.assertEqual(claim["metadata"]["annotations"]["renku.io/branch"], "feat/{x}")
        self.assertEqual(claim["metadata"]["annotations"]["hub.jupyter.org/username"], "Alice.Smith@example.com")
        # The next start of the spawner object is built from the configuration, not the last start.
        run(s.stop())
        del hub.api.claims[s.pvc_name]
        s = spawn(user_options(), hub=hub, spawner=s)
        self.assertEqual(s.storage_extra_labels, {"team": "data", "renku.io/session-volume": "true",
                                                  "renku.io/username": labels["renku.io/username"]})
        self.assertEqual(hub.api.claims[s.pvc_name]["metadata"]["annotations"]["renku.io/branch"], "master")

    def test_a_user_name_without_a_label_value_still_gets_its_claim(self) -> None:
        name = "x" * 70
        hub = Hub(VOLUME_SETTINGS)
        s = spawn(user_options(), hub=hub, spawner=hub.spawner(user=name))
        claim = hub.api.claims[s.pvc_name]
        self.assertNotIn("renku.io/username", claim["metadata"]["labels"])
        self.assertEqual(claim["metadata"]["annotations"]["hub.jupyter.org/username"], name)

    def test_without_session_volumes_nothing_changes(self) -> None:
        hub = Hub()
        s = spawn(user_options(), hub=hub)
        for trait in ("storage_pvc_ensure", "pvc_name_template", "delete_pvc", "storage_capacity",
                      "storage_class", "storage_access_modes", "storage_extra_labels", "storage_extra_annotations"):
            self.assertNotIn(trait, hub.c.KubeSpawner, trait)
            self.assertEqual(getattr(s, trait), KubeSpawner.class_traits()[trait].default(), trait)
        self.assertEqual(hub.api.claims, {})
        work = next(v for v in pod_of(s)["spec"]["volumes"] if v["name"] == renku_containers.WORK_VOLUME)
        self.assertEqual(work, {"name": renku_containers.WORK_VOLUME, "emptyDir": {"sizeLimit": "1G"}})

    def test_the_volume_option_is_new_or_resumed(self) -> None:
        for bad in ("old", "", True, ["new"]):
            with self.subTest(volume=bad), self.assertRaises(REFUSED) as caught:
                spawn(user_options(volume=bad), settings=VOLUME_SETTINGS)
            self.assertIn("'volume'", refusal(caught.exception))

    def test_a_hub_without_disk_request_does_not_start(self) -> None:
        options = {k: v for k, v in copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS).items() if k != "disk_request"}
        with self.assertRaises(ValueError) as caught:
            Hub(renku_settings.Settings(server_options=options, session_volumes=True))
        self.assertIn("disk_request", str(caught.exception))
        Hub(renku_settings.Settings(server_options=options))  # without session volumes it need not

    def test_settings_from_hub_settings_json(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hub-settings.json")

            def load(data: Any) -> renku_settings.Settings:
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(data, f)
                return renku_settings.Settings.from_env(
                    {"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": os.path.join(tmp, "none.json"),
                     "RENKU_NOTEBOOKS_HUB_SETTINGS_PATH": path}
                )

            on = load({"sessionVolumes": {"enabled": True, "storageClass": "fast-ssd"}})
            self.assertEqual((on.session_volumes, on.session_volume_storage_class), (True, "fast-ssd"))
            empty = load({"sessionVolumes": {"enabled": True, "storageClass": ""}})
            self.assertEqual((empty.session_volumes, empty.session_volume_storage_class), (True, None))
            off = load({})
            self.assertEqual((off.session_volumes, off.session_volume_storage_class), (False, None))
            for bad in ({"sessionVolumes": {"enabled": "true"}}, {"sessionVolumes": True},
                        {"sessionVolumes": {"enabled": True, "storageClass": 1}}):
                with self.subTest(bad=bad), self.assertRaises(ValueError) as caught:
                    load(bad)
                self.assertIn("sessionVolumes", str(caught.exception))

    def test_the_python_defaults_are_the_charts(self) -> None:
        import yaml

        values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text(encoding="utf-8"))["sessionVolumes"]
        defaults = renku_settings.Settings(server_options={})
        self.assertEqual(values["enabled"], defaults.session_volumes)
        self.assertEqual(values["storageClass"] or None, defaults.session_volume_storage_class)


class HookUpTest(unittest.TestCase):
    def test_import_without_c_configures_nothing(self) -> None:
        self.assertFalse(hasattr(sc, "c"))

    def test_exec_with_c_sets_up_the_hub(self) -> None:
        # This is how hub.extraConfig loads the file, in a hub that has kubespawner.
        c = z2jh_config()
        fake_kubespawner = types.ModuleType("kubespawner")
        fake_kubespawner.KubeSpawner = KubeSpawner  # type: ignore[attr-defined]
        source = CONFIG_FILE.read_text(encoding="utf-8")
        code = compile(source, str(CONFIG_FILE), "exec", dont_inherit=True)
        saved = sys.modules.get("kubespawner")
        sys.modules["kubespawner"] = fake_kubespawner
        try:
            with tempfile.TemporaryDirectory() as tmp, self.assertLogs("renku_notebooks.spawner", "WARNING") as logs:
                os.environ["RENKU_NOTEBOOKS_HUB_FILES_DIR"] = tmp
                exec(code, {"c": c, "__name__": "renku_notebooks_spawner_config"})
        finally:
            os.environ.pop("RENKU_NOTEBOOKS_HUB_FILES_DIR", None)
            if saved is None:
                sys.modules.pop("kubespawner", None)
            else:
                sys.modules["kubespawner"] = saved
        # gitlab_token.py missing is said at start-up.
        self.assertIn("gitlab_token.py is missing", "\n".join(logs.output))
        self.assertTrue(callable(c.KubeSpawner.pre_spawn_hook))
        self.assertEqual(c.KubeSpawner.delete_grace_period, 60)
        spawner_class = c.JupyterHub.spawner_class
        self.assertTrue(issubclass(spawner_class, KubeSpawner))
        # KubeSpawner on JupyterHub 5.3 takes the launch in apply_user_options.
        self.assertTrue(callable(c.KubeSpawner.apply_user_options))
        # KubeSpawner's config section still reaches the subclass.
        spawner = spawner_class(config=c, user=FakeUser(), orm_spawner=types.SimpleNamespace(name="s", server=None))
        self.assertEqual((spawner.uid, spawner.gid, spawner.delete_grace_period), (1000, None, 60))

    def test_gitlab_token_module_is_loaded_from_the_hub_files(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            self.assertIsNone(renku_secret.load_fresh_gitlab_token(tmp, logging.getLogger("test-spawner")))
            with open(os.path.join(tmp, "gitlab_token.py"), "w", encoding="utf-8") as f:
                f.write("async def fresh_gitlab_token(user, gitlab_url, client_id, client_secret, log=None):\n"
                        "    return 'from-the-module'\n")
            fresh = renku_secret.load_fresh_gitlab_token(tmp)
            self.assertEqual(run(fresh(FakeUser(), "u", "i", "s")), "from-the-module")

    def test_operator_pre_spawn_hooks_are_chained(self) -> None:
        calls: list[str] = []

        async def for_every_spawner(spawner: Any) -> None:
            calls.append(f"Spawner:{spawner.user.name}")

        for section in ("Spawner", "KubeSpawner"):
            c = z2jh_config()
            c.Spawner.pre_spawn_hook = for_every_spawner
            if section == "KubeSpawner":
                c.KubeSpawner.pre_spawn_hook = lambda spawner: calls.append(f"KubeSpawner:{spawner.user.name}")
            calls.clear()
            with self.subTest(section=section):
                s = spawn(user_options(), hub=Hub(c=c))
                # As without renku-notebooks: KubeSpawner's hook wins over Spawner's.
                self.assertEqual(calls, [f"{section}:alice"])
                self.assertEqual(ours(s)["name"], renku_clone.INIT_CONTAINER)

    def test_jupyterhub_53_applies_the_options_in_apply_user_options(self) -> None:
        calls: list[str] = []
        c = z2jh_config()
        c.KubeSpawner.pre_spawn_hook = lambda spawner: calls.append("operator pre_spawn_hook")
        hub = Hub(c=c, jupyterhub_3=False)
        self.assertTrue(callable(c.KubeSpawner.apply_user_options))
        s = run(hub.spawn(hub.spawner(), user_options(autosave=AUTOSAVE)))
        self.assertEqual(calls, ["operator pre_spawn_hook"])
        self.assertEqual(env_of(ours(s))["GIT_AUTOSAVE_BRANCH"], AUTOSAVE)
        self.assertEqual(hub.gitlab.checks, 1)  # applied once, not again by pre_spawn_hook
        self.assertEqual(hub.unhandled_user_options, 0)  # no "Received unhandled user_options"
        # The next spawn of the same server applies its own options again.
        run(s.stop())
        run(hub.spawn(s, user_options()))
        self.assertNotIn("GIT_AUTOSAVE_BRANCH", env_of(ours(s)))

    def test_a_hook_configured_after_this_config_does_not_replace_the_launch(self) -> None:
        # As a later hub.extraConfig key would: after configure() ran.
        calls: list[str] = []
        for later in ("pre_spawn_hook", "apply_user_options"):
            with self.subTest(later=later):
                calls.clear()
                hub = Hub()
                if later == "pre_spawn_hook":
                    hub.c.KubeSpawner.pre_spawn_hook = lambda spawner: calls.append(later)
                else:
                    hub.c.KubeSpawner.apply_user_options = lambda spawner, options: calls.append(later)
                if later == "apply_user_options" and hub.jupyterhub_3:
                    continue  # 3.x never calls it
                s = run(hub.spawn(hub.spawner(), user_options(autosave=AUTOSAVE)))
                self.assertEqual(calls, [later])
                self.assertEqual(env_of(ours(s))["GIT_AUTOSAVE_BRANCH"], AUTOSAVE)
                self.assertIn(renku_containers.secret_name(s.pod_name), hub.api.secrets)
                # A refused launch is still refused.
                with self.assertRaises(REFUSED):
                    run(hub.spawn(hub.spawner(server="other"), user_options(server_options={"cpu_request": 2.5})))

    def test_jupyterhub_3_takes_the_launch_in_pre_spawn_hook(self) -> None:
        c = z2jh_config()
        hub = Hub(c=c, jupyterhub_3=True)
        # Not configured where the hub has no such trait: 3.x would warn of an unknown option.
        self.assertNotIn("apply_user_options", c.KubeSpawner)
        s = run(hub.spawn(hub.spawner(), user_options(autosave=AUTOSAVE)))
        self.assertEqual(env_of(ours(s))["GIT_AUTOSAVE_BRANCH"], AUTOSAVE)
        self.assertEqual(hub.gitlab.checks, 1)

    def test_jupyterhub_53_refusal_keeps_its_message(self) -> None:
        # JupyterHub 5.3 turns anything but an HTTPError from apply_user_options into
        # "Invalid user options"; the reason must reach the progress stream.
        hub = Hub(jupyterhub_3=False)
        with self.assertRaises(HTTPError) as caught:
            run(hub.spawn(hub.spawner(), user_options(server_options={"mem_request": "64G"})))
        error = caught.exception
        self.assertEqual(error.status_code, 400)
        self.assertIn("'mem_request'", error.log_message % error.args)
        self.assertEqual(error.jupyterhub_message, error.log_message % error.args)
        self.assertEqual(hub.api.ops(), [])

    def test_operator_apply_user_options_is_chained(self) -> None:
        seen: list[Any] = []
        c = z2jh_config()
        c.Spawner.apply_user_options = lambda spawner, options: seen.append(options.get("project"))
        s = spawn(user_options(), hub=Hub(c=c, jupyterhub_3=False))
        self.assertEqual(seen, ["my-project"])
        self.assertEqual(ours(s)["name"], renku_clone.INIT_CONTAINER)


if __name__ == "__main__":
    unittest.main()


PROXY_SETTINGS = renku_settings.Settings(
    server_options=copy.deepcopy(renku_options.DEFAULT_SERVER_OPTIONS),
    secret_propagation_seconds=0,
    git_proxy_image="renku/renku-notebooks:1.2.3",
)
GITLAB_USER = {"id": 5, "username": "alice", "name": "Alice Liddell", "email": "alice@example.com"}


class GitProxyTest(unittest.TestCase):
    """The git-proxy sidecar: git in the notebook pushes and pulls as the user, without the token."""

    def spawn(self, **overrides: Any) -> Any:
        hub = Hub(PROXY_SETTINGS)
        s = hub.spawner()
        s.user._auth_state = {"access_token": TOKEN, "refresh_token": "refresh-1", "gitlab_user": GITLAB_USER}
        s.environment = {"GIT_SSL_CAINFO": "/etc/ssl/other.pem", "EXISTING": "1"}
        return run(hub.spawn(s, user_options(**overrides)))

    def test_the_sidecar_reads_the_token_from_the_secret_as_the_autosave_does(self) -> None:
        pod = pod_of(self.spawn())
        proxy = container(pod, "git-proxy")
        self.assertIn(proxy, pod["spec"]["containers"])
        self.assertEqual(proxy["image"], "renku/renku-notebooks:1.2.3")
        self.assertEqual(proxy["command"], ["/usr/bin/tini", "--", "node", "/app/dist/git-proxy/main.js"])
        self.assertEqual(
            env_of(proxy),
            {
                "GIT_PROXY_REPOSITORY_URL": "https://gitlab.example.com/group/sub/my-project.git",
                "GIT_ACCESS_TOKEN_FILE": "/var/run/secrets/renku-notebooks/token",
                "GIT_PROXY_PORT": "8099",
                "GIT_PROXY_DRAIN_IDLE_SECONDS": "2",
                "GIT_PROXY_CA_FILE": "/var/run/renku-git-proxy/ca.pem",
            },
        )
        self.assertEqual(
            env_of(proxy)["GIT_ACCESS_TOKEN_FILE"],
            env_of(container(pod, renku_autosave.SIDECAR))["GIT_ACCESS_TOKEN_FILE"],
        )
        mounts = {m["name"]: m for m in proxy["volumeMounts"]}
        self.assertEqual(
            mounts[renku_containers.TOKEN_VOLUME],
            {"name": renku_containers.TOKEN_VOLUME, "mountPath": "/var/run/secrets/renku-notebooks", "readOnly": True},
        )
        self.assertEqual(mounts["renku-git-proxy-ca"]["mountPath"], "/var/run/renku-git-proxy")
        self.assertNotIn(renku_containers.WORK_VOLUME, mounts, "the proxy never sees the work tree")
        # Limits, so that a namespace whose quota requires them accepts the pod.
        self.assertEqual(proxy["resources"], renku_settings.DEFAULT_GIT_PROXY_RESOURCES)
        self.assertEqual(set(proxy["resources"]["limits"]), {"cpu", "memory"})
        self.assertIs(proxy["securityContext"]["readOnlyRootFilesystem"], True)
        self.assertEqual(proxy["securityContext"]["runAsUser"], 1000)
        # No preStop: it exits by itself after SIGTERM once idle; the save does not use it.
        self.assertNotIn("lifecycle", proxy)

    def test_the_notebook_gets_the_ca_read_only_and_nothing_with_the_token(self) -> None:
        s = self.spawn()
        pod = pod_of(s)
        notebook = container(pod, "notebook")
        mounts = {m["name"]: m for m in notebook["volumeMounts"]}
        self.assertEqual(
            mounts["renku-git-proxy-ca"],
            {"name": "renku-git-proxy-ca", "mountPath": "/var/run/renku-git-proxy", "readOnly": True},
        )
        self.assertNotIn(renku_containers.TOKEN_VOLUME, mounts)
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "renku-git-proxy-ca")
        self.assertIn("emptyDir", volume)
        env = env_of(notebook)
        self.assertFalse({"GIT_ACCESS_TOKEN", "GIT_ACCESS_TOKEN_FILE", "GIT_SSL_CAINFO"} & set(env))
        self.assertEqual(env["EXISTING"], "1")
        serialized = json.dumps(pod)
        self.assertNotIn(TOKEN, serialized)
        self.assertNotIn(base64.b64encode(TOKEN.encode()).decode(), serialized)
        self.assertNotIn(base64.b64encode(f"oauth2:{TOKEN}".encode()).decode(), serialized)

    def test_the_clone_points_git_at_the_proxy_as_the_user(self) -> None:
        clone = env_of(container(pod_of(self.spawn()), renku_clone.INIT_CONTAINER))
        self.assertEqual(clone["GIT_PROXY_URL"], "http://127.0.0.1:8099")
        self.assertEqual(clone["GIT_PROXY_CA_FILE"], "/var/run/renku-git-proxy/ca.pem")
        self.assertEqual((clone["GIT_USER_NAME"], clone["GIT_USER_EMAIL"]), ("Alice Liddell", "alice@example.com"))
        # http:// GitLab: no CA to trust.
        plain = self.spawn(repository="http://gitlab.example.com/group/sub/my-project.git")
        self.assertNotIn("GIT_PROXY_CA_FILE", env_of(container(pod_of(plain), renku_clone.INIT_CONTAINER)))
        self.assertNotIn("GIT_PROXY_CA_FILE", env_of(container(pod_of(plain), "git-proxy")))

    def test_without_an_image_there_is_no_proxy(self) -> None:
        pod = pod_of(spawn(user_options()))
        self.assertNotIn("git-proxy", [c["name"] for c in pod["spec"]["containers"]])
        self.assertNotIn("GIT_PROXY_URL", env_of(container(pod, renku_clone.INIT_CONTAINER)))

    def test_the_git_config_the_clone_leaves(self) -> None:
        """clone-repo.sh with the init container's environment, against a repository over HTTP."""
        with tempfile.TemporaryDirectory() as tmp:
            bare = os.path.join(tmp, "srv", "group", "sub", "my-project.git")
            seed = os.path.join(tmp, "seed")
            git_env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
            for args in (
                ["init", "-q", "-b", "master", seed],
                ["-C", seed, "-c", "user.name=S", "-c", "user.email=s@x", "commit", "-q", "--allow-empty", "-m", "s"],
                ["clone", "-q", "--bare", seed, bare],
                ["-C", bare, "update-server-info"],
            ):
                subprocess.run(["git", *args], check=True, env=git_env, capture_output=True)
            sha = subprocess.run(["git", "-C", seed, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
            # git's "dumb" HTTP protocol: a static file server is enough to clone from.
            server = subprocess.Popen(
                [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", os.path.join(tmp, "srv")],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            try:
                port = int(server.stdout.readline().split(" port ")[1].split(" ")[0])
                url = f"http://127.0.0.1:{port}/group/sub/my-project.git"
                s = self.spawn(repository=url, commit_sha=sha)
                init = container(pod_of(s), renku_clone.INIT_CONTAINER)
                token_file = os.path.join(tmp, "token")
                with open(token_file, "w", encoding="utf-8") as f:
                    f.write(TOKEN)
                scripts = os.path.join(tmp, "scripts")
                os.makedirs(scripts)
                with open(CHART_FILES / "clone-repo.sh", encoding="utf-8") as f:
                    script = f.read()
                with open(os.path.join(scripts, "clone-repo.sh"), "w", encoding="utf-8") as f:
                    f.write(script)
                os.chmod(os.path.join(scripts, "clone-repo.sh"), 0o555)
                target = os.path.join(tmp, "work", "my-project")
                env = {
                    **env_of(init),
                    "GIT_TARGET_DIR": target,
                    "GIT_ACCESS_TOKEN_FILE": token_file,
                    "GIT_PROXY_CA_FILE": "/var/run/renku-git-proxy/ca.pem",
                    "PATH": os.environ["PATH"],
                    "HOME": tmp,
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                }
                done = subprocess.run(
                    renku_clone.clone_command(scripts), env=env, capture_output=True, text=True, timeout=60
                )
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            finally:
                server.terminate()
                server.wait()
                server.stdout.close()
            config = subprocess.run(
                ["git", "-C", target, "config", "--local", "-l"], check=True, capture_output=True, text=True
            ).stdout.splitlines()
            self.assertIn(f"remote.origin.url={url}", config)
            self.assertIn(f"http.{url}.proxy=http://127.0.0.1:8099", config)
            self.assertIn(f"http.{url}.sslcainfo=/var/run/renku-git-proxy/ca.pem", config)
            self.assertIn("user.name=Alice Liddell", config)
            self.assertIn("user.email=alice@example.com", config)
            self.assertIn("filter.lfs.process=git-lfs filter-process", config)
            self.assertFalse([line for line in config if "extraheader" in line.lower() or "sslverify" in line.lower()])
            basic = base64.b64encode(f"oauth2:{TOKEN}".encode()).decode()
            for root, _, names in os.walk(target):
                for name in names:
                    with open(os.path.join(root, name), "rb") as f:
                        data = f.read()
                    self.assertNotIn(TOKEN.encode(), data, name)
                    self.assertNotIn(basic.encode(), data, name)

    def test_hub_settings_carry_the_proxy_and_refuse_bad_values(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "hub-settings.json")
            proxy = {
                "image": "registry.example.com/proxy:7",
                "resources": {"limits": {"cpu": "500m", "memory": "200Mi"}},
                "port": 9000,
                "drainIdleSeconds": 5,
            }
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"gitProxy": proxy}, f)
            settings = renku_settings.Settings.from_env(
                {"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": os.path.join(tmp, "nope.json"), "RENKU_NOTEBOOKS_HUB_SETTINGS_PATH": path}
            )
            self.assertEqual(
                (settings.git_proxy_image, settings.git_proxy_port, settings.git_proxy_drain_idle_seconds),
                ("registry.example.com/proxy:7", 9000, 5),
            )
            self.assertEqual(settings.git_proxy_resources, proxy["resources"])
            for bad in ({"port": 80}, {"port": "8099"}, {"drainIdleSeconds": -1}, {"image": 7}, {"resources": []}, []):
                with self.subTest(git_proxy=bad), self.assertRaises(ValueError):
                    with open(path, "w", encoding="utf-8") as f:
                        json.dump({"gitProxy": bad}, f)
                    renku_settings.load_hub_settings(path)
