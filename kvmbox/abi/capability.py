"""Linux capability ABI values (linux/capability.h, linux/prctl.h): data, no logic."""
from __future__ import annotations

import struct

_LINUX_CAPABILITY_VERSION_1 = 0x19980330     # one 32-bit word per set
_LINUX_CAPABILITY_VERSION_2 = 0x20071026     # two words (deprecated: V3 with other headers)
_LINUX_CAPABILITY_VERSION_3 = 0x20080522     # two words; what the kernel writes back
KERNEL_CAPABILITY_VERSION = _LINUX_CAPABILITY_VERSION_3
VERSION_WORDS = {_LINUX_CAPABILITY_VERSION_1: 1, _LINUX_CAPABILITY_VERSION_2: 2,
                 _LINUX_CAPABILITY_VERSION_3: 2}

CAP_HEADER = struct.Struct("<Ii")            # struct __user_cap_header_struct: version, pid
CAP_DATA = struct.Struct("<III")             # struct __user_cap_data_struct: effective, permitted, inheritable

CAP_SETPCAP = 8
CAP_SYS_RESOURCE = 24
CAP_LAST_CAP_DEFAULT = 40                    # CAP_CHECKPOINT_RESTORE (Linux 5.9+)

# prctl(2) options about capabilities.
PR_GET_KEEPCAPS, PR_SET_KEEPCAPS = 7, 8
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
PR_GET_SECUREBITS = 27
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_LOWER, PR_CAP_AMBIENT_CLEAR_ALL = 1, 2, 3, 4
