"""
.dockerignore as moby's patternmatcher reads and applies it: one pattern a
line, C{#} comments, C{!} exceptions, the last matching pattern deciding, a
pattern matching a file or any of its parent directories.
"""

import os
import posixpath
import re
from typing import List, Tuple


def read_patterns(text: str) -> List[str]:
    """The patterns of a .dockerignore file's text (ignorefile.ReadAll)."""
    out = []
    for line in text.splitlines():
        line = line.strip() if not line.startswith("#") else ""
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if line.startswith("/"):
                line = line.lstrip("/") or "/"
        if invert:
            line = "!" + line
        out.append(line)
    return out


def _regex(pattern: str) -> "re.Pattern":
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                # "**/" also matches no directory at all
                if i + 1 < n and pattern[i + 1] == "/":
                    i += 1
                    out.append("(.*/)?")
                else:
                    out.append(".*")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


class PatternMatcher:
    def __init__(self, patterns: List[str]) -> None:
        self.patterns: List[Tuple[bool, "re.Pattern"]] = []
        for p in patterns:
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
            self.patterns.append((exclusion, _regex(p)))

    def excluded(self, path: str) -> bool:
        """Whether the context path C{path} ("a/b") is left out."""
        parents = []
        parent = posixpath.dirname(path)
        while parent and parent not in (".", "/"):
            parents.insert(0, parent)
            parent = posixpath.dirname(parent)
        matched = False
        for exclusion, regex in self.patterns:
            if exclusion != matched:
                continue
            hit = bool(regex.match(path)) or any(regex.match(p) for p in parents)
            if hit:
                matched = not exclusion
        return matched


def apply_dockerignore(root: str, keep: Tuple[str, ...] = ()) -> None:
    """Remove what the context's .dockerignore leaves out (blocking), the
    Dockerfile and .dockerignore too when it names them (dockerd reads
    them first, then drops them from the context); C{keep} stays."""
    path = os.path.join(root, ".dockerignore")
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            patterns = read_patterns(f.read())
    except FileNotFoundError:
        return
    if not patterns:
        return
    matcher = PatternMatcher(patterns)
    keep_set = {posixpath.normpath(k) for k in keep}
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        for name in list(filenames) + list(dirnames):
            rel = posixpath.join(rel_dir, name) if rel_dir else name
            if rel in keep_set or not matcher.excluded(rel):
                continue
            if any(k.startswith(rel + "/") for k in keep_set):
                continue
            full = os.path.join(dirpath, name)
            if name in dirnames and not os.path.islink(full):
                # An exception may keep something inside: only then look in.
                if any(e for e, _ in matcher.patterns):
                    continue
                dirnames.remove(name)
                _rmtree(full)
            else:
                os.unlink(full)


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
