"""How the outside world starts and feeds journeys: Python API (api.py) and CLI."""
