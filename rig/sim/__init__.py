"""The digital twin: simulated instruments on loopback transports, coupled by one physical model."""
