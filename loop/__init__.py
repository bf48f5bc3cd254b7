"""The local loop: stand-ins for the cloud services, run on loopback (tests, demo, bench)."""
