"""Host-side instrument drivers, one module per instrument family, registered as `rig.drivers` entry points."""
