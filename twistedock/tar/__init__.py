"""
Tar streams as dockerd reads and writes them: L{read} (decompression, the
diff ID, members), L{extract} (safe unpacking into a layer or a container's
directory), L{write} (tars as Go's archive/tar writes them for moby),
L{layer} (a container's upper directory against its image's layers: the
changes and the layer tar), L{split} (a layer's tar kept as dockerd's
tar-split, to give it out again byte for byte) and L{stream} (a tar made
in a thread, paced to a request).
"""

import os

#: Open a directory, never through a symbolic link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
