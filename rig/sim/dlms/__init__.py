"""The twin's DLMS/COSEM meter by layer: codec (A-XDR data, date-time), association (ACSE, LLS), hdlc (IEC 62056-46
framing), objects (the IS 15959 object model), server (xDLMS services, TCP wrapper and HDLC transports), meter (the
behaviour of one position's meter), tamper (its cover switch and event log), hooks (where its defects act)."""
