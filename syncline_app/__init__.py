"""The app layer: entry points that start flows or servers.

The ``syncline`` command, ``make demo`` and the local Prefect stack (``syncline up``/``down``,
the temporary server of ``syncline run``) live here, above the flows they start. Imports run one
way: ``syncline_app/`` → ``flows/`` → ``syncline/`` (the engine, free of Prefect) →
``connectors/``; nothing below imports this package.
"""
