"""The scaler: sizes each API's worker fleet from its queue (SPEC §9)."""
