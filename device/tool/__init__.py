"""Host tool that provisions and flashes a board: `python -m device.tool --help`.

Subcommands: `keys` (private key and CSR, locally), `flash` (stack outputs -> config.json,
DER files, compiled firmware -> the board), `monitor` (the board's console).
"""
