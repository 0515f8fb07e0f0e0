"""Model runners: each turns a text prompt into audio. Importable and runnable without the UI (see ``contract.py``)."""
