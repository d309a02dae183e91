"""
Post-copy (lazy pages) checkpoints: the pages of a checkpoint left behind
on the source and fetched by the target after its restore, over the
daemons' own authenticated API connections.

The source dumps with lazy pages over CRIU's RPC (or C{runc checkpoint
--lazy-pages}) with CRIU's page server bound to loopback (L{dump}); a client joins a hijacked API connection to it
(L{relay}), watching the page-server protocol (L{protocol}) so that the
dump completes only once the target asked for its last page; any other end
of that connection kills CRIU, which leaves the frozen process running
again, untouched.  The target runs C{criu lazy-pages} against a loopback
listener joined to its own hijacked API connection (L{restore}) and kills
its restored copy if the pages stop arriving; once the restore is done, it
asks the source for every page ahead of CRIU's own requests (L{prefetch}).  CRIU's page pipes need
C{fs.pipe-max-size} of at least 4 MiB (L{sysctl}).
"""
