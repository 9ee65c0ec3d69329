"""The local stack's hub (hub/local_config.py) checks launches with the chart's parser.

The config is loaded as ``jupyterhub -f`` loads it (``get_config`` in its globals) and its
spawner is started as JupyterHub 3.0's ``User.spawn`` starts it, up to the clone, which is
replaced by a marker: whatever the production parser (chart/files/renku_options.py) refuses,
with the same server options file the service reads, never reaches the clone.

Run: /usr/bin/python3 -m unittest discover -s test/python -v
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import types
import unittest
from pathlib import Path
from typing import Any

from tornado.web import HTTPError
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
LOCAL_CONFIG = ROOT / "hub" / "local_config.py"
SHA = "0123456789abcdef0123456789abcdef01234567"


def load_local_config(run_dir: str) -> dict[str, Any]:
    """hub/local_config.py's namespace, loaded in ``run_dir`` (it changes into it)."""
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.environ.update({"JHUB_RUN_DIR": run_dir, "NOTEBOOKS_API_TOKEN": "local-config-test"})
    os.environ.pop("NOTEBOOKS_SERVER_OPTIONS_PATH", None)
    c = Config()
    namespace: dict[str, Any] = {"get_config": lambda: c, "__file__": str(LOCAL_CONFIG), "__name__": "local_config"}
    try:
        exec(compile(LOCAL_CONFIG.read_text(encoding="utf-8"), str(LOCAL_CONFIG), "exec"), namespace)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    namespace["c"] = c
    return namespace


class CloneReached(Exception):
    """Raised in place of the clone: the launch got past the checks."""


class User:
    name = "alice"
    url = "/user/alice/"

    async def get_auth_state(self) -> dict[str, str]:
        return {"access_token": "not-a-real-token"}


def launch(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "namespace": "demo-group",
        "project": "demo-project",
        "branch": "master",
        "commit_sha": SHA,
        "project_id": 101,
        "repository": "http://127.0.0.1:9/demo-group/demo-project.git",
        "server_options": {},
    }
    options.update(overrides)
    return options


class LocalHubChecksLaunchesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.config = load_local_config(cls.tmp.name)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def start(self, options: dict[str, Any]) -> BaseException:
        spawner_class = self.config["c"].JupyterHub.spawner_class
        spawner = spawner_class(
            config=self.config["c"],
            user=User(),
            orm_spawner=types.SimpleNamespace(name="work", server=None),
            hub=types.SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/", public_host=""),
            log=logging.getLogger("test-local-spawner"),
        )
        spawner.user_options = options

        async def clone(*_: Any) -> None:
            raise CloneReached()

        spawner._clone = clone
        with self.assertRaises((HTTPError, CloneReached)) as caught:
            asyncio.run(spawner.start())
        return caught.exception

    def refusal(self, options: dict[str, Any]) -> str:
        error = self.start(options)
        self.assertIsInstance(error, HTTPError, "the start must be refused before the clone")
        return getattr(error, "jupyterhub_message", "")

    def test_it_reads_the_services_server_options(self) -> None:
        bundled = json.loads((ROOT / "config" / "server-options.json").read_text(encoding="utf-8"))
        self.assertEqual(self.config["SERVER_OPTIONS"], bundled)

    def test_a_valid_launch_reaches_the_clone(self) -> None:
        self.assertIsInstance(self.start(launch(server_options={"cpu_request": 1, "lfs_auto_fetch": True})), CloneReached)

    def test_what_the_production_parser_refuses_is_refused(self) -> None:
        cases = [
            (launch(server_options={"cpu_request": 2.5}), "'cpu_request' does not allow 2.5"),
            (launch(server_options={"turbo": True}), "Unknown server option 'turbo'"),
            (launch(server_options={"cpu_request": "1"}), "'cpu_request' does not allow \"1\""),
            (launch(commit_sha="abc1234"), "'commit_sha' must be a full 40-character commit sha"),
            (launch(project="../etc"), "'project' is not a GitLab project path"),
            (launch(repository="http://user:pw@127.0.0.1:9/x.git"), "must not contain credentials"),
            (launch(color="blue"), "Unknown user option 'color'"),
            (
                launch(autosave=f"renku/autosave/bob/master/{SHA[:7]}/89abcde"),
                "not your autosave of this branch and commit",
            ),
        ]
        for options, reason in cases:
            with self.subTest(reason=reason):
                self.assertIn(reason, self.refusal(options))

    def test_the_refusal_follows_the_server_options_file(self) -> None:
        wider = json.loads(json.dumps(self.config["SERVER_OPTIONS"]))
        wider["cpu_request"]["options"] = [0.5, 1, 2.5]
        saved = self.config["SERVER_OPTIONS"]
        self.config["SERVER_OPTIONS"] = wider
        try:
            self.assertIsInstance(self.start(launch(server_options={"cpu_request": 2.5})), CloneReached)
        finally:
            self.config["SERVER_OPTIONS"] = saved


if __name__ == "__main__":
    unittest.main()
