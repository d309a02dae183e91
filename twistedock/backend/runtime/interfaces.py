"""
What the container backend asks of the runtime: L{IRuntime} (runc under
conmon), L{IExitWatcher} (the exit codes conmon writes) and L{IOverlayMounts}
(a container's root filesystem mounted and unmounted).  Only what the
container backend calls is listed, so a fake for its tests is complete when
it provides these.
"""

from zope.interface import Interface


class IRuntime(Interface):
    """runc under conmon, as the container backend drives it.  Methods are
    async unless said otherwise; failures raise runc's errors (L{NotFound},
    L{Conflict}, L{InternalError})."""

    def create(container_id, bundle, *, exit_dir, socket_dir, persist_dir=None, **options):
        """Create the container from its OCI C{bundle} under a new conmon:
        its pid.  C{options} are conmon's (C{log_path}, C{terminal},
        C{stdin}, C{leave_stdin_open}, C{socket_name}, and those of a
        checkpoint restore)."""

    def start(container_id):
        """Start the created container's process."""

    def kill(container_id, signal=15, all=False):
        """Send C{signal} (a number or a name) to the container's process 1,
        or with C{all} to all its processes."""

    def pause(container_id):
        """Freeze the container's processes."""

    def resume(container_id):
        """Thaw the container's processes."""

    def delete(container_id, force=False):
        """Forget the container (with C{force}, killing what still runs)."""

    def state(container_id):
        """runc's state (C{status}: created, running, paused, stopped), or
        None when runc does not know the container."""

    def ps(container_id):
        """The host pids of the container's processes."""

    def update(container_id, resources):
        """Apply OCI C{LinuxResources} to the running container."""

    def attach(socket_path, output, ended=None):
        """Connect to conmon's attach socket: an L{AttachConnection};
        C{output(stream, data)} for the output, C{ended()} when it closes."""

    def resize(bundle, height, width):
        """Resize the container's terminal."""

    def oom_killed(bundle, container_id=None, persist_dir=None):
        """Whether the run ended in an OOM kill (synchronous)."""

    def conmon_alive(bundle):
        """Whether the conmon supervising the container of C{bundle} still
        runs: True, False, or None when nothing says which conmon that was
        (synchronous: reads /proc)."""

    def kill_conmon(bundle):
        """SIGKILL the conmon of C{bundle} if it still runs (synchronous)."""

    def exit_code(exit_dir, container_id):
        """The exit code conmon wrote for the container's last run, or None
        (synchronous)."""


class IExitWatcher(Interface):
    """The exit codes conmon writes, awaited."""

    def start():
        """Begin watching (L{wait} starts it too)."""

    def stop():
        """Stop watching; pending waits fail with L{CancelledError}."""

    def wait(container_id):
        """A Deferred firing with the exit code of the container's current
        run (at once when it was already written); cancelling it only
        forgets this waiter."""


class IOverlayMounts(Interface):
    """A container's root filesystem: the image's layers under its own
    upper directory.  Blocking: the container backend calls these in a
    thread."""

    def mount(lower_dirs, upper, work, target):
        """Mount the overlay at C{target} (C{lower_dirs} lowest layer
        first, as images list them), making the directories; nothing when
        it is already mounted."""

    def unmount(target):
        """Unmount C{target}; nothing when it is not mounted."""

    def mount_shm(target, size):
        """Mount a tmpfs of C{size} bytes at C{target} (a shareable
        /dev/shm), making the directory; nothing when it is mounted."""
