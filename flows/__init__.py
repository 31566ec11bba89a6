"""Prefect flows: thin orchestration over the engine in ``syncline``."""
