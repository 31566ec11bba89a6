"""``python -m sandboxes.jira``: serve the Jira sandbox (see ``server``)."""

from sandboxes.jira.server import main

main()
