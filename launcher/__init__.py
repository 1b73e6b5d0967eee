"""The `telehealth` command and the dev launcher, above every service.

`cli` parses the command line and hands each subcommand to the package that owns it;
`stack` is `telehealth up` (embedded servers from `embedded`, the services as child
processes, restarted by `supervise`). Nothing below imports this package: the shared core
(`telehealth`) knows nothing of the services, and the services nothing of how they are run.
"""
