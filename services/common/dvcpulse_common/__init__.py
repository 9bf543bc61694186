"""Behaviour every service needs: settings, the registry and targets files, the rate rules."""
