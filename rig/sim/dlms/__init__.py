"""The twin's DLMS/COSEM meter by layer: codec (A-XDR data, date-time), association (ACSE, LLS, HLS-GMAC),
security (AES-GCM ciphering, invocation counters, key transfer), hdlc (IEC 62056-46
framing), objects (the basic object model: identity, clock, registers, disconnect control, limiter, tamper event
log), profiles (profile generic buffers and their selective access), is15959 (the IS 15959-2 object set: name
plate, instantaneous, block load, daily load and billing profiles, event logs, MD reset), object_list (association
LN objects and their object lists), server (xDLMS services with block transfer, TCP wrapper and HDLC transports),
meter (the behaviour of one position's meter), tamper (its cover switch and event log), hooks (where its defects
act)."""
