"""The device broker's logins and access rules (Mosquitto dynamic security).

`dynsec` is pure: who may do what on the broker, as dynamic-security commands and as the
plugin's configuration file. `admin` sends those commands to a running broker. The device
table in PostgreSQL is the source of truth; the broker's state can always be rebuilt from it.
"""
