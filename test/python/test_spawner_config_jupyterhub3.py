"""Every test of test_spawner_config.py again, on JupyterHub 3.x's path.

The hub in these tests is Debian's JupyterHub 3.0, where ``User.spawn`` has no
``apply_user_options`` and the launch is taken in ``pre_spawn_hook``; production
(z2jh 4.2's JupyterHub 5.3) takes the other path, which test_spawner_config.py runs.

Run: /usr/bin/python3 -m unittest discover -s test/python -v
"""

import unittest

import test_spawner_config as base


class OnJupyterHub3:
    def setUp(self) -> None:
        base.Hub.default_jupyterhub_3 = True
        self.addCleanup(setattr, base.Hub, "default_jupyterhub_3", False)
        super().setUp()


for _name, _case in list(vars(base).items()):
    if isinstance(_case, type) and issubclass(_case, unittest.TestCase) and _case.__module__ == base.__name__:
        globals()[f"{_name}OnJupyterHub3"] = type(f"{_name}OnJupyterHub3", (OnJupyterHub3, _case), {})


if __name__ == "__main__":
    unittest.main()
