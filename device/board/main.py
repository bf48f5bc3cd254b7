# Runs at boot: build the device, free the boot-only code, serve forever.
import sys

import smsboot

dev = smsboot.build()
del smsboot
sys.modules.pop("smsboot", None)  # its code is not needed again: free the RAM before TLS
try:
    dev.run()
finally:
    dev.close()
