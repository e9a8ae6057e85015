"""Meter HIL Rig: test rig controller for prepaid smart electricity meters."""

__version__ = "0.1.0"
