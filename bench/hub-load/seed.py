"""Writes a JupyterHub 3.0 database holding USERS users, each with one running named server
`srv` at the null server's address, as if the hub had started them and then restarted. On its
next start the hub finds them running (NullSpawner.poll() says so, and the null server answers
the hub's check), so thousands of servers are active in seconds instead of spawned one by one.

  /usr/bin/python3 bench/hub-load/seed.py <db path> <users> <null server port> <user prefix>

Users are <prefix>00001 …, each holding the `user` role (written here too: left to the hub, a
database with users and no roles is an upgrade, and the hub grants the role one user and one commit
at a time, 20 s for 500 users).
"""

import sys
from datetime import datetime

from jupyterhub import orm


def main():
    db_path, count, port, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # The hub's own way to create (and stamp) a fresh database.
    session = orm.new_session_factory(f"sqlite:///{db_path}")()
    now = datetime.utcnow()
    names = [f"{prefix}{i:05d}" for i in range(1, count + 1)]
    session.execute(
        orm.User.__table__.insert(),
        [{"id": i, "name": name, "admin": False, "created": now, "last_activity": now} for i, name in enumerate(names, 1)],
    )
    session.execute(
        orm.Server.__table__.insert(),
        [
            {
                "id": i,
                "proto": "http",
                "ip": "127.0.0.1",
                "port": port,
                "base_url": f"/user/{name}/srv/",
                "cookie_name": "jupyterhub-user-" + name,
            }
            for i, name in enumerate(names, 1)
        ],
    )
    session.execute(
        orm.Spawner.__table__.insert(),
        [
            {
                "id": i,
                "user_id": i,
                "server_id": i,
                "name": "srv",
                "state": {},
                "started": now,
                "last_activity": now,
                "user_options": {"image": "bench"},
            }
            for i in range(1, count + 1)
        ]
        # The default server's spawner, stopped: the hub makes one for each user it loads that has
        # none, one commit each (7 s per 1,000 users).
        + [{"id": count + i, "user_id": i, "server_id": None, "name": "", "state": {}, "started": None, "last_activity": None, "user_options": {}} for i in range(1, count + 1)],
    )
    # The hub's config (load_roles) sets the role's scopes at start.
    session.execute(orm.Role.__table__.insert(), [{"id": 1, "name": "user", "description": "", "scopes": ["self"]}])
    user_role_map = orm.Base.metadata.tables["user_role_map"]
    session.execute(user_role_map.insert(), [{"user_id": i, "role_id": 1} for i in range(1, count + 1)])
    session.commit()


if __name__ == "__main__":
    main()
