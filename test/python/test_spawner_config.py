"""Tests of chart/files/spawner_config.py with a stand-in spawner (no hub, no cluster).

Run: /usr/bin/python3 -m unittest discover -s test/python -v
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import logging
import os
import sys
import tempfile
import types
import unittest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = ROOT / "chart" / "files" / "spawner_config.py"
SERVER_OPTIONS_FILE = ROOT / "config" / "server-options.json"


def load_module() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("renku_spawner_config", CONFIG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


sc = load_module()

TOKEN = "glpat-very-secret-token-0123456789"
SHA = "0123456789ABCDEF0123456789abcdef01234567"


class FakeUser:
    def __init__(self, name: str = "alice", auth_state: Any = None) -> None:
        self.name = name
        self._auth_state = {"access_token": TOKEN} if auth_state is None else auth_state

    async def get_auth_state(self) -> Any:
        return self._auth_state


class FakeSpawner:
    """The KubeSpawner attributes the hooks read and set, with z2jh-like defaults."""

    def __init__(self, user_options: Any, user: FakeUser | None = None) -> None:
        self.user = user or FakeUser()
        self.user_options = user_options
        self.log = logging.getLogger("test-spawner")
        self.image = "jupyterhub/k8s-singleuser-sample:4.0.0"
        self.cpu_guarantee = None
        self.cpu_limit = None
        self.mem_guarantee = None
        self.mem_limit = None
        self.extra_resource_limits: dict[str, str] = {}
        self.extra_resource_guarantees: dict[str, str] = {}
        self.volumes: Any = [{"name": "shared", "emptyDir": {}}]
        self.volume_mounts: Any = [{"name": "shared", "mountPath": "/shared"}]
        self.init_containers: Any = []
        self.extra_labels = {"team": "data"}
        self.extra_annotations: dict[str, str] = {}
        self.environment = {"EXISTING": "1"}
        self.working_dir = None
        self.notebook_dir = None
        self.default_url = ""
        self.uid = 1000
        self.gid = 100


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


SETTINGS = sc.Settings(server_options=copy.deepcopy(sc.DEFAULT_SERVER_OPTIONS))


def spawn(options: Any, settings: Any = SETTINGS, spawner: FakeSpawner | None = None) -> FakeSpawner:
    spawner = spawner or FakeSpawner(options)
    spawner.user_options = options
    asyncio.run(sc.make_pre_spawn_hook(settings)(spawner))
    return spawner


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


class DefaultsTest(unittest.TestCase):
    def test_bundled_options_match_the_built_in_defaults(self) -> None:
        # The hub falls back to the built-in table; it must equal the service's bundled file.
        with open(SERVER_OPTIONS_FILE, encoding="utf-8") as f:
            self.assertEqual(json.load(f), sc.DEFAULT_SERVER_OPTIONS)

    def test_missing_server_options_take_defaults(self) -> None:
        s = spawn(user_options(server_options=...))
        self.assertEqual(s.cpu_guarantee, 0.5)
        self.assertEqual(s.cpu_limit, 0.5)
        self.assertEqual(s.mem_guarantee, 1_000_000_000)
        self.assertEqual(s.mem_limit, 1_000_000_000)
        self.assertNotIn("nvidia.com/gpu", s.extra_resource_limits)
        self.assertEqual(s.default_url, "/lab")
        work = next(v for v in s.volumes if v["name"] == sc.WORK_VOLUME)
        self.assertEqual(work, {"name": sc.WORK_VOLUME, "emptyDir": {"sizeLimit": "1G"}})
        init = s.init_containers[0]
        self.assertEqual(env_of(init)["GIT_LFS_AUTO_FETCH"], "false")

    def test_partial_server_options_fill_the_rest(self) -> None:
        s = spawn(user_options(server_options={"mem_request": "2G"}))
        self.assertEqual(s.mem_guarantee, 2_000_000_000)
        self.assertEqual(s.cpu_guarantee, 0.5)

    def test_settings_from_env(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "options.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump({"cpu_request": {"displayName": "CPUs", "type": "float", "default": 1}}, f)
            settings = sc.Settings.from_env(
                {
                    "RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path,
                    "RENKU_NOTEBOOKS_WORK_DIR": "/home/jovyan/work/",
                    "RENKU_NOTEBOOKS_GIT_IMAGE": "alpine/git:2.47.2",
                    "RENKU_NOTEBOOKS_CLONE_SCRIPT_CONFIGMAP": "other-files",
                }
            )
            self.assertEqual(list(settings.server_options), ["cpu_request"])
            self.assertEqual(settings.work_dir, "/home/jovyan/work")
            missing = sc.Settings.from_env({"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": os.path.join(tmp, "nope.json")})
            self.assertEqual(missing.server_options, sc.DEFAULT_SERVER_OPTIONS)
            with open(path, "w", encoding="utf-8") as f:
                f.write("[1, 2]")
            with self.assertRaises(ValueError):
                sc.Settings.from_env({"RENKU_NOTEBOOKS_SERVER_OPTIONS_PATH": path})

        s = spawn(user_options(server_options={"cpu_request": 2.5}), settings=settings)
        self.assertEqual(s.cpu_guarantee, 2.5)
        self.assertEqual(s.working_dir, "/home/jovyan/work/my-project")
        init = s.init_containers[0]
        self.assertEqual(init["image"], "alpine/git:2.47.2")
        script = next(v for v in s.volumes if v["name"] == sc.SCRIPT_VOLUME)
        self.assertEqual(script["configMap"]["name"], "other-files")


class ServerOptionsTest(unittest.TestCase):
    def test_each_option_reaches_the_pod(self) -> None:
        options = copy.deepcopy(sc.DEFAULT_SERVER_OPTIONS)
        options["defaultUrl"]["options"] = ["/lab", "/tree"]
        options["disk_request"]["options"] = ["1G", "10Gi"]
        options["gpu_request"]["options"] = [0, 1, 2]
        settings = sc.Settings(server_options=options)
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
        work = next(v for v in s.volumes if v["name"] == sc.WORK_VOLUME)
        self.assertEqual(work["emptyDir"], {"sizeLimit": "10Gi"})
        self.assertEqual(s.default_url, "/tree")
        self.assertEqual(env_of(s.init_containers[0])["GIT_LFS_AUTO_FETCH"], "true")

    def test_gi_is_binary_and_g_decimal(self) -> None:
        self.assertEqual(sc.parse_bytes("1G"), 10**9)
        self.assertEqual(sc.parse_bytes("1Gi"), 2**30)
        self.assertEqual(sc.parse_bytes("512Mi"), 512 * 2**20)
        self.assertEqual(sc.parse_cpu("500m"), 0.5)
        for bad in ("1 GB", "-1G", True, "lots"):
            with self.assertRaises(ValueError):
                sc.parse_bytes(bad)

    def test_allow_any_value_within_range(self) -> None:
        options = copy.deepcopy(sc.DEFAULT_SERVER_OPTIONS)
        options["mem_request"].update(allow_any_value=True, value_range={"type": "bytes", "min": "1G", "max": "8Gi"})
        options["cpu_request"] = {"displayName": "CPUs", "type": "float", "default": 0.5,
                                  "value_range": {"type": "number", "min": 0.1, "max": 4}}
        settings = sc.Settings(server_options=options)
        s = spawn(user_options(server_options={"mem_request": "3Gi", "cpu_request": 3}), settings=settings)
        self.assertEqual(s.mem_guarantee, 3 * 2**30)
        self.assertEqual(s.cpu_guarantee, 3.0)
        for bad in ({"mem_request": "9Gi"}, {"mem_request": 5}, {"cpu_request": 5}, {"cpu_request": "1"}):
            with self.subTest(bad=bad), self.assertRaises(sc.SpawnRefused) as caught:
                spawn(user_options(server_options=bad), settings=settings)
            self.assertIn(repr(next(iter(bad))), str(caught.exception))

    def test_number_without_options_or_range_is_any_non_negative(self) -> None:
        options = {"gpu_request": {"displayName": "GPUs", "type": "int", "default": 0}}
        settings = sc.Settings(server_options=options)
        s = spawn(user_options(server_options={"gpu_request": 3}), settings=settings)
        self.assertEqual(s.extra_resource_limits, {"nvidia.com/gpu": "3"})
        for bad in (-1, 1.5, True):
            with self.subTest(bad=bad), self.assertRaises(sc.SpawnRefused):
                spawn(user_options(server_options={"gpu_request": bad}), settings=settings)

    def test_respawn_does_not_accumulate(self) -> None:
        s = FakeSpawner(None)
        spawn(user_options(server_options={"mem_request": "2G"}), spawner=s)
        spawn(user_options(commit_sha="f" * 40), spawner=s)
        self.assertEqual([v["name"] for v in s.volumes], ["shared", sc.WORK_VOLUME, sc.SCRIPT_VOLUME])
        self.assertEqual([c["name"] for c in s.init_containers], [sc.INIT_CONTAINER])
        self.assertEqual(s.mem_guarantee, 1_000_000_000)
        self.assertEqual(env_of(s.init_containers[0])["GIT_COMMIT_SHA"], "f" * 40)

    def test_dict_style_volumes_are_kept(self) -> None:
        s = FakeSpawner(None)
        s.volumes = {"shared": {"name": "shared", "emptyDir": {}}}
        spawn(user_options(), spawner=s)
        self.assertEqual(sorted(s.volumes), ["renku-clone-script", "renku-work", "shared"])


class RefusalTest(unittest.TestCase):
    def refused(self, options: Any, *words: str) -> str:
        with self.assertRaises(sc.SpawnRefused) as caught:
            spawn(options)
        message = str(caught.exception)
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

    def test_unusable_configured_value_is_refused(self) -> None:
        options = copy.deepcopy(sc.DEFAULT_SERVER_OPTIONS)
        options["cpu_request"]["options"] = ["lots"]
        options["cpu_request"]["default"] = "lots"
        with self.assertRaises(sc.SpawnRefused) as caught:
            spawn(user_options(), settings=sc.Settings(server_options=options))
        self.assertIn("'lots'", str(caught.exception))

    def test_empty_options_are_refused(self) -> None:
        self.refused({}, "notebooks service")

    def test_missing_token_is_refused(self) -> None:
        for state in ({}, {"access_token": ""}, None):
            with self.subTest(state=state), self.assertRaises(sc.SpawnRefused) as caught:
                spawner = FakeSpawner(user_options(), FakeUser(auth_state=state or {}))
                spawn(user_options(), spawner=spawner)
            self.assertIn("log in again", str(caught.exception))


class PodTest(unittest.TestCase):
    def test_image_labels_annotations_and_paths(self) -> None:
        s = spawn(user_options(notebook="notebooks/Analysis 1.ipynb", default_image_used=True))
        self.assertEqual(s.image, "registry.example.com/group/sub/my-project:0123456")
        self.assertEqual(s.working_dir, "/work/my-project")
        self.assertEqual(s.notebook_dir, "/work/my-project")
        self.assertEqual(s.default_url, "/lab/tree/notebooks/Analysis%201.ipynb")
        self.assertEqual(s.extra_labels["renku.io/username"], "alice")
        self.assertEqual(s.extra_labels["team"], "data")
        self.assertEqual(s.extra_labels["app"], "jupyterhub")
        self.assertEqual(s.extra_labels["component"], "singleuser-server")
        self.assertEqual(
            {k: v for k, v in s.extra_annotations.items() if k != "renku.io/username"},
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
        self.assertTrue(all(isinstance(v, str) for v in s.extra_annotations.values()))
        mount = next(m for m in s.volume_mounts if m["name"] == sc.WORK_VOLUME)
        self.assertEqual(mount["mountPath"], "/work")

    def test_default_image_when_none_given(self) -> None:
        s = spawn(user_options(image=...))
        self.assertEqual(s.image, "jupyterhub/k8s-singleuser-sample:4.0.0")
        self.assertEqual(s.extra_annotations["renku.io/default_image_used"], "False")

    def test_username_label_is_escaped_as_the_service_expects(self) -> None:
        # Same cases as the service's escapeUsername (lib/kubernetes/labels.ts).
        self.assertEqual(sc.escape_username("alice@example.com"), "alice-40example-2ecom")
        self.assertEqual(sc.escape_username("jean-luc"), "jean-2dluc")
        self.assertEqual(sc.escape_username("Zoë"), "zo-c3-ab")
        s = spawn(user_options(), spawner=FakeSpawner(None, FakeUser(name="Jane.Doe@example")))
        self.assertEqual(s.extra_labels["renku.io/username"], "jane-2edoe-40example")
        self.assertEqual(s.extra_annotations["renku.io/username"], "Jane.Doe@example")

    def test_username_without_a_valid_label_value_still_spawns(self) -> None:
        for name in ("_bob", "x" * 64):
            with self.subTest(name=name), self.assertLogs("test-spawner", level="WARNING"):
                s = spawn(user_options(), spawner=FakeSpawner(None, FakeUser(name=name)))
            self.assertNotIn("renku.io/username", s.extra_labels)
            self.assertEqual(s.extra_annotations["renku.io/username"], name)

    def test_braces_stay_literal_for_kubespawner_templates(self) -> None:
        s = spawn(user_options(branch="feature/{x}"))
        self.assertEqual(s.extra_annotations["renku.io/branch"], "feature/{{x}}")
        self.assertEqual(env_of(s.init_containers[0])["GIT_BRANCH"], "feature/{{x}}")


class InitContainerTest(unittest.TestCase):
    def test_init_container_clones_the_commit(self) -> None:
        s = spawn(user_options(branch="dev"))
        self.assertEqual(len(s.init_containers), 1)
        init = s.init_containers[0]
        self.assertEqual(init["name"], sc.INIT_CONTAINER)
        self.assertEqual(init["command"], ["/opt/renku-notebooks/clone-repo.sh"])
        self.assertEqual(init["image"], s.image)
        self.assertEqual(
            env_of(init),
            {
                "GIT_REPOSITORY_URL": "https://gitlab.example.com/group/sub/my-project.git",
                "GIT_COMMIT_SHA": SHA.lower(),
                "GIT_BRANCH": "dev",
                "GIT_TARGET_DIR": "/work/my-project",
                "GIT_LFS_AUTO_FETCH": "false",
                "GIT_ACCESS_TOKEN": TOKEN,
            },
        )
        mounts = {m["name"]: m for m in init["volumeMounts"]}
        self.assertEqual(mounts[sc.WORK_VOLUME]["mountPath"], "/work")
        self.assertTrue(mounts[sc.SCRIPT_VOLUME]["readOnly"])
        security = init["securityContext"]
        self.assertEqual(security["runAsUser"], 1000)
        self.assertEqual(security["runAsGroup"], 100)
        self.assertFalse(security["allowPrivilegeEscalation"])
        self.assertEqual(security["capabilities"], {"drop": ["ALL"]})
        script = next(v for v in s.volumes if v["name"] == sc.SCRIPT_VOLUME)
        self.assertEqual(script["configMap"]["name"], "renku-notebooks-hub-files")
        self.assertEqual(script["configMap"]["items"], [{"key": "clone-repo.sh", "path": "clone-repo.sh"}])

    def test_token_only_in_the_init_container(self) -> None:
        spawner = FakeSpawner(None)
        spawner.environment = {"EXISTING": "1", "GIT_ACCESS_TOKEN": "configured-by-mistake"}
        s = spawn(user_options(), spawner=spawner)
        init = s.init_containers[0]
        everything_but_init = {k: v for k, v in vars(s).items() if k not in ("init_containers", "user")}
        self.assertNotIn(TOKEN, json.dumps(everything_but_init, default=str))
        self.assertNotIn("GIT_ACCESS_TOKEN", s.environment)
        self.assertEqual(s.environment, {"EXISTING": "1"})
        # Within the init container: only its environment, never its command or mounts.
        self.assertNotIn(TOKEN, json.dumps({k: v for k, v in init.items() if k != "env"}))
        self.assertEqual([e["name"] for e in init["env"] if e["value"] == TOKEN], ["GIT_ACCESS_TOKEN"])
        # The repository URL carries no credentials, so git writes none into .git/config.
        self.assertNotIn("@", env_of(init)["GIT_REPOSITORY_URL"])

    def test_token_is_not_logged(self) -> None:
        with self.assertLogs("test-spawner", level="INFO") as logs:
            spawn(user_options())
        self.assertTrue(logs.output)
        self.assertNotIn(TOKEN, "\n".join(logs.output))


class HookUpTest(unittest.TestCase):
    def test_import_without_c_configures_nothing(self) -> None:
        self.assertFalse(hasattr(sc, "c"))

    def test_exec_with_c_installs_the_hook(self) -> None:
        # This is how hub.extraConfig loads the file.
        c = types.SimpleNamespace(KubeSpawner=types.SimpleNamespace())
        source = CONFIG_FILE.read_text(encoding="utf-8")
        code = compile(source, str(CONFIG_FILE), "exec", dont_inherit=True)
        exec(code, {"c": c, "__name__": "renku_notebooks_spawner_config"})
        self.assertTrue(callable(c.KubeSpawner.pre_spawn_hook))

    def test_configure_keeps_an_earlier_hook(self) -> None:
        calls: list[str] = []
        c = types.SimpleNamespace(KubeSpawner=types.SimpleNamespace(pre_spawn_hook=lambda s: calls.append(s.user.name)))
        sc.configure(c, SETTINGS)
        spawner = FakeSpawner(user_options())
        asyncio.run(c.KubeSpawner.pre_spawn_hook(spawner))
        self.assertEqual(calls, ["alice"])
        self.assertEqual(spawner.init_containers[0]["name"], sc.INIT_CONTAINER)


if __name__ == "__main__":
    unittest.main()
