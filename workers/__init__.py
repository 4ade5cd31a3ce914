"""RQ job functions (plain functions taking ids) and the worker entry point."""
