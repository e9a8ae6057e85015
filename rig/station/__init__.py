"""The operator station: a local web page to enter the meters' serials, start a batch (`rig run` underneath),
follow it per position and see each position's PASS/FAIL until the next batch."""
