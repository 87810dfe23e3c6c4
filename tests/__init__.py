"""The tests: ``unit/``, ``integration/`` and ``system/`` (see conftest.py), and the shared ``support`` package."""
